package siem

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Fuzz workers run only the formatter's fuzz target: no database.
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	os.Exit(dbtest.Run(m))
}

// setup is a fresh database with an audit log.
func setup(t testing.TB) (*store.Store, *audit.Log) {
	t.Helper()
	u := dbtest.URL(t)
	st, err := store.Open(context.Background(), store.Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	dbURLs.Store(st, u)
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := audit.NewSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(audit.LogOptions{Store: st, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	return st, l
}

// testEntry is entry i: some fail, some carry what RFC 5424 escapes and
// text outside ASCII.
func testEntry(i int) audit.Entry {
	return audit.Entry{
		Actor:   audit.Actor{ID: fmt.Sprintf("user-%d", i%5), Role: "approver"},
		Event:   "approval.accepted",
		Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: fmt.Sprintf("block-%d", i)},
		Success: i%7 != 3,
		Payload: audit.MustJSON(map[string]any{"n": i, "reason": `a "quoted" \ reason] with | and ünïcödé`, "success": i%2 == 0}),
	}
}

// appendEntries appends n entries, batch at a time, numbered from first.
func appendEntries(t testing.TB, l *audit.Log, first, n, batch int) {
	t.Helper()
	ctx := context.Background()
	for i := first; i < first+n; i += batch {
		var es []audit.Entry
		for j := i; j < min(first+n, i+batch); j++ {
			es = append(es, testEntry(j))
		}
		if _, err := l.Append(ctx, l.Store(), es...); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs a forwarder until the test ends or stop is called.
func run(t testing.TB, f *Forwarder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("forwarder: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond until it holds; after a minute the test fails
// (a deadline for a stuck test, not a speed requirement).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after a minute: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pki is a test CA with a server certificate for localhost and 127.0.0.1
// and a client certificate for "writ-client", in files.
type pki struct {
	dir                           string
	caFile, serverCert, serverKey string
	clientCert, clientKey         string
	otherCAFile                   string // a CA that signed none of them
	caKey                         *ecdsa.PrivateKey
	ca                            *x509.Certificate
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{dir: dir}
	p.caKey, p.ca = makeCA(t, "writ test CA")
	p.caFile = filepath.Join(dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", p.ca.Raw)
	p.serverCert, p.serverKey = p.issue(t, "server", "localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.issue(t, "client", "writ-client", []string{"writ-client"}, nil, x509.ExtKeyUsageClientAuth)
	_, other := makeCA(t, "another CA")
	p.otherCAFile = filepath.Join(dir, "other-ca.pem")
	writePEM(t, p.otherCAFile, "CERTIFICATE", other.Raw)
	return p
}

func makeCA(t testing.TB, cn string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, ca
}

func (p *pki) issue(t testing.TB, file, cn string, dns []string, ips []net.IP, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, file+".pem"), filepath.Join(p.dir, file+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// hexOf is for messages.
func hexOf(b []byte) string { return strings.ToLower(fmt.Sprintf("%x", b)) }

// dbURLs maps each store setup made to its database's URL, for ownerConn.
var dbURLs sync.Map

// ownerConn connects to st's database as the owner of writ's tables, as a
// database operator rewriting the log would (the service role cannot set
// session_replication_role).
func ownerConn(t testing.TB, st *store.Store) *pgx.Conn {
	t.Helper()
	u, ok := dbURLs.Load(st)
	if !ok {
		t.Fatal("ownerConn: not a store from setup")
	}
	conn, err := pgx.Connect(context.Background(), dbtest.OwnerURL(u.(string)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
