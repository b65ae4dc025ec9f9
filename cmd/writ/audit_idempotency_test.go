package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// writ audit append --idempotency-key: a retry prints the first append's
// seq and hash and records nothing; the key with another entry is refused.
func TestAuditAppendIdempotencyKey(t *testing.T) {
	t.Parallel()
	a := newAuditCLI(t)
	keyPrefix := filepath.Join(t.TempDir(), "audit")
	if code, _, errOut := runCLI(t, "keygen", "--out", keyPrefix); code != exitOK {
		t.Fatal(errOut)
	}
	key, pub := keyPrefix+".key", keyPrefix+".pub"
	note := []string{"audit", "append", "--key", key, "--event", "incident.note", "--subject", "INC-4211",
		"--payload", `{"note":"blocked 203.0.113.7 by hand"}`, "--idempotency-key", "inc-4211-note-1"}

	first := a.ok(note...)
	if !strings.HasPrefix(first, "appended seq 0, hash ") {
		t.Fatalf("first append: %q", first)
	}
	code, again, errOut := a.run(note...)
	if code != exitOK || again != first || !strings.Contains(errOut, "already appended with idempotency key") {
		t.Fatalf("retry: exit %d, %q (first %q), stderr %q", code, again, first, errOut)
	}

	other := append([]string(nil), note...)
	other[len(other)-3] = `{"note":"blocked 203.0.113.8 by hand"}`
	code, out, errOut := a.run(other...)
	if code != exitFailure || out != "" || !strings.Contains(errOut, `--idempotency-key "inc-4211-note-1"`) ||
		!strings.Contains(errOut, "already used for a different entry") || !strings.Contains(errOut, "payload") {
		t.Fatalf("same key, other payload: exit %d, %q, %q", code, out, errOut)
	}
	code, _, errOut = a.run(append(other[:len(other)-1:len(other)-1], "has space")...)
	if code != exitUsage || !strings.Contains(errOut, "--idempotency-key") {
		t.Fatalf("bad key: exit %d, %q", code, errOut)
	}
	// Without a key, the same command appends again; a new key too.
	if out := a.ok(note[:len(note)-2]...); !strings.HasPrefix(out, "appended seq 1, ") {
		t.Fatalf("without a key: %q", out)
	}
	other[len(other)-1] = "inc-4211-note-2"
	if out := a.ok(other...); !strings.HasPrefix(out, "appended seq 2, ") {
		t.Fatalf("new key: %q", out)
	}
	if out := a.ok("audit", "verify", "--keys", pub); !strings.HasPrefix(verdict(out), "OK: 3 entries") {
		t.Fatalf("verify: %q", out)
	}
}
