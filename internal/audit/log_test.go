package audit

import (
	"bytes"
	"context"
	"errors"
	"sync"
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

// TestConcurrentWriters: 16 writers x 10,000 appends, each append one
// entry: four writers append inside transactions of their own making (as
// the reconciler does with a state change), four through Append on the
// pool, and eight through two group-commit appenders (as two replicas
// would). The chain must verify with no gap and no fork.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	writers, perWriter := 16, 10000
	if testing.Short() {
		perWriter = 500
	}
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
			for i := range perWriter {
				e := testEntry(w*perWriter + i)
				var seq uint64
				switch w % 4 {
				case 0:
					err := st.Tx(ctx, func(tx *store.Store) error {
						recs, err := l.Append(ctx, tx, e)
						if err == nil {
							seq = recs[0].Seq
						}
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				case 2:
					recs, err := l.Append(ctx, st, e)
					if err != nil {
						errs <- err
						return
					}
					seq = recs[0].Seq
				default:
					rec, err := apps[w%4/2].Append(ctx, e)
					if err != nil {
						errs <- err
						return
					}
					seq = rec.Seq
				}
				seqs[w] = append(seqs[w], seq)
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
	t.Logf("%d appends by %d writers in %s", writers*perWriter, writers, time.Since(start))
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
