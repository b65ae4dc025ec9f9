package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testCA is a certificate authority of the test's own.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM of the CA certificate
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, file: file}
}

// leaf issues a server certificate for 127.0.0.1.
func (ca *testCA) leaf(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "receiver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// delivery is one request the receiver got.
type delivery struct {
	Path      string
	Key       string // Idempotency-Key header
	Timestamp string
	Signature string
	Verified  bool // the receiver's own check of signature and timestamp
	Body      Request
	Raw       []byte
}

// receiver is an EDR-style webhook receiver on loopback over TLS: it
// checks signatures itself (independently of Verify), keeps the isolated
// hosts, answers the status endpoint and remembers idempotency keys.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret []byte

	mu         sync.Mutex
	deliveries []delivery
	isolated   map[string]bool
	known      map[string]bool
	done       map[string][]byte // idempotency key -> response
	// respond, when set, answers instead of the default behaviour; it
	// gets the 1-based number of the request.
	respond func(w http.ResponseWriter, r *http.Request, n int) bool
}

func newReceiver(t *testing.T, ca *testCA, secret string) *receiver {
	t.Helper()
	rc := &receiver{t: t, secret: []byte(secret), isolated: map[string]bool{}, known: map[string]bool{}, done: map[string][]byte{}}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf(t)}}
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.srv.StartTLS()
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url(path string) string { return rc.srv.URL + path }

// verify is the receiver's own signature check, as an EDR team would
// write it from the documentation.
func (rc *receiver) verify(ts, sig string, body []byte) bool {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	m := hmac.New(sha256.New, rc.secret)
	m.Write([]byte(ts + "." + string(body)))
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(sig), []byte(want))
}

func (rc *receiver) log() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.deliveries...)
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	d := delivery{Path: r.URL.Path, Key: r.Header.Get("Idempotency-Key"), Timestamp: r.Header.Get("X-Writ-Timestamp"),
		Signature: r.Header.Get("X-Writ-Signature-256"), Raw: raw}
	d.Verified = rc.verify(d.Timestamp, d.Signature, raw)
	_ = json.Unmarshal(raw, &d.Body)
	rc.mu.Lock()
	rc.deliveries = append(rc.deliveries, d)
	n := len(rc.deliveries)
	respond := rc.respond
	rc.mu.Unlock()
	if !d.Verified {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if respond != nil && respond(w, r, n) {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/status":
		var out statusResponse
		for _, t := range d.Body.Targets {
			e := struct {
				Target string `json:"target"`
				State  string `json:"state"`
				Detail string `json:"detail"`
			}{Target: t, State: StateNotApplied}
			switch {
			case !rc.known[t]:
				e.State, e.Detail = StateNotFound, "no such host in the EDR"
			case rc.isolated[t]:
				e.State = StateApplied
			}
			out.Targets = append(out.Targets, e)
		}
		_ = json.NewEncoder(w).Encode(out)
	case "/hook":
		if prev, ok := rc.done[d.Key]; ok {
			_, _ = w.Write(prev) // a repeated key gets the first answer
			return
		}
		var results []map[string]string
		for _, t := range d.Body.Targets {
			res := map[string]string{"target": t}
			want := d.Body.Command == "isolate_host"
			switch {
			case !rc.known[t]:
				res["result"], res["detail"] = "failed", "no such host"
			case rc.isolated[t] == want:
				res["result"] = "unchanged"
			default:
				rc.isolated[t] = want
				res["result"] = "changed"
			}
			results = append(results, res)
		}
		body, _ := json.Marshal(map[string]any{"targets": results})
		rc.done[d.Key] = body
		_, _ = w.Write(body)
	default:
		http.NotFound(w, r)
	}
}
