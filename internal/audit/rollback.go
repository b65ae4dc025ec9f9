package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// The running server's guard against a log rolled back, truncated or
// forked behind its back (docs/audit.md, "Rollback hold"). The log in the
// database must contain every tree the server knows of: the checkpoint in
// the directory sink's latest file, and the largest tree this process saw
// itself (kept in memory, so a rollback during the run is seen even if the
// file were rolled back too). Containment is computed with the log's own
// tree (rootAt, as CheckCheckpoint does).

// AckFile is the file, in the checkpoint directory, where acknowledged
// rollbacks are recorded: one JSON object a line, each saying which
// checkpoint the log no longer contains and the tree the admins accepted in
// its place. It lives next to the checkpoints, outside the database, so a
// database operator cannot acknowledge a rollback by writing rows.
const AckFile = "rollback-acknowledged"

// TreeHead is a tree size and root.
type TreeHead struct {
	Size uint64 `json:"size"`
	Root []byte `json:"root"`
}

func (t TreeHead) String() string { return fmt.Sprintf("%d entries, root %x", t.Size, t.Root) }

// MarshalJSON writes the root in hex.
func (t TreeHead) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Size uint64 `json:"size"`
		Root string `json:"root"`
	}{t.Size, hex.EncodeToString(t.Root)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *TreeHead) UnmarshalJSON(b []byte) error {
	var v struct {
		Size uint64 `json:"size"`
		Root string `json:"root"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	root, err := hex.DecodeString(v.Root)
	if err != nil || len(root) != HashSize {
		return fmt.Errorf("tree root %q is not %d hex bytes", v.Root, HashSize)
	}
	t.Size, t.Root = v.Size, root
	return nil
}

// Rollback is a tree the server knows of that the log no longer contains.
type Rollback struct {
	// Log is the log in the database when it was seen.
	Log TreeHead
	// Expected is the tree it should contain, and Source where it is known
	// from (the checkpoint file's path, or this server's memory).
	Expected TreeHead
	Source   string
	// Err is ErrRollback (the log is shorter), ErrFork (as long, other
	// entries) or ErrTampered (an entry fails verification: Finding says
	// which and why).
	Err     error
	Finding string
}

// ErrTampered is a Rollback's Err when the log still contains every tree
// the server knows of by its stored hashes, but verifying the entries
// themselves (hash of the bytes, chain, signature, key, tree) fails: an
// entry was rewritten, removed or reordered in place.
var ErrTampered = errors.New("an audit entry fails verification: the log was changed in place")

// Reason is the one line /readyz, the status and the log say.
func (r *Rollback) Reason() string {
	if errors.Is(r.Err, ErrTampered) {
		return fmt.Sprintf("audit log tampered: %s (the log has %d entries; %s)", r.Finding, r.Log.Size, r.Source)
	}
	how := "rolled back"
	if errors.Is(r.Err, ErrFork) {
		how = "forked"
	}
	return fmt.Sprintf("audit log %s: the log has %d entries, %s has %d with root %x", how, r.Log.Size, r.Source, r.Expected.Size, r.Expected.Root)
}

// Key names the expected tree (size:root), what a hold is about.
func (r *Rollback) Key() string {
	if errors.Is(r.Err, ErrTampered) {
		sum := sha256.Sum256([]byte(r.Finding))
		return fmt.Sprintf("tampered:%x:%d:%x", sum[:8], r.Expected.Size, r.Expected.Root)
	}
	return fmt.Sprintf("%d:%x", r.Expected.Size, r.Expected.Root)
}

// AckRecord is one line of AckFile.
type AckRecord struct {
	// Replaced is the checkpoint file's tree when the admins acknowledged
	// (from then on the server compares with Base instead of it); Missing
	// the tree the log was found not to contain; Base the log the admins
	// accepted.
	Replaced TreeHead  `json:"replaced"`
	Missing  TreeHead  `json:"missing"`
	Base     TreeHead  `json:"base"`
	Hold     int64     `json:"hold"`
	By       []string  `json:"by"`
	At       time.Time `json:"at"`
	// Finding is, for a log found tampered, the verification finding the
	// admins accepted: the same finding does not hold the server again.
	Finding string `json:"finding,omitempty"`
	// Retired are the directory's per-size checkpoints of the log that
	// was, moved (kept, not deleted) under RetiredDir so the accepted log
	// can publish its own checkpoints of those sizes.
	Retired []string `json:"retired,omitempty"`
}

// RetiredDir is the subdirectory of the checkpoint directory where an
// acknowledgement keeps the per-size checkpoints of the log that was:
// RetiredDir/hold-ID/checkpoint.SIZE.
const RetiredDir = "rolled-back"

// RollbackWatch keeps what the server knows of the log and checks the
// database against it. Safe for concurrent use.
type RollbackWatch struct {
	st  *store.Store
	dir string

	mu     sync.Mutex
	seen   *TreeHead // the largest tree seen, or the acknowledged base
	held   *Rollback // the rollback last found, until acknowledged
	verify func(context.Context) (*Report, error)
	// accepted are the tamper findings acknowledged (with dir, also in
	// AckFile).
	accepted map[string]bool
	// acked are the holds acknowledged by this process (with dir, every
	// hold ever acknowledged is also in AckFile): a hold is acknowledged
	// once (HoldAcknowledged).
	acked map[int64]bool
	// epoch counts the changes of held and of the base: a verification
	// that ran across one is stale (it may have read the log a rollback
	// found, before the admins accepted what replaced it).
	epoch uint64
}

// SetVerifier makes Scrub verify the whole log with verify (the server's
// trusted keys; VerifyDatabase).
func (w *RollbackWatch) SetVerifier(verify func(context.Context) (*Report, error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.verify = verify
}

// Scrub verifies every entry of the log (Check compares only trees, from
// the stored hashes): a byte flipped, an actor changed, a row deleted or
// swapped in the middle, a chain recomputed or signed with a foreign key
// is found here. A failure is held like a rollback (Held) until
// acknowledged; a finding the admins acknowledged before does not hold
// again. Without a verifier, or while held, it returns Held.
func (w *RollbackWatch) Scrub(ctx context.Context) (*Rollback, error) {
	w.mu.Lock()
	verify, held, epoch := w.verify, w.held, w.epoch
	w.mu.Unlock()
	if verify == nil || held != nil {
		return held, nil
	}
	rep, err := verify(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: scrub: %w", err)
	}
	if rep.Bad == nil {
		return nil, nil
	}
	finding := rep.Bad.Error()
	if ok, err := w.acceptedFinding(finding); err != nil || ok {
		return nil, err
	}
	var head TreeHead
	err = w.st.AuditSnapshot(ctx, func(st *store.Store) error {
		h, err := readHead(ctx, st)
		switch {
		case errors.Is(err, store.ErrNotFound):
			head = TreeHead{Size: 0, Root: EmptyRoot()}
		case err != nil:
			return err
		default:
			head = TreeHead{Size: h.Size, Root: h.Root}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: scrub: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.epoch != epoch {
		return w.held, nil // stale: the next interval verifies again
	}
	expected := head
	if w.seen != nil {
		expected = *w.seen
	}
	if w.held == nil {
		w.held = &Rollback{Log: head, Expected: expected, Source: "found verifying every entry with the server's trusted keys",
			Err: ErrTampered, Finding: finding}
		w.epoch++
	}
	return w.held, nil
}

func (w *RollbackWatch) acceptedFinding(f string) (bool, error) {
	w.mu.Lock()
	ok := w.accepted[f]
	w.mu.Unlock()
	return w.recorded(ok, func(a AckRecord) bool { return a.Finding == f })
}

// recorded is known (what this process acknowledged itself) or, with a
// checkpoint directory, whether a record of AckFile matches.
func (w *RollbackWatch) recorded(known bool, match func(AckRecord) bool) (bool, error) {
	if known || w.dir == "" {
		return known, nil
	}
	acks, err := w.acks()
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(acks, match), nil
}

// NewRollbackWatch watches the log in st against the checkpoints in dir
// (the directory sink's; "" for none).
func NewRollbackWatch(st *store.Store, dir string) *RollbackWatch {
	return &RollbackWatch{st: st, dir: dir}
}

// Held is the rollback found and not acknowledged, or nil.
func (w *RollbackWatch) Held() *Rollback {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held
}

// Seen is the largest tree the log was found to contain (or the base an
// acknowledgement set), nil before the first check.
func (w *RollbackWatch) Seen() *TreeHead {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		return nil
	}
	t := *w.seen
	return &t
}

// Check compares the log in the database with the trees the server knows
// of. It returns the largest one the log does not contain (and remembers it:
// Held), or nil, when the log contains them all and its head becomes the
// tree seen. A rollback stays held until Acknowledge, whatever later checks
// find.
func (w *RollbackWatch) Check(ctx context.Context) (*Rollback, error) {
	var expect []expectation
	if w.dir != "" {
		e, err := w.fileExpectation()
		if err != nil {
			return nil, err
		}
		if e != nil {
			expect = append(expect, *e)
		}
	}
	w.mu.Lock()
	if w.seen != nil {
		expect = append(expect, expectation{TreeHead: *w.seen, source: "the tree this server saw"})
	}
	w.mu.Unlock()
	var found *Rollback
	var head TreeHead
	err := w.st.AuditSnapshot(ctx, func(st *store.Store) error {
		h, err := readHead(ctx, st)
		switch {
		case errors.Is(err, store.ErrNotFound):
			head = TreeHead{Size: 0, Root: EmptyRoot()} // every head row is gone
		case err != nil:
			return err
		default:
			head = TreeHead{Size: h.Size, Root: h.Root}
		}
		// Of the trees missing, the largest is reported.
		miss := func(e expectation, why error) {
			if found == nil || e.Size > found.Expected.Size {
				found = &Rollback{Log: head, Expected: e.TreeHead, Source: e.source, Err: why}
			}
		}
		for _, e := range expect {
			if e.Size > head.Size {
				miss(e, ErrRollback)
				continue
			}
			root, err := rootAt(ctx, dbNodes(st), e.Size)
			if errors.Is(err, errMissingNodes) {
				miss(e, ErrRollback)
				continue
			}
			if err != nil {
				return err
			}
			if !bytes.Equal(root, e.Root) {
				miss(e, ErrFork)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: rollback check: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if found != nil {
		if w.held == nil {
			w.held = found
			w.epoch++
		}
		return w.held, nil
	}
	if w.held != nil {
		return w.held, nil
	}
	if w.seen == nil || head.Size >= w.seen.Size {
		w.seen = &head
	}
	return nil, nil
}

// Acknowledge re-bases the watch on base, the log the admins accepted in
// place of what r found missing: it records in AckFile that the checkpoint
// file's tree (as it is now) is replaced by base, so that a restart
// compares with base too, takes base as the tree seen and ends the hold.
func (w *RollbackWatch) Acknowledge(r *Rollback, base TreeHead, hold int64, by []string, at time.Time) error {
	if w.dir != "" {
		replaced := r.Expected
		if t, err := w.latestTree(); err != nil {
			return err
		} else if t != nil {
			replaced = *t
		}
		retired, err := w.retire(base, hold)
		if err != nil {
			return fmt.Errorf("audit: acknowledgement: %w", err)
		}
		rec := AckRecord{Replaced: replaced, Missing: r.Expected, Base: base, Hold: hold, By: by, At: at.UTC(), Finding: r.Finding, Retired: retired}
		line, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("audit: acknowledgement: %w", err)
		}
		if err := os.MkdirAll(w.dir, 0o755); err != nil {
			return fmt.Errorf("audit: acknowledgement: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(w.dir, AckFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("audit: acknowledgement: %w", err)
		}
		_, werr := f.Write(append(line, '\n'))
		serr := f.Sync()
		if err := errors.Join(werr, serr, f.Close()); err != nil {
			return fmt.Errorf("audit: acknowledgement: %w", err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	b := base
	w.seen, w.held = &b, nil
	w.epoch++
	if w.acked == nil {
		w.acked = map[int64]bool{}
	}
	w.acked[hold] = true
	if r.Finding != "" {
		if w.accepted == nil {
			w.accepted = map[string]bool{}
		}
		w.accepted[r.Finding] = true
	}
	return nil
}

// retire moves the directory's checkpoint.SIZE files that the accepted
// log base cannot hold (every size from base's on, but base's own tree)
// to RetiredDir/hold-ID: they describe the log that was, and left in
// place they would refuse the checkpoints the accepted log publishes at
// those sizes, as proof of a fork. Moving, not deleting, keeps them as
// the evidence of the rollback. Run before the acknowledgement is
// recorded, so a failure leaves nothing half done that a retry cannot
// finish.
func (w *RollbackWatch) retire(base TreeHead, hold int64) ([]string, error) {
	entries, err := os.ReadDir(w.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	to := filepath.Join(w.dir, RetiredDir, fmt.Sprintf("hold-%d", hold))
	var moved []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "checkpoint.")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		size, err := strconv.ParseUint(rest, 10, 64)
		if err != nil || size < base.Size {
			continue
		}
		from := filepath.Join(w.dir, e.Name())
		if size == base.Size {
			b, err := readCheckpointFile(from)
			if err != nil {
				return nil, err
			}
			if body, err := unverifiedCheckpoint(b); err == nil && bytes.Equal(body.Hash, base.Root) {
				continue
			}
		}
		if err := os.MkdirAll(to, 0o755); err != nil {
			return nil, err
		}
		if err := os.Rename(from, filepath.Join(to, e.Name())); err != nil {
			return nil, err
		}
		moved = append(moved, filepath.Join(RetiredDir, filepath.Base(to), e.Name()))
	}
	if len(moved) > 0 {
		if err := errors.Join(syncDir(to), syncDir(w.dir)); err != nil {
			return nil, err
		}
	}
	return moved, nil
}

// Superseded reports whether the admins acknowledged t as rolled back: it
// is the tree an acknowledgement found missing, or the checkpoint file's
// tree it replaced. Checkpoint sinks still holding it keep it as evidence
// (CheckpointerOptions.Superseded).
func (w *RollbackWatch) Superseded(t TreeHead) bool {
	if w.dir == "" {
		return false
	}
	acks, err := w.acks()
	if err != nil {
		return false
	}
	for _, a := range acks {
		for _, x := range []TreeHead{a.Replaced, a.Missing} {
			if x.Size == t.Size && bytes.Equal(x.Root, t.Root) {
				return true
			}
		}
	}
	return false
}

// Observe records a tree this process signed or saw (a checkpoint): the
// largest becomes what the log must contain from now on. A tree the log
// does not contain is left to Check.
func (w *RollbackWatch) Observe(t TreeHead) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held == nil && (w.seen == nil || t.Size > w.seen.Size) {
		w.seen = &t
	}
}

// HoldAcknowledged reports whether the hold with this id was acknowledged
// before, by this process or (with a checkpoint directory) by any: the
// record is AckFile, which the database cannot write. The holds table
// can be edited by anyone with the database's password, so a hold
// reopened there must never end with the statements that ended it once.
func (w *RollbackWatch) HoldAcknowledged(hold int64) (bool, error) {
	w.mu.Lock()
	done := w.acked[hold]
	w.mu.Unlock()
	return w.recorded(done, func(a AckRecord) bool { return a.Hold == hold })
}

// Restore makes a rollback found before (a hold recorded in the database,
// by a previous process) held again, unless one is held already.
func (w *RollbackWatch) Restore(r *Rollback) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held == nil {
		w.held = r
		w.epoch++
	}
}

// Contains reports whether the log in the database contains t.
func (w *RollbackWatch) Contains(ctx context.Context, t TreeHead) (bool, error) {
	ok := false
	err := w.st.AuditSnapshot(ctx, func(st *store.Store) error {
		h, err := readHead(ctx, st)
		if err != nil {
			return err
		}
		if t.Size > h.Size {
			return nil
		}
		root, err := rootAt(ctx, dbNodes(st), t.Size)
		if err != nil {
			return err
		}
		ok = bytes.Equal(root, t.Root)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("audit: contains: %w", err)
	}
	return ok, nil
}

type expectation struct {
	TreeHead
	source string
}

// latestTree is the tree of the checkpoint file, nil when there is none.
// The note's signature is not what matters here: the file is this
// server's own, in its data directory.
func (w *RollbackWatch) latestTree() (*TreeHead, error) {
	path := filepath.Join(w.dir, LatestFile)
	b, err := readCheckpointFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: rollback check: %w", err)
	}
	if b == nil {
		return nil, nil
	}
	body, err := unverifiedCheckpoint(b)
	if err != nil {
		return nil, fmt.Errorf("audit: rollback check: %s: %w", path, err)
	}
	return &TreeHead{Size: body.Size, Root: body.Hash}, nil
}

// fileExpectation is the tree of the checkpoint file, or, when an
// acknowledgement replaced it, the tree accepted in its place (the last
// acknowledgement of that tree).
func (w *RollbackWatch) fileExpectation() (*expectation, error) {
	t, err := w.latestTree()
	if err != nil || t == nil {
		return nil, err
	}
	path := filepath.Join(w.dir, LatestFile)
	e := &expectation{TreeHead: *t, source: "checkpoint " + path}
	acks, err := w.acks()
	if err != nil {
		return nil, err
	}
	for _, a := range acks {
		if a.Replaced.Size == t.Size && bytes.Equal(a.Replaced.Root, t.Root) {
			e = &expectation{TreeHead: a.Base, source: fmt.Sprintf("the tree acknowledged in place of %s (hold %d, %s)", path, a.Hold, filepath.Join(w.dir, AckFile))}
		}
	}
	return e, nil
}

func (w *RollbackWatch) acks() ([]AckRecord, error) {
	path := filepath.Join(w.dir, AckFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	var out []AckRecord
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var a AckRecord
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, fmt.Errorf("audit: %s line %d: %w", path, n, err)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: %s: %w", path, err)
	}
	return out, nil
}
