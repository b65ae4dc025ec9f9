// Package siem streams the audit log to SIEMs as entries commit: as RFC
// 5424 syslog over TLS (RFC 5425 framing) and as signed webhook batches.
// Each destination has a durable cursor in the database (siem_cursors)
// that moves only after the destination acknowledged what was sent, so
// delivery is at least once: after a crash or a lost connection entries
// may arrive twice (same seq, same hash), never with a gap. Every message
// carries the entry's seq, chain hash, the previous hash and the entry's
// canonical bytes, so the receiving side can check continuity and
// recompute the chain itself (docs/audit.md, "Streaming to a SIEM").
package siem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/metrics"
	"github.com/writ-sec/writ/internal/retry"
	"github.com/writ-sec/writ/internal/store"
)

// Destination is where entries go. The forwarder calls it from one
// goroutine, with batches in seq order, each continuing the previous one
// unless Reset was called in between.
type Destination interface {
	// Name is the destination's configured name (its cursor's key).
	Name() string
	// Send delivers a batch. acked reports that everything sent since the
	// last acknowledgement (this batch included) is now acknowledged; a
	// destination may acknowledge later, at its own pace (Sync).
	Send(ctx context.Context, batch []store.AuditEntry) (acked bool, err error)
	// Sync waits until everything sent is acknowledged.
	Sync(ctx context.Context) error
	// Reset drops what was sent and not acknowledged (it is sent again),
	// and any connection.
	Reset()
}

// Options configures a forwarder.
type Options struct {
	Store       *store.Store
	Destination Destination
	// Batch is the most entries read and sent at once. Default 500.
	Batch int
	// BatchBytes bounds a batch's entry bytes (at least one entry goes).
	// Default 4 MiB.
	BatchBytes int
	// PollInterval between reads of the log when caught up. Default 200ms.
	PollInterval time.Duration
	// IdleSync: when caught up this long after the last send, the
	// forwarder asks the destination to acknowledge what it has (a syslog
	// connection is closed gracefully). Default 1s.
	IdleSync time.Duration
	// CheckInterval between checks, when caught up, that the entry under
	// the cursor is still in the log with the hash sent. Default 5s.
	CheckInterval time.Duration
	// RetryBase and RetryMax bound the wait after a failure (doubling).
	// Defaults 1s and 1m.
	RetryBase, RetryMax time.Duration
	Logger              *slog.Logger
	Metrics             *metrics.Metrics
}

func (o *Options) setDefaults() {
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 4 << 20
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	if o.IdleSync <= 0 {
		o.IdleSync = time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 5 * time.Second
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Forwarder streams the log to one destination. Run it on the leader
// only; two forwarders of one destination (two replicas leading one after
// the other) do not lose entries, the cursor only moves from where a
// forwarder last saw it.
type Forwarder struct {
	opts Options
	name string
	log  *slog.Logger

	mu     sync.Mutex
	status Status
}

// Status is what a forwarder reports (/readyz, tests).
type Status struct {
	Destination string
	Running     bool
	// Acked is the durable cursor: entries below it were acknowledged.
	Acked int64
	// Head is the log's size when last read.
	Head        int64
	LastError   string
	LastErrorAt time.Time
	LastAckAt   time.Time
	// Rewinds counts the times the log was found changed under the cursor.
	Rewinds int
}

// Lag is how many entries of the log the destination has not
// acknowledged.
func (s Status) Lag() int64 { return max(0, s.Head-s.Acked) }

// New checks the options.
func New(opts Options) (*Forwarder, error) {
	opts.setDefaults()
	if opts.Store == nil {
		return nil, errors.New("siem: a store is required")
	}
	if opts.Destination == nil {
		return nil, errors.New("siem: a destination is required")
	}
	name := opts.Destination.Name()
	return &Forwarder{opts: opts, name: name, log: opts.Logger.With(slog.String("siem", name)),
		status: Status{Destination: name}}, nil
}

// Name is the destination's name.
func (f *Forwarder) Name() string { return f.name }

// Status is the forwarder's last known state.
func (f *Forwarder) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *Forwarder) update(fn func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.status)
}

// state is a run's position: the durable cursor and what was sent past it.
type state struct {
	cursor   store.SIEMCursor // as stored
	sent     int64            // next seq to send
	sentHash []byte           // hash of entry sent-1
	lastSend time.Time        // when the last batch was sent
	checked  time.Time        // last check of the entry under the cursor
	headAt   time.Time        // last read of the log's head
}

func (s *state) pending() bool { return s.sent != s.cursor.Next }

// errMoved means another forwarder moved the cursor.
var errMoved = errors.New("the cursor was moved by another replica")

// Run forwards until ctx is done.
func (f *Forwarder) Run(ctx context.Context) error {
	f.update(func(s *Status) { s.Running = true })
	defer f.update(func(s *Status) { s.Running = false })
	defer f.opts.Destination.Reset()
	wait := time.Duration(0)
	failures := 0 // in a row, for the backoff
	var st *state
	defer func() { f.settle(ctx, st) }()
	for {
		if wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if st == nil {
			c, err := f.opts.Store.SIEMCursor(ctx, f.name)
			if err != nil {
				wait = f.failed(ctx, err, &failures)
				continue
			}
			st = &state{cursor: c, sent: c.Next, sentHash: c.LastHash}
			f.update(func(s *Status) { s.Acked = c.Next })
		}
		idle, err := f.step(ctx, st)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			f.opts.Destination.Reset()
			if errors.Is(err, errMoved) {
				f.log.InfoContext(ctx, "SIEM cursor moved elsewhere: reading it again")
				st, wait = nil, 0
				continue
			}
			st.sent, st.sentHash = st.cursor.Next, st.cursor.LastHash
			wait = f.failed(ctx, err, &failures)
		case idle:
			wait, failures = f.opts.PollInterval, 0
		default:
			wait, failures = 0, 0
		}
	}
}

// settle, on the way out, has what was sent acknowledged, so that the
// next run (here or on another replica) does not send it again.
func (f *Forwarder) settle(ctx context.Context, st *state) {
	if st == nil || !st.pending() {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := f.opts.Destination.Sync(sctx); err != nil {
		f.log.InfoContext(sctx, "SIEM entries left unacknowledged at stop: they are sent again", slog.Int64("from", st.cursor.Next), slog.Any("error", err))
		return
	}
	if err := f.commit(sctx, st); err != nil {
		f.log.InfoContext(sctx, "SIEM cursor not moved at stop: entries are sent again", slog.Any("error", err))
	}
}

// failed records an error and returns the next wait: RetryBase doubled
// per failure in a row, at most RetryMax, jittered (internal/retry).
func (f *Forwarder) failed(ctx context.Context, err error, failures *int) time.Duration {
	f.log.WarnContext(ctx, "SIEM forwarding", slog.Any("error", err))
	f.opts.Metrics.SIEMError(f.name)
	f.update(func(s *Status) { s.LastError, s.LastErrorAt = err.Error(), time.Now() })
	d := retry.Backoff{Initial: f.opts.RetryBase, Max: f.opts.RetryMax}.Delay(*failures)
	*failures++
	return d
}

// step reads and sends one batch, or, caught up, settles what is pending.
// idle reports that there was nothing to send.
func (f *Forwarder) step(ctx context.Context, st *state) (idle bool, err error) {
	entries, err := f.opts.Store.AuditEntries(ctx, st.sent, f.opts.Batch)
	if err != nil {
		return false, err
	}
	if len(entries) > 0 && entries[0].Seq == st.sent && st.sent > 0 && !bytes.Equal(entries[0].PrevHash, st.sentHash) {
		// Either the entry sent last changed since, or the log itself is
		// broken here (which is forwarded as it is, below).
		changed, err := f.changedUnder(ctx, st)
		if err != nil {
			return false, err
		}
		if changed {
			return false, f.rewind(ctx, st, fmt.Sprintf("entry %d is no longer the one sent", st.sent-1))
		}
	}
	if len(entries) == 0 {
		return true, f.caughtUp(ctx, st)
	}
	if time.Since(st.headAt) >= time.Second {
		// Behind: the lag grows or shrinks, say by how much.
		head, err := f.opts.Store.AuditHead(ctx)
		if err != nil {
			return false, err
		}
		st.headAt = time.Now()
		f.setHead(st, head.Size)
	}
	entries = f.cut(entries)
	f.checkContinuity(ctx, st, entries)
	acked, err := f.opts.Destination.Send(ctx, entries)
	if err != nil {
		return false, fmt.Errorf("send entries %d-%d: %w", entries[0].Seq, entries[len(entries)-1].Seq, err)
	}
	last := entries[len(entries)-1]
	st.sent, st.sentHash, st.lastSend = last.Seq+1, last.Hash, time.Now()
	if acked {
		return false, f.commit(ctx, st)
	}
	return false, nil
}

// cut bounds a batch by bytes.
func (f *Forwarder) cut(entries []store.AuditEntry) []store.AuditEntry {
	n := 0
	for i, e := range entries {
		n += len(e.Entry)
		if i > 0 && n > f.opts.BatchBytes {
			return entries[:i]
		}
	}
	return entries
}

// checkContinuity logs entries that do not continue the chain or the
// sequence: they are sent as they are (the SIEM sees the same break), but
// said loudly here.
func (f *Forwarder) checkContinuity(ctx context.Context, st *state, entries []store.AuditEntry) {
	seq, prev := st.sent, st.sentHash
	if seq == 0 {
		prev = audit.GenesisHash[:]
	}
	for _, e := range entries {
		switch {
		case e.Seq != seq:
			f.log.ErrorContext(ctx, "the audit log misses entries: forwarding the gap as it is", slog.Int64("expected", seq), slog.Int64("seq", e.Seq))
		case !bytes.Equal(e.PrevHash, prev):
			f.log.ErrorContext(ctx, "an audit entry does not chain to the one before it: forwarding it as it is", slog.Int64("seq", e.Seq))
		}
		seq, prev = e.Seq+1, e.Hash
	}
}

// caughtUp settles pending entries once the log has been quiet for
// IdleSync, checks now and then that the entry under the cursor is still
// the one sent, and records the lag.
func (f *Forwarder) caughtUp(ctx context.Context, st *state) error {
	if st.pending() && time.Since(st.lastSend) >= f.opts.IdleSync {
		if err := f.opts.Destination.Sync(ctx); err != nil {
			return fmt.Errorf("acknowledge entries %d-%d: %w", st.cursor.Next, st.sent-1, err)
		}
		if err := f.commit(ctx, st); err != nil {
			return err
		}
	}
	if time.Since(st.checked) < f.opts.CheckInterval {
		f.setHead(st, st.sent)
		return nil
	}
	st.checked = time.Now()
	head, err := f.opts.Store.AuditHead(ctx)
	if err != nil {
		return err
	}
	st.headAt = st.checked
	f.setHead(st, head.Size)
	if st.sent == 0 {
		return nil
	}
	// The entries decide, not the head (a head row is as easy to change).
	changed, err := f.changedUnder(ctx, st)
	if err != nil || !changed {
		return err
	}
	return f.rewind(ctx, st, fmt.Sprintf("entry %d is no longer the one sent", st.sent-1))
}

// changedUnder reports whether the entry sent last (seq sent-1) is gone
// from the log or has another hash now.
func (f *Forwarder) changedUnder(ctx context.Context, st *state) (bool, error) {
	prev, err := f.opts.Store.AuditEntries(ctx, st.sent-1, 1)
	if err != nil {
		return false, err
	}
	return len(prev) == 0 || prev[0].Seq != st.sent-1 || !bytes.Equal(prev[0].Hash, st.sentHash), nil
}

func (f *Forwarder) setHead(st *state, head int64) {
	f.update(func(s *Status) { s.Head = head })
	f.opts.Metrics.SIEMLag(f.name, max(0, head-st.cursor.Next))
}

// commit moves the durable cursor to what was sent.
func (f *Forwarder) commit(ctx context.Context, st *state) error {
	to := store.SIEMCursor{Destination: f.name, Next: st.sent, LastHash: st.sentHash}
	if err := f.move(ctx, st, to); err != nil {
		return err
	}
	now := time.Now()
	f.update(func(s *Status) { s.LastAckAt = now })
	f.opts.Metrics.SIEMAcknowledged(f.name, now)
	return nil
}

func (f *Forwarder) move(ctx context.Context, st *state, to store.SIEMCursor) error {
	// The cursor's move must not be lost to a cancellation that came
	// after the destination acknowledged.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ok, err := f.opts.Store.MoveSIEMCursor(mctx, st.cursor, to)
	if err != nil {
		return err
	}
	if !ok {
		return errMoved
	}
	n := to.Next - st.cursor.Next
	if n > 0 {
		f.opts.Metrics.SIEMForwarded(f.name, n)
	}
	st.cursor = to
	var head int64
	f.update(func(s *Status) {
		s.Acked, s.Head = to.Next, max(s.Head, to.Next)
		head = s.Head
	})
	f.opts.Metrics.SIEMLag(f.name, head-to.Next)
	return nil
}

// rewind moves the cursor back to the log's start after the log changed
// under it (rolled back, truncated, entries rewritten): the destination
// then receives the log as it is now, and the SIEM sees seqs it already
// has with other hashes — the change itself.
func (f *Forwarder) rewind(ctx context.Context, st *state, why string) error {
	f.log.ErrorContext(ctx, "the audit log changed under the SIEM cursor: sending it again from the start", slog.String("why", why),
		slog.Int64("cursor", st.cursor.Next))
	f.opts.Destination.Reset()
	if err := f.move(ctx, st, store.SIEMCursor{Destination: f.name}); err != nil {
		return err
	}
	st.sent, st.sentHash, st.checked = 0, nil, time.Time{}
	f.update(func(s *Status) { s.Rewinds++ })
	f.opts.Metrics.SIEMRewind(f.name)
	return nil
}

// validName reports whether s is a destination name: 1 to 63 lowercase
// letters, digits and '-', not starting with '-' (as the cursor table
// checks).
func validName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
