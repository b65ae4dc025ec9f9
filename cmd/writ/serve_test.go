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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/writ-sec/writ/internal/pgembed"
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

// writ serve on the project's own repository with the private cluster:
// database commands run beside it (they attach to its PostgreSQL through
// the socket instead of waiting for it), and when PostgreSQL is killed
// writ serve starts it again and carries on: /readyz is not ready, then
// ready, the CLI works again, and serve stops cleanly at the end.
func TestServeBesideCLIAndPostgresCrash(t *testing.T) {
	dataDir := filepath.Join(traversableTempDir(t), "state")
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	base, stop := startServe(t, "--data-dir", dataDir, "--repo", repo)
	waitReady(t, base)

	cli := func(args ...string) {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"--data-dir", dataDir, "--log-level", "warn"}, args...)...)
		if code != exitOK {
			t.Fatalf("writ %s beside writ serve: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	cli("user", "add", "bob", "--role", "viewer", "--no-password")
	cli("migrate", "status")
	if _, err := os.Stat(filepath.Join(dataDir, "postgres", "postmaster.pid")); err != nil {
		t.Fatalf("the CLI stopped writ serve's PostgreSQL: %v", err)
	}
	waitReady(t, base)

	pidOf := func() int {
		b, err := os.ReadFile(filepath.Join(dataDir, "postgres", "postmaster.pid"))
		if err != nil {
			return 0
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, _ := strconv.Atoi(strings.TrimSpace(first))
		return pid
	}
	old := pidOf()
	if old <= 0 {
		t.Fatal("no postmaster.pid")
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not ready while it is down (or already restarting), then ready again
	// with another postmaster.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if pid := pidOf(); pid > 0 && pid != old {
			if code, body := getJSON(t, base+"/readyz"); code == 200 && body["status"] == "ready" {
				break
			}
		}
		if time.Now().After(deadline) {
			code, body := getJSON(t, base+"/readyz")
			t.Fatalf("writ serve did not come back after PostgreSQL was killed: readyz %d %v", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cli("user", "add", "carol", "--role", "viewer", "--no-password")
	code, logs := stop()
	if code != 0 {
		t.Fatalf("serve exit %d after the restart:\n%s", code, logs)
	}
	if !strings.Contains(logs, "the private PostgreSQL exited; restarting it") || !strings.Contains(logs, "the private PostgreSQL runs again") {
		t.Fatalf("the restart is not logged:\n%s", logs)
	}
}

// writ serve on an external PostgreSQL that stops and comes back: serve
// does not exit; it is not ready while the database is gone and ready
// again after, without being restarted itself.
func TestServeSurvivesExternalDatabaseRestart(t *testing.T) {
	dir := filepath.Join(traversableTempDir(t), "external-pg")
	ctx := context.Background()
	pg, err := pgembed.Start(ctx, pgembed.Options{Dir: dir, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	base, stop := startServe(t, "--data-dir", traversableTempDir(t), "--database", pg.URL(), "--repo", repo)
	waitReady(t, base)

	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := getJSON(t, base+"/readyz")
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d %v with the database stopped", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a while without a database
	pg, err = pgembed.Start(ctx, pgembed.Options{Dir: dir, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, base)
	if code, logs := stop(); code != 0 {
		t.Fatalf("serve exit %d after the database came back:\n%s", code, logs)
	}
}
