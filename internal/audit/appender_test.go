package audit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestAppenderBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	a, err := NewAppender(AppenderOptions{Log: l, MaxBatch: 64, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- a.Run(runCtx) }()
	var wg sync.WaitGroup
	seqs := make([]uint64, 256)
	for i := range seqs {
		wg.Go(func() {
			rec, err := a.Append(ctx, testEntry(i))
			if err != nil {
				t.Error(err)
			}
			seqs[i] = rec.Seq
		})
	}
	wg.Wait()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, testEntry(1)); !errors.Is(err, ErrAppenderStopped) {
		t.Fatalf("append after stop: %v", err)
	}
	seen := map[uint64]bool{}
	for _, s := range seqs {
		if seen[s] || s >= 256 {
			t.Fatalf("seq %d twice or out of range", s)
		}
		seen[s] = true
	}
	// 256 entries in batches of at most 64: at least 4 transactions, and
	// far fewer than 256.
	head, _ := st.AuditHead(ctx)
	rows, err := st.AuditEntries(ctx, 0, 1000)
	if err != nil || head.Size != 256 || len(rows) != 256 {
		t.Fatalf("%d entries, %v", head.Size, err)
	}
	batches := 1
	for i := 1; i < len(rows); i++ {
		if !rows[i].At.Equal(rows[i-1].At) {
			batches++
		}
	}
	if batches < 4 || batches > 64 {
		t.Fatalf("%d batches for 256 concurrent appends of at most 64", batches)
	}
	if rep := verifyDB(t, st, trustOnly(t, l.Key())); rep.Bad != nil {
		t.Fatal(rep.Bad)
	}
}

func TestAppenderRefuses(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t)
	for _, o := range []AppenderOptions{{}, {Log: l, MaxBatch: -1}, {Log: l, MaxDelay: -time.Second}, {Log: l, Queue: -1}} {
		if _, err := NewAppender(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	a, _ := NewAppender(AppenderOptions{Log: l})
	e := testEntry(1)
	e.Event = "bad"
	if _, err := a.Append(context.Background(), e); err == nil {
		t.Fatal("invalid entry queued")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Append(ctx, testEntry(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled append: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	stop()
	if err := a.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
}
