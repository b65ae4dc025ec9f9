package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// This file holds the appends that are more than an entry: the log's own
// record of who exported or verified it, and idempotent appends.

// recordTimeout bounds the append of an access record. It runs detached
// from the request's context, so a client that hangs up after its export
// is still recorded.
const recordTimeout = 30 * time.Second

// recordOwn appends an entry of the log's own namespace in a transaction
// of its own.
func (l *Log) recordOwn(ctx context.Context, e Entry) (Receipt, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := e.canonicalize(); err != nil {
		return Receipt{}, err
	}
	recs, err := l.appendEntries(ctx, l.opts.Store, []Entry{e})
	if err != nil {
		return Receipt{}, fmt.Errorf("audit: record %s: %w", e.Event, err)
	}
	return recs[0], nil
}

// RecordExport appends the audit.export entry of an export that has ended:
// who asked, through what (via: "api", "console"), with which filters, and
// how it went (the entries written, or the error). Call it once per export,
// also when it failed.
func (l *Log) RecordExport(ctx context.Context, actor Actor, via string, opts ExportOptions, sum ExportSummary, exportErr error) (Receipt, error) {
	filter := map[string]any{}
	if !opts.Since.IsZero() {
		filter["since"] = opts.Since.UTC().Format(time.RFC3339Nano)
	}
	if !opts.Until.IsZero() {
		filter["until"] = opts.Until.UTC().Format(time.RFC3339Nano)
	}
	if opts.Actor != "" {
		filter["actor"] = opts.Actor
	}
	if opts.Event != "" {
		filter["event"] = opts.Event
	}
	format := opts.Format
	if format == "" {
		format = FormatNDJSON
	}
	payload := map[string]any{"via": via, "format": format, "proofs": opts.Proofs,
		"entries": sum.Entries, "size": sum.Size, "complete": sum.Complete}
	if len(filter) > 0 {
		payload["filter"] = filter
		payload["omitted"] = sum.Omitted
	}
	if len(sum.Disagree) > 0 {
		payload["columns_disagree"] = sum.Disagree
	}
	if exportErr != nil {
		payload["error"] = exportErr.Error()
	}
	return l.recordOwn(ctx, Entry{Actor: actor, Event: EventAuditExport, Subject: Subject{Kind: SubjectAuditLog},
		Success: exportErr == nil, Payload: MustJSON(payload)})
}

// RecordVerify appends the audit.verify entry of a verification that has
// ended: who asked, how many checkpoints they gave, and the outcome (rep,
// or the error that kept it from finishing). Its success is whether the
// log verified.
func (l *Log) RecordVerify(ctx context.Context, actor Actor, checkpointsGiven int, rep *Report, verifyErr error) (Receipt, error) {
	payload := map[string]any{"ok": verifyErr == nil && rep != nil && rep.Bad == nil, "checkpoints_given": checkpointsGiven}
	if rep != nil {
		payload["entries"] = rep.Entries
		payload["size"] = rep.Size
		payload["signatures"] = rep.Signatures
		cps := rep.Checkpoints
		if cps == nil {
			cps = []uint64{}
		}
		payload["checkpoints"] = cps
		if rep.Bad != nil {
			payload["bad_seq"] = rep.Bad.Seq
			payload["bad_reason"] = rep.Bad.Reason
		}
	}
	if verifyErr != nil {
		payload["error"] = verifyErr.Error()
	}
	return l.recordOwn(ctx, Entry{Actor: actor, Event: EventAuditVerify, Subject: Subject{Kind: SubjectAuditLog},
		Success: payload["ok"] == true, Payload: MustJSON(payload)})
}

// MaxIdempotencyKey is the longest idempotency key.
const MaxIdempotencyKey = 256

// ErrIdempotencyConflict is returned when an idempotency key was already
// used for a different entry.
var ErrIdempotencyConflict = errors.New("audit: the idempotency key was already used for a different entry")

// AppendIdempotent appends e in a transaction of its own (st is the pool)
// and records key with it, so that a retry with the same key — after a
// timeout, an answer lost with the connection — gets the first append's
// receipt (replayed true) instead of a duplicate entry. A retry must carry
// the same entry (actor, event, subject, success, before, after, payload;
// compared with the stored entry's bytes): a different one with the key
// is refused with ErrIdempotencyConflict. The key is not part of the
// signed entry.
func (l *Log) AppendIdempotent(ctx context.Context, st *store.Store, key string, e Entry) (rec Receipt, replayed bool, err error) {
	if err := CheckIdempotencyKey(key); err != nil {
		return Receipt{}, false, err
	}
	es, err := prepare([]Entry{e})
	if err != nil {
		return Receipt{}, false, err
	}
	// Two appends with one key racing: both find no key, the second to
	// take the append lock appends too, and its key insert conflicts when
	// the first has committed, rolling its entry back. It then finds the
	// first's entry.
	for attempt := 0; ; attempt++ {
		replayed = false
		err = st.Tx(ctx, func(tx *store.Store) error {
			seq, err := tx.AuditIdempotencySeq(ctx, key)
			if err == nil {
				replayed = true
				rec, err = sameEntry(ctx, tx, seq, es[0])
				return err
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			recs, err := l.appendEntries(ctx, tx, es)
			if err != nil {
				return err
			}
			rec = recs[0]
			return tx.AddAuditIdempotency(ctx, key, int64(rec.Seq))
		})
		if errors.Is(err, store.ErrConflict) && !replayed && attempt < 2 {
			continue
		}
		if err != nil {
			return Receipt{}, false, fmt.Errorf("audit: append with idempotency key: %w", err)
		}
		return rec, replayed, nil
	}
}

// sameEntry reads the entry a key appended and checks it is e (but for
// its seq and time), returning its receipt.
func sameEntry(ctx context.Context, tx *store.Store, seq int64, e Entry) (Receipt, error) {
	rows, err := tx.AuditEntries(ctx, seq, 1)
	if err != nil {
		return Receipt{}, err
	}
	if len(rows) == 0 || rows[0].Seq != seq {
		return Receipt{}, fmt.Errorf("the idempotency key names entry %d, which the log does not hold", seq)
	}
	first, err := Decode(rows[0].Entry)
	if err != nil {
		return Receipt{}, fmt.Errorf("entry %d: %w", seq, err)
	}
	h, ok := hashFrom(rows[0].Hash)
	if !ok {
		return Receipt{}, fmt.Errorf("entry %d has a %d-byte hash", seq, len(rows[0].Hash))
	}
	var diff []string
	if first.Actor != e.Actor {
		diff = append(diff, "actor")
	}
	if first.Event != e.Event {
		diff = append(diff, "event")
	}
	if first.Subject != e.Subject {
		diff = append(diff, "subject")
	}
	if first.Success != e.Success {
		diff = append(diff, "success")
	}
	if !bytes.Equal(first.Before, e.Before) || !bytes.Equal(first.After, e.After) {
		diff = append(diff, "before/after")
	}
	if !bytes.Equal(first.Payload, e.Payload) {
		diff = append(diff, "payload")
	}
	if len(diff) > 0 {
		return Receipt{}, fmt.Errorf("%w: it appended seq %d (%s by %s), whose %s differ; use a new key for a new entry",
			ErrIdempotencyConflict, seq, first.Event, first.Actor.ID, strings.Join(diff, ", "))
	}
	return Receipt{Seq: first.Seq, Hash: h, Time: first.Time}, nil
}

// CheckIdempotencyKey reports whether key is a valid idempotency key: 1
// to 256 bytes of printable ASCII, no spaces.
func CheckIdempotencyKey(key string) error {
	if key == "" || len(key) > MaxIdempotencyKey {
		return fmt.Errorf("audit: an idempotency key is 1 to %d characters, not %d", MaxIdempotencyKey, len(key))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return fmt.Errorf("audit: idempotency key: byte %d is not printable ASCII (no spaces)", i)
		}
	}
	return nil
}
