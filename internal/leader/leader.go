// Package leader elects one leader among writ replicas sharing a database:
// the replica holding a PostgreSQL session advisory lock on a dedicated
// connection leads and runs the reconciler, the executor and the other
// single-writer jobs; every replica serves the API. Each new leader bumps an
// epoch that fences the writes of a deposed one.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// Options configures an elector.
type Options struct {
	Store *store.Store
	// ID names this replica (host and pid, say); it is recorded as holder.
	ID string
	// RetryInterval between attempts to take leadership. Default 1s.
	RetryInterval time.Duration
	// CheckInterval between checks that leadership still holds. Default 1s.
	CheckInterval time.Duration
	Logger        *slog.Logger
}

func (o *Options) setDefaults() {
	if o.RetryInterval == 0 {
		o.RetryInterval = time.Second
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	if o.Store == nil {
		return errors.New("leader: a store is required")
	}
	if o.ID == "" {
		return errors.New("leader: a replica id is required")
	}
	return nil
}

// Elector takes and keeps leadership.
type Elector struct {
	opts    Options
	mu      sync.Mutex
	leading bool
	epoch   int64
	since   time.Time
}

// New checks the options.
func New(opts Options) (*Elector, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Elector{opts: opts}, nil
}

// Status says whether this replica leads, with which epoch, since when.
func (e *Elector) Status() (leading bool, epoch int64, since time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading, e.epoch, e.since
}

// Run campaigns until ctx is done. Each time this replica becomes leader it
// calls lead with a context cancelled as soon as leadership is lost (its
// connection died, or a newer epoch exists) or ctx is done, and waits for
// lead to return before campaigning again. lead's store writes should go
// through store.Fenced(epoch).
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, epoch int64) error) error {
	log := e.opts.Logger
	for {
		l, err := e.opts.Store.TryLead(ctx, e.opts.ID)
		if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "leader election", slog.Any("error", err))
		}
		if l != nil {
			err := e.hold(ctx, l, lead)
			if err != nil && ctx.Err() == nil {
				log.ErrorContext(ctx, "leading ended", slog.Any("error", err))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(e.opts.RetryInterval):
		}
	}
}

func (e *Elector) hold(ctx context.Context, l *store.Leadership, lead func(context.Context, int64) error) error {
	log := e.opts.Logger
	defer l.Release(ctx)
	e.set(true, l.Epoch)
	defer e.set(false, l.Epoch)
	log.InfoContext(ctx, "leading", slog.String("replica", e.opts.ID), slog.Int64("epoch", l.Epoch))
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- lead(lctx, l.Epoch) }()
	t := time.NewTicker(e.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			if err := l.Check(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				log.WarnContext(ctx, "lost leadership", slog.Int64("epoch", l.Epoch), slog.Any("error", err))
				cancel(fmt.Errorf("lost leadership: %w", err))
				return <-done
			}
		case <-ctx.Done():
			return <-done
		}
	}
}

func (e *Elector) set(leading bool, epoch int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leading, e.epoch = leading, epoch
	if leading {
		e.since = time.Now()
	}
}
