package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// The audit tables a rollback restores, in the order they are written.
var auditTables = []string{"audit_log", "audit_keys", "audit_entries", "audit_heads", "audit_tree_nodes", "audit_checkpoints"}

// rollbackRig is a trust rig whose server checkpoints every second, and a
// database superuser who rewrites the audit tables with triggers off.
type rollbackRig struct {
	*trustRig
	admin    string
	attacker *pgx.Conn
	ckDir    string
	// pendingHead is the commit pushed while held.
	pendingHead string
}

func newRollbackRig(t *testing.T) *rollbackRig {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "writ.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: writ/v1\nkind: ServerConfig\naudit:\n  checkpointInterval: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := newTrustRigWith(t, map[string][]string{"alice": {"analyst"}, "dave": {"admin"}, "erin": {"admin"}}, "--config", cfg)
	r := &rollbackRig{trustRig: tr, ckDir: filepath.Join(tr.dataDir, "audit", "checkpoints")}
	r.admin = r.token("root", "admin")
	conn, err := pgx.Connect(context.Background(), dbtest.OwnerURL(r.dbURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	r.attacker = conn
	return r
}

func (r *rollbackRig) exec(sql string) {
	r.t.Helper()
	if _, err := r.attacker.Exec(context.Background(), sql); err != nil {
		r.t.Fatalf("attacker: %s: %v", sql, err)
	}
}

func (r *rollbackRig) head() uint64 {
	r.t.Helper()
	h, err := r.st.AuditHead(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return uint64(h.Size)
}

// checkpointed waits until the checkpoint file holds the log's size (the
// checkpointer writes one a second when the log grew).
func (r *rollbackRig) checkpointed() uint64 {
	r.t.Helper()
	var size uint64
	r.waitFor("a checkpoint of the whole log", func() bool {
		b, err := os.ReadFile(filepath.Join(r.ckDir, audit.LatestFile))
		if err != nil {
			return false
		}
		lines := strings.SplitN(string(b), "\n", 3)
		_, _ = fmt.Sscan(lines[1], &size)
		return size > 0 && size == r.head()
	})
	return size
}

// seen waits until the server checked the log at its current size.
func (r *rollbackRig) seen() uint64 {
	r.t.Helper()
	var size uint64
	r.waitFor("the server seeing the whole log", func() bool {
		size = r.head()
		_, body := r.readyz()
		return strings.Contains(body, fmt.Sprintf("contains the %d entries this server saw", size))
	})
	return size
}

// grow appends entries the way an admin does: accounts.
func (r *rollbackRig) grow(n int, prefix string) {
	r.t.Helper()
	for i := range n {
		db := []string{"--database", r.dbURL, "--data-dir", r.dataDir}
		if code, _, errOut := runCLI(r.t, append(db, "user", "add", fmt.Sprintf("%s%d", prefix, i), "--role", "viewer", "--no-password")...); code != exitOK {
			r.t.Fatalf("user add: %s", errOut)
		}
	}
}

// snapshot copies the audit tables' rows aside (as the superuser can).
func (r *rollbackRig) snapshot(name string) {
	r.t.Helper()
	for _, tb := range auditTables {
		r.exec(fmt.Sprintf("CREATE TABLE %s_%s AS SELECT * FROM %s", name, tb, tb))
	}
}

// restore puts a snapshot back, in one transaction, triggers off.
func (r *rollbackRig) restore(name string) {
	r.t.Helper()
	var b strings.Builder
	b.WriteString("BEGIN;")
	for _, tb := range auditTables {
		fmt.Fprintf(&b, "DELETE FROM %s; INSERT INTO %s SELECT * FROM %s_%s;", tb, tb, name, tb)
	}
	b.WriteString("COMMIT;")
	r.exec(b.String())
}

func (r *rollbackRig) readyz() (int, string) {
	r.t.Helper()
	resp, err := http.Get(r.base + "/readyz")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var rollbackMetricRE = regexp.MustCompile(`(?m)^writ_audit_rollback_detected ([0-9.-]+)$`)

func (r *rollbackRig) metric() string {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+r.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := rollbackMetricRE.FindSubmatch(b)
	if m == nil {
		r.t.Fatalf("no writ_audit_rollback_detected in /metrics: %s %.300s", resp.Status, b)
	}
	return string(m[1])
}

func (r *rollbackRig) auditHold() *store.Hold {
	r.t.Helper()
	holds, err := r.st.OpenHolds(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, h := range holds {
		if h.Kind == store.HoldAuditRollback {
			return h
		}
	}
	return nil
}

// expectHeld waits for the hold and checks everything that shows it: the
// hold, /readyz with the reason, the metric; and that passes stop: a
// merged playbook is not even processed.
func (r *rollbackRig) expectHeld(reason ...string) *store.Hold {
	r.t.Helper()
	var h *store.Hold
	r.waitFor("the audit hold", func() bool { h = r.auditHold(); return h != nil })
	code, body := r.readyz()
	for _, part := range reason {
		if code != http.StatusServiceUnavailable || !strings.Contains(body, part) {
			r.t.Fatalf("/readyz while held: %d %s; want 503 with %q", code, body, part)
		}
	}
	if m := r.metric(); m != "1" {
		r.t.Fatalf("writ_audit_rollback_detected %s while held", m)
	}
	before, executions := r.state().ProcessedSHA, r.executions()
	r.repo.Write(fmt.Sprintf("playbooks/held-%d.yaml", h.ID), fmt.Sprintf("apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: held-%d\nspec:\n"+
		"  action: block_ip\n  targets: [203.0.113.%d]\n  justification: held\n  severity: low\n  environment: staging\n", h.ID, h.ID%250+1))
	head := r.repo.Commit(fmt.Sprintf("held %d", h.ID))
	r.repo.Push()
	// Passes run every 50ms: give them a second.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if st := r.state(); st.ProcessedSHA != before {
			r.t.Fatalf("a pass processed %s while the audit log was held", st.ProcessedSHA)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := r.executions(); n != executions {
		r.t.Fatalf("%d operations recorded while held (%d before)", n, executions)
	}
	r.pendingHead = head
	return h
}

// executions counts the operations recorded.
func (r *rollbackRig) executions() int {
	r.t.Helper()
	var n int
	if err := r.attacker.QueryRow(context.Background(), `SELECT count(*) FROM executions`).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// acknowledge tries one admin's token (refused), then the two admins'
// signed statements; the hold ends, writ is ready and goes on.
func (r *rollbackRig) acknowledge(h *store.Hold) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v1/holds/%d/acknowledge", r.base, h.ID), nil)
	req.Header.Set("Authorization", "Bearer "+r.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(b), "signed statements") {
		r.t.Fatalf("one admin's acknowledgement: %s %s", resp.Status, b)
	}
	if r.auditHold() == nil {
		r.t.Fatal("a password ended the audit hold")
	}
	// The admins sign it from the queue, as any change to what decides.
	id := fmt.Sprintf("audit-%d", h.ID)
	cli := func(args ...string) (int, string, string) {
		return runCLIEnv(r.t, map[string]string{"WRIT_SERVER": r.base, "WRIT_TOKEN": r.admin}, args...)
	}
	if code, out, errOut := cli("pending"); code != exitOK || !strings.Contains(out, id+"  acknowledge the audit log rollback hold") {
		r.t.Fatalf("writ pending does not list %s: %d\n%s\n%s", id, code, out, errOut)
	}
	for i, who := range []string{"dave", "erin"} {
		code, out, errOut := cli("approve", id, "--key", filepath.Join(r.keyDir, who+".key"), "--yes")
		if code != exitOK || !strings.Contains(out, "signing accepts the audit log as it is now") {
			r.t.Fatalf("%s signs %s: %d\n%s\n%s", who, id, code, out, errOut)
		}
		if i == 0 {
			time.Sleep(500 * time.Millisecond)
			if r.auditHold() == nil {
				r.t.Fatal("one admin's signature ended the audit hold")
			}
		}
	}
	r.waitFor("the acknowledgement", func() bool { return r.auditHold() == nil })
	got, err := r.st.HoldByID(context.Background(), h.ID)
	if err != nil || got.ResolvedAs != store.HoldAcknowledged || !strings.Contains(got.Resolution, "signed statements") {
		r.t.Fatalf("the hold after the signatures: %+v %v", got, err)
	}
	var last string
	r.waitForSaying("/readyz ready", func() bool { code, body := r.readyz(); last = body; return code == http.StatusOK }, func() string { return last })
	if m := r.metric(); m != "0" {
		r.t.Fatalf("writ_audit_rollback_detected %s after the acknowledgement", m)
	}
	r.waitFor("the held commit processed", func() bool { return r.state().ProcessedSHA == r.pendingHead })
	r.waitFor("the held playbook's operation recorded", func() bool { return r.executions() > 0 })
}

// A rollback of the audit tables behind the running server's back holds
// it: an older copy restored, the tables truncated, a fork. Each time
// /readyz says why, the metric is 1, passes stop (a merged playbook is not
// processed, nothing executes), one admin's token does not end it, and the
// admins' signed statements do; writ then expects the log as it is.
func TestAuditRollbackHolds(t *testing.T) {
	r := newRollbackRig(t)
	waitReady(t, r.base)
	if m := r.metric(); m != "0" {
		t.Fatalf("writ_audit_rollback_detected %s at start", m)
	}

	// An older copy restored.
	r.grow(2, "a")
	old := r.checkpointed()
	r.snapshot("snap1")
	r.grow(3, "b")
	cp := r.checkpointed()
	r.restore("snap1")
	h := r.expectHeld(fmt.Sprintf("audit log rolled back: the log has %d entries, checkpoint %s has %d with root", old, filepath.Join(r.ckDir, audit.LatestFile), cp))
	r.acknowledge(h)

	// Everything truncated (left as a freshly migrated log would be).
	// After the acknowledgement checkpoints resume: the sinks keep the
	// rolled-back checkpoint as evidence, and the file gets the log the
	// admins accepted and what grows on it. The tree the server saw and
	// the checkpoint file are then the same, and missing now.
	r.grow(2, "c")
	seen := r.seen()
	if got := r.checkpointed(); got != seen {
		r.t.Fatalf("the checkpoint after the acknowledgement has %d entries, the log %d", got, seen)
	}
	r.exec(`BEGIN; TRUNCATE audit_entries, audit_heads, audit_tree_nodes, audit_checkpoints;
		INSERT INTO audit_heads (size, last_hash, last_at, compact) VALUES (0, decode(repeat('00', 32), 'hex'), NULL, ''::bytea); COMMIT;`)
	h = r.expectHeld("audit log rolled back: the log has 0 entries, ", fmt.Sprintf(" has %d with root", seen))
	r.acknowledge(h)

	// A fork: an older copy restored, then other entries appended on top,
	// more than the checkpoint had, made aside and put in at once.
	r.grow(2, "d")
	r.seen()
	r.snapshot("snap2")
	r.grow(2, "e")
	seen = r.seen()
	fork := forkOf(t, r, "snap2", int(seen)+3)
	r.restore(fork)
	h = r.expectHeld(fmt.Sprintf("audit log forked: the log has %d entries, ", seen+3), fmt.Sprintf(" has %d with root", seen))
	r.acknowledge(h)
	r.grow(1, "f")
	r.seen()
}

// forkOf builds, in a scratch database, the snapshot's log with other
// entries appended (signed with the server's key) until it has size
// entries, and stores its tables in the rig's database as snapshot "fork".
func forkOf(t *testing.T, r *rollbackRig, snap string, size int) string {
	t.Helper()
	ctx := context.Background()
	scratchURL := dbtest.URL(t)
	scratch, err := pgx.Connect(ctx, dbtest.OwnerURL(scratchURL))
	if err != nil {
		t.Fatal(err)
	}
	defer scratch.Close(ctx)
	if _, err := scratch.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	for _, tb := range auditTables {
		if _, err := scratch.Exec(ctx, "DELETE FROM "+tb); err != nil {
			t.Fatal(err)
		}
		copyRows(t, r.attacker, scratch, snap+"_"+tb, tb)
	}
	st, err := store.Open(ctx, store.Options{URL: scratchURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, _, err := audit.EnsureKey(r.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(audit.LogOptions{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := l.Head(ctx)
	for i := int(h.Size); i < size; i++ {
		if _, err := l.Append(ctx, st, audit.Entry{Actor: audit.SystemActor, Event: "fork.entry", Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tb := range auditTables {
		if _, err := r.attacker.Exec(ctx, fmt.Sprintf("CREATE TABLE fork_%s AS SELECT * FROM %s WITH NO DATA", tb, tb)); err != nil {
			t.Fatal(err)
		}
		copyRows(t, scratch, r.attacker, tb, "fork_"+tb)
	}
	return "fork"
}

// copyRows copies every row of table from into table to.
func copyRows(t *testing.T, from, to *pgx.Conn, src, dst string) {
	t.Helper()
	ctx := context.Background()
	rows, err := from.Query(ctx, "SELECT * FROM "+src)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	var all [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := to.CopyFrom(ctx, pgx.Identifier{dst}, cols, pgx.CopyFromRows(all)); err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// A log changed in place, with every stored hash and tree left as it was,
// is contained in every checkpoint by its hashes; the leader verifies
// every entry each checkpoint interval and holds on it like on a rollback:
// a byte of an entry flipped, the actor column changed, a middle row
// deleted, two rows swapped. Each time the clean log is put back and the
// admins sign the hold's acknowledgement.
func TestAuditTamperHoldsServer(t *testing.T) {
	r := newRollbackRig(t)
	waitReady(t, r.base)
	r.grow(6, "a")
	size := r.seen()
	if size < 6 {
		t.Fatalf("the log has %d entries", size)
	}
	mid := size / 2
	cases := []struct {
		name, sql, reason string
	}{
		{"flipped byte",
			fmt.Sprintf(`UPDATE audit_entries SET entry = overlay(entry placing '\x5a'::bytea from 3 for 1) WHERE seq = %d`, mid),
			fmt.Sprintf("audit log tampered: seq %d: ", mid)},
		{"changed actor column",
			fmt.Sprintf(`UPDATE audit_entries SET actor_id = 'mallory' WHERE seq = %d`, mid+1),
			fmt.Sprintf(`audit log tampered: seq %d: column actor_id`, mid+1)},
		{"deleted middle row",
			fmt.Sprintf(`DELETE FROM audit_entries WHERE seq = %d`, mid),
			fmt.Sprintf("audit log tampered: seq %d: entry missing", mid)},
		{"swapped rows",
			fmt.Sprintf(`UPDATE audit_entries SET seq = 1000000 WHERE seq = %[1]d; UPDATE audit_entries SET seq = %[1]d WHERE seq = %[2]d; UPDATE audit_entries SET seq = %[2]d WHERE seq = 1000000`, mid-1, mid+1),
			fmt.Sprintf("audit log tampered: seq %d: entry stored at seq %d says it is seq %d", mid-1, mid-1, mid+1)},
	}
	for i, c := range cases {
		snap := fmt.Sprintf("clean%d", i)
		r.snapshot(snap)
		r.exec(c.sql)
		h := r.expectHeld(c.reason)
		var d struct {
			Problem, Finding string
		}
		if err := json.Unmarshal(h.Detail, &d); err != nil || d.Problem != "tampered" || d.Finding == "" {
			t.Fatalf("%s: hold detail %s (%v)", c.name, h.Detail, err)
		}
		// The operator puts the log back from a copy; the hold stays until
		// the admins sign.
		r.restore(snap)
		if r.auditHold() == nil {
			t.Fatalf("%s: the hold ended without signatures", c.name)
		}
		r.acknowledge(h)
		r.grow(1, fmt.Sprintf("b%d", i))
		r.seen()
	}
}

// Someone with the database's password cannot end a hold with the
// statements that ended an earlier one: after a hold on a tampered entry
// was repaired and acknowledged, another entry is changed in place; the
// attacker deletes the new hold and reopens the old one in the holds
// table. The server stays held (a hold of the finding's own opens), since
// statements count only for a hold that describes what the server found
// and that was never acknowledged before (recorded in the checkpoint
// directory).
func TestAuditHoldNeverEndsWithAnEarlierHoldsStatements(t *testing.T) {
	ctx := context.Background()
	r := newRollbackRig(t)
	waitReady(t, r.base)
	// A log of more than 256 entries (a complete level-8 subtree, whose
	// stored node is what the tree comparison uses), written with the
	// server's key.
	key, _, err := audit.EnsureKey(r.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(audit.LogOptions{Store: r.st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var es []audit.Entry
	for i := range 300 {
		es = append(es, audit.Entry{Actor: audit.SystemActor, Event: audit.Event("test" + ".filler"), Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: fmt.Sprint(i)}})
	}
	if _, err := l.Append(ctx, r.st, es...); err != nil {
		t.Fatal(err)
	}
	r.seen()

	// 1. A legitimate hold, repaired and acknowledged by two admins.
	r.snapshot("clean")
	r.exec(`UPDATE audit_entries SET entry = overlay(entry placing '\x5a'::bytea from 3 for 1) WHERE seq = 50`)
	h1 := r.expectHeld("audit log tampered: seq 50: ")
	r.restore("clean")
	r.acknowledge(h1)
	r.grow(1, "b")
	r.seen()

	// 2. Later (within the statements' 24 h), the attacker alters entry
	// 100 in place. The server holds, as it should.
	r.exec(`UPDATE audit_entries SET entry = overlay(entry placing '\x5a'::bytea from 3 for 1) WHERE seq = 100`)
	var h2 *store.Hold
	r.waitFor("the new hold", func() bool { h2 = r.auditHold(); return h2 != nil && h2.ID != h1.ID })
	if code, body := r.readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "seq 100") {
		t.Fatalf("not held: %d %s", code, body)
	}

	// 3. No admin signs anything. The attacker re-opens hold 1 and
	// removes hold 2.
	r.exec(fmt.Sprintf(`DELETE FROM holds WHERE id = %d; UPDATE holds SET resolved_at = NULL, resolved_by = '', resolved_as = '', resolution = '' WHERE id = %d`, h2.ID, h1.ID))

	// 4. The server stays held: the reopened hold is not about what it
	// found, and it was acknowledged once already. The finding gets a hold
	// of its own, which only new statements end.
	r.waitFor("a hold of the finding's own", func() bool {
		holds, err := r.st.OpenHolds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range holds {
			if h.Kind == store.HoldAuditRollback && h.ID != h1.ID && h.ID != h2.ID && strings.Contains(string(h.Detail), "seq 100") {
				return true
			}
		}
		return false
	})
	time.Sleep(3 * time.Second) // a few scrub and check intervals (1 s here)
	if code, body := r.readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "seq 100") {
		t.Fatalf("ended with the statements of hold %d: readyz %d %s", h1.ID, code, body)
	}
	got, err := r.st.HoldByID(ctx, h1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ResolvedAt != nil {
		t.Fatalf("the reopened hold %d was acknowledged again: %s by %s", h1.ID, got.ResolvedAs, got.ResolvedBy)
	}
}
