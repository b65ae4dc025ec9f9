package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// AppenderOptions configures an Appender.
type AppenderOptions struct {
	// Log is the log to append to. Required.
	Log *Log
	// MaxBatch is the most entries one transaction carries. Default 1000.
	MaxBatch int
	// MaxDelay is how long a batch waits to fill once its first entry
	// arrived. Default 2ms. Entries that queue while a batch commits form
	// the next batch anyway, so this matters only at low rates.
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

// Run appends batches until ctx ends; then it finishes the batch in flight,
// fails what is still queued with ErrAppenderStopped and returns nil. It
// may run once.
func (a *Appender) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("audit: appender already ran")
	}
	a.running = true
	a.mu.Unlock()
	defer a.drain()

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
		// Take what is queued, then wait up to MaxDelay for more.
	fill:
		for len(batch) < a.opts.MaxBatch {
			select {
			case r := <-a.reqs:
				batch = append(batch, r)
				continue
			default:
			}
			if a.opts.MaxDelay == 0 {
				break
			}
			timer.Reset(a.opts.MaxDelay)
			select {
			case r := <-a.reqs:
				batch = append(batch, r)
				timer.Stop() // Go 1.23 timers: no stale tick after Stop
			case <-timer.C:
				break fill
			case <-ctx.Done():
				timer.Stop()
				break fill
			}
		}
		a.commit(ctx, batch)
	}
}

// commit appends one batch in one transaction and answers its requests.
func (a *Appender) commit(ctx context.Context, batch []*appendRequest) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- appendResult{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	es := make([]Entry, len(live))
	for i, r := range live {
		es[i] = r.entry
	}
	// A batch in flight finishes even when Run is told to stop: its
	// callers are waiting for the answer.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.TxTimeout)
	defer cancel()
	l := a.opts.Log
	recs, err := l.appendEntries(tctx, l.opts.Store, es)
	if err != nil {
		a.opts.Logger.ErrorContext(ctx, "audit batch failed", slog.Int("entries", len(es)), slog.Any("error", err))
	}
	for i, r := range live {
		if err != nil {
			r.done <- appendResult{err: err}
			continue
		}
		r.done <- appendResult{rec: recs[i]}
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
