package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// traversableTempDir is a temp dir PostgreSQL's user can reach when the
// tests run as root.
func traversableTempDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != filepath.Clean(os.TempDir()) && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

var addrRE = regexp.MustCompile(`msg="serving HTTP" addr=(\S+)`)

// startServe runs writ serve in-process and returns its base URL and a stop
// function that waits for a clean exit.
func startServe(t testing.TB, args ...string) (string, func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...), &cliEnv{
			stdin: strings.NewReader(""), stdout: io.Discard, stderr: stderr,
			getenv: func(string) string { return "" },
		})
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			stop := func() (int, string) {
				cancel()
				select {
				case code := <-done:
					return code, stderr.String()
				case <-time.After(2 * time.Minute):
					t.Fatal("serve did not stop")
					return -1, ""
				}
			}
			return "http://" + m[1], stop
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited early with %d:\n%s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve not listening:\n%s", stderr.String())
		}
	}
}

// waitReady waits until /readyz says ready: a replica that just became
// leader is not ready until its first reconcile pass.
func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, body := getJSON(t, base+"/readyz")
		if code == 200 && body["status"] == "ready" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d %v after 3m", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode, body
}

// writ serve with a private cluster answers /healthz and /readyz, stops
// cleanly, and keeps its data when started again on the same directory.
func TestServePrivateClusterKeepsData(t *testing.T) {
	dataDir := filepath.Join(traversableTempDir(t), "state")

	base, stop := startServe(t, "--data-dir", dataDir)
	if code, body := getJSON(t, base+"/healthz"); code != 200 || body["status"] != "ok" {
		t.Fatalf("healthz %d %v", code, body)
	}
	waitReady(t, base)
	// Write a row through the cluster's socket while it runs.
	url := "postgres://writ@/writ?host=" + filepath.Join(dataDir, "postgres") + "&port=5432&sslmode=disable"
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO users (username) VALUES ('kept-across-restarts')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if code, logs := stop(); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, logs)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postgres", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("PostgreSQL still running after serve stopped: %v", err)
	}

	base, stop = startServe(t, "--data-dir", dataDir)
	waitReady(t, base)
	conn, err = pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM users WHERE username = 'kept-across-restarts'").Scan(&n)
	conn.Close(ctx)
	if err != nil || n != 1 {
		t.Fatalf("row after restart: %d, %v", n, err)
	}
	code, logs := stop()
	if code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, logs)
	}
	if !strings.Contains(logs, "migrations_applied=0") {
		t.Fatalf("second start re-applied migrations:\n%s", logs)
	}
}

func TestMigrateUpAndStatus(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": emptyDatabaseURL(t)}
	code, out, errOut := runCLIEnv(t, env, "migrate", "status")
	if code != exitFailure || !strings.Contains(out, "001  pending  001_core.sql") {
		t.Fatalf("status of empty db: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLIEnv(t, env, "migrate")
	if code != exitOK || !strings.Contains(out, "applied ") {
		t.Fatalf("migrate: %d %q %q", code, out, errOut)
	}
	code, out, _ = runCLIEnv(t, env, "migrate", "status")
	if code != exitOK || !strings.Contains(out, "schema up to date") || strings.Contains(out, "pending") {
		t.Fatalf("status after migrate: %d %q", code, out)
	}
	if code, _, _ := runCLIEnv(t, env, "migrate", "down"); code != exitUsage {
		t.Fatalf("migrate down: exit %d; want usage error", code)
	}
}
