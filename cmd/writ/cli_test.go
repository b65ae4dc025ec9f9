package main

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/writ-sec/writ/internal/dbtest"
)

// TestMain doubles as the writ binary: with WRIT_TEST_MAIN=1 the test
// binary runs the CLI (os.Args) instead of tests, so tests can start writ
// as a separate process (writ demo, crash tests) without building it.
func TestMain(m *testing.M) {
	if os.Getenv("WRIT_TEST_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
		stop()
		os.Exit(code)
	}
	os.Exit(dbtest.Run(m))
}

// runCLI runs writ with args and returns the exit code, stdout and stderr.
func runCLI(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	return runCLIEnv(t, nil, args...)
}

func runCLIEnv(t testing.TB, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	return runCLIInput(t, env, "", args...)
}

// runCLIInput runs writ with environment variables and input on standard
// input. XDG_CONFIG_HOME, unless given, is an empty directory: no session
// of writ login the person running the tests may have is ever used.
func runCLIInput(t testing.TB, env map[string]string, input string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	config := filepath.Join(t.TempDir(), "config")
	code := run(context.Background(), args, &cliEnv{
		stdin:  strings.NewReader(input),
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			switch k {
			case "HOME", "XDG_STATE_HOME":
				return os.Getenv(k)
			case "XDG_CONFIG_HOME":
				return config
			}
			return ""
		},
	})
	return code, stdout.String(), stderr.String()
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "writ ") {
		t.Fatalf("version: %d %q", code, out)
	}
	code, out2, _ := runCLI(t, "--version")
	if code != 0 || out2 != out {
		t.Fatalf("--version: %d %q; want %q", code, out2, out)
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t, "frobnicate")
	if code != exitUsage || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	code, _, _ = runCLI(t, "validate", "--no-such-flag")
	if code != exitUsage {
		t.Fatalf("unknown flag: code %d", code)
	}
	code, _, errOut = runCLI(t, "--log-level", "loud", "version")
	if code != exitUsage || !strings.Contains(errOut, "--log-level") {
		t.Fatalf("bad log level: code %d %q", code, errOut)
	}
}

func TestDefaultDataDir(t *testing.T) {
	t.Parallel()
	get := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	d, err := defaultDataDir(get(map[string]string{"XDG_STATE_HOME": "/x/state", "HOME": "/home/a"}))
	if err != nil || d != "/x/state/writ" {
		t.Fatalf("with XDG_STATE_HOME: %q %v", d, err)
	}
	d, _ = defaultDataDir(get(map[string]string{"HOME": "/home/a"}))
	want := "/home/a/.local/state/writ"
	if os.Geteuid() == 0 {
		want = "/var/lib/writ"
	}
	if d != want {
		t.Fatalf("default = %q; want %q", d, want)
	}
}

func emptyDatabaseURL(t *testing.T) string { return dbtest.EmptyURL(t) }
