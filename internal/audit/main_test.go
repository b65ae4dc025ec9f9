package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	flag.Parse()
	// Fuzz workers run only the decoders' fuzz targets: no database.
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	os.Exit(dbtest.Run(m))
}

// newKey makes an ed25519 signing key.
func newKey(t testing.TB) *SigningKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// trustOnly is a key set holding the public halves of ks.
func trustOnly(t testing.TB, ks ...*SigningKey) *KeySet {
	t.Helper()
	set := NewKeySet()
	for _, k := range ks {
		pk, err := NewPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		set.Add(pk)
	}
	return set
}

// newLog opens a Log with a fresh key on a fresh database.
func newLog(t testing.TB) (*Log, *store.Store) {
	t.Helper()
	st := dbtest.Store(t)
	l, err := NewLog(LogOptions{Store: st, Key: newKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	return l, st
}

// testEntry is a typical engine entry, distinct per i.
func testEntry(i int) Entry {
	return Entry{
		Actor:   Actor{ID: fmt.Sprintf("user-%d", i%7), Role: "approver"},
		Event:   "approval.accepted", // any valid name; fixed bytes in entry_test.go
		Subject: Subject{Kind: SubjectPlaybook, Name: "block-c2-beacon", Digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		Success: true,
		Payload: MustJSON(map[string]any{"n": i, "reason": "C2 beaconing seen on fin-ws-12", "pull_request": 42}),
	}
}

// appendN appends n entries, batch at a time, and returns the receipts.
func appendN(t testing.TB, l *Log, n, batch int) []Receipt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out []Receipt
	for i := 0; i < n; i += batch {
		var es []Entry
		for j := i; j < min(n, i+batch); j++ {
			es = append(es, testEntry(j))
		}
		recs, err := l.Append(ctx, l.Store(), es...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
	}
	return out
}

// verifyDB verifies the database with trusted keys and checkpoints.
func verifyDB(t testing.TB, st *store.Store, trusted *KeySet, checkpoints ...[]byte) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := VerifyDatabase(ctx, st, VerifyOptions{Trusted: trusted, Checkpoints: checkpoints})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// newLogStore is a store on a fresh database.
func newLogStore(t testing.TB) *store.Store {
	t.Helper()
	return dbtest.Store(t)
}

// openStore opens a store on url, closed when the test ends.
func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}
