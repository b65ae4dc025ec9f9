package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// Checks of a part of the log, for a reader who looks at a page of it (the
// web console): the entries shown and the latest checkpoint, without
// replaying the whole log (VerifyDatabase does that).

// ErrNoTrustedKeys is returned by the checks that need trusted keys when
// none are given.
var ErrNoTrustedKeys = errors.New("audit: no trusted keys to verify with")

// EntriesReport is what VerifyEntries established.
type EntriesReport struct {
	// Entries is the number of entries verified: those asked for and the
	// one before each.
	Entries uint64
	// Signatures is the number of signatures verified, key rotations
	// before the entries included.
	Signatures uint64
	// Bad is the first problem, in seq order; nil when everything
	// verified. Entries below Bad.Seq verified.
	Bad *Finding
}

// VerifyEntries verifies the entries with these sequence numbers, each with
// the entry before it, as Verify does for the whole log: the bytes are a
// valid entry of that seq, they hash (chained to the previous entry's
// hash) to the stored hash, the filter columns say what the bytes say, the
// entry is not older than the previous one, and a key trusted at that
// point signed it. Trust starts from trusted and follows every key
// rotation recorded before the entries, each verified with the keys
// trusted by then. What it does not check: the entries between the ones
// asked for, and the tree (CheckCheckpoint, VerifyDatabase).
func VerifyEntries(ctx context.Context, st *store.Store, seqs []uint64, trusted *KeySet) (*EntriesReport, error) {
	if trusted == nil || trusted.Len() == 0 {
		return nil, ErrNoTrustedKeys
	}
	want := make([]uint64, 0, 2*len(seqs))
	for _, s := range seqs {
		if s > 0 {
			want = append(want, s-1)
		}
		want = append(want, s)
	}
	slices.Sort(want)
	want = slices.Compact(want)
	rep := &EntriesReport{}
	if len(want) == 0 {
		return rep, nil
	}
	err := st.AuditSnapshot(ctx, func(st *store.Store) error {
		opts := VerifyOptions{Trusted: trusted, Workers: 1}
		opts.setDefaults()
		origin, err := st.AuditOrigin(ctx)
		if err != nil {
			return err
		}
		opts.Origin = origin
		keyRows, err := st.AuditKeys(ctx)
		if err != nil {
			return err
		}
		for _, r := range keyRows {
			if k, err := ParsePublicKey([]byte(r.PublicKey)); err == nil && k.ID == r.ID {
				opts.Candidates.Add(k)
			}
		}
		ids := make([]int64, len(want))
		for i, s := range want {
			ids[i] = int64(s)
		}
		rows, err := st.AuditEntriesBySeq(ctx, ids)
		if err != nil {
			return err
		}
		bySeq := make(map[uint64]*store.AuditEntry, len(rows))
		for i := range rows {
			bySeq[uint64(rows[i].Seq)] = &rows[i]
		}
		last := want[len(want)-1]
		var rotations []store.AuditEntry
		for after := int64(-1); ; {
			page, err := st.AuditEntriesFiltered(ctx, store.AuditFilter{Event: string(EventKeyRotated), Below: int64(last) + 1}, after, 1000)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			rotations = append(rotations, page...)
			after = page[len(page)-1].Seq
		}
		v, err := newVerifier(opts)
		if err != nil {
			return err
		}
		rep.Bad = v.entries(ctx, want, bySeq, rotations)
		rep.Entries, rep.Signatures = v.report.Entries, v.report.Signatures
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: verify entries: %w", err)
	}
	return rep, nil
}

// entries verifies runs of consecutive sequence numbers in order, each
// run as a log of its own that starts at its first entry (whose own link
// to the entry before is taken as stored), with the key rotations before
// each run replayed first.
func (v *verifier) entries(ctx context.Context, want []uint64, bySeq map[uint64]*store.AuditEntry, rotations []store.AuditEntry) *Finding {
	ri := 0
	for i := 0; i < len(want); {
		if ctx.Err() != nil {
			return &Finding{Seq: -1, Reason: "verification was interrupted"}
		}
		j := i + 1
		for j < len(want) && want[j] == want[j-1]+1 {
			j++
		}
		start, end := want[i], want[j-1]
		for ; ri < len(rotations) && uint64(rotations[ri].Seq) < start; ri++ {
			rec := recordOf(&rotations[ri])
			if f := v.rotation(&rec); f != nil {
				return f
			}
		}
		v.n, v.tree, v.lastTime = start, rangeFactory.NewEmptyRange(start), time.Time{}
		for s := start; s <= end; s++ {
			row, ok := bySeq[s]
			if !ok {
				return bad(s, "entry missing: the log has no entry with this seq")
			}
			rec := recordOf(row)
			if s == start {
				if h, ok := hashFrom(row.PrevHash); ok {
					v.lastHash = h
				}
			}
			var c checked
			v.check(&rec, &c, nil)
			if f := v.next(&rec, &c); f != nil {
				return f
			}
		}
		for ; ri < len(rotations) && uint64(rotations[ri].Seq) <= end; ri++ {
		}
		i = j
	}
	return nil
}

// rotation follows a key rotation recorded before the entries verified:
// its bytes, hash and signature by a key trusted by then.
func (v *verifier) rotation(r *Record) *Finding {
	var c checked
	v.check(r, &c, nil)
	switch {
	case c.decodeErr != nil:
		return bad(r.Seq, "key rotation entry's bytes are not a valid entry: %v", c.decodeErr)
	case c.entry.Seq != r.Seq:
		return bad(r.Seq, "entry stored at seq %d says it is seq %d: entries were moved or swapped", r.Seq, c.entry.Seq)
	case !c.hashOK:
		return bad(r.Seq, "the key rotation entry's bytes do not hash to its stored hash: the entry was altered")
	case c.entry.Event != string(EventKeyRotated):
		return bad(r.Seq, "column event (%q) disagrees with the entry's event (%q)", EventKeyRotated, c.entry.Event)
	}
	return v.checkSignature(r, &c)
}

func recordOf(e *store.AuditEntry) Record {
	return Record{Seq: uint64(e.Seq), Entry: e.Entry, PrevHash: e.PrevHash, Hash: e.Hash, KeyID: e.KeyID, Signature: e.Signature,
		Columns: &Columns{At: e.At, ActorID: e.ActorID, Event: e.Event}}
}

// CheckpointStatus is what CheckCheckpoint found.
type CheckpointStatus struct {
	// Size and Root are the checkpoint's (as its note says).
	Size uint64
	Root []byte
	// Signed: a trusted key signed the checkpoint for this log's origin.
	// SignatureProblem says why not.
	Signed           bool
	SignatureProblem string
	// Contained: the log's tree of Size entries has the checkpoint's root,
	// so the log still holds what the checkpoint vouched for. Problem
	// says why not.
	Contained bool
	Problem   string
	// LogSize is the log's size now.
	LogSize uint64
}

// CheckCheckpoint checks a signed checkpoint note against the log in st,
// as of one snapshot: its signature by a key of trusted (none: not
// signed, "no trusted keys") and that the log contains it, by computing
// the root of its first Size entries from the log's tree (entry bytes
// below level 8, the stored nodes above). A log that was truncated or
// rewritten before Size fails. VerifyDatabase re-derives every node.
func CheckCheckpoint(ctx context.Context, st *store.Store, note []byte, trusted *KeySet) (*CheckpointStatus, error) {
	body, err := unverifiedCheckpoint(note)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	out := &CheckpointStatus{Size: body.Size, Root: body.Hash}
	err = st.AuditSnapshot(ctx, func(st *store.Store) error {
		origin, err := st.AuditOrigin(ctx)
		if err != nil {
			return err
		}
		switch {
		case trusted == nil || trusted.Len() == 0:
			out.SignatureProblem = "no trusted keys to check its signature with"
		default:
			cp, err := ParseCheckpoint(note, trusted)
			switch {
			case err != nil:
				out.SignatureProblem = err.Error()
			case cp.Origin != origin:
				out.SignatureProblem = fmt.Sprintf("it is for log %q, not this log (%q)", cp.Origin, origin)
			default:
				out.Signed = true
			}
		}
		head, err := readHead(ctx, st)
		if err != nil {
			return err
		}
		out.LogSize = head.Size
		if body.Size > head.Size {
			out.Problem = fmt.Sprintf("the log has %d entries, fewer than the checkpoint's %d: %v", head.Size, body.Size, ErrRollback)
			return nil
		}
		root, err := rootAt(ctx, dbNodes(st), body.Size)
		if errors.Is(err, errMissingNodes) {
			out.Problem = err.Error()
			return nil
		}
		if err != nil {
			return err
		}
		if string(root) != string(body.Hash) {
			out.Problem = fmt.Sprintf("the log's first %d entries have root %x, the checkpoint says %x: %v", body.Size, root, body.Hash, ErrFork)
			return nil
		}
		out.Contained = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: check checkpoint: %w", err)
	}
	return out, nil
}

// ParseTime reads a time bound of a selection of entries (since, until):
// RFC 3339, a date (midnight UTC), or a duration meaning that long before
// now (Go's units, and d for days: 24h, 7d). Empty: no bound. name is
// what the error calls the value.
func ParseTime(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	ago := strings.TrimPrefix(v, "-")
	if days, ok := strings.CutSuffix(ago, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 && n <= 100000 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(ago); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want RFC 3339 (2026-05-01T12:00:00Z), a date (2026-05-01) or a duration ago (24h, 7d)", name, v)
}
