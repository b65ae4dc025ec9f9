package audit

// The tamper tests play a database superuser who rewrites the log behind
// writ's back, with triggers bypassed (session_replication_role = replica).
// The SQL here is the attacker's, so it lives with the tests rather than in
// internal/store, which holds writ's own queries.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// attacker runs SQL as the superuser with triggers off.
type attacker struct {
	t    *testing.T
	conn *pgx.Conn
}

func newAttacker(t *testing.T, dbURL string) *attacker {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.OwnerURL(dbURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	return &attacker{t: t, conn: conn}
}

func (a *attacker) exec(sql string, args ...any) {
	a.t.Helper()
	if _, err := a.conn.Exec(context.Background(), sql, args...); err != nil {
		a.t.Fatalf("attacker: %s: %v", sql, err)
	}
}

func (a *attacker) entry(seq int) []byte {
	a.t.Helper()
	var b []byte
	if err := a.conn.QueryRow(context.Background(), `SELECT entry FROM audit_entries WHERE seq = $1`, seq).Scan(&b); err != nil {
		a.t.Fatal(err)
	}
	return b
}

// rechain rewrites prev_hash and hash of every entry from seq on, as an
// attacker who knows the chain rule would, so the chain itself is intact;
// with resign set it also re-signs them and sets their key id.
func (a *attacker) rechain(from int, resign *SigningKey) {
	a.t.Helper()
	ctx := context.Background()
	var prev []byte
	if from > 0 {
		if err := a.conn.QueryRow(ctx, `SELECT hash FROM audit_entries WHERE seq = $1`, from-1).Scan(&prev); err != nil {
			a.t.Fatal(err)
		}
	} else {
		prev = make([]byte, 32)
	}
	rows, err := a.conn.Query(ctx, `SELECT seq, entry FROM audit_entries WHERE seq >= $1 ORDER BY seq`, from)
	if err != nil {
		a.t.Fatal(err)
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
		a.t.Fatal(err)
	}
	for _, r := range all {
		p, _ := hashFrom(prev)
		h := ChainHash(p, r.entry)
		if resign != nil {
			sig, err := resign.sign(SignedMessage(h))
			if err != nil {
				a.t.Fatal(err)
			}
			a.exec(`UPDATE audit_entries SET prev_hash = $2, hash = $3, signature = $4, key_id = $5 WHERE seq = $1`, r.seq, prev, h[:], sig, resign.ID())
		} else {
			a.exec(`UPDATE audit_entries SET prev_hash = $2, hash = $3 WHERE seq = $1`, r.seq, prev, h[:])
		}
		prev = h[:]
	}
}

// tamperLog is a log of n entries with a checkpoint file of it.
type tamperLog struct {
	l          *Log
	st         *store.Store
	url        string
	trusted    *KeySet
	checkpoint []byte
}

func newTamperLog(t *testing.T, n int) *tamperLog {
	t.Helper()
	u := dbtest.URL(t)
	st, err := store.Open(context.Background(), store.Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	l, err := NewLog(LogOptions{Store: st, Key: newKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, n, 13)
	return &tamperLog{l: l, st: st, url: u, trusted: trustOnly(t, l.Key()), checkpoint: checkpointNow(t, l)}
}

// checkpointNow signs a checkpoint of the log as it is (not recorded in the
// database: the user keeps it).
func checkpointNow(t testing.TB, l *Log) []byte {
	t.Helper()
	ctx := context.Background()
	head, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	origin, err := l.Origin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := SignCheckpoint(l.Key(), origin, head.Size, head.Root)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Note
}

func wantFinding(t *testing.T, rep *Report, seq int64, reason string) {
	t.Helper()
	if rep.Bad == nil {
		t.Fatalf("tampering not detected: %d entries verified", rep.Entries)
	}
	if rep.Bad.Seq != seq || !strings.Contains(rep.Bad.Reason, reason) {
		t.Fatalf("finding %q; want seq %d and %q", rep.Bad.Error(), seq, reason)
	}
	t.Logf("detected: %s", rep.Bad.Error())
}

func TestTriggersRefuseChanges(t *testing.T) {
	t.Parallel()
	tl := newTamperLog(t, 3)
	ctx := context.Background()
	// As the owner: the service role is refused before the trigger runs
	// (permission denied); the trigger is what stops the owner by accident.
	owner, err := pgx.Connect(ctx, dbtest.OwnerURL(tl.url))
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	for _, sql := range []string{
		`UPDATE audit_entries SET actor_id = 'mallory' WHERE seq = 1`,
		`DELETE FROM audit_entries WHERE seq = 2`,
		`TRUNCATE audit_entries`,
		`DELETE FROM audit_entries WHERE false`,
		`UPDATE audit_heads SET size = 0`,
		`DELETE FROM audit_checkpoints`,
		`TRUNCATE audit_keys`,
		`DELETE FROM audit_tree_nodes`,
		`UPDATE audit_log SET origin = 'x'`,
	} {
		_, err := owner.Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v; want refused", sql, err)
		}
		if _, err := tl.st.Pool().Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s as the service role: %v; want permission denied", sql, err)
		}
	}
	if rep := verifyDB(t, tl.st, tl.trusted, tl.checkpoint); rep.Bad != nil || rep.Entries != 3 {
		t.Fatalf("after refused changes: %+v", rep.Bad)
	}
}

func TestTamperDetected(t *testing.T) {
	t.Parallel()
	const n = 300
	cases := []struct {
		name       string
		tamper     func(t *testing.T, tl *tamperLog, a *attacker)
		checkpoint bool
		seq        int64
		reason     string
	}{
		{"flipped payload byte", func(t *testing.T, tl *tamperLog, a *attacker) {
			b := a.entry(100)
			i := bytes.Index(b, []byte("beaconing"))
			b[i] ^= 0x01 // 'b' -> 'c': still valid JSON
			a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 100, b)
		}, false, 100, "the entry was altered"},
		{"flipped byte breaking the JSON", func(t *testing.T, tl *tamperLog, a *attacker) {
			b := a.entry(101)
			b[len(b)-1] = ']'
			a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 101, b)
		}, false, 101, "not a valid entry"},
		{"changed actor", func(t *testing.T, tl *tamperLog, a *attacker) {
			b := bytes.Replace(a.entry(102), []byte(`"id":"user-4"`), []byte(`"id":"user-9"`), 1)
			a.exec(`UPDATE audit_entries SET entry = $2, actor_id = 'user-9' WHERE seq = $1`, 102, b)
		}, false, 102, "the entry was altered"},
		{"changed actor column only", func(t *testing.T, tl *tamperLog, a *attacker) {
			a.exec(`UPDATE audit_entries SET actor_id = 'mallory' WHERE seq = 103`)
		}, false, 103, "column actor_id"},
		{"deleted middle row", func(t *testing.T, tl *tamperLog, a *attacker) {
			a.exec(`DELETE FROM audit_entries WHERE seq = 150`)
		}, false, 150, "entry missing"},
		{"deleted first row", func(t *testing.T, tl *tamperLog, a *attacker) {
			a.exec(`DELETE FROM audit_entries WHERE seq = 0`)
		}, false, 0, "entry missing"},
		{"deleted middle row, renumbered and rechained", func(t *testing.T, tl *tamperLog, a *attacker) {
			a.exec(`DELETE FROM audit_entries WHERE seq = 150`)
			a.exec(`UPDATE audit_entries SET seq = seq + 1000000 WHERE seq > 150`)
			a.exec(`UPDATE audit_entries SET seq = seq - 1000001 WHERE seq > 1000000`)
			a.rechain(150, nil)
		}, false, 150, "says it is seq 151"},
		{"truncated tail", func(t *testing.T, tl *tamperLog, a *attacker) {
			a.exec(`DELETE FROM audit_entries WHERE seq >= 250`)
			a.exec(`DELETE FROM audit_checkpoints`)
		}, true, 250, "truncated or rolled back"},
		{"two rows swapped", func(t *testing.T, tl *tamperLog, a *attacker) {
			a.exec(`UPDATE audit_entries SET seq = 1000000 WHERE seq = 120`)
			a.exec(`UPDATE audit_entries SET seq = 120 WHERE seq = 180`)
			a.exec(`UPDATE audit_entries SET seq = 180 WHERE seq = 1000000`)
		}, false, 120, "says it is seq 180"},
		{"two rows' contents swapped, seq fixed", func(t *testing.T, tl *tamperLog, a *attacker) {
			// The attacker also rewrites the seq inside the bytes and
			// rechains: only the signatures are left to notice.
			b120, b180 := a.entry(120), a.entry(180)
			b120 = bytes.Replace(b120, []byte(`"seq":120,`), []byte(`"seq":180,`), 1)
			b180 = bytes.Replace(b180, []byte(`"seq":180,`), []byte(`"seq":120,`), 1)
			a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 120, b180)
			a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 180, b120)
			a.exec(`UPDATE audit_entries e SET at = o.at, actor_id = o.actor_id, event = o.event
				FROM audit_entries o WHERE (e.seq, o.seq) IN ((120, 180), (180, 120))`)
			a.rechain(120, nil)
		}, false, 120, "signature does not verify"},
		{"forged row, hashes recomputed after it", func(t *testing.T, tl *tamperLog, a *attacker) {
			b := bytes.Replace(a.entry(200), []byte(`"success":true`), []byte(`"success":false`), 1)
			a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 200, b)
			a.rechain(200, nil)
		}, false, 200, "signature does not verify"},
		{"re-signed with a key not in the key set", func(t *testing.T, tl *tamperLog, a *attacker) {
			mallory := newKey(t)
			b := bytes.Replace(a.entry(210), []byte(`"success":true`), []byte(`"success":false`), 1)
			a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 210, b)
			// Recording the key with the log does not make it trusted.
			a.exec(`INSERT INTO audit_keys (id, algorithm, public_key) VALUES ($1, $2, $3)`, mallory.ID(), mallory.Algorithm(), mallory.PublicPEM())
			a.rechain(210, mallory)
		}, false, 210, "which is not trusted"},
		{"time moved back", func(t *testing.T, tl *tamperLog, a *attacker) {
			a.exec(`UPDATE audit_entries SET at = at - interval '1 hour' WHERE seq = 220`)
		}, false, 220, "column at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tl := newTamperLog(t, n)
			if rep := verifyDB(t, tl.st, tl.trusted, tl.checkpoint); rep.Bad != nil || rep.Entries != n {
				t.Fatalf("before tampering: %d entries, %v", rep.Entries, rep.Bad)
			}
			c.tamper(t, tl, newAttacker(t, tl.url))
			var cps [][]byte
			if c.checkpoint {
				cps = append(cps, tl.checkpoint)
			}
			wantFinding(t, verifyDB(t, tl.st, tl.trusted, cps...), c.seq, c.reason)
		})
	}
}

// TestTruncationNeedsACheckpoint documents the limit the checkpoints lift: a
// cut tail with nothing outside the database to compare is a shorter,
// valid log.
func TestTruncationNeedsACheckpoint(t *testing.T) {
	t.Parallel()
	tl := newTamperLog(t, 100)
	a := newAttacker(t, tl.url)
	a.exec(`DELETE FROM audit_entries WHERE seq >= 90`)
	a.exec(`DELETE FROM audit_checkpoints`)
	if rep := verifyDB(t, tl.st, tl.trusted); rep.Bad != nil || rep.Entries != 90 {
		t.Fatalf("without a checkpoint: %+v", rep)
	}
	wantFinding(t, verifyDB(t, tl.st, tl.trusted, tl.checkpoint), 90, "truncated or rolled back")
}

// TestRestoredBackup restores an older copy of the database (a real copy,
// made with CREATE DATABASE ... TEMPLATE) and verifies it against a
// checkpoint taken after the copy.
func TestRestoredBackup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tl := newTamperLog(t, 200)
	backupURL := copyDatabase(t, tl)
	appendN(t, tl.l, 100, 10)
	newer := checkpointNow(t, tl.l)
	if rep := verifyDB(t, tl.st, tl.trusted, newer); rep.Bad != nil || rep.Entries != 300 {
		t.Fatalf("live log: %+v %v", rep, rep.Bad)
	}

	restored, err := store.Open(ctx, store.Options{URL: backupURL})
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if rep := verifyDB(t, restored, tl.trusted); rep.Bad != nil || rep.Entries != 200 {
		t.Fatalf("the backup on its own verifies: %+v", rep.Bad)
	}
	wantFinding(t, verifyDB(t, restored, tl.trusted, newer), 200, "truncated or rolled back")

	// Writing on after the restore does not hide it: the first 300
	// entries are not the ones the checkpoint saw.
	l2, err := NewLog(LogOptions{Store: restored, Key: tl.l.Key()})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l2, 150, 50)
	rep := verifyDB(t, restored, tl.trusted, newer)
	if rep.Bad == nil || !strings.Contains(rep.Bad.Reason, "do not match the trusted checkpoint of size 300") {
		t.Fatalf("rewritten after restore: %+v", rep.Bad)
	}
	t.Logf("detected: %s", rep.Bad.Error())
}

// copyDatabase copies the tamper log's database (closing its pool for the
// copy and reopening it) and returns the copy's URL.
func copyDatabase(t *testing.T, tl *tamperLog) string {
	t.Helper()
	ctx := context.Background()
	tl.st.Close()
	u, err := url.Parse(dbtest.OwnerURL(tl.url))
	if err != nil {
		t.Fatal(err)
	}
	src := strings.TrimPrefix(u.Path, "/")
	name := fmt.Sprintf("%s_backup_%x", src, sha256.Sum256([]byte(t.Name()+time.Now().String())))[:60]
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, pgx.Identifier{name}.Sanitize(), pgx.Identifier{src}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin.String())
		if err == nil {
			_, _ = c.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
			c.Close(context.Background())
		}
	})
	st, err := store.Open(ctx, store.Options{URL: tl.url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	l, err := NewLog(LogOptions{Store: st, Key: tl.l.Key()})
	if err != nil {
		t.Fatal(err)
	}
	tl.st, tl.l = st, l
	b := *u
	b.Path = "/" + name
	return b.String()
}
