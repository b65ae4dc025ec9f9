package main

// The README's quickstart, run as written: `make run` from the repository
// root on a fresh data directory, then the shell block of API calls with
// the one-time password it printed. Only what the reader substitutes is
// substituted (the printed password, the passphrase they choose, and the
// address, because the test cannot take port 8080 on a shared machine).

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlock returns the first ```sh block of README.md containing marker.
func readmeBlock(t *testing.T, root, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range strings.Split(string(b), "```sh\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if ok && strings.Contains(block, marker) {
			return block
		}
	}
	t.Fatalf("README.md has no sh block with %q", marker)
	return ""
}

var printedPasswordRE = regexp.MustCompile(`shown this once[^\n]*\n\s*\n\s+(\S+)\n`)

func TestReadmeQuickstart(t *testing.T) {
	for _, tool := range []string{"make", "curl", "jq", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the quickstart needs %s (README prerequisites; .ci/run installs it): %v", tool, err)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	block := readmeBlock(t, root, "/api/v1/auth/login")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dataDir := filepath.Join(traversableTempDir(t), "state")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, "make", "--no-print-directory", "run", "LISTEN="+addr, "DATA_DIR="+dataDir)
	run.Dir = root
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	run.Cancel = func() error { return syscall.Kill(-run.Process.Pid, syscall.SIGKILL) }
	stderr, err := run.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	run.Stdout = nil // make echoes its commands; serve logs to stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-run.Process.Pid, syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- run.Wait() }()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	defer stop()

	// Read serve's stderr until it printed the password and serves HTTP.
	var logs strings.Builder
	password := make(chan string, 1)
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sent, served := false, false
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := printedPasswordRE.FindStringSubmatch(logs.String()); m != nil && !sent {
				password <- m[1]
				sent = true
			}
			if !served && strings.Contains(sc.Text(), `msg="serving HTTP"`) {
				close(serving)
				served = true
			}
		}
	}()
	var pw string
	select {
	case pw = <-password:
	case <-time.After(8 * time.Minute):
		t.Fatalf("make run printed no one-time password")
	}
	select {
	case <-serving:
	case <-time.After(2 * time.Minute):
		t.Fatalf("make run is not serving HTTP")
	}

	script := block
	script = strings.ReplaceAll(script, "<printed>", pw)
	script = strings.ReplaceAll(script, "<a passphrase of 12 or more characters>", "correct horse battery staple")
	script = strings.ReplaceAll(script, "localhost:8080", addr)
	if strings.Contains(script, "<") && regexp.MustCompile(`<[a-z][^>]*>`).MatchString(script) {
		t.Fatalf("the quickstart block has a placeholder the test does not know:\n%s", script)
	}
	sh := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	sh.Dir = t.TempDir()
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the quickstart block failed: %v\n%s", err, out)
	}
	// The last call lists the playbooks: this repository's examples. Each
	// call printed one JSON document; the last is the list.
	var list struct {
		Playbooks []struct {
			Name string `json:"name"`
		} `json:"playbooks"`
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var docs []json.RawMessage
	for {
		var d json.RawMessage
		if err := dec.Decode(&d); err != nil {
			break
		}
		docs = append(docs, d)
	}
	if len(docs) != 2 {
		t.Fatalf("the quickstart printed %d JSON documents, want 2 (the password change and the list):\n%s", len(docs), out)
	}
	if err := json.Unmarshal(docs[1], &list); err != nil {
		t.Fatalf("the playbooks call did not answer a list: %v\n%s", err, out)
	}
	if len(list.Playbooks) == 0 {
		t.Fatalf("no playbooks listed from this repository's examples:\n%s", out)
	}
	t.Logf("quickstart: %d playbooks listed", len(list.Playbooks))
	stop()
}
