package main

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
)

// auditCLI runs writ against a fresh database with a data directory of its
// own.
type auditCLI struct {
	t       *testing.T
	db      string
	dataDir string
	env     map[string]string
}

func newAuditCLI(t *testing.T) *auditCLI {
	t.Helper()
	return &auditCLI{t: t, db: dbtest.URL(t), dataDir: t.TempDir(), env: map[string]string{"USER": "alice"}}
}

func (a *auditCLI) run(args ...string) (int, string, string) {
	a.t.Helper()
	return runCLIEnv(a.t, a.env, append([]string{"--database", a.db, "--data-dir", a.dataDir, "--log-level", "warn"}, args...)...)
}

func (a *auditCLI) ok(args ...string) string {
	a.t.Helper()
	code, out, errOut := a.run(args...)
	if code != exitOK {
		a.t.Fatalf("writ %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var okLine = regexp.MustCompile(`^OK: (\d+) entries, root ([0-9a-f]{64})\n$`)

// verdict is verify's output without its lines about checkpoints.
func verdict(out string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(out, "\n") {
		if !strings.HasPrefix(l, "checkpoint ") {
			b.WriteString(l)
		}
	}
	return b.String()
}

func TestAuditCLI(t *testing.T) {
	t.Parallel()
	a := newAuditCLI(t)
	dir := t.TempDir()
	keyPrefix := filepath.Join(dir, "audit")
	if code, _, errOut := runCLI(t, "keygen", "--out", keyPrefix); code != exitOK {
		t.Fatal(errOut)
	}
	key, pub := keyPrefix+".key", keyPrefix+".pub"

	out := a.ok("audit", "append", "--key", key, "--event", "incident.note", "--subject", "playbook:block-c2-beacon@"+strings.Repeat("ab", 32),
		"--payload", `{"note":"blocked 203.0.113.7 by hand","ticket":"INC-4211"}`)
	if !strings.HasPrefix(out, "appended seq 0, hash ") {
		t.Fatalf("append: %q", out)
	}
	payload := filepath.Join(dir, "note.json")
	os.WriteFile(payload, []byte(`{"note": "called the ISP"}`), 0o644)
	a.ok("audit", "append", "--key", key, "--event", "manual.block", "--subject", "INC-4211", "--actor", "bob", "--payload", "@"+payload, "--failure")

	cpFile := filepath.Join(dir, "cp")
	cpDir := filepath.Join(dir, "checkpoints")
	a.ok("audit", "checkpoint", "--key", key, "--out", cpFile, "--dir", cpDir)
	a.ok("audit", "append", "--key", key, "--event", "incident.note", "--subject", "INC-4211")

	out = a.ok("audit", "verify", "--keys", pub, "--checkpoint", cpFile, "--checkpoint", filepath.Join(cpDir, "checkpoint.2"))
	if !strings.Contains(out, "checkpoint "+cpFile+": size 2, contained\n") ||
		!strings.Contains(out, "checkpoint "+filepath.Join(a.dataDir, "audit", "checkpoints", "latest")+": none found\n") {
		t.Fatalf("verify does not say which checkpoints it used: %q", out)
	}
	m := okLine.FindStringSubmatch(verdict(out))
	if m == nil || m[1] != "3" {
		t.Fatalf("verify: %q", out)
	}
	root := m[2]

	exportFile := filepath.Join(dir, "audit.ndjson")
	a.ok("audit", "export", "--out", exportFile)
	if out := a.ok("audit", "verify", "--export", exportFile, "--keys", pub, "--checkpoint", cpFile); out != "OK: 3 entries, root "+root+"\n" {
		t.Fatalf("verify export: %q; want root %s", out, root)
	}
	// Exports go to standard output too, and JSON is one document.
	if out := a.ok("audit", "export", "--format", "json", "--event", "manual.block"); !strings.Contains(out, `"actor":{"id":"bob","role":"admin"}`) || strings.Contains(out, "incident.note") {
		t.Fatalf("filtered export: %s", out)
	}
	// A filtered export with proofs verifies offline against the checkpoint.
	a.ok("audit", "checkpoint", "--key", key, "--out", cpFile)
	proved := filepath.Join(dir, "bob.ndjson")
	a.ok("audit", "export", "--actor", "bob", "--proofs", "--out", proved)
	if out := a.ok("audit", "verify", "--export", proved, "--keys", pub); !strings.HasPrefix(out, "filtered export: 2 left out by its filters\nOK: 1 entries, root ") {
		t.Fatalf("verify proved export: %q", out)
	}
	// Bob's entry deleted from the filtered export (its end count edited
	// to match): the gap in the replayed log shows it.
	b, err := os.ReadFile(proved)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, `{"type":"entry",`):
		case strings.HasPrefix(l, `{"type":"end",`):
			kept = append(kept, `{"type":"end","entries":0,"omitted":2}`+"\n")
		default:
			kept = append(kept, l)
		}
	}
	dropped := filepath.Join(dir, "bob-dropped.ndjson")
	os.WriteFile(dropped, []byte(strings.Join(kept, "")), 0o644)
	if code, out, _ := a.run("audit", "verify", "--export", dropped, "--keys", pub); code != exitFailure || out != "FAIL: seq 1: entry missing: the log jumps from seq 0 to seq 2\n" {
		t.Fatalf("an entry deleted from a filtered export: %d %q", code, out)
	}

	// Another key is not trusted.
	otherPrefix := filepath.Join(dir, "other")
	runCLI(t, "keygen", "--out", otherPrefix)
	code, out, _ := a.run("audit", "verify", "--keys", otherPrefix+".pub")
	if code != exitFailure || !strings.HasPrefix(verdict(out), "FAIL: seq 0: signed by key ") {
		t.Fatalf("untrusted key: %d %q", code, out)
	}

	// A superuser edits entry 1 with triggers off: named, exit 1.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.OwnerURL(a.db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE audit_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'), 'called', 'emailed'), 'UTF8') WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	code, out, _ = a.run("audit", "verify", "--keys", pub)
	if code != exitFailure || verdict(out) != "FAIL: seq 1: the entry's bytes do not hash to its stored hash: the entry was altered\n" {
		t.Fatalf("tampered: %d %q", code, out)
	}
	// The export made before still verifies on its own.
	if out := a.ok("audit", "verify", "--export", exportFile, "--keys", pub); out != "OK: 3 entries, root "+root+"\n" {
		t.Fatalf("old export: %q", out)
	}
}

func TestAuditCLIUsage(t *testing.T) {
	t.Parallel()
	a := newAuditCLI(t)
	key := filepath.Join(t.TempDir(), "k")
	runCLI(t, "keygen", "--out", key)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"audit", "append", "--key", key + ".key", "--subject", "x"}, "--event and --subject are required"},
		{[]string{"audit", "append", "--key", key + ".key", "--event", "audit.key_rotated", "--subject", "x"}, "audit. namespace"},
		{[]string{"audit", "append", "--key", key + ".key", "--event", "Note", "--subject", "x"}, "dotted lower-case"},
		{[]string{"audit", "append", "--key", key + ".key", "--event", "a.b", "--subject", "x", "--payload", "{"}, "--payload"},
		{[]string{"audit", "append", "--event", "a.b", "--subject", "x"}, "no audit signing key"},
		{[]string{"audit", "append", "--key", key + ".pub", "--event", "a.b", "--subject", "x"}, "audit signing key"},
		{[]string{"audit", "verify"}, "no trusted keys"},
		{[]string{"audit", "verify", "--keys", key + ".key"}, "private key"},
		{[]string{"audit", "verify", "--keys", key + ".pub", "--checkpoint", "/nonexistent"}, "--checkpoint"},
		{[]string{"audit", "export", "--since", "last tuesday"}, "--since"},
		{[]string{"audit", "export", "--format", "xml"}, "--format"},
		{[]string{"audit", "rotate-key"}, "--new-key is required"},
	}
	for _, c := range cases {
		code, _, errOut := a.run(c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("writ %s: exit %d, %q; want 2 and %q", strings.Join(c.args, " "), code, errOut, c.want)
		}
	}
	// A filtered export without proofs covers the whole log and verifies.
	a.ok("audit", "append", "--key", key+".key", "--event", "a.b", "--subject", "x")
	a.ok("audit", "append", "--key", key+".key", "--event", "a.b", "--subject", "y", "--actor", "bob")
	exp := filepath.Join(t.TempDir(), "e")
	a.ok("audit", "export", "--actor", "alice", "--out", exp)
	if out := a.ok("audit", "verify", "--export", exp, "--keys", key+".pub"); !strings.HasPrefix(out, "filtered export: 1 left out by its filters\nOK: 1 entries, root ") {
		t.Fatalf("verify filtered export: %q", out)
	}
	// Alice's entry's actor_id column changed to mallory: the export
	// for alice still holds it (selected by its bytes) and says so; the
	// one for mallory holds nothing.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.OwnerURL(a.db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE audit_entries SET actor_id = 'mallory' WHERE seq = 0`); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := a.run("audit", "export", "--actor", "alice", "--out", exp)
	if code != exitOK || !strings.Contains(errOut, "columns of entries [0] disagree with their signed bytes") {
		t.Fatalf("export with a changed column: %d %q", code, errOut)
	}
	if out := a.ok("audit", "verify", "--export", exp, "--keys", key+".pub"); !strings.HasPrefix(out, "filtered export: 1 left out by its filters\nOK: 1 entries, root ") {
		t.Fatalf("verify filtered export: %q", out)
	}
	if out := a.ok("audit", "export", "--actor", "mallory"); strings.Contains(out, `{"type":"entry",`) {
		t.Fatalf("mallory's export holds alice's entry:\n%s", out)
	}
}

func TestAuditCLIRotateDataDirKey(t *testing.T) {
	t.Parallel()
	a := newAuditCLI(t)
	// The data directory's key, as writ serve creates it.
	if _, _, err := audit.EnsureKey(a.dataDir); err != nil {
		t.Fatal(err)
	}
	a.ok("audit", "append", "--event", "a.b", "--subject", "x")
	next := filepath.Join(t.TempDir(), "next")
	runCLIEnv(t, map[string]string{"WRIT_KEY_PASSWORD": "pw-next-key"}, "keygen", "--out", next, "--password")
	a.env["WRIT_NEW_KEY_PASSWORD"] = "pw-next-key"
	// Without $USER (a container, a cron job) the actor is the account of
	// the process's uid.
	delete(a.env, "USER")
	out := a.ok("audit", "rotate-key", "--new-key", next+".key")
	if !strings.HasPrefix(out, "rotated at seq 1: ") || !strings.Contains(out, "installed the new key") {
		t.Fatalf("rotate: %q", out)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if exp := a.ok("audit", "export"); !strings.Contains(exp, `"actor":{"id":"`+me.Username+`"`) {
		t.Fatalf("the rotation's actor is not %s:\n%s", me.Username, exp)
	}
	a.env["USER"] = "alice"
	a.ok("audit", "append", "--event", "a.b", "--subject", "y")
	// The default trusted keys (the data directory's) cover both keys.
	if out := a.ok("audit", "verify"); !strings.HasPrefix(verdict(out), "OK: 3 entries, root ") {
		t.Fatalf("verify after rotation: %q", out)
	}
	// Trusting only the old key is enough: the rotation introduces the new.
	retired, _ := filepath.Glob(filepath.Join(a.dataDir, "audit", "audit-*.pub"))
	if len(retired) != 1 {
		t.Fatalf("retired public keys: %v", retired)
	}
	if out := a.ok("audit", "verify", "--keys", retired[0]); !strings.HasPrefix(verdict(out), "OK: 3 entries, root ") {
		t.Fatalf("verify with the old key: %q", out)
	}
	// Trusting only the new key is enough too: the rotation's proof of
	// possession by the new key vouches for the old one (as the server,
	// which holds the key signing now, verifies).
	if out := a.ok("audit", "verify", "--keys", filepath.Join(a.dataDir, "audit", "audit.pub")); !strings.HasPrefix(verdict(out), "OK: 3 entries, root ") {
		t.Fatalf("verify with the new key: %q", out)
	}
}

func TestParseTimeFlag(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Time{
		"":                     {},
		"2026-05-01T08:00:00Z": time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC),
		"2026-05-01":           time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		"24h":                  now.Add(-24 * time.Hour),
		"-90m":                 now.Add(-90 * time.Minute),
		"7d":                   time.Date(2026, 5, 3, 12, 0, 0, 0, time.UTC),
	}
	for in, want := range cases {
		got, err := parseTimeFlag("since", in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTimeFlag(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "0d", "xd", "0s", "2026-13-01"} {
		if _, err := parseTimeFlag("since", bad, now); err == nil || !strings.Contains(err.Error(), "--since") {
			t.Errorf("parseTimeFlag(%q) = %v; want an error naming --since", bad, err)
		}
	}
}
