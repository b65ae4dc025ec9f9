package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/retry"
	"github.com/writ-sec/writ/internal/store"
)

// WitnesserOptions configures a Witnesser.
type WitnesserOptions struct {
	// Log is the log whose checkpoints are witnessed. Required. Its store
	// holds the checkpoints and receives the cosignatures; it records the
	// audit.witness_* events.
	Log *Log
	// Witnesses receive each checkpoint. Names must differ.
	Witnesses []*Witness
	// Client makes the requests. Default: a client with a 30s timeout.
	Client *http.Client
	// Health records each witness's outcomes. Share one between the
	// witnessers of a process (one per leadership term). Default: a new
	// one, unobserved.
	Health *WitnessMonitor
	// Poll is how often a witness is sent the latest checkpoint when no
	// Notify came (a checkpoint recorded by another process, say).
	// Default 30s.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failing witness is
	// tried again; it doubles with each failure. Defaults 2s and 10m.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives events. Default: discard.
	Logger *slog.Logger
}

func (o *WitnesserOptions) setDefaults() {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Health == nil {
		o.Health = NewWitnessMonitor(nil)
	}
	if o.Poll == 0 {
		o.Poll = 30 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 2 * time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *WitnesserOptions) validate() error {
	if o.Log == nil {
		return errors.New("audit: witnesser options: Log is required")
	}
	if o.MinBackoff <= 0 || o.MaxBackoff < o.MinBackoff || o.Poll <= 0 {
		return fmt.Errorf("audit: witnesser options: poll %s, backoff %s to %s", o.Poll, o.MinBackoff, o.MaxBackoff)
	}
	names := map[string]bool{}
	for i, w := range o.Witnesses {
		if w == nil {
			return fmt.Errorf("audit: witnesser options: witness %d is nil", i)
		}
		if names[w.Name()] {
			return fmt.Errorf("audit: witnesser options: two witnesses are named %q", w.Name())
		}
		names[w.Name()] = true
	}
	return nil
}

// Witnesser sends the log's latest recorded checkpoint to each witness and
// stores the cosignatures they answer with (audit_witness_cosignatures).
// It runs beside the log, never in its append path: Run loops in the
// background, woken by Notify when a checkpoint is recorded, so a slow or
// unreachable witness delays nothing but its own cosignature.
//
// Each witness is independent: it is sent the newest checkpoint with a
// consistency proof from the size it cosigned last (learned from the
// database, or from its 409 answer), and retried with exponential backoff
// while it fails. A refusal (the witness says the log forked or rolled
// back, or does not know the log or its key) is logged as an error and
// recorded as an audit.witness_refused event when the witness's state
// changes; the first cosignature after a start or a failure is recorded as
// audit.witness_cosigned. Events are recorded on changes only, so the
// entries they add do not make every checkpoint interval grow the log.
type Witnesser struct {
	opts   WitnesserOptions
	states []*witnessState
}

type witnessState struct {
	w      *Witness
	notify chan struct{}

	mu sync.Mutex // one exchange at a time with the witness
	// known is the size the witness cosigned last, as far as writ knows;
	// loaded tells known was read from the database.
	known  uint64
	loaded bool
	// done is the tree the witness cosigned last for writ: nothing to send
	// until the log has a newer checkpoint.
	done *TreeHead
}

// NewWitnesser returns a Witnesser.
func NewWitnesser(opts WitnesserOptions) (*Witnesser, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	w := &Witnesser{opts: opts}
	for _, wt := range opts.Witnesses {
		opts.Health.add(wt.Name())
		w.states = append(w.states, &witnessState{w: wt, notify: make(chan struct{}, 1)})
	}
	return w, nil
}

// Health is the witnesser's monitor.
func (w *Witnesser) Health() *WitnessMonitor { return w.opts.Health }

// Notify tells the witnesser a checkpoint was recorded. It never blocks: a
// Checkpointer calls it (CheckpointerOptions.Recorded). A witness in
// backoff waits for its retry.
func (w *Witnesser) Notify(*Checkpoint) {
	for _, s := range w.states {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// WitnessResult is one witness's outcome of a round.
type WitnessResult struct {
	Witness string
	// Sent: the latest checkpoint was sent (false: the witness had
	// cosigned it already, or there is no checkpoint).
	Sent bool
	// Cosignatures are those stored, when Sent and Err is nil.
	Cosignatures []Cosignature
	// Err is a *WitnessError, or a failure reading the log or storing.
	Err error
}

// Round sends the latest checkpoint to every witness that has not
// cosigned it yet, now, whatever their backoff, and waits for their
// answers: for writ audit checkpoint, the last checkpoint before a leader
// steps down, and tests.
func (w *Witnesser) Round(ctx context.Context) []WitnessResult {
	out := make([]WitnessResult, len(w.states))
	var wg sync.WaitGroup
	for i, s := range w.states {
		wg.Go(func() { out[i] = w.exchange(ctx, s) })
	}
	wg.Wait()
	return out
}

// Run witnesses checkpoints until ctx ends.
func (w *Witnesser) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range w.states {
		wg.Go(func() { w.loop(ctx, s) })
	}
	wg.Wait()
	return nil
}

func (w *Witnesser) loop(ctx context.Context, s *witnessState) {
	failures := 0
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.notify:
			if failures > 0 {
				continue // the timer holds the retry
			}
			t.Stop()
		}
		r := w.exchange(ctx, s)
		if ctx.Err() != nil {
			return
		}
		next := w.opts.Poll
		if r.Err != nil {
			failures++
			next = w.backoff(failures)
		} else {
			failures = 0
		}
		t.Reset(next)
	}
}

// backoff is the wait after the n-th failure in a row: MinBackoff doubled
// n-1 times, at most MaxBackoff, jittered (internal/retry) so replicas and
// witnesses do not fall into step.
func (w *Witnesser) backoff(n int) time.Duration {
	return retry.Backoff{Initial: w.opts.MinBackoff, Max: w.opts.MaxBackoff}.Delay(n - 1)
}

// exchange sends the latest checkpoint to one witness, stores its
// cosignatures and reports the outcome (health, log, audit event).
func (w *Witnesser) exchange(ctx context.Context, s *witnessState) WitnessResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := s.w.Name()
	cs, cp, err := w.send(ctx, s)
	res := WitnessResult{Witness: name, Sent: cp != nil, Cosignatures: cs, Err: err}
	if cp == nil && err == nil {
		return res
	}
	if err != nil && ctx.Err() != nil {
		return res // shutting down: not the witness's failure
	}
	before, after := w.opts.Health.record(name, cs, err)
	log := w.opts.Logger.With(slog.String("witness", name), slog.String("url", s.w.URL()))
	changed := before.state() != after.state()
	var we *WitnessError
	switch {
	case err == nil:
		log.DebugContext(ctx, "audit checkpoint cosigned by witness", slog.Uint64("size", cp.Size))
		if changed {
			log.InfoContext(ctx, "audit witness cosigns", slog.Uint64("size", cp.Size))
			w.event(ctx, s.w, EventWitnessCosigned, true, map[string]any{"size": cp.Size, "root": hex.EncodeToString(cp.Root),
				"cosigned_at": cs[0].Time.Format(TimeLayout)})
		}
	case errors.As(err, &we) && we.Refusal != "":
		log.ErrorContext(ctx, "audit witness refuses the log's checkpoint", slog.String("refusal", we.Refusal),
			slog.Uint64("size", cp.Size), slog.Any("error", err))
		if changed {
			p := map[string]any{"reason": we.Refusal, "size": cp.Size, "root": hex.EncodeToString(cp.Root), "error": err.Error()}
			if we.Status != 0 {
				p["status"] = we.Status
			}
			if we.Refusal == RefusedRollback {
				p["witness_size"] = we.KnownSize
			}
			w.event(ctx, s.w, EventWitnessRefused, false, p)
		}
	case changed:
		log.WarnContext(ctx, "audit witness failing", slog.Any("error", err))
	default:
		log.DebugContext(ctx, "audit witness still failing", slog.Any("error", err))
	}
	return res
}

// event records an audit.witness_* entry; a failure to record it is
// logged (a replica that lost the leadership cannot append).
func (w *Witnesser) event(ctx context.Context, wt *Witness, ev Event, success bool, payload map[string]any) {
	payload["witness"] = wt.Name()
	payload["url"] = wt.URL()
	payload["key"] = wt.Key()
	_, err := w.opts.Log.recordOwn(ctx, Entry{Actor: SystemActor, Event: ev, Subject: Subject{Kind: SubjectAuditLog, Name: wt.Name()},
		Success: success, Payload: MustJSON(payload)})
	if err != nil {
		w.opts.Logger.WarnContext(ctx, "record audit witness event", slog.String("event", string(ev)), slog.Any("error", err))
	}
}

// maxConflicts bounds the 409 answers followed in one exchange.
const maxConflicts = 3

// send sends the latest checkpoint to the witness unless it cosigned it
// already. cp is nil when nothing was sent.
func (w *Witnesser) send(ctx context.Context, s *witnessState) ([]Cosignature, *Checkpoint, error) {
	l := w.opts.Log
	st := l.opts.Store
	rec, err := st.LatestAuditCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("audit: witness %s: %w", s.w.Name(), err)
	}
	origin, err := l.Origin(ctx)
	if err != nil {
		return nil, nil, err
	}
	cp := &Checkpoint{Origin: origin, Size: uint64(rec.Size), Root: rec.Root, Note: []byte(rec.Note), KeyID: rec.KeyID}
	tree := TreeHead{Size: cp.Size, Root: cp.Root}
	if s.done != nil && s.done.Size == tree.Size && bytes.Equal(s.done.Root, tree.Root) {
		return nil, nil, nil
	}
	if !s.loaded {
		if err := w.load(ctx, s, origin); err != nil {
			return nil, nil, err
		}
		if s.done != nil && s.done.Size == tree.Size && bytes.Equal(s.done.Root, tree.Root) {
			return nil, nil, nil
		}
	}
	for range maxConflicts {
		old := s.known
		if old > cp.Size {
			return nil, cp, &WitnessError{Witness: s.w.Name(), Refusal: RefusedRollback, KnownSize: old,
				Err: fmt.Errorf("it cosigned a tree of size %d but the log has %d entries: the log was rolled back or truncated", old, cp.Size)}
		}
		var proof [][]byte
		if old > 0 && old < cp.Size {
			if proof, err = l.ConsistencyProof(ctx, old, cp.Size); err != nil {
				return nil, cp, fmt.Errorf("audit: witness %s: consistency proof from %d to %d: %w", s.w.Name(), old, cp.Size, err)
			}
		}
		cs, err := s.w.AddCheckpoint(ctx, w.opts.Client, old, proof, cp)
		var we *WitnessError
		if errors.As(err, &we) && we.Status == http.StatusConflict && we.KnownSize != old {
			s.known = we.KnownSize
			continue
		}
		if err != nil {
			return nil, cp, err
		}
		for _, c := range cs {
			if err := st.AddAuditCosignature(ctx, store.AuditCosignature{Witness: c.Witness, WitnessKey: c.Key, Size: int64(c.Size),
				Root: c.Root, Signature: c.Line, CosignedAt: c.Time}); err != nil {
				// The witness moved on; known stays behind, so the
				// next try learns its size from a 409 and sends again.
				return nil, cp, fmt.Errorf("audit: witness %s cosigned size %d: %w", s.w.Name(), cp.Size, err)
			}
		}
		s.known, s.done = cp.Size, &tree
		return cs, cp, nil
	}
	return nil, cp, &WitnessError{Witness: s.w.Name(), Status: http.StatusConflict, KnownSize: s.known,
		Err: fmt.Errorf("its size changed %d times during one exchange", maxConflicts)}
}

// load reads the newest cosignature of the witness recorded in the
// database, checked with its key (a row that does not verify is ignored:
// the witness's 409 then tells its size).
func (w *Witnesser) load(ctx context.Context, s *witnessState, origin string) error {
	st := w.opts.Log.opts.Store
	c, err := st.LatestAuditCosignature(ctx, s.w.Key())
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("audit: witness %s: %w", s.w.Name(), err)
	case !VerifyCosignature(s.w.verifier, origin, uint64(c.Size), c.Root, c.Signature):
		w.opts.Logger.WarnContext(ctx, "audit witness: a recorded cosignature does not verify with the witness's key; ignored",
			slog.String("witness", s.w.Name()), slog.Int64("size", c.Size), slog.Int64("id", c.ID))
	default:
		s.known = uint64(c.Size)
		s.done = &TreeHead{Size: uint64(c.Size), Root: c.Root}
		w.opts.Health.known(s.w.Name(), uint64(c.Size), c.CosignedAt)
	}
	s.loaded = true
	return nil
}
