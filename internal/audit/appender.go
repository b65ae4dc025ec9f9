package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// AppenderOptions configures an Appender.
type AppenderOptions struct {
	// Log is the log to append to. Required.
	Log *Log
	// MaxBatch is the most entries one transaction carries. Default 1000.
	MaxBatch int
	// MaxDelay is how long a batch waits to fill once its first entry
	// arrived. Default 2ms. Entries that queue while a batch is signed or
	// committed form the next batch anyway, so this matters only at low
	// rates.
	MaxDelay time.Duration
	// Queue is how many entries may wait for a batch. Default 4*MaxBatch.
	Queue int
	// TxTimeout bounds one batch's transaction. Default 30s.
	TxTimeout time.Duration
	// Logger receives events. Default: discard.
	Logger *slog.Logger
}

func (o *AppenderOptions) setDefaults() {
	if o.MaxBatch == 0 {
		o.MaxBatch = 1000
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 2 * time.Millisecond
	}
	if o.Queue == 0 {
		o.Queue = 4 * o.MaxBatch
	}
	if o.TxTimeout == 0 {
		o.TxTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *AppenderOptions) validate() error {
	switch {
	case o.Log == nil:
		return errors.New("audit: appender options: Log is required")
	case o.MaxBatch < 1 || o.MaxBatch > 100000:
		return fmt.Errorf("audit: appender options: MaxBatch %d must be 1..100000", o.MaxBatch)
	case o.MaxDelay < 0:
		return fmt.Errorf("audit: appender options: MaxDelay %s is negative", o.MaxDelay)
	case o.Queue < 1:
		return fmt.Errorf("audit: appender options: Queue %d must be positive", o.Queue)
	case o.TxTimeout <= 0:
		return fmt.Errorf("audit: appender options: TxTimeout %s must be positive", o.TxTimeout)
	}
	return nil
}

// ErrAppenderStopped is returned by Append when the Appender is not
// running.
var ErrAppenderStopped = errors.New("audit: appender is not running")

type appendResult struct {
	rec Receipt
	err error
}

type appendRequest struct {
	ctx   context.Context
	entry Entry
	done  chan appendResult
}

// Appender is a group-commit appender for high event rates: Append blocks
// until its entry is durable, and entries arriving together share one
// transaction (and one commit flush).
type Appender struct {
	opts    AppenderOptions
	reqs    chan *appendRequest
	mu      sync.Mutex
	running bool
	stopped chan struct{}
	// resync tells the preparing stage its predicted head is unreliable.
	resync atomic.Bool
	// rebuilds counts batches rebuilt under the lock (tests, metrics).
	rebuilds atomic.Int64
}

// NewAppender returns an Appender; call Run to start it.
func NewAppender(opts AppenderOptions) (*Appender, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Appender{opts: opts, reqs: make(chan *appendRequest, opts.Queue), stopped: make(chan struct{})}, nil
}

// Append records one entry and returns once it is committed. An error means
// the entry was not acknowledged: it is not stored, except when ctx ended
// while its batch was committing (then it may be).
func (a *Appender) Append(ctx context.Context, e Entry) (Receipt, error) {
	es, err := prepare([]Entry{e})
	if err != nil {
		return Receipt{}, err
	}
	req := &appendRequest{ctx: ctx, entry: es[0], done: make(chan appendResult, 1)}
	select {
	case a.reqs <- req:
	case <-a.stopped:
		return Receipt{}, ErrAppenderStopped
	case <-ctx.Done():
		return Receipt{}, ctx.Err()
	}
	select {
	case res := <-req.done:
		return res.rec, res.err
	case <-ctx.Done():
		return Receipt{}, ctx.Err()
	case <-a.stopped:
		// Run answers every request it took before it stops.
		select {
		case res := <-req.done:
			return res.rec, res.err
		default:
			return Receipt{}, ErrAppenderStopped
		}
	}
}

// preparedBatch is a batch built (chained, hashed, signed) ahead of its
// transaction, on the head the previous batch is expected to leave.
type preparedBatch struct {
	live  []*appendRequest
	es    []Entry
	base  store.AuditHead
	key   *SigningKey
	app   store.AuditAppend
	recs  []Receipt
	built bool
}

// Run appends batches until ctx ends; then it finishes the batches in
// flight, fails what is still queued with ErrAppenderStopped and returns
// nil. It may run once.
//
// Two stages overlap: while one batch's transaction runs (insert, commit
// flush), the next is collected and signed on the head the first will
// leave. Under the append lock the committer checks that head is the one
// actually there (another writer may have appended, or the first batch may
// have failed) and rebuilds the batch on the real head if not, so the
// overlap never costs correctness.
func (a *Appender) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("audit: appender already ran")
	}
	a.running = true
	a.mu.Unlock()

	prepared := make(chan *preparedBatch, 1)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		for pb := range prepared {
			a.commit(ctx, pb)
		}
	}()
	defer func() {
		close(prepared)
		<-committed
		a.drain()
	}()

	var predicted *store.AuditHead
	batch := make([]*appendRequest, 0, a.opts.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case r := <-a.reqs:
			batch = append(batch, r)
		}
		// Take what is queued, then wait for more until MaxDelay after the
		// first entry arrived.
		timer.Reset(a.opts.MaxDelay)
	fill:
		for len(batch) < a.opts.MaxBatch {
			select {
			case r := <-a.reqs:
				batch = append(batch, r)
			case <-timer.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		timer.Stop() // Go 1.23 timers: no stale tick after Stop
		if pb := a.prepare(ctx, batch, &predicted); pb != nil {
			prepared <- pb
		}
	}
}

// prepare builds a batch on the predicted head (read from the database
// when unknown) and advances the prediction.
func (a *Appender) prepare(ctx context.Context, batch []*appendRequest, predicted **store.AuditHead) *preparedBatch {
	pb := &preparedBatch{}
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- appendResult{err: err}
			continue
		}
		pb.live = append(pb.live, r)
		pb.es = append(pb.es, r.entry)
	}
	if len(pb.live) == 0 {
		return nil
	}
	l := a.opts.Log
	if a.resync.Swap(false) {
		*predicted = nil
	}
	if *predicted == nil {
		hctx, cancel := context.WithTimeout(ctx, a.opts.TxTimeout)
		h, err := l.opts.Store.AuditHead(hctx)
		cancel()
		if err != nil {
			return pb // built under the lock instead
		}
		*predicted = &h
	}
	pb.base, pb.key = **predicted, l.Key()
	app, recs, err := l.build(pb.base, pb.es)
	if err != nil {
		*predicted = nil
		return pb
	}
	pb.app, pb.recs, pb.built = app, recs, true
	*predicted = &app.Head
	return pb
}

func sameHead(a, b store.AuditHead) bool {
	return a.Size == b.Size && bytes.Equal(a.LastHash, b.LastHash) && a.LastAt.Equal(b.LastAt) && bytes.Equal(a.Compact, b.Compact)
}

// commit writes one prepared batch in one transaction and answers its
// requests.
func (a *Appender) commit(ctx context.Context, pb *preparedBatch) {
	// A batch in flight finishes even when Run is told to stop: its
	// callers are waiting for the answer.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.TxTimeout)
	defer cancel()
	l := a.opts.Log
	err := l.opts.Store.AppendAudit(tctx, func(head store.AuditHead) (store.AuditAppend, error) {
		if pb.built && sameHead(head, pb.base) && l.Key() == pb.key {
			return pb.app, nil
		}
		// The prediction missed: rebuild on the real head, and have the
		// next batches predicted from the database again.
		a.resync.Store(true)
		a.rebuilds.Add(1)
		app, recs, err := l.build(head, pb.es)
		pb.recs = recs
		return app, err
	})
	if err != nil {
		a.resync.Store(true)
		err = fmt.Errorf("audit: append: %w", err)
		a.opts.Logger.ErrorContext(ctx, "audit batch failed", slog.Int("entries", len(pb.es)), slog.Any("error", err))
	}
	for i, r := range pb.live {
		if err != nil {
			r.done <- appendResult{err: err}
			continue
		}
		r.done <- appendResult{rec: pb.recs[i]}
	}
}

// drain refuses new entries and fails the queued ones.
func (a *Appender) drain() {
	close(a.stopped)
	for {
		select {
		case r := <-a.reqs:
			r.done <- appendResult{err: ErrAppenderStopped}
		default:
			return
		}
	}
}
