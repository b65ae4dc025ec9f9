package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/metrics"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and returns the
// file paths and the certificate.
func writeCert(t *testing.T, dir, cn string) (string, string, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return certFile, keyFile, cert
}

func TestServeTLSAndMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, cert := writeCert(t, dir, "writ-test")
	if _, err := New(Options{Listen: "127.0.0.1:0", TLSCertFile: certFile}); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
	if _, err := New(Options{Listen: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: filepath.Join(dir, "none")}); err == nil {
		t.Fatal("a missing key file was accepted")
	}
	m := metrics.New()
	s, err := New(Options{Listen: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("healthz over TLS: %d %v", resp.StatusCode, resp.TLS)
	}
	// Plain HTTP is not served on a TLS listener.
	if r, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		r.Body.Close()
		if r.StatusCode == 200 {
			t.Fatal("plain HTTP answered on the TLS listener")
		}
	}
	// A renewed certificate is picked up without a restart.
	time.Sleep(10 * time.Millisecond)
	_, _, cert2 := writeCert(t, dir, "writ-renewed")
	s2pool := x509.NewCertPool()
	s2pool.AddCert(cert2)
	client2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s2pool}}}
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := client2.Get("https://" + s.Addr() + "/healthz")
		if err == nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewed certificate not served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The requests were measured by route and status.
	rec := &captureWriter{header: http.Header{}}
	m.Handler().ServeHTTP(rec, httptestRequest())
	if !strings.Contains(rec.body.String(), `writ_http_request_seconds_count{code="200",route="GET /healthz"}`) {
		t.Fatalf("metrics lack the healthz requests:\n%s", rec.body.String())
	}
}

type captureWriter struct {
	header http.Header
	body   strings.Builder
	code   int
}

func (c *captureWriter) Header() http.Header         { return c.header }
func (c *captureWriter) Write(b []byte) (int, error) { return c.body.Write(b) }
func (c *captureWriter) WriteHeader(code int)        { c.code = code }

func httptestRequest() *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/metrics", nil)
	return r
}
