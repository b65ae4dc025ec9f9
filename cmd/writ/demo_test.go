package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tour end to end: real git, a private PostgreSQL, writ serve as a
// separate process, writ approve --server, the merge, the execution, the
// blocklist file and the offline audit verification.
func TestDemo(t *testing.T) {
	t.Setenv("WRIT_TEST_MAIN", "1") // children of this test run the CLI
	// A --dir that does not exist yet is made.
	dir := filepath.Join(traversableTempDir(t), "tour", "one")
	code, out, errOut := runCLI(t, "demo", "--dir", dir)
	if code != exitOK {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"require_approval",  // writ plan
		"sent to http://",   // writ approve --server
		"status: completed", // executed after the merge
		"203.0.113.7",       // in the blocklist
		"OK: ",              // writ audit verify
		"executed once and audited",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The files are kept, so is the admin password the demo chose.
	pwFile := filepath.Join(dir, "admin-password")
	fi, err := os.Stat(pwFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin password file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(pwFile); len(strings.TrimSpace(string(b))) < 12 || !strings.Contains(out, pwFile) {
		t.Fatalf("admin password file holds %d bytes; output names it: %v", len(b), strings.Contains(out, pwFile))
	}
}
