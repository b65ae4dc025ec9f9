package audit

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// EntryAppender appends entries: in tx, or in a transaction of their own
// when tx is the pool's Store (a *Log).
type EntryAppender interface {
	Append(ctx context.Context, tx *store.Store, entries ...Entry) ([]Receipt, error)
}

// BoundedOptions configures a Bounded.
type BoundedOptions struct {
	// Log and Store write the entries, each in a transaction of its own.
	// Required.
	Log   EntryAppender
	Store *store.Store
	// Summary is the actor, event and subject of the summary entry (its
	// payload is the counts). Summary.Event is required.
	Summary Entry
	// Burst is how many entries a window writes one by one; the rest are
	// counted. Default 20.
	Burst int
	// Window is the aggregation period. Default 1 minute.
	Window time.Duration
	// Top is how many of the largest counts of each dimension a summary
	// names. Default 20.
	Top int
	// Timeout bounds one append. Default 5s.
	Timeout time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

func (o *BoundedOptions) setDefaults() {
	if o.Burst == 0 {
		o.Burst = 20
	}
	if o.Window == 0 {
		o.Window = time.Minute
	}
	if o.Top == 0 {
		o.Top = 20
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o *BoundedOptions) validate() error {
	switch {
	case o.Log == nil || o.Store == nil:
		return errors.New("audit: bounded: a log and a store are required")
	case o.Summary.Event == "":
		return errors.New("audit: bounded: the summary needs an event")
	case o.Burst < 0 || o.Top < 1:
		return errors.New("audit: bounded: burst must not be negative, top at least 1")
	case o.Window < time.Second:
		return errors.New("audit: bounded: the window must be at least 1s")
	}
	return nil
}

// Bounded audits events that cost whoever causes them nothing (anonymous
// requests refused, envelopes that do not verify) within bounds: the first
// Burst of a window are written one entry each, the others are counted, by
// the dimensions the caller names (a reason, a route, a client address),
// into one summary entry when the window ends. A flood thus writes at most
// Burst+1 entries a window and is still on record with its size.
//
// Writing never fails the caller: an append error is logged.
type Bounded struct {
	opts BoundedOptions

	mu         sync.Mutex
	start      time.Time
	individual int
	counted    int
	by         map[string]map[string]int // dimension → key → count
}

// maxKeys bounds the keys counted per dimension and window; past it, new
// keys are counted as "other".
const maxKeys = 1000

// NewBounded checks the options.
func NewBounded(opts BoundedOptions) (*Bounded, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	b := &Bounded{opts: opts}
	b.reset(opts.Now())
	return b, nil
}

func (b *Bounded) reset(now time.Time) {
	b.start, b.individual, b.counted = now, 0, 0
	b.by = map[string]map[string]int{}
}

// Record writes e while the window's burst lasts; after, it counts e under
// by (dimension → key, e.g. "reason" → "unknown_key") for the window's
// summary. It reports whether e was written one by one.
func (b *Bounded) Record(ctx context.Context, e Entry, by map[string]string) bool {
	b.mu.Lock()
	now := b.opts.Now()
	var summary *Entry
	counted := 0
	if now.Sub(b.start) >= b.opts.Window {
		summary, counted = b.cut(now)
	}
	individual := b.individual < b.opts.Burst
	if individual {
		b.individual++
	} else {
		b.count(by)
	}
	b.mu.Unlock()
	if summary != nil {
		b.writeSummary(ctx, *summary, counted)
	}
	if individual {
		b.Append(ctx, e)
	}
	return individual
}

// count adds one event under each of its keys. Call with b.mu held.
func (b *Bounded) count(by map[string]string) {
	b.counted++
	for dim, key := range by {
		m := b.by[dim]
		if m == nil {
			m = map[string]int{}
			b.by[dim] = m
		}
		if _, ok := m[key]; !ok && len(m) >= maxKeys {
			key = "other"
		}
		m[key]++
	}
}

// Append writes e now, whatever the window's budget: for events that are
// always audited one by one.
func (b *Bounded) Append(ctx context.Context, e Entry) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.Timeout)
	defer cancel()
	if _, err := b.opts.Log.Append(actx, b.opts.Store, e); err != nil {
		b.opts.Logger.ErrorContext(ctx, "audit a bounded event", slog.String("event", string(e.Event)), slog.Any("error", err))
	}
}

// Flush ends the current window and, when events were counted rather than
// written one by one, writes their summary.
func (b *Bounded) Flush(ctx context.Context) {
	b.mu.Lock()
	summary, counted := b.cut(b.opts.Now())
	b.mu.Unlock()
	if summary != nil {
		b.writeSummary(ctx, *summary, counted)
	}
}

// cut ends the window at now and starts the next. When events were
// counted, it returns their summary: the window, how many were written
// and counted, and per dimension ("reason") the Top largest counts
// ("by_reason") and how many keys there were ("reasons"), and how many
// were counted. Call with b.mu held.
func (b *Bounded) cut(now time.Time) (*Entry, int) {
	defer b.reset(now)
	if b.counted == 0 {
		return nil, 0
	}
	payload := map[string]any{
		"window_start": b.start.UTC().Format(time.RFC3339Nano), "window_end": now.UTC().Format(time.RFC3339Nano),
		"audited_individually": b.individual, "counted": b.counted,
	}
	for dim, m := range b.by {
		payload["by_"+dim] = topN(m, b.opts.Top)
		payload[dim+"s"] = len(m)
	}
	e := b.opts.Summary
	e.Payload = MustJSON(payload)
	return &e, b.counted
}

func (b *Bounded) writeSummary(ctx context.Context, e Entry, counted int) {
	b.opts.Logger.WarnContext(ctx, "events counted into an audit summary", slog.String("event", string(e.Event)), slog.Int("counted", counted))
	b.Append(ctx, e)
}

// Run flushes at the end of every window until ctx ends, then once more.
func (b *Bounded) Run(ctx context.Context) error {
	t := time.NewTicker(b.opts.Window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.Flush(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
			b.Flush(ctx)
		}
	}
}

// topN keeps the n largest counts (ties by key).
func topN(m map[string]int, n int) map[string]int {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		if a < b {
			return -1
		}
		return 1
	})
	out := map[string]int{}
	for _, k := range keys[:min(n, len(keys))] {
		out[k] = m[k]
	}
	return out
}
