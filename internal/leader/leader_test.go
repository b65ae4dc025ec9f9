package leader

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

func openStore(t *testing.T, url string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{URL: url, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// One of two replicas leads; when its connection dies the other takes
// over with a new epoch, and the old epoch's writes are fenced.
func TestFailoverAndFencing(t *testing.T) {
	t.Parallel()
	url := dbtest.URL(t)
	stA, stB := openStore(t, url), openStore(t, url)
	ctx := context.Background()

	type replica struct {
		el      *Elector
		cancel  context.CancelFunc
		done    chan struct{}
		leading atomic.Int64 // epoch while leading
	}
	start := func(st *store.Store, id string) *replica {
		el, err := New(Options{Store: st, ID: id, RetryInterval: 50 * time.Millisecond, CheckInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{el: el, done: make(chan struct{})}
		c, cancel := context.WithCancel(ctx)
		r.cancel = cancel
		go func() {
			defer close(r.done)
			_ = el.Run(c, func(lctx context.Context, epoch int64) error {
				r.leading.Store(epoch)
				<-lctx.Done()
				r.leading.Store(0)
				return nil
			})
		}()
		return r
	}
	a := start(stA, "a")
	waitFor(t, func() bool { return a.leading.Load() > 0 })
	b := start(stB, "b")
	time.Sleep(300 * time.Millisecond)
	if b.leading.Load() != 0 {
		t.Fatal("two leaders at once")
	}
	oldEpoch := a.leading.Load()
	if info, err := stB.Leader(ctx); err != nil || info.Holder != "a" || info.Epoch != oldEpoch {
		t.Fatalf("recorded leader %+v %v", info, err)
	}

	// A fenced store of the current epoch writes; then a dies (its pool and
	// with it the lock connection go away) and b takes over.
	fenced := stA.Fenced(oldEpoch)
	if err := fenced.Tx(ctx, func(*store.Store) error { return nil }); err != nil {
		t.Fatalf("fenced write by the leader: %v", err)
	}
	a.cancel()
	<-a.done
	stA.Close()
	t0 := time.Now()
	waitFor(t, func() bool { return b.leading.Load() > oldEpoch })
	t.Logf("takeover after %s", time.Since(t0).Round(time.Millisecond))

	// The deposed leader's epoch no longer writes.
	stale := openStore(t, url).Fenced(oldEpoch)
	err := stale.Tx(ctx, func(*store.Store) error { return nil })
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("write with a stale epoch: %v; want ErrFenced", err)
	}
	b.cancel()
	<-b.done
}

// A leader whose epoch was taken over (it kept its lock connection but a
// newer epoch exists: an admin reset, a split brain) stops leading.
func TestLeaderStopsWhenEpochMoves(t *testing.T) {
	t.Parallel()
	url := dbtest.URL(t)
	st := openStore(t, url)
	el, _ := New(Options{Store: st, ID: "x", RetryInterval: time.Hour, CheckInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() {
		_ = el.Run(ctx, func(lctx context.Context, epoch int64) error {
			// Someone bumps the epoch behind this leader's back.
			if _, err := openStore(t, url).FenceLeader(context.Background(), "test"); err != nil {
				t.Error(err)
			}
			<-lctx.Done()
			stopped <- context.Cause(lctx)
			return nil
		})
	}()
	select {
	case err := <-stopped:
		if !errors.Is(err, store.ErrFenced) {
			t.Fatalf("stopped with %v; want ErrFenced", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the leader kept leading after its epoch moved")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
