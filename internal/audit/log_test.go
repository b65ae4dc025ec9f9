package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

func TestAppendAndVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	trusted := trustOnly(t, l.Key())

	rep := verifyDB(t, st, trusted)
	if rep.Bad != nil || rep.Entries != 0 || !bytes.Equal(rep.Root, EmptyRoot()) {
		t.Fatalf("empty log: %+v %v", rep, rep.Bad)
	}
	recs := appendN(t, l, 600, 7)
	for i, r := range recs {
		if r.Seq != uint64(i) {
			t.Fatalf("receipt %d has seq %d", i, r.Seq)
		}
	}
	rep = verifyDB(t, st, trusted)
	if rep.Bad != nil {
		t.Fatalf("verify: %v", rep.Bad)
	}
	head, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 600 || rep.Signatures != 600 || head.Size != 600 || !bytes.Equal(rep.Root, head.Root) || head.LastHash != recs[599].Hash {
		t.Fatalf("report %+v; head %+v", rep, head)
	}
	// The verifier's root is the RFC 6962 root of the stored bytes.
	var leaves [][]byte
	rows, err := st.AuditEntries(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		leaves = append(leaves, r.Entry)
	}
	if !bytes.Equal(mth(leaves), rep.Root) {
		t.Fatal("root differs from the RFC 6962 oracle")
	}
	// Proofs from the database verify against roots of every size.
	for _, size := range []uint64{1, 255, 256, 257, 511, 512, 600} {
		root, err := l.RootAt(ctx, size)
		if err != nil || !bytes.Equal(root, mth(leaves[:size])) {
			t.Fatalf("RootAt(%d) = %x, %v", size, root, err)
		}
		for _, seq := range []uint64{0, size / 2, size - 1} {
			p, err := l.InclusionProof(ctx, seq, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(leaves[seq], seq, size, p, root); err != nil {
				t.Fatalf("inclusion of %d in %d: %v", seq, size, err)
			}
		}
		p, err := l.ConsistencyProof(ctx, size/2+1, 600)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyConsistency(size/2+1, 600, p, mth(leaves[:size/2+1]), rep.Root); err != nil {
			t.Fatalf("consistency %d..600: %v", size/2+1, err)
		}
	}
	if _, err := l.InclusionProof(ctx, 1, 601); err == nil {
		t.Fatal("proof in a tree larger than the log")
	}
	// Hashes and tree only, without keys, still compares the recorded
	// checkpoint's root.
	c, _ := NewCheckpointer(CheckpointerOptions{Log: l})
	if _, err := c.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err = VerifyDatabase(ctx, st, VerifyOptions{SkipSignatures: true})
	if err != nil || rep.Bad != nil || rep.Signatures != 0 || len(rep.Checkpoints) != 1 {
		t.Fatalf("without signatures: %+v %v", rep, err)
	}
}

func TestAppendInCallerTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	boom := errors.New("state change failed")
	err := st.Tx(ctx, func(tx *store.Store) error {
		if _, err := l.Append(ctx, tx, testEntry(1)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if h, _ := l.Head(ctx); h.Size != 0 {
		t.Fatalf("rolled-back append left %d entries", h.Size)
	}
	err = st.Tx(ctx, func(tx *store.Store) error {
		if _, err := l.Append(ctx, tx, testEntry(1), testEntry(2)); err != nil {
			return err
		}
		_, err := l.Append(ctx, tx, testEntry(3))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyDB(t, st, trustOnly(t, l.Key())); rep.Bad != nil || rep.Entries != 3 {
		t.Fatalf("after commit: %+v %v", rep, rep.Bad)
	}
}

func TestTimesNeverDecrease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newLogStore(t)
	clock := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	l, err := NewLog(LogOptions{Store: st, Key: newKey(t), Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, st, testEntry(1)); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(-time.Hour) // the clock steps back
	recs, err := l.Append(ctx, st, testEntry(2))
	if err != nil {
		t.Fatal(err)
	}
	if !recs[0].Time.Equal(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("time after a clock step back: %s", recs[0].Time)
	}
	if rep := verifyDB(t, st, trustOnly(t, l.Key())); rep.Bad != nil {
		t.Fatal(rep.Bad)
	}
}

// TestConcurrentWriters: 16 writers x 10,000 appends, in the three ways
// entries are written: four writers append inside transactions of their
// own making, ten entries (ten Append calls) per transaction, as the
// reconciler records a state change; four call Append on the pool, ten
// entries a call; eight go through two group-commit appenders, one entry a
// call and sixteen calls in flight, as busy producers on two replicas
// would. The chain must verify, with no gap and no
// fork, and every acknowledged seq must be distinct.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	writers, perWriter := 16, 10000
	switch {
	case testing.Short():
		perWriter = 500
	case raceEnabled && os.Getenv("WRIT_AUDIT_FULL_CONCURRENCY") == "":
		// Full size under -race takes minutes on a 2-core machine; run it
		// with WRIT_AUDIT_FULL_CONCURRENCY=1 (docs/audit.md has timings).
		perWriter = 1000
	}
	const perTx = 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st := newLogStore(t)
	key := newKey(t)
	l, err := NewLog(LogOptions{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var apps []*Appender
	var runs sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	for range 2 {
		a, err := NewAppender(AppenderOptions{Log: l, MaxBatch: 500})
		if err != nil {
			t.Fatal(err)
		}
		apps = append(apps, a)
		runs.Go(func() { _ = a.Run(runCtx) })
	}
	start := time.Now()
	seqs := make([][]uint64, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			n := w * perWriter
			switch {
			case w < 4:
				for i := 0; i < perWriter; i += perTx {
					var got []uint64
					err := st.Tx(ctx, func(tx *store.Store) error {
						got = got[:0]
						for j := range perTx {
							recs, err := l.Append(ctx, tx, testEntry(n+i+j))
							if err != nil {
								return err
							}
							got = append(got, recs[0].Seq)
						}
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
					seqs[w] = append(seqs[w], got...)
				}
			case w < 8:
				for i := 0; i < perWriter; i += perTx {
					es := make([]Entry, perTx)
					for j := range es {
						es[j] = testEntry(n + i + j)
					}
					recs, err := l.Append(ctx, st, es...)
					if err != nil {
						errs <- err
						return
					}
					for _, r := range recs {
						seqs[w] = append(seqs[w], r.Seq)
					}
				}
			default:
				// A busy producer: 16 appends in flight at a time.
				got := make([]uint64, perWriter)
				var inner sync.WaitGroup
				var failed atomic.Bool
				for g := range 16 {
					inner.Go(func() {
						for i := g; i < perWriter; i += 16 {
							rec, err := apps[w%2].Append(ctx, testEntry(n+i))
							if err != nil {
								if !failed.Swap(true) {
									errs <- err
								}
								return
							}
							got[i] = rec.Seq
						}
					})
				}
				inner.Wait()
				seqs[w] = got
			}
		})
	}
	wg.Wait()
	stop()
	runs.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d appends by %d writers in %s (appenders rebuilt %d and %d batches under the lock)",
		writers*perWriter, writers, time.Since(start), apps[0].rebuilds.Load(), apps[1].rebuilds.Load())
	total := writers * perWriter
	seen := make([]bool, total)
	for _, s := range seqs {
		for _, q := range s {
			if q >= uint64(total) || seen[q] {
				t.Fatalf("seq %d acknowledged twice or out of range", q)
			}
			seen[q] = true
		}
	}
	rep := verifyDB(t, st, trustOnly(t, key))
	if rep.Bad != nil {
		t.Fatalf("verify: %v", rep.Bad)
	}
	if rep.Entries != uint64(total) || rep.Signatures != uint64(total) {
		t.Fatalf("verified %d entries, %d signatures; want %d", rep.Entries, rep.Signatures, total)
	}
	// One head per append transaction, each extending the one before.
	var forks int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM (SELECT prev_hash FROM audit_entries GROUP BY prev_hash HAVING count(*) > 1) f`).Scan(&forks); err != nil || forks != 0 {
		t.Fatalf("%d forks, %v", forks, err)
	}
}

// TestFencedAppends: a Log on a fenced Store (the leader's) stops
// appending once another replica takes over, in every way of appending.
func TestFencedAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newLogStore(t)
	lead, err := st.TryLead(ctx, "replica-a")
	if err != nil || lead == nil {
		t.Fatalf("lead: %v %v", lead, err)
	}
	defer lead.Release(ctx)
	fenced := st.Fenced(lead.Epoch)
	key := newKey(t)
	l, err := NewLog(LogOptions{Store: fenced, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewAppender(AppenderOptions{Log: l})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go a.Run(runCtx)
	if _, err := l.Append(ctx, fenced, testEntry(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, testEntry(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.FenceLeader(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, fenced, testEntry(3)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("append on the pool after the fence: %v", err)
	}
	err = fenced.Tx(ctx, func(tx *store.Store) error { _, err := l.Append(ctx, tx, testEntry(4)); return err })
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("append in a transaction after the fence: %v", err)
	}
	if _, err := a.Append(ctx, testEntry(5)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("appender after the fence: %v", err)
	}
	if rep := verifyDB(t, st, trustOnly(t, key)); rep.Bad != nil || rep.Entries != 2 {
		t.Fatalf("log after the fence: %d entries, %v", rep.Entries, rep.Bad)
	}
}
