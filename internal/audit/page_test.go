package audit

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func wantEntriesFinding(t *testing.T, rep *EntriesReport, err error, seq int64, reason string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Bad == nil {
		t.Fatalf("not detected: %d entries verified", rep.Entries)
	}
	if rep.Bad.Seq != seq || !strings.Contains(rep.Bad.Reason, reason) {
		t.Fatalf("finding %q; want seq %d and %q", rep.Bad.Error(), seq, reason)
	}
}

// VerifyEntries verifies the entries asked for and the one before each,
// with trust that follows the key rotations before them.
func TestVerifyEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	oldKey := l.Key()
	appendN(t, l, 40, 7)
	newK := newKey(t)
	if _, err := l.RotateKey(ctx, SystemActor, newK); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 10, 5) // seq 41..50

	rep, err := VerifyEntries(ctx, st, []uint64{47, 45, 46, 3, 0, 10}, trustOnly(t, oldKey))
	if err != nil || rep.Bad != nil {
		t.Fatalf("%v %+v", err, rep.Bad)
	}
	// 0; 2, 3; 9, 10; 44..47; and the rotation at 40 replayed.
	if rep.Entries != 9 || rep.Signatures != 10 {
		t.Fatalf("%d entries, %d signatures", rep.Entries, rep.Signatures)
	}
	// The rotation at 40 is the old key's: trusting only the new key, the
	// trust does not reach it.
	rep, err = VerifyEntries(ctx, st, []uint64{45}, trustOnly(t, newK))
	wantEntriesFinding(t, rep, err, 40, "not trusted")
	// Before the rotation, the old key's entries verify with it alone.
	if rep, err := VerifyEntries(ctx, st, []uint64{20, 39}, trustOnly(t, oldKey)); err != nil || rep.Bad != nil || rep.Entries != 4 {
		t.Fatalf("%v %+v", err, rep)
	}
	// An entry past the log's end is missing.
	rep, err = VerifyEntries(ctx, st, []uint64{52}, trustOnly(t, oldKey))
	wantEntriesFinding(t, rep, err, 51, "entry missing")
	if _, err := VerifyEntries(ctx, st, []uint64{1}, nil); err != ErrNoTrustedKeys {
		t.Fatalf("no keys: %v", err)
	}
	if rep, err := VerifyEntries(ctx, st, nil, trustOnly(t, oldKey)); err != nil || rep.Bad != nil || rep.Entries != 0 {
		t.Fatalf("no entries: %v %+v", err, rep)
	}
}

// Tampering with an entry shows on the entry and on the one after it;
// entries away from it still verify. A rewrite that keeps the chain and
// signatures (by the log's own key) shows only in the checkpoint.
func TestVerifyEntriesTamper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tl := newTamperLog(t, 30)
	st, err := CheckCheckpoint(ctx, tl.st, tl.checkpoint, tl.trusted)
	if err != nil || !st.Signed || !st.Contained || st.LogSize != 30 {
		t.Fatalf("before any change: %v %+v", err, st)
	}
	a := newAttacker(t, tl.url)
	b := a.entry(12)
	i := bytes.Index(b, []byte("beaconing"))
	b[i] ^= 0x01
	a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 12, b)

	rep, err := VerifyEntries(ctx, tl.st, []uint64{12}, tl.trusted)
	wantEntriesFinding(t, rep, err, 12, "the entry was altered")
	rep, err = VerifyEntries(ctx, tl.st, []uint64{13, 25}, tl.trusted)
	wantEntriesFinding(t, rep, err, 12, "the entry was altered")
	if rep, err := VerifyEntries(ctx, tl.st, []uint64{20, 21}, tl.trusted); err != nil || rep.Bad != nil {
		t.Fatalf("away from the change: %v %+v", err, rep)
	}

	st, err = CheckCheckpoint(ctx, tl.st, tl.checkpoint, tl.trusted)
	if err != nil || !st.Signed || st.Contained {
		t.Fatalf("after the change: %v %+v", err, st)
	}
	a.rechain(12, tl.l.Key())
	if rep, err := VerifyEntries(ctx, tl.st, []uint64{12, 13}, tl.trusted); err != nil || rep.Bad != nil {
		t.Fatalf("a rewrite by the log's key passes the entries: %v %+v", err, rep)
	}
	st, err = CheckCheckpoint(ctx, tl.st, tl.checkpoint, tl.trusted)
	if err != nil || !st.Signed || st.Contained || !strings.Contains(st.Problem, "history was rewritten") {
		t.Fatalf("after the rewrite: %v %+v", err, st)
	}
	// Without trusted keys the signature is not checked, the tree is.
	st, err = CheckCheckpoint(ctx, tl.st, tl.checkpoint, nil)
	if err != nil || st.Signed || st.SignatureProblem == "" || st.Contained {
		t.Fatalf("no keys: %v %+v", err, st)
	}
	// A checkpoint signed by another key is not signed for this log.
	st, err = CheckCheckpoint(ctx, tl.st, tl.checkpoint, trustOnly(t, newKey(t)))
	if err != nil || st.Signed || !strings.Contains(st.SignatureProblem, "not signed by a trusted key") {
		t.Fatalf("other key: %v %+v", err, st)
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"2026-05-01T10:00:00Z": time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		"2026-05-01":           time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		"24h":                  now.Add(-24 * time.Hour),
		"-90m":                 now.Add(-90 * time.Minute),
		"7d":                   now.AddDate(0, 0, -7),
	} {
		got, err := ParseTime("since", in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "0d", "0s", "2026-13-01", "1y"} {
		if _, err := ParseTime("since", in, now); err == nil || !strings.HasPrefix(err.Error(), `since "`) {
			t.Errorf("%q: %v; want an error naming since", in, err)
		}
	}
}

// BenchmarkVerifyEntries verifies a full audit page (500 consecutive
// entries and the one before) of a log of 5000.
func BenchmarkVerifyEntries(b *testing.B) {
	ctx := context.Background()
	l, st := newLog(b)
	appendN(b, l, 5000, 500)
	trusted := trustOnly(b, l.Key())
	seqs := make([]uint64, 500)
	for i := range seqs {
		seqs[i] = uint64(4500 + i)
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := VerifyEntries(ctx, st, seqs, trusted)
		if err != nil || rep.Bad != nil || rep.Entries != 501 {
			b.Fatalf("%v %+v", err, rep)
		}
	}
}
