package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/writ-sec/writ/internal/store"
)

// LogOptions configures a Log.
type LogOptions struct {
	// Store is the database. Required.
	Store *store.Store
	// Key signs entries and checkpoints. Required.
	Key *SigningKey
	// Logger receives events. Default: discard.
	Logger *slog.Logger
	// SignWorkers bounds the goroutines signing one batch. Default
	// GOMAXPROCS.
	SignWorkers int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o *LogOptions) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SignWorkers == 0 {
		o.SignWorkers = runtime.GOMAXPROCS(0)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o *LogOptions) validate() error {
	if o.Store == nil {
		return errors.New("audit: log options: Store is required")
	}
	if o.Key == nil {
		return errors.New("audit: log options: Key is required")
	}
	if o.Store.InTx() {
		return errors.New("audit: log options: Store must be the pool, not a transaction")
	}
	if o.SignWorkers < 1 {
		return fmt.Errorf("audit: log options: SignWorkers %d must be positive", o.SignWorkers)
	}
	return nil
}

// LogValue logs the options without key material.
func (o LogOptions) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("key", o.Key), slog.Int("sign_workers", o.SignWorkers))
}

// Log appends to the audit log and reads its tree.
type Log struct {
	opts LogOptions

	mu  sync.RWMutex // guards key; see RotateKey
	key *SigningKey

	originMu sync.Mutex
	origin   string
}

// NewLog returns a Log.
func NewLog(opts LogOptions) (*Log, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Log{opts: opts, key: opts.Key}, nil
}

// Key is the key new entries are signed with.
func (l *Log) Key() *SigningKey {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.key
}

// Store is the log's database.
func (l *Log) Store() *store.Store { return l.opts.Store }

// Origin is the log's origin, the first line of its checkpoints.
func (l *Log) Origin(ctx context.Context) (string, error) {
	l.originMu.Lock()
	defer l.originMu.Unlock()
	if l.origin == "" {
		o, err := l.opts.Store.AuditOrigin(ctx)
		if err != nil {
			return "", fmt.Errorf("audit: %w", err)
		}
		l.origin = o
	}
	return l.origin, nil
}

// Receipt acknowledges an appended entry.
type Receipt struct {
	Seq  uint64
	Hash Hash
	Time time.Time
}

// ErrReservedEvent is returned for an entry in the "audit." namespace,
// which only the log itself writes.
var ErrReservedEvent = errors.New(`audit: events named "audit.*" are written by the log itself`)

// Append appends entries inside the caller's transaction, so a state change
// and its audit entry commit together or not at all. tx is a Store from
// store.Tx; given the pool instead, Append commits the entries in a
// transaction of its own. The transaction holds the log's append lock from
// here until it ends: append late in it. It must be READ COMMITTED (the
// default).
func (l *Log) Append(ctx context.Context, tx *store.Store, entries ...Entry) ([]Receipt, error) {
	es, err := prepare(entries)
	if err != nil {
		return nil, err
	}
	return l.appendEntries(ctx, tx, es)
}

// prepare validates and canonicalizes copies of the entries.
func prepare(entries []Entry) ([]Entry, error) {
	if len(entries) == 0 {
		return nil, errors.New("audit: append: no entries")
	}
	es := make([]Entry, len(entries))
	for i, e := range entries {
		if e.Event.reserved() {
			return nil, fmt.Errorf("%w: %q", ErrReservedEvent, e.Event)
		}
		if err := e.canonicalize(); err != nil {
			return nil, err
		}
		es[i] = e
	}
	return es, nil
}

// appendEntries takes the append lock (in st's transaction, or in one of
// its own when st is the pool), chains, signs and inserts es (already
// canonical). It is the one place entries are written.
func (l *Log) appendEntries(ctx context.Context, st *store.Store, es []Entry) ([]Receipt, error) {
	var out []Receipt
	err := st.AppendAudit(ctx, func(head store.AuditHead) (store.AuditAppend, error) {
		a, recs, err := l.build(head, es)
		out = recs
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: append: %w", err)
	}
	return out, nil
}

// build computes an append from the head: it runs under the append lock.
func (l *Log) build(head store.AuditHead, es []Entry) (store.AuditAppend, []Receipt, error) {
	// Read the key under the append lock: RotateKey swaps it while holding
	// that lock, so no entry after a rotation is signed by the old key.
	key := l.Key()

	size := uint64(head.Size)
	prev, ok := hashFrom(head.LastHash)
	if !ok {
		return store.AuditAppend{}, nil, fmt.Errorf("head at size %d has a %d-byte hash", size, len(head.LastHash))
	}
	r, err := newRange(size, head.Compact)
	if err != nil {
		return store.AuditAppend{}, nil, fmt.Errorf("head: %w", err)
	}
	now := l.opts.Now().UTC().Truncate(time.Microsecond)
	// Entry times never decrease along the log, even when the clock steps
	// back: verification checks it.
	if last := head.LastAt.UTC(); now.Before(last) {
		now = last
	}
	rows := make([]store.AuditEntry, len(es))
	hashes := make([]Hash, len(es))
	var nodes []store.AuditNode
	visit := func(id compact.NodeID, h []byte) {
		if keepNode(id) {
			nodes = append(nodes, store.AuditNode{Level: int(id.Level), Index: int64(id.Index), Hash: h})
		}
	}
	for i := range es {
		e := es[i]
		e.Seq, e.Time = size+uint64(i), now
		b, err := e.Encode()
		if err != nil {
			return store.AuditAppend{}, nil, err
		}
		h := ChainHash(prev, b)
		if err := r.Append(LeafHash(b), visit); err != nil {
			return store.AuditAppend{}, nil, fmt.Errorf("tree: %w", err)
		}
		p := prev
		rows[i] = store.AuditEntry{
			Seq: int64(e.Seq), At: now, ActorID: e.Actor.ID, Event: string(e.Event),
			Entry: b, PrevHash: p[:], KeyID: key.id,
		}
		hashes[i] = h
		prev = h
	}
	sigs, err := l.signAll(key, hashes)
	if err != nil {
		return store.AuditAppend{}, nil, err
	}
	out := make([]Receipt, len(es))
	for i := range rows {
		h := hashes[i]
		rows[i].Hash, rows[i].Signature = h[:], sigs[i]
		out[i] = Receipt{Seq: uint64(rows[i].Seq), Hash: h, Time: now}
	}
	return store.AuditAppend{
		Entries: rows,
		Nodes:   nodes,
		Head:    store.AuditHead{Size: int64(size) + int64(len(es)), LastHash: prev[:], LastAt: now, Compact: packRange(r)},
		Key:     store.AuditKey{ID: key.id, Algorithm: key.alg, PublicKey: key.pubPEM},
	}, out, nil
}

// signAll signs the entry hashes, spreading a large batch over
// SignWorkers goroutines.
func (l *Log) signAll(key *SigningKey, hashes []Hash) ([][]byte, error) {
	sigs := make([][]byte, len(hashes))
	const minPerWorker = 32
	workers := min(l.opts.SignWorkers, (len(hashes)+minPerWorker-1)/minPerWorker)
	if workers <= 1 {
		for i, h := range hashes {
			s, err := key.sign(SignedMessage(h))
			if err != nil {
				return nil, fmt.Errorf("audit: %w", err)
			}
			sigs[i] = s
		}
		return sigs, nil
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	chunk := (len(hashes) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(hashes))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				s, err := key.sign(SignedMessage(hashes[i]))
				if err != nil {
					errs[w] = fmt.Errorf("audit: %w", err)
					return
				}
				sigs[i] = s
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return sigs, nil
}

// RotateKey appends an audit.key_rotated entry, signed by the current key,
// that introduces next (with next's proof of possession), and signs every
// later entry with next. Verifiers that trust the current key trust next
// from this entry on, and no longer trust the current key for any entry
// after it. Other processes appending to the same log must switch to next
// too (restart them with it): their entries signed by the old key would
// fail verification.
func (l *Log) RotateKey(ctx context.Context, actor Actor, next *SigningKey) (Receipt, error) {
	if next == nil {
		return Receipt{}, errors.New("audit: rotate key: no new key")
	}
	old := l.Key()
	if next.id == old.id {
		return Receipt{}, fmt.Errorf("audit: rotate key: %s is already the signing key", next)
	}
	origin, err := l.Origin(ctx)
	if err != nil {
		return Receipt{}, err
	}
	proofSig, err := next.sign(rotationMessage(origin, old.id, next.id))
	if err != nil {
		return Receipt{}, err
	}
	payload, err := JSON(KeyRotation{
		NewKeyAlgorithm: next.alg,
		NewKeyID:        next.id,
		NewPublicKey:    next.pubPEM,
		OldKeyID:        old.id,
		Proof:           base64.StdEncoding.EncodeToString(proofSig),
	})
	if err != nil {
		return Receipt{}, err
	}
	e := Entry{
		Actor:   actor,
		Event:   EventKeyRotated,
		Subject: Subject{Kind: SubjectKey, Name: next.id},
		Success: true,
		Payload: payload,
	}
	if err := e.canonicalize(); err != nil {
		return Receipt{}, err
	}
	var rec Receipt
	locked := false
	err = l.opts.Store.Tx(ctx, func(tx *store.Store) error {
		if err := tx.AddAuditKey(ctx, store.AuditKey{ID: next.id, Algorithm: next.alg, PublicKey: next.pubPEM}); err != nil {
			return err
		}
		out, err := l.appendEntries(ctx, tx, []Entry{e})
		if err != nil {
			return err
		}
		if k := l.Key(); k.id != old.id {
			return fmt.Errorf("audit: rotate key: the signing key changed to %s meanwhile", k)
		}
		rec = out[0]
		// Hold the key lock from here until the key is swapped: an
		// appender reads the key after taking the append lock, which this
		// transaction holds until it commits.
		l.mu.Lock()
		locked = true
		return nil
	})
	if locked {
		if err == nil {
			l.key = next
		}
		l.mu.Unlock()
	}
	if err != nil {
		return Receipt{}, err
	}
	l.opts.Logger.InfoContext(ctx, "audit signing key rotated", slog.Any("old", old), slog.Any("new", next), slog.Uint64("seq", rec.Seq))
	return rec, nil
}

// Head is the committed state of the log.
type Head struct {
	Size     uint64
	Root     []byte
	LastHash Hash
	LastTime time.Time
}

// Head reads the committed head and its root.
func (l *Log) Head(ctx context.Context) (Head, error) {
	return readHead(ctx, l.opts.Store)
}

func readHead(ctx context.Context, st *store.Store) (Head, error) {
	h, err := st.AuditHead(ctx)
	if err != nil {
		return Head{}, fmt.Errorf("audit: %w", err)
	}
	r, err := newRange(uint64(h.Size), h.Compact)
	if err != nil {
		return Head{}, fmt.Errorf("audit: head: %w", err)
	}
	root, err := rootOf(r)
	if err != nil {
		return Head{}, fmt.Errorf("audit: head: %w", err)
	}
	last, _ := hashFrom(h.LastHash)
	return Head{Size: uint64(h.Size), Root: root, LastHash: last, LastTime: h.LastAt}, nil
}

// dbNodes derives tree nodes from st.
func dbNodes(st *store.Store) *nodeReader {
	return &nodeReader{
		leaves: func(ctx context.Context, from, to uint64) ([][]byte, error) {
			return st.AuditEntryBytes(ctx, int64(from), int64(to))
		},
		stored: func(ctx context.Context, level uint, from, to uint64) ([][]byte, error) {
			return st.AuditNodes(ctx, int(level), int64(from), int64(to))
		},
	}
}

// checkSize refuses sizes beyond the committed log.
func checkSize(ctx context.Context, st *store.Store, sizes ...uint64) error {
	h, err := st.AuditHead(ctx)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for _, s := range sizes {
		if s > uint64(h.Size) {
			return fmt.Errorf("audit: tree size %d is beyond the log's %d entries", s, h.Size)
		}
	}
	return nil
}

// InclusionProof proves entry seq is in the tree of the given size.
func (l *Log) InclusionProof(ctx context.Context, seq, size uint64) ([][]byte, error) {
	var p [][]byte
	err := l.opts.Store.AuditSnapshot(ctx, func(st *store.Store) error {
		if err := checkSize(ctx, st, size); err != nil {
			return err
		}
		var err error
		p, err = inclusionProof(ctx, dbNodes(st), seq, size)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: inclusion proof of %d in %d: %w", seq, size, err)
	}
	return p, nil
}

// ConsistencyProof proves the tree of size2 extends the tree of size1.
func (l *Log) ConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	var p [][]byte
	err := l.opts.Store.AuditSnapshot(ctx, func(st *store.Store) error {
		if err := checkSize(ctx, st, size1, size2); err != nil {
			return err
		}
		var err error
		p, err = consistencyProof(ctx, dbNodes(st), size1, size2)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof %d..%d: %w", size1, size2, err)
	}
	return p, nil
}

// RootAt is the root of the tree of the given size, from stored nodes.
func (l *Log) RootAt(ctx context.Context, size uint64) ([]byte, error) {
	var root []byte
	err := l.opts.Store.AuditSnapshot(ctx, func(st *store.Store) error {
		if err := checkSize(ctx, st, size); err != nil {
			return err
		}
		var err error
		root, err = rootAt(ctx, dbNodes(st), size)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: root at %d: %w", size, err)
	}
	return root, nil
}
