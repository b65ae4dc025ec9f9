// Package witnesstest runs the reference C2SP tlog-witness for tests: the
// omniwitness of github.com/transparency-dev/witness, built at the pinned
// Version with `go install` (through the Go module proxy, into a cache
// directory keyed by the version, so writ's go.mod does not carry the
// witness's dependencies) and started on loopback with its in-memory
// storage, a fresh key, and the logs a test names.
package witnesstest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// The reference witness, pinned: change Version here only.
const (
	Package = "github.com/transparency-dev/witness/cmd/omniwitness"
	Version = "v0.0.0-20260720115447-2e1c6971d19e"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of the omniwitness at Version, building it the
// first time (about a minute; later runs find it in the cache directory).
// WRIT_TEST_CACHE overrides the cache directory (default writ-test/ in the
// user's cache directory).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("witnesstest: the reference witness %s@%s: %v", Package, Version, buildErr)
	}
	return buildPath
}

func build() (string, error) {
	cache := os.Getenv("WRIT_TEST_CACHE")
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir() // no HOME: a cache for this machine's tests all the same
		}
		cache = filepath.Join(dir, "writ-test")
	}
	dir := filepath.Join(cache, "omniwitness@"+Version)
	bin := filepath.Join(dir, "omniwitness")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Several test binaries may build at once: each in its own directory,
	// renamed into place.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build it: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", Package+"@"+Version)
	env := []string{"GOBIN=" + tmp, "GOWORK=off", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local", "CGO_ENABLED=0"}
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "GOBIN", "GOWORK", "GOFLAGS", "GOTOOLCHAIN", "CGO_ENABLED", "GOOS", "GOARCH":
		default:
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install: %w\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "omniwitness"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// Log is a log the witness knows: its origin and the verifier key of its
// checkpoints (writ audit vkey).
type Log struct {
	Origin string
	VKey   string
}

// Witness is a running reference witness.
type Witness struct {
	// URL is its submission prefix (add-checkpoint is below it).
	URL string
	// Name is its key's name; VKey its verifier key, the cosignature/v1
	// form its operator would publish; VKeyEd25519 the plain Ed25519 form
	// of the same key.
	Name, VKey, VKeyEd25519 string
}

// Start runs a reference witness on 127.0.0.1 that knows logs, stopped
// when the test ends. Its output is in the test's log when the test fails.
func Start(t testing.TB, name string, logs ...Log) *Witness {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	cosigVKey, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "witness.key")
	if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
		t.Fatal(err)
	}
	var y strings.Builder
	y.WriteString("Logs:\n")
	for _, l := range logs {
		fmt.Fprintf(&y, "  - Origin: %q\n    PublicKey: %q\n", l.Origin, l.VKey)
	}
	logsFile := filepath.Join(dir, "logs.yaml")
	if err := os.WriteFile(logsFile, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 3 { // the port picked may be taken before the witness binds it
		addr, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "witness.log")
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		// No database file: the in-memory store. No metrics listener, no
		// distributor, bastion or public log list: nothing but loopback.
		cmd := exec.Command(bin, "--listen="+addr, "--metrics_listen=", "--private_key_path="+keyFile,
			"--additional_logs="+logsFile, "--logtostderr", "--v=1")
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			f.Close()
			t.Fatal(err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); f.Close(); close(exited) }()
		if lastErr = waitListening(addr, exited, &waitErr); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				if t.Failed() {
					b, _ := os.ReadFile(out)
					t.Logf("witness %s output:\n%s", name, b)
				}
			})
			return &Witness{URL: "http://" + addr, Name: name, VKey: cosigVKey, VKeyEd25519: vkey}
		}
		_ = cmd.Process.Kill()
		<-exited
		b, _ := os.ReadFile(out)
		lastErr = fmt.Errorf("%w\n%s", lastErr, b)
	}
	t.Fatalf("witnesstest: the witness did not start: %v", lastErr)
	return nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// waitListening waits until the witness answers HTTP on addr.
func waitListening(addr string, exited <-chan struct{}, waitErr *error) error {
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("the witness exited: %v", *waitErr)
		default:
		}
		// add-checkpoint is POST only; any HTTP answer means it serves.
		if resp, err := client.Get("http://" + addr + "/add-checkpoint"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the witness did not listen within 60s")
}
