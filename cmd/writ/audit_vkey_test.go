package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/writ-sec/writ/internal/audit"
)

// TestAuditVkey: the printed verifier key opens the checkpoints writ
// publishes, before and after a key rotation, and --all lists the log's
// keys oldest first, leaving out a key only the database vouches for.
func TestAuditVkey(t *testing.T) {
	t.Parallel()
	a := newAuditCLI(t)
	if _, _, err := audit.EnsureKey(a.dataDir); err != nil { // as writ serve does
		t.Fatal(err)
	}
	cpDir := filepath.Join(a.dataDir, "audit", "checkpoints")
	a.ok("audit", "append", "--event", "incident.note", "--subject", "INC-4211")
	a.ok("audit", "checkpoint", "--dir", cpDir, "--out", filepath.Join(t.TempDir(), "cp"))
	first := readFile(t, filepath.Join(cpDir, "latest"))

	// opens reports whether the checkpoint note verifies with vkey, and
	// checks the key name is the checkpoint's origin.
	opens := func(vkey string, msg []byte) bool {
		t.Helper()
		v, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatalf("vkey %q: %v", vkey, err)
		}
		n, err := note.Open(msg, note.VerifierList(v))
		if err != nil {
			return false
		}
		if origin, _, _ := strings.Cut(n.Text, "\n"); origin != v.Name() || len(n.Sigs) != 1 {
			t.Fatalf("checkpoint origin %q, key name %q, %d signatures", origin, v.Name(), len(n.Sigs))
		}
		return true
	}
	lines := func(out string) []string {
		t.Helper()
		ls := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		for _, l := range ls {
			if len(strings.SplitN(l, "+", 3)) != 3 || !strings.HasPrefix(l, "writ-audit/") {
				t.Fatalf("not a vkey line: %q in %q", l, out)
			}
		}
		return ls
	}

	old := lines(a.ok("audit", "vkey"))
	if len(old) != 1 || !opens(old[0], first) {
		t.Fatalf("vkey %q does not open the checkpoint\n%s", old, first)
	}
	if all := lines(a.ok("audit", "vkey", "--all")); len(all) != 1 || all[0] != old[0] {
		t.Fatalf("--all before rotation: %q, want %q", all, old)
	}

	// Another key's vkey does not open it.
	dir := t.TempDir()
	if code, _, errOut := runCLI(t, "keygen", "--out", filepath.Join(dir, "other")); code != exitOK {
		t.Fatal(errOut)
	}
	other := lines(a.ok("audit", "vkey", "--key", filepath.Join(dir, "other.pub")))
	if len(other) != 1 || other[0] == old[0] || opens(other[0], first) {
		t.Fatalf("a foreign vkey %q opens the checkpoint", other)
	}

	// Rotate; the next checkpoint is signed by the new key.
	if code, _, errOut := runCLI(t, "keygen", "--out", filepath.Join(dir, "next")); code != exitOK {
		t.Fatal(errOut)
	}
	a.ok("audit", "rotate-key", "--new-key", filepath.Join(dir, "next.key"))
	a.ok("audit", "append", "--event", "incident.note", "--subject", "INC-4212")
	a.ok("audit", "checkpoint", "--dir", cpDir, "--out", filepath.Join(t.TempDir(), "cp"))
	second := readFile(t, filepath.Join(cpDir, "latest"))

	cur := lines(a.ok("audit", "vkey"))
	if len(cur) != 1 || cur[0] == old[0] || !opens(cur[0], second) || opens(cur[0], first) {
		t.Fatalf("vkey after rotation %q (before %q)", cur, old)
	}

	// A key only the database names (a superuser's insert) is left out.
	ctx := context.Background()
	foreign, err := audit.ParsePublicKey(readFile(t, filepath.Join(dir, "other.pub")))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, a.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO audit_keys (id, algorithm, public_key) VALUES ($1, $2, $3)`,
		foreign.ID, foreign.Algorithm, foreign.PEM); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := a.run("audit", "vkey", "--all")
	if code != exitOK {
		t.Fatalf("vkey --all: exit %d\n%s", code, errOut)
	}
	all := lines(out)
	if len(all) != 2 || all[0] != old[0] || all[1] != cur[0] || !opens(all[0], first) || !opens(all[1], second) {
		t.Fatalf("--all after rotation: %q, want [%s %s]", all, old[0], cur[0])
	}
	if !strings.Contains(errOut, "key "+foreign.ID[:12]+" is recorded in the log but no trusted key leads to it") {
		t.Fatalf("--all does not name the untrusted recorded key: %q", errOut)
	}

	// Trusting only the new key still leads back to the old one (its
	// rotation carries the new key's proof).
	if all := lines(a.ok("audit", "vkey", "--all", "--keys", filepath.Join(a.dataDir, "audit", "audit.pub"))); len(all) != 2 || all[0] != old[0] {
		t.Fatalf("--all --keys audit.pub: %q", all)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
