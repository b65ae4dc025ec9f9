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
}

// Errors of checkpoint consistency. Compare with errors.Is.
var (
	// ErrRollback: a published checkpoint is larger than the log.
	ErrRollback = errors.New("the log is smaller than a checkpoint it published: truncated or rolled back")
	// ErrFork: a published checkpoint is not a prefix of the log.
	ErrFork = errors.New("the log is not consistent with a checkpoint it published: history was rewritten")
)

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
}

func (o *CheckpointerOptions) validate() error {
	if o.Log == nil {
		return errors.New("audit: checkpointer options: Log is required")
	}
	if o.Interval < time.Second {
		return fmt.Errorf("audit: checkpointer options: interval %s is below 1s", o.Interval)
	}
	for i, s := range o.Sinks {
		if s == nil {
			return fmt.Errorf("audit: checkpointer options: sink %d is nil", i)
		}
	}
	return nil
}

// Checkpointer signs checkpoints of the committed log, records them in the
// database and publishes them to its sinks, periodically (Run) and on
// demand (Checkpoint). Before publishing it checks that the log is
// consistent with what each sink last received, so a database rolled back
// or rewritten behind writ's back is reported instead of published over.
type Checkpointer struct {
	opts CheckpointerOptions
}

// NewCheckpointer returns a Checkpointer.
func NewCheckpointer(opts CheckpointerOptions) (*Checkpointer, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Checkpointer{opts: opts}, nil
}

// Checkpoint signs a checkpoint of the committed log now, records it and
// publishes it. An error from one sink does not keep the others from
// receiving it; all errors are returned together.
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
	for _, s := range c.opts.Sinks {
		if err := c.checkAgainst(ctx, s, known, cp); err != nil {
			return nil, err
		}
	}
	if _, err := st.AddAuditCheckpoint(ctx, store.AuditCheckpoint{Size: int64(cp.Size), Root: cp.Root, Note: string(cp.Note), KeyID: cp.KeyID}); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var errs []error
	for _, s := range c.opts.Sinks {
		if err := s.Publish(ctx, cp); err != nil {
			errs = append(errs, fmt.Errorf("audit: publish checkpoint %d to %s: %w", cp.Size, s.Name(), err))
			continue
		}
	}
	c.opts.Logger.InfoContext(ctx, "audit checkpoint", slog.Uint64("size", cp.Size), slog.String("root", fmt.Sprintf("%x", cp.Root)), slog.Int("sinks", len(c.opts.Sinks)-len(errs)))
	return cp, errors.Join(errs...)
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

// checkAgainst refuses to publish cp when the sink's latest checkpoint is
// not a prefix of it.
func (c *Checkpointer) checkAgainst(ctx context.Context, s Sink, known *KeySet, cp *Checkpoint) error {
	prevNote, err := s.Latest(ctx)
	if err != nil {
		return fmt.Errorf("audit: read latest checkpoint of %s: %w", s.Name(), err)
	}
	if prevNote == nil {
		return nil
	}
	prev, err := ParseCheckpoint(prevNote, known)
	if err != nil {
		return fmt.Errorf("audit: latest checkpoint of %s: %w", s.Name(), err)
	}
	if prev.Origin != cp.Origin {
		return fmt.Errorf("audit: %s holds a checkpoint of log %q, not %q", s.Name(), prev.Origin, cp.Origin)
	}
	if prev.Size > cp.Size {
		return fmt.Errorf("audit: %s holds a checkpoint of size %d but the log has %d entries: %w", s.Name(), prev.Size, cp.Size, ErrRollback)
	}
	p, err := c.opts.Log.ConsistencyProof(ctx, prev.Size, cp.Size)
	if err != nil {
		return err
	}
	if err := VerifyConsistency(prev.Size, cp.Size, p, prev.Root, cp.Root); err != nil {
		return fmt.Errorf("audit: %s holds a checkpoint of size %d that the log at size %d does not extend: %w", s.Name(), prev.Size, cp.Size, ErrFork)
	}
	return nil
}

// Run writes a checkpoint every Interval when the log grew, until ctx ends.
// Failures are logged and retried at the next tick.
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
			// Retried at the next tick, growth or not.
			c.opts.Logger.ErrorContext(ctx, "audit checkpoint failed", slog.Any("error", err))
			continue
		}
		last = cp.Size
	}
}
