package main

// The tamper matrix of plain `writ audit verify`: a log written with the
// data directory's key, checkpointed as writ serve does it (into
// DATA_DIR/audit/checkpoints and the content repository's checkpoint ref),
// then rewritten by a database superuser with the append-only triggers
// bypassed (session_replication_role = replica). Every case must fail
// verification with default arguments, saying what happened. The SQL is
// the attacker's, so it lives with the test rather than in internal/store.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/jackc/pgx/v5"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// tamperCLI is a log of the data directory's key with its checkpoints, and
// the CLI to verify it.
type tamperCLI struct {
	*auditCLI
	st    *store.Store
	key   *audit.SigningKey
	repo  string // the content repository holding refs/writ/checkpoints
	conn  *pgx.Conn
	entry int // entries appended so far, for distinct payloads
}

const tamperN = 300 // more than 256 entries: the tree has stored nodes

func newTamperCLI(t *testing.T) *tamperCLI {
	t.Helper()
	ctx := context.Background()
	a := newAuditCLI(t)
	key, _, err := audit.EnsureKey(a.dataDir) // as writ serve creates it
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Options{URL: a.db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	repo := t.TempDir()
	if _, err := git.PlainInit(repo, false); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbtest.OwnerURL(a.db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	tc := &tamperCLI{auditCLI: a, st: st, key: key, repo: repo, conn: conn}
	tc.appendN(tamperN, "approval.accepted")
	tc.checkpoint()
	return tc
}

// appendN appends n entries, ten per transaction (so there is a head row
// every ten entries), signed with key.
func (tc *tamperCLI) appendN(n int, event string) {
	tc.t.Helper()
	ctx := context.Background()
	l, err := audit.NewLog(audit.LogOptions{Store: tc.st, Key: tc.key})
	if err != nil {
		tc.t.Fatal(err)
	}
	for i := 0; i < n; i += 10 {
		var es []audit.Entry
		for range min(10, n-i) {
			es = append(es, audit.Entry{
				Actor:   audit.Actor{ID: fmt.Sprintf("user-%d", tc.entry%7), Role: "approver"},
				Event:   audit.Event(event),
				Subject: audit.Subject{Kind: "incident", Name: "INC-4211"},
				Success: true,
				Payload: audit.MustJSON(map[string]any{"n": tc.entry, "note": "C2 beaconing seen on fin-ws-12"}),
			})
			tc.entry++
		}
		if _, err := l.Append(ctx, tc.st, es...); err != nil {
			tc.t.Fatal(err)
		}
	}
}

// checkpoint signs, records and publishes a checkpoint as writ serve does.
func (tc *tamperCLI) checkpoint() {
	tc.t.Helper()
	l, err := audit.NewLog(audit.LogOptions{Store: tc.st, Key: tc.key})
	if err != nil {
		tc.t.Fatal(err)
	}
	c, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: l, Sinks: []audit.Sink{
		audit.DirSink{Dir: filepath.Join(tc.dataDir, "audit", "checkpoints")},
		audit.GitSink{Repo: tc.repo},
	}})
	if err != nil {
		tc.t.Fatal(err)
	}
	if _, err := c.Checkpoint(context.Background()); err != nil {
		tc.t.Fatal(err)
	}
}

func (tc *tamperCLI) exec(sql string, args ...any) {
	tc.t.Helper()
	if _, err := tc.conn.Exec(context.Background(), sql, args...); err != nil {
		tc.t.Fatalf("attacker: %s: %v", sql, err)
	}
}

func (tc *tamperCLI) entryBytes(seq int) []byte {
	tc.t.Helper()
	var b []byte
	if err := tc.conn.QueryRow(context.Background(), `SELECT entry FROM audit_entries WHERE seq = $1`, seq).Scan(&b); err != nil {
		tc.t.Fatal(err)
	}
	return b
}

// rechain rewrites prev_hash and hash of every entry from seq on, as an
// attacker who knows the chain rule would; with resign set it also
// re-signs them with that key (recorded with the log, as writ records its
// keys).
func (tc *tamperCLI) rechain(from int, resign *foreign) {
	tc.t.Helper()
	ctx := context.Background()
	prev := make([]byte, 32)
	if from > 0 {
		if err := tc.conn.QueryRow(ctx, `SELECT hash FROM audit_entries WHERE seq = $1`, from-1).Scan(&prev); err != nil {
			tc.t.Fatal(err)
		}
	}
	if resign != nil {
		tc.exec(`INSERT INTO audit_keys (id, algorithm, public_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, resign.ID(), resign.Algorithm(), resign.PublicPEM())
	}
	rows, err := tc.conn.Query(ctx, `SELECT seq, entry FROM audit_entries WHERE seq >= $1 ORDER BY seq`, from)
	if err != nil {
		tc.t.Fatal(err)
	}
	type row struct {
		seq   int64
		entry []byte
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.seq, &x.entry)
		return x, err
	})
	if err != nil {
		tc.t.Fatal(err)
	}
	for _, r := range all {
		var p audit.Hash
		copy(p[:], prev)
		h := audit.ChainHash(p, r.entry)
		if resign != nil {
			sig := ed25519.Sign(resign.priv, audit.SignedMessage(h))
			tc.exec(`UPDATE audit_entries SET prev_hash = $2, hash = $3, signature = $4, key_id = $5 WHERE seq = $1`, r.seq, prev, h[:], sig, resign.ID())
		} else {
			tc.exec(`UPDATE audit_entries SET prev_hash = $2, hash = $3 WHERE seq = $1`, r.seq, prev, h[:])
		}
		prev = h[:]
	}
}

var tamperTables = []string{"audit_entries", "audit_heads", "audit_tree_nodes", "audit_keys", "audit_checkpoints"}

// backup copies the audit tables (an older copy of the database, as a
// dump would hold it); restore puts them back over the current ones.
func (tc *tamperCLI) backup() {
	for _, tb := range tamperTables {
		tc.exec(fmt.Sprintf(`CREATE TABLE backup_%s AS SELECT * FROM %s`, tb, tb))
	}
}

func (tc *tamperCLI) restore() {
	tc.exec(`TRUNCATE ` + strings.Join(tamperTables, ", "))
	for _, tb := range tamperTables {
		tc.exec(fmt.Sprintf(`INSERT INTO %s SELECT * FROM backup_%s`, tb, tb))
	}
}

// cutTail removes the entries from seq on, and the heads and tree nodes
// that would show them, and the database's checkpoints.
func (tc *tamperCLI) cutTail(from int) {
	tc.exec(`DELETE FROM audit_entries WHERE seq >= $1`, from)
	tc.exec(`DELETE FROM audit_heads WHERE size > $1`, from)
	tc.exec(`DELETE FROM audit_tree_nodes WHERE (idx + 1) * (1::bigint << level) > $1`, from)
	tc.exec(`DELETE FROM audit_checkpoints`)
}

// foreign is a key of the attacker's: not the log's.
type foreign struct {
	*audit.SigningKey
	priv ed25519.PrivateKey
}

func foreignKey(t *testing.T) *foreign {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := audit.NewSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &foreign{SigningKey: k, priv: priv}
}

func TestAuditVerifyTamperMatrix(t *testing.T) {
	t.Parallel()
	latest := func(tc *tamperCLI) string {
		return filepath.Join(tc.dataDir, "audit", "checkpoints", "latest")
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, tc *tamperCLI)
		// want are lines (or their beginnings) stdout must hold.
		want func(tc *tamperCLI) []string
	}{
		{"flipped byte", func(t *testing.T, tc *tamperCLI) {
			b := tc.entryBytes(100)
			b[bytes.Index(b, []byte("beaconing"))] ^= 0x01 // 'b' -> 'c': still valid JSON
			tc.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 100, b)
		}, func(tc *tamperCLI) []string {
			return []string{"FAIL: seq 100: the entry's bytes do not hash to its stored hash: the entry was altered"}
		}},
		{"changed actor", func(t *testing.T, tc *tamperCLI) {
			b := bytes.Replace(tc.entryBytes(102), []byte(`"id":"user-4"`), []byte(`"id":"user-9"`), 1)
			tc.exec(`UPDATE audit_entries SET entry = $2, actor_id = 'user-9' WHERE seq = $1`, 102, b)
		}, func(tc *tamperCLI) []string {
			return []string{"FAIL: seq 102: the entry's bytes do not hash to its stored hash: the entry was altered"}
		}},
		{"changed actor column", func(t *testing.T, tc *tamperCLI) {
			tc.exec(`UPDATE audit_entries SET actor_id = 'mallory' WHERE seq = 103`)
		}, func(tc *tamperCLI) []string {
			return []string{`FAIL: seq 103: column actor_id ("mallory") disagrees with the entry's actor ("user-5")`}
		}},
		{"deleted middle row", func(t *testing.T, tc *tamperCLI) {
			tc.exec(`DELETE FROM audit_entries WHERE seq = 150`)
		}, func(tc *tamperCLI) []string {
			return []string{"FAIL: seq 150: entry missing: the log jumps from seq 149 to seq 151"}
		}},
		{"cut tail, heads and checkpoints cleaned", func(t *testing.T, tc *tamperCLI) {
			tc.cutTail(250)
		}, func(tc *tamperCLI) []string {
			return []string{
				"checkpoint " + latest(tc) + ": size 300, FAILED",
				"FAIL: checkpoint " + latest(tc) + " (size 300): the log has 250 entries, fewer than the checkpoint's 300: the log is smaller than a checkpoint it published: truncated or rolled back",
			}
		}},
		{"cut tail, the data directory's checkpoints removed too", func(t *testing.T, tc *tamperCLI) {
			tc.cutTail(250)
			if err := os.RemoveAll(filepath.Join(tc.dataDir, "audit", "checkpoints")); err != nil {
				t.Fatal(err)
			}
		}, func(tc *tamperCLI) []string {
			ref := "git " + tc.repo + " " + audit.DefaultGitRef
			return []string{
				"checkpoint " + latest(tc) + ": none found",
				"checkpoint " + ref + ": size 300, FAILED",
				"FAIL: checkpoint " + ref + " (size 300): the log has 250 entries, fewer than the checkpoint's 300",
			}
		}},
		{"swapped rows", func(t *testing.T, tc *tamperCLI) {
			tc.exec(`UPDATE audit_entries SET seq = 1000000 WHERE seq = 120`)
			tc.exec(`UPDATE audit_entries SET seq = 120 WHERE seq = 180`)
			tc.exec(`UPDATE audit_entries SET seq = 180 WHERE seq = 1000000`)
		}, func(tc *tamperCLI) []string {
			return []string{"FAIL: seq 120: entry stored at seq 120 says it is seq 180: entries were moved or swapped"}
		}},
		{"rechained forgery", func(t *testing.T, tc *tamperCLI) {
			b := bytes.Replace(tc.entryBytes(200), []byte(`"success":true`), []byte(`"success":false`), 1)
			tc.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 200, b)
			tc.rechain(200, nil)
		}, func(tc *tamperCLI) []string {
			return []string{"FAIL: seq 200: signature does not verify with key " + tc.key.ID()}
		}},
		{"rechained and re-signed by a foreign key", func(t *testing.T, tc *tamperCLI) {
			b := bytes.Replace(tc.entryBytes(280), []byte(`"success":true`), []byte(`"success":false`), 1)
			tc.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 280, b)
			tc.rechain(0, foreignKey(t))
			tc.exec(`DELETE FROM audit_checkpoints`)
		}, func(tc *tamperCLI) []string {
			return []string{
				"FAIL: checkpoint " + latest(tc) + " (size 300): the log's first 300 entries have root ",
				"the log is not consistent with a checkpoint it published: history was rewritten",
				"FAIL: seq 0: signed by key ", ", which is not trusted",
			}
		}},
		{"full truncate", func(t *testing.T, tc *tamperCLI) {
			tc.exec(`TRUNCATE ` + strings.Join(tamperTables, ", "))
			// As a fresh migration leaves it: the empty head.
			tc.exec(`INSERT INTO audit_heads (size, last_hash, last_at, compact) VALUES (0, decode(repeat('00', 32), 'hex'), NULL, ''::bytea)`)
		}, func(tc *tamperCLI) []string {
			return []string{"FAIL: checkpoint " + latest(tc) + " (size 300): the log has 0 entries, fewer than the checkpoint's 300: the log is smaller than a checkpoint it published: truncated or rolled back"}
		}},
		{"every audit table emptied", func(t *testing.T, tc *tamperCLI) {
			tc.exec(`TRUNCATE audit_log, ` + strings.Join(tamperTables, ", "))
		}, func(tc *tamperCLI) []string {
			return []string{"FAIL: checkpoint " + latest(tc) + " (size 300): the log is gone (", "truncated or rolled back"}
		}},
		{"restored older copy", func(t *testing.T, tc *tamperCLI) {
			tc.backup()
			tc.appendN(100, "approval.accepted")
			tc.checkpoint()
			tc.restore()
		}, func(tc *tamperCLI) []string {
			return []string{
				"checkpoint " + latest(tc) + ": size 400, FAILED",
				"FAIL: checkpoint " + latest(tc) + " (size 400): the log has 300 entries, fewer than the checkpoint's 400: the log is smaller than a checkpoint it published: truncated or rolled back",
			}
		}},
		{"fork: restored older copy, then other entries", func(t *testing.T, tc *tamperCLI) {
			tc.backup()
			tc.appendN(100, "approval.accepted")
			tc.checkpoint()
			tc.restore()
			tc.appendN(150, "approval.rejected")
		}, func(tc *tamperCLI) []string {
			return []string{
				"FAIL: checkpoint " + latest(tc) + " (size 400): the log's first 400 entries have root ",
				"the log is not consistent with a checkpoint it published: history was rewritten",
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tc := newTamperCLI(t)
			args := []string{"audit", "verify", "--repo", tc.repo}
			out := tc.ok(args...)
			for _, want := range []string{
				"checkpoint " + latest(tc) + ": size 300, contained\n",
				"checkpoint git " + tc.repo + " " + audit.DefaultGitRef + ": size 300, contained\n",
				"OK: 300 entries, root ",
			} {
				if !strings.Contains(out, want) {
					t.Fatalf("before tampering: %q lacks %q", out, want)
				}
			}
			c.tamper(t, tc)
			code, out, errOut := tc.run(args...)
			if code != exitFailure {
				t.Fatalf("tampering not detected: exit %d\n%s%s", code, out, errOut)
			}
			for _, want := range c.want(tc) {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s%s", want, out, errOut)
				}
			}
			if strings.Contains(out, "OK: ") {
				t.Errorf("output says OK:\n%s", out)
			}
			t.Logf("detected:\n%s", out)
		})
	}
}
