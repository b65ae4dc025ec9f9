package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/writ-sec/writ/internal/store"
)

// MaxCheckpointSize bounds a checkpoint note read from a file or a sink.
const MaxCheckpointSize = 64 << 10

// Checkpoint is a signed tree head: a C2SP tlog-checkpoint body (origin,
// tree size, base64 root) in a C2SP signed note, signed by the log's
// ed25519 key under the origin as key name.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Note is the signed note, as published.
	Note []byte
	// KeyID is the id of the log key whose signature was made or verified.
	KeyID string
	// Sinks is, for a checkpoint made by Checkpointer.Checkpoint, what
	// each destination did with it, in the order of the options' Sinks.
	Sinks []SinkResult
}

// SinkResult is one destination's outcome for one checkpoint.
type SinkResult struct {
	// Sink is the destination's name.
	Sink string
	// Err is nil when the sink holds the checkpoint (published now, or
	// held already); else a *SinkError.
	Err error
}

// Errors of checkpoint consistency. Compare with errors.Is: ErrRollback
// and ErrFork are both ErrNotContained.
var (
	// ErrNotContained: a checkpoint signed by a key of the log is not
	// contained in the log as it is now — the log was truncated, rolled
	// back or forked. It is the signal that the log, not a destination, is
	// at fault.
	ErrNotContained = errors.New("a checkpoint the log published is not contained in it")
	// ErrRollback: a published checkpoint is larger than the log.
	ErrRollback error = &notContainedError{"the log is smaller than a checkpoint it published: truncated or rolled back"}
	// ErrFork: a published checkpoint is not a prefix of the log.
	ErrFork error = &notContainedError{"the log is not consistent with a checkpoint it published: history was rewritten"}
)

// notContainedError is a kind of ErrNotContained.
type notContainedError struct{ msg string }

func (e *notContainedError) Error() string        { return e.msg }
func (e *notContainedError) Is(target error) bool { return target == ErrNotContained }

// SinkError is a checkpoint destination's failure: its content could not
// be read or verified, it refused the checkpoint, or it proves the log is
// not what it published (errors.Is(err, ErrNotContained)).
type SinkError struct {
	// Sink is the destination's name.
	Sink string
	Err  error
}

func (e *SinkError) Error() string { return "checkpoint sink " + e.Sink + ": " + e.Err.Error() }
func (e *SinkError) Unwrap() error { return e.Err }

// ConflictError is a sink's refusal of a checkpoint because it already
// holds a different one of the same size. Note is that other checkpoint,
// unverified: it proves a fork only when a key of the log signed it (the
// Checkpointer checks).
type ConflictError struct {
	Where string
	Size  uint64
	Note  []byte
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s holds another checkpoint of size %d", e.Where, e.Size)
}

// noteSigner signs checkpoint notes with an ed25519 audit key, through
// sigstore like every other signature of the log.
type noteSigner struct {
	key  *SigningKey
	name string
	hash uint32
}

func newNoteSigner(key *SigningKey, origin string) (*noteSigner, error) {
	pub, ok := key.pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("audit: checkpoints are signed notes, which need an ed25519 key; %s is %s", key, key.alg)
	}
	v, err := noteVerifier(origin, pub)
	if err != nil {
		return nil, err
	}
	return &noteSigner{key: key, name: origin, hash: v.KeyHash()}, nil
}

func (s *noteSigner) Name() string                    { return s.name }
func (s *noteSigner) KeyHash() uint32                 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return s.key.sign(msg) }

func noteVerifier(origin string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint verifier: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint verifier for origin %q: %w", origin, err)
	}
	return v, nil
}

// VerifierKey is k in signed-note verifier-key form (C2SP signed-note,
// golang.org/x/mod/sumdb/note): "<origin>+<key hash>+<base64 of 0x01 and
// the ed25519 key>", the key name being the log's origin, as checkpoints
// are signed. Witnesses and note.NewVerifier take it as is. Only ed25519
// keys sign checkpoints.
func VerifierKey(origin string, k *PublicKey) (string, error) {
	pub, ok := k.ed25519()
	if !ok {
		return "", fmt.Errorf("audit: key %.12s is %s: checkpoints, and so verifier keys, need ed25519", k.ID, k.Algorithm)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return "", fmt.Errorf("audit: verifier key for origin %q: %w", origin, err)
	}
	return vkey, nil
}

// SignCheckpoint makes a signed checkpoint of (size, root).
func SignCheckpoint(key *SigningKey, origin string, size uint64, root []byte) (*Checkpoint, error) {
	if len(root) != HashSize {
		return nil, fmt.Errorf("audit: checkpoint root of %d bytes", len(root))
	}
	s, err := newNoteSigner(key, origin)
	if err != nil {
		return nil, err
	}
	body := tlog.Checkpoint{Origin: origin, Size: size, Hash: root}.Marshal()
	msg, err := note.Sign(&note.Note{Text: string(body)}, s)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return &Checkpoint{Origin: origin, Size: size, Root: bytes.Clone(root), Note: msg, KeyID: key.id}, nil
}

// ParseCheckpoint opens a signed checkpoint and returns it when a key of
// trusted (an ed25519 key, under the checkpoint's origin as name) signed it.
// The origin is not checked here: compare it with the log's.
func ParseCheckpoint(b []byte, trusted *KeySet) (*Checkpoint, error) {
	if len(b) > MaxCheckpointSize {
		return nil, fmt.Errorf("checkpoint is %d bytes (at most %d)", len(b), MaxCheckpointSize)
	}
	origin, _, ok := bytes.Cut(b, []byte("\n"))
	if !ok || len(origin) == 0 {
		return nil, errors.New("checkpoint has no origin line")
	}
	var vs []note.Verifier
	ids := map[uint32]string{}
	for _, k := range trusted.Keys() {
		pub, ok := k.ed25519()
		if !ok {
			continue
		}
		v, err := noteVerifier(string(origin), pub)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		vs = append(vs, v)
		ids[v.KeyHash()] = k.ID
	}
	n, err := note.Open(b, note.VerifierList(vs...))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return nil, errors.New("checkpoint is not signed by a trusted key")
		}
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var cp tlog.Checkpoint
	if _, err := cp.Unmarshal([]byte(n.Text)); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if len(cp.Hash) != HashSize {
		return nil, fmt.Errorf("checkpoint root is %d bytes, want %d", len(cp.Hash), HashSize)
	}
	return &Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Note: bytes.Clone(b), KeyID: ids[n.Sigs[0].Hash]}, nil
}

// CheckpointerOptions configures a Checkpointer.
type CheckpointerOptions struct {
	// Log is the log to checkpoint. Required.
	Log *Log
	// Sinks receive each checkpoint outside the database.
	Sinks []Sink
	// Health records each sink's outcomes. Share one between the
	// checkpointers of a process (one per leadership term) so the health
	// outlives them. Default: a new one, unobserved.
	Health *SinkMonitor
	// Superseded reports whether a tree was acknowledged as rolled back
	// by the admins (RollbackWatch.Superseded): a sink still holding it
	// keeps it as evidence, and it no longer stops the checkpoints of the
	// log they accepted. Nil: none is.
	Superseded func(t TreeHead) bool
	// Recorded, when not nil, is called with each checkpoint once the
	// database records it (or held it already) and its sinks had it. It
	// must not block: Witnesser.Notify.
	Recorded func(*Checkpoint)
	// Interval is how often Run writes a checkpoint when the log grew.
	// Default 1 minute.
	Interval time.Duration
	// Logger receives events. Default: discard.
	Logger *slog.Logger
}

func (o *CheckpointerOptions) setDefaults() {
	if o.Interval == 0 {
		o.Interval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Health == nil {
		o.Health = NewSinkMonitor(nil)
	}
}

func (o *CheckpointerOptions) validate() error {
	if o.Log == nil {
		return errors.New("audit: checkpointer options: Log is required")
	}
	if o.Interval < time.Second {
		return fmt.Errorf("audit: checkpointer options: interval %s is below 1s", o.Interval)
	}
	names := map[string]bool{}
	for i, s := range o.Sinks {
		if s == nil {
			return fmt.Errorf("audit: checkpointer options: sink %d is nil", i)
		}
		if names[s.Name()] {
			return fmt.Errorf("audit: checkpointer options: two sinks are named %q", s.Name())
		}
		names[s.Name()] = true
	}
	return nil
}

// Checkpointer signs checkpoints of the committed log, records them in the
// database and publishes them to its sinks, periodically (Run) and on
// demand (Checkpoint). Before publishing to a sink it checks that the log
// is consistent with what that sink last received, so a database rolled
// back or rewritten behind writ's back is reported instead of published
// over.
//
// Sinks are independent: one that cannot be read, holds a checkpoint writ
// cannot verify, or refuses the checkpoint is reported (SinkResult,
// SinkMonitor) while the database and the other sinks still get it. The
// exception is a sink proving the log does not contain a checkpoint the
// log's own key signed (ErrNotContained): then the log is at fault, and
// its checkpoint is neither recorded nor published anywhere, so a
// rewritten history does not spread to the other destinations.
type Checkpointer struct {
	opts CheckpointerOptions
}

// NewCheckpointer returns a Checkpointer.
func NewCheckpointer(opts CheckpointerOptions) (*Checkpointer, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	for _, s := range opts.Sinks {
		opts.Health.add(s.Name())
	}
	return &Checkpointer{opts: opts}, nil
}

// Health is the checkpointer's sink monitor.
func (c *Checkpointer) Health() *SinkMonitor { return c.opts.Health }

// Checkpoint signs a checkpoint of the committed log now, records it and
// publishes it to every sink that is consistent with it.
//
// The checkpoint is nil when nothing was recorded: the log could not be
// read or signed, the database refused the record, or a sink proves the
// log is not what was published (errors.Is(err, ErrNotContained)).
// Otherwise the checkpoint is recorded, cp.Sinks tells each sink's
// outcome, and err joins the failing sinks' *SinkErrors (nil when every
// sink holds it).
func (c *Checkpointer) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	l := c.opts.Log
	st := l.opts.Store
	origin, err := l.Origin(ctx)
	if err != nil {
		return nil, err
	}
	head, err := l.Head(ctx)
	if err != nil {
		return nil, err
	}
	key := l.Key()
	cp, err := SignCheckpoint(key, origin, head.Size, head.Root)
	if err != nil {
		return nil, err
	}
	known, err := knownKeys(ctx, st, key)
	if err != nil {
		return nil, err
	}
	results := make([]SinkResult, len(c.opts.Sinks))
	var proofs []error
	for i, s := range c.opts.Sinks {
		results[i].Sink = s.Name()
		if err := c.checkAgainst(ctx, s, known, cp); err != nil {
			results[i].Err = &SinkError{Sink: s.Name(), Err: err}
			c.report(ctx, s.Name(), results[i].Err)
			if errors.Is(err, ErrNotContained) {
				proofs = append(proofs, results[i].Err)
			}
		}
	}
	if len(proofs) > 0 {
		return nil, fmt.Errorf("audit: checkpoint %d not recorded nor published: %w", cp.Size, errors.Join(proofs...))
	}
	if err := c.record(ctx, cp); err != nil {
		return nil, err
	}
	var errs []error
	for i, s := range c.opts.Sinks {
		if results[i].Err == nil {
			if err := s.Publish(ctx, cp); err != nil {
				results[i].Err = &SinkError{Sink: s.Name(), Err: c.conflict(err, known, cp)}
			}
			c.report(ctx, s.Name(), results[i].Err)
		}
		if results[i].Err != nil {
			errs = append(errs, results[i].Err)
		}
	}
	cp.Sinks = results
	if c.opts.Recorded != nil {
		c.opts.Recorded(cp)
	}
	c.opts.Logger.InfoContext(ctx, "audit checkpoint", slog.Uint64("size", cp.Size), slog.String("root", fmt.Sprintf("%x", cp.Root)),
		slog.Int("sinks", len(c.opts.Sinks)-len(errs)), slog.Int("failed_sinks", len(errs)))
	return cp, errors.Join(errs...)
}

// record adds cp to the database's checkpoints, unless the newest recorded
// one is of the same tree already (a retry for a failing sink).
func (c *Checkpointer) record(ctx context.Context, cp *Checkpoint) error {
	st := c.opts.Log.opts.Store
	prev, err := st.LatestAuditCheckpoint(ctx)
	switch {
	case err == nil && uint64(prev.Size) == cp.Size && bytes.Equal(prev.Root, cp.Root):
		return nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := st.AddAuditCheckpoint(ctx, store.AuditCheckpoint{Size: int64(cp.Size), Root: cp.Root, Note: string(cp.Note), KeyID: cp.KeyID}); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// report records a sink's outcome and logs a change.
func (c *Checkpointer) report(ctx context.Context, sink string, err error) {
	changed := c.opts.Health.record(sink, err)
	switch {
	case errors.Is(err, ErrNotContained):
		c.opts.Logger.ErrorContext(ctx, "audit checkpoint sink proves the log was rolled back or rewritten", slog.String("sink", sink), slog.Any("error", err))
	case err != nil && changed:
		c.opts.Logger.WarnContext(ctx, "audit checkpoint sink failing", slog.String("sink", sink), slog.Any("error", err))
	case err != nil:
		c.opts.Logger.DebugContext(ctx, "audit checkpoint sink still failing", slog.String("sink", sink), slog.Any("error", err))
	case changed:
		c.opts.Logger.InfoContext(ctx, "audit checkpoint sink healthy", slog.String("sink", sink))
	}
}

// conflict tells, for a sink's refusal because it holds another checkpoint
// of the same size, whether that checkpoint proves a fork: it does when a
// key of the log signed it for the same origin.
func (c *Checkpointer) conflict(err error, known *KeySet, cp *Checkpoint) error {
	var ce *ConflictError
	if !errors.As(err, &ce) {
		return err
	}
	other, perr := ParseCheckpoint(ce.Note, known)
	switch {
	case perr != nil:
		return fmt.Errorf("%w that writ cannot verify (%v): refused, not overwritten", err, perr)
	case other.Origin != cp.Origin:
		return fmt.Errorf("%w of another log, %q: refused, not overwritten", err, other.Origin)
	case c.superseded(other):
		return fmt.Errorf("%w, a tree the admins acknowledged as rolled back: kept as evidence, not overwritten", err)
	}
	return fmt.Errorf("%w, signed by log key %.16s, with another root: %w", err, other.KeyID, ErrFork)
}

// superseded: the admins acknowledged cp's tree as rolled back.
func (c *Checkpointer) superseded(cp *Checkpoint) bool {
	return c.opts.Superseded != nil && c.opts.Superseded(TreeHead{Size: cp.Size, Root: cp.Root})
}

// knownKeys are the keys the log has used: those recorded with it and the
// current one. They verify the log's own earlier checkpoints in its sinks.
func knownKeys(ctx context.Context, st *store.Store, current *SigningKey) (*KeySet, error) {
	rows, err := st.AuditKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	ks := NewKeySet()
	for _, r := range rows {
		k, err := ParsePublicKey([]byte(r.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("audit: recorded key %.16s: %w", r.ID, err)
		}
		ks.Add(k)
	}
	k, err := NewPublicKey(current.pub)
	if err != nil {
		return nil, err
	}
	ks.Add(k)
	return ks, nil
}

// checkAgainst refuses to publish cp to s when the sink's latest
// checkpoint cannot be read or verified, or is not a prefix of cp (then
// the error is ErrNotContained).
func (c *Checkpointer) checkAgainst(ctx context.Context, s Sink, known *KeySet, cp *Checkpoint) error {
	prevNote, err := s.Latest(ctx)
	if err != nil {
		return fmt.Errorf("read its latest checkpoint: %w", err)
	}
	if prevNote == nil {
		return nil
	}
	prev, err := ParseCheckpoint(prevNote, known)
	if err != nil {
		return fmt.Errorf("its latest checkpoint cannot be verified with the log's keys (%w): refused, not overwritten", err)
	}
	if prev.Origin != cp.Origin {
		return fmt.Errorf("it holds a checkpoint of log %q, not %q: refused, not overwritten", prev.Origin, cp.Origin)
	}
	if c.superseded(prev) {
		return nil
	}
	if prev.Size > cp.Size {
		return fmt.Errorf("it holds a checkpoint of size %d but the log has %d entries: %w", prev.Size, cp.Size, ErrRollback)
	}
	p, err := c.opts.Log.ConsistencyProof(ctx, prev.Size, cp.Size)
	if err != nil {
		return fmt.Errorf("consistency proof from %d to %d: %w", prev.Size, cp.Size, err)
	}
	if err := VerifyConsistency(prev.Size, cp.Size, p, prev.Root, cp.Root); err != nil {
		return fmt.Errorf("it holds a checkpoint of size %d that the log at size %d does not extend: %w", prev.Size, cp.Size, ErrFork)
	}
	return nil
}

// Run writes a checkpoint every Interval when the log grew, until ctx ends.
// Failures are logged and retried at the next tick, growth or not: a sink
// that failed gets the checkpoint then (the database records it once).
func (c *Checkpointer) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	last := ^uint64(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		head, err := c.opts.Log.Head(ctx)
		if err != nil {
			c.opts.Logger.WarnContext(ctx, "audit checkpoint: read head", slog.Any("error", err))
			continue
		}
		if head.Size == last {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.opts.Interval)
		cp, err := c.Checkpoint(cctx)
		cancel()
		if err != nil {
			if cp == nil {
				c.opts.Logger.ErrorContext(ctx, "audit checkpoint failed", slog.Any("error", err))
			}
			continue
		}
		last = cp.Size
	}
}
