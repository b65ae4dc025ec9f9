package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"

	"github.com/writ-sec/writ/internal/store"
)

// Record is one stored entry as verification reads it.
type Record struct {
	Seq       uint64
	Entry     []byte
	PrevHash  []byte
	Hash      []byte
	KeyID     string
	Signature []byte
	// Columns are the database's copies of fields of the bytes; nil for
	// export records.
	Columns *Columns
	// Proof is an export record's inclusion proof in VerifyOptions.Proved.
	Proof [][]byte
	// Omitted marks an entry a filtered export left out: its bytes do not
	// match the export's filter, and it carries no readable copy.
	Omitted bool
	// Readable is the decoded entry an export carries beside the bytes;
	// when present it must say what the bytes say.
	Readable []byte

	// line is an export line not decoded yet: the workers decode it.
	line []byte
}

// Columns are the filter columns stored beside an entry's bytes.
type Columns struct {
	At      time.Time
	ActorID string
	Event   string
}

// Source yields records in seq order: Records calls emit with a chunk at a
// time (the chunk is then emit's) and returns when there are no more.
type Source interface {
	Records(ctx context.Context, emit func([]Record) error) error
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Trusted are the keys supplied out of band. Required unless
	// SkipSignatures. Keys introduced by a rotation entry signed by a
	// trusted key become trusted from that entry on.
	Trusted *KeySet
	// Candidates are untrusted keys (recorded with the log or embedded in an
	// export) used only to check signatures ahead of the in-order pass;
	// whether the key is trusted is decided in order.
	Candidates *KeySet
	// Origin is the log's origin: rotation proofs and checkpoints name it.
	Origin string
	// Checkpoints are signed checkpoint notes (given by the user, recorded
	// with the log or in an export). The log must contain each: it must be
	// at least as large, and its root at the checkpoint's size must match.
	// A checkpoint counts only if a trusted key signed it.
	Checkpoints [][]byte
	// Proved is the checkpoint (one of Checkpoints) of an export whose
	// selected entries each carry an inclusion proof in it; each proof is
	// checked.
	Proved []byte
	// SkipSignatures checks hashes and tree only. Without Trusted keys
	// then, checkpoints are compared by root but their signatures are not
	// checked.
	SkipSignatures bool
	// Workers bound the goroutines decoding, hashing and checking
	// signatures. Default GOMAXPROCS.
	Workers int

	// filter is a filtered export's: an entry is selected exactly when
	// its bytes match it, else omitted.
	filter *entryFilter
}

func (o *VerifyOptions) setDefaults() {
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Candidates == nil {
		o.Candidates = NewKeySet()
	}
	if o.Trusted == nil {
		o.Trusted = NewKeySet()
	}
}

func (o *VerifyOptions) validate() error {
	if !o.SkipSignatures && o.Trusted.Len() == 0 {
		return errors.New("audit: verify: no trusted keys")
	}
	if o.Workers < 1 {
		return fmt.Errorf("audit: verify: workers %d must be positive", o.Workers)
	}
	return nil
}

// Finding is the first problem verification found.
type Finding struct {
	// Seq is the first bad sequence number; -1 when the problem is not one
	// entry's (a checkpoint's signature, say).
	Seq    int64
	Reason string
}

func (f *Finding) Error() string {
	if f.Seq < 0 {
		return f.Reason
	}
	return fmt.Sprintf("seq %d: %s", f.Seq, f.Reason)
}

// Report is what verification established.
type Report struct {
	// Entries is the number of entries verified; for a complete log it is
	// its size. For a filtered export it counts the selected entries, and
	// Omitted the ones it left out (verified all the same).
	Entries, Omitted uint64
	// Size and Root are the tree the entries form.
	Size uint64
	Root []byte
	// Signatures is the number of signatures verified.
	Signatures uint64
	// Checkpoints are the sizes of the checkpoints the log was proved
	// consistent with.
	Checkpoints []uint64
	// Bad is the first problem; nil when everything verified.
	Bad *Finding
	// Checkpoint is, for an export, the checkpoint note it carries (with
	// the witnesses' cosignatures of its tree); nil when none.
	Checkpoint []byte
}

type sigState uint8

const (
	sigUnchecked sigState = iota
	sigOK
	sigBad
	sigNoKey
)

// decoded is what the in-order stage needs of an entry's bytes.
type decoded struct {
	Seq     uint64
	Time    time.Time
	Actor   struct{ ID string }
	Event   string
	Payload []byte
}

// checked is what the parallel stage learned of one record.
type checked struct {
	entry     decoded
	decodeErr error
	hashOK    bool
	leaf      []byte
	leafHash  [HashSize]byte
	sig       sigState
	sigKeyID  string
	// readableBad: the export's readable copy says something else.
	readableBad bool
	// lineErr: the export line does not decode.
	lineErr error
}

type chunk struct {
	recs []Record
	res  []checked
	done chan struct{}
}

// pendingCheckpoint is a checkpoint waiting for the log to reach its size.
type pendingCheckpoint struct {
	note []byte
	cp   tlog.Checkpoint
}

// trustedKey is a key the in-order pass trusts, and from when to when.
type trustedKey struct {
	*PublicKey
	retiredAfter int64 // -1: not retired; else the seq of the rotation that retired it
}

// Verify checks records from src: order and continuity, the hash chain,
// the canonical bytes, signatures by trusted keys (following rotations),
// the Merkle tree, and the given checkpoints. Problems in the log are
// reported in the Report (Bad), with the first bad sequence number; an
// error means verification could not run (I/O, bad options).
//
// Decoding, hashing and signature checks run on Workers goroutines; the
// in-order pass keeps a compact range, so memory does not grow with the
// log.
func Verify(ctx context.Context, src Source, opts VerifyOptions) (*Report, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	v, err := newVerifier(opts)
	if err != nil {
		return nil, err
	}
	// Checkpoints of the empty tree.
	if f := v.checkpointsAt(0); f != nil {
		v.report.Bad = f
		return &v.report, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	work := make(chan *chunk, opts.Workers*2)
	ordered := make(chan *chunk, opts.Workers*2)
	srcErr := make(chan error, 1)
	go func() {
		defer close(work)
		defer close(ordered)
		srcErr <- src.Records(ctx, func(recs []Record) error {
			c := &chunk{recs: recs, res: make([]checked, len(recs)), done: make(chan struct{})}
			select {
			case work <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case ordered <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}()
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Go(func() {
			var scratch []byte
			for c := range work {
				for i := range c.recs {
					scratch = v.check(&c.recs[i], &c.res[i], scratch)
				}
				close(c.done)
			}
		})
	}
	defer wg.Wait()

	for c := range ordered {
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		for i := range c.recs {
			if f := v.next(&c.recs[i], &c.res[i]); f != nil {
				cancel()
				v.report.Bad = f
				return &v.report, nil
			}
		}
	}
	if err := <-srcErr; err != nil {
		return nil, fmt.Errorf("audit: verify: read entries: %w", err)
	}
	if f := v.finish(); f != nil {
		v.report.Bad = f
	}
	return &v.report, nil
}

type verifier struct {
	opts   VerifyOptions
	report Report

	// in-order state
	n        uint64 // next expected seq (complete log)
	lastHash Hash
	lastTime time.Time
	tree     *compact.Range
	trust    map[string]*trustedKey
	pending  []pendingCheckpoint
	proved   *tlog.Checkpoint
}

func newVerifier(opts VerifyOptions) (*verifier, error) {
	v := &verifier{opts: opts, tree: rangeFactory.NewEmptyRange(0), trust: map[string]*trustedKey{}}
	for _, k := range opts.Trusted.Keys() {
		v.trust[k.ID] = &trustedKey{PublicKey: k, retiredAfter: -1}
	}
	for _, note := range opts.Checkpoints {
		cp, err := unverifiedCheckpoint(note)
		if err != nil {
			return nil, fmt.Errorf("audit: verify: %w", err)
		}
		v.pending = append(v.pending, pendingCheckpoint{note: note, cp: cp})
	}
	if opts.Proved != nil {
		cp, err := unverifiedCheckpoint(opts.Proved)
		if err != nil {
			return nil, fmt.Errorf("audit: verify: %w", err)
		}
		v.proved = &cp
		// The proofs count only if the checkpoint itself is checked: its
		// signature, and its root against the replayed tree.
		if !slices.ContainsFunc(opts.Checkpoints, func(n []byte) bool { return bytes.Equal(n, opts.Proved) }) {
			v.pending = append(v.pending, pendingCheckpoint{note: opts.Proved, cp: cp})
		}
	}
	sort.SliceStable(v.pending, func(i, j int) bool { return v.pending[i].cp.Size < v.pending[j].cp.Size })
	return v, nil
}

// unverifiedCheckpoint reads a checkpoint's body; its signature is checked
// when it matters, with the keys trusted by then.
func unverifiedCheckpoint(note []byte) (tlog.Checkpoint, error) {
	var cp tlog.Checkpoint
	body, _, ok := bytes.Cut(note, []byte("\n\n"))
	if !ok {
		return cp, errors.New("checkpoint is not a signed note")
	}
	if _, err := cp.Unmarshal(append(body, '\n')); err != nil {
		return cp, fmt.Errorf("checkpoint: %w", err)
	}
	if len(cp.Hash) != HashSize {
		return cp, fmt.Errorf("checkpoint root is %d bytes", len(cp.Hash))
	}
	return cp, nil
}

// check is the parallel stage: everything about one record that does not
// depend on the records before it.
func (v *verifier) check(r *Record, c *checked, scratch []byte) []byte {
	if r.line != nil {
		if c.lineErr = r.parseLine(); c.lineErr != nil {
			return scratch
		}
	}
	e, err := Decode(r.Entry)
	c.entry, c.decodeErr = decoded{Seq: e.Seq, Time: e.Time, Event: string(e.Event), Payload: e.Payload}, err
	c.entry.Actor.ID = e.Actor.ID
	if len(r.Readable) > 0 && !bytes.Equal(r.Readable, r.Entry) {
		// Compared in canonical form, so a pretty-printed export still
		// verifies.
		canon, err := CanonicalJSON(r.Readable)
		c.readableBad = err != nil || !bytes.Equal(canon, r.Entry)
	}
	// Both hashes are over one prefix byte or hash and the entry: one
	// scratch buffer per worker, no allocation per entry.
	scratch = append(append(scratch[:0], 0), r.Entry...)
	c.leafHash = sha256.Sum256(scratch) // RFC 6962 leaf: SHA-256(0x00 || entry)
	c.leaf = c.leafHash[:]
	if len(r.PrevHash) == HashSize {
		scratch = append(append(scratch[:0], r.PrevHash...), r.Entry...)
		h := sha256.Sum256(scratch) // ChainHash
		c.hashOK = bytes.Equal(h[:], r.Hash)
	}
	if v.opts.SkipSignatures || !c.hashOK {
		return scratch
	}
	k, ok := v.opts.Trusted.Get(r.KeyID)
	if !ok {
		k, ok = v.opts.Candidates.Get(r.KeyID)
	}
	if !ok {
		c.sig = sigNoKey
		return scratch
	}
	h, _ := hashFrom(r.Hash)
	c.sigKeyID = k.ID
	if err := k.verify(SignedMessage(h), r.Signature); err != nil {
		c.sig = sigBad
		return scratch
	}
	c.sig = sigOK
	return scratch
}

func bad(seq uint64, format string, args ...any) *Finding {
	return &Finding{Seq: int64(seq), Reason: fmt.Sprintf(format, args...)}
}

// next is the in-order stage.
func (v *verifier) next(r *Record, c *checked) *Finding {
	if c.lineErr != nil {
		return bad(v.n, "the export's line for this entry is malformed: %v", c.lineErr)
	}
	seq := r.Seq
	switch {
	case seq > v.n && v.n == 0:
		return bad(0, "entry missing: the log starts at seq %d", seq)
	case seq > v.n:
		return bad(v.n, "entry missing: the log jumps from seq %d to seq %d", v.n-1, seq)
	case seq < v.n:
		return bad(seq, "entry out of order or repeated after seq %d", v.n-1)
	}
	if c.decodeErr != nil {
		return bad(seq, "entry bytes are not a valid entry: %v", c.decodeErr)
	}
	if c.entry.Seq != seq {
		return bad(seq, "entry stored at seq %d says it is seq %d: entries were moved or swapped", seq, c.entry.Seq)
	}
	if c.readableBad {
		return bad(seq, "the readable copy of the entry does not match its bytes")
	}
	prev, ok := hashFrom(r.PrevHash)
	if !ok {
		return bad(seq, "prev_hash is %d bytes", len(r.PrevHash))
	}
	expectPrev := v.lastHash
	if seq == 0 {
		expectPrev = GenesisHash
	}
	if prev != expectPrev {
		if seq == 0 {
			return bad(seq, "prev_hash of the first entry is not the genesis hash (32 zero bytes)")
		}
		return bad(seq, "prev_hash is not the hash of entry %d: the chain is broken here (an entry before it was removed, altered or reordered)", seq-1)
	}
	if !c.hashOK {
		return bad(seq, "the entry's bytes do not hash to its stored hash: the entry was altered")
	}
	if col := r.Columns; col != nil {
		switch {
		case !col.At.Equal(c.entry.Time):
			return bad(seq, "column at (%s) disagrees with the entry's time (%s)", col.At.UTC().Format(TimeLayout), c.entry.Time.Format(TimeLayout))
		case col.ActorID != c.entry.Actor.ID:
			return bad(seq, "column actor_id (%q) disagrees with the entry's actor (%q)", col.ActorID, c.entry.Actor.ID)
		case col.Event != c.entry.Event:
			return bad(seq, "column event (%q) disagrees with the entry's event (%q)", col.Event, c.entry.Event)
		}
	}
	if f := v.checkFilter(r, c); f != nil {
		return f
	}
	if c.entry.Time.Before(v.lastTime) {
		return bad(seq, "entry time %s is before the previous entry's %s", c.entry.Time.Format(TimeLayout), v.lastTime.Format(TimeLayout))
	}
	if !v.opts.SkipSignatures {
		if f := v.checkSignature(r, c); f != nil {
			return f
		}
	}
	if v.proved != nil && !r.Omitted {
		if seq >= v.proved.Size {
			return bad(seq, "entry is beyond the checkpoint (size %d) it should be proved in", v.proved.Size)
		}
		if err := VerifyInclusion(r.Entry, seq, v.proved.Size, r.Proof, v.proved.Hash); err != nil {
			return bad(seq, "inclusion proof in the checkpoint of size %d does not verify: %v", v.proved.Size, err)
		}
	}
	if err := v.tree.Append(c.leaf, nil); err != nil {
		return bad(seq, "tree: %v", err)
	}
	h, _ := hashFrom(r.Hash)
	v.lastHash, v.lastTime = h, c.entry.Time
	v.n = seq + 1
	if r.Omitted {
		v.report.Omitted++
	} else {
		v.report.Entries++
	}
	return v.checkpointsAt(v.n)
}

// checkFilter checks that a filtered export selected exactly the entries
// whose bytes match its filter.
func (v *verifier) checkFilter(r *Record, c *checked) *Finding {
	f := v.opts.filter
	if f == nil {
		if r.Omitted {
			return bad(r.Seq, "the entry is marked as left out of an export that has no filter")
		}
		return nil
	}
	match := f.match(c.entry.Time, c.entry.Actor.ID, c.entry.Event)
	switch {
	case r.Omitted && match:
		return bad(r.Seq, "the entry matches the export's filter (%s) but the export left it out", f)
	case !r.Omitted && !match:
		return bad(r.Seq, "the entry is in an export filtered on %s, but its bytes say actor %q, event %q, time %s",
			f, c.entry.Actor.ID, c.entry.Event, c.entry.Time.Format(TimeLayout))
	}
	return nil
}

func (v *verifier) checkSignature(r *Record, c *checked) *Finding {
	seq := r.Seq
	k, ok := v.trust[r.KeyID]
	if !ok {
		return bad(seq, "signed by key %s, which is not trusted", r.KeyID)
	}
	if k.retiredAfter >= 0 && int64(seq) > k.retiredAfter {
		return bad(seq, "signed by key %s, which the rotation at seq %d retired", r.KeyID, k.retiredAfter)
	}
	if !k.validAt(c.entry.Time) {
		return bad(seq, "signed by key %s outside its validity (entry time %s)", r.KeyID, c.entry.Time.Format(TimeLayout))
	}
	switch {
	case c.sig == sigOK && c.sigKeyID == k.ID:
	case c.sig == sigBad && c.sigKeyID == k.ID:
		return bad(seq, "signature does not verify with key %s", r.KeyID)
	default:
		h, _ := hashFrom(r.Hash)
		if err := k.verify(SignedMessage(h), r.Signature); err != nil {
			return bad(seq, "signature does not verify with key %s", r.KeyID)
		}
	}
	v.report.Signatures++
	if c.entry.Event == string(EventKeyRotated) {
		next, err := parseRotation(c.entry.Payload, v.opts.Origin, r.KeyID)
		if err != nil {
			return bad(seq, "%v", err)
		}
		k.retiredAfter = int64(seq)
		if _, ok := v.trust[next.ID]; !ok {
			v.trust[next.ID] = &trustedKey{PublicKey: next, retiredAfter: -1}
		}
	}
	return nil
}

// trustedKeys is the trust reached so far, for checkpoint signatures.
func (v *verifier) trustedKeys() *KeySet {
	ks := NewKeySet()
	for _, k := range v.trust {
		ks.Add(k.PublicKey)
	}
	return ks
}

// checkpointsAt checks the checkpoints of size n against the tree of the
// first n entries.
func (v *verifier) checkpointsAt(n uint64) *Finding {
	for len(v.pending) > 0 && v.pending[0].cp.Size <= n {
		p := v.pending[0]
		v.pending = v.pending[1:]
		if f := v.checkpointTrusted(p); f != nil {
			return f
		}
		root, err := rootOf(v.tree)
		if err != nil {
			return &Finding{Seq: -1, Reason: fmt.Sprintf("tree: %v", err)}
		}
		if !bytes.Equal(root, p.cp.Hash) {
			// Every entry verified on its own, so whoever rewrote them
			// held a trusted key; only the checkpoint shows it.
			return &Finding{Seq: -1, Reason: fmt.Sprintf(
				"the first %d entries do not match the trusted checkpoint of size %d (root %x, checkpoint says %x): the log was rewritten before seq %d",
				n, p.cp.Size, root, p.cp.Hash, n)}
		}
		v.report.Checkpoints = append(v.report.Checkpoints, p.cp.Size)
	}
	return nil
}

func (v *verifier) checkpointTrusted(p pendingCheckpoint) *Finding {
	if v.opts.SkipSignatures && v.opts.Trusted.Len() == 0 {
		// Hashes and tree only, and no keys to check signatures with:
		// the checkpoint's root is compared, its signature is not.
		if v.opts.Origin != "" && p.cp.Origin != v.opts.Origin {
			return &Finding{Seq: -1, Reason: fmt.Sprintf("checkpoint of size %d is for log %q, not this log (%q)", p.cp.Size, p.cp.Origin, v.opts.Origin)}
		}
		return nil
	}
	cp, err := ParseCheckpoint(p.note, v.trustedKeys())
	if err != nil {
		return &Finding{Seq: -1, Reason: fmt.Sprintf("checkpoint of size %d: %v", p.cp.Size, err)}
	}
	if v.opts.Origin != "" && cp.Origin != v.opts.Origin {
		return &Finding{Seq: -1, Reason: fmt.Sprintf("checkpoint of size %d is for log %q, not this log (%q)", cp.Size, cp.Origin, v.opts.Origin)}
	}
	return nil
}

// finish checks what only the end of the log can show.
func (v *verifier) finish() *Finding {
	if len(v.pending) > 0 {
		p := v.pending[len(v.pending)-1]
		if f := v.checkpointTrusted(p); f != nil {
			return f
		}
		return bad(v.n, "the log has %d entries but a checkpoint of size %d exists: entries %d to %d are missing (the log was truncated or rolled back)",
			v.n, p.cp.Size, v.n, p.cp.Size-1)
	}
	root, err := rootOf(v.tree)
	if err != nil {
		return &Finding{Seq: -1, Reason: fmt.Sprintf("tree: %v", err)}
	}
	v.report.Size, v.report.Root = v.n, root
	return nil
}

// dbSource streams the log in seq order from one query.
type dbSource struct {
	st    *store.Store
	chunk int
}

func (s *dbSource) Records(ctx context.Context, emit func([]Record) error) error {
	return s.st.ScanAuditEntries(ctx, 0, s.chunk, func(rows []store.AuditEntry) error {
		out := make([]Record, len(rows))
		cols := make([]Columns, len(rows))
		for i, r := range rows {
			cols[i] = Columns{At: r.At, ActorID: r.ActorID, Event: r.Event}
			out[i] = Record{
				Seq: uint64(r.Seq), Entry: r.Entry, PrevHash: r.PrevHash, Hash: r.Hash, KeyID: r.KeyID, Signature: r.Signature,
				Columns: &cols[i],
			}
		}
		return emit(out)
	})
}

// verifyChunk is how many entries travel together through verification.
const verifyChunk = 1024

// VerifyDatabase verifies the log in st as of one snapshot. The checkpoint
// of the largest size recorded with the log is checked along with
// opts.Checkpoints; the keys recorded with the log serve as candidates
// (never as trusted keys).
func VerifyDatabase(ctx context.Context, st *store.Store, opts VerifyOptions) (*Report, error) {
	var rep *Report
	err := st.AuditSnapshot(ctx, func(st *store.Store) error {
		origin, err := st.AuditOrigin(ctx)
		if err != nil {
			return err
		}
		if opts.Origin == "" {
			opts.Origin = origin
		}
		rows, err := st.AuditKeys(ctx)
		if err != nil {
			return err
		}
		if opts.Candidates == nil {
			opts.Candidates = NewKeySet()
		}
		for _, r := range rows {
			// A recorded key that does not parse can only fail the
			// entries it signed, which the in-order pass reports.
			if k, err := ParsePublicKey([]byte(r.PublicKey)); err == nil && k.ID == r.ID {
				opts.Candidates.Add(k)
			}
		}
		cp, err := st.LatestAuditCheckpoint(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			opts.Checkpoints = append(append([][]byte(nil), opts.Checkpoints...), []byte(cp.Note))
		}
		rep, err = Verify(ctx, &dbSource{st: st, chunk: verifyChunk}, opts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: verify database: %w", err)
	}
	return rep, nil
}
