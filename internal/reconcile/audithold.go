package reconcile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/internal/trust"
)

// The hold on a rolled-back audit log (docs/audit.md, "Rollback hold";
// docs/design.md, trust rule 5). The leader checks the log against the
// trees it knows of (audit.RollbackWatch) when it starts leading, every
// checkpoint interval, before each checkpoint asked for, and in every pass
// while it holds. A log that no longer contains one opens an
// audit_rollback hold: no pass runs past it (nothing is judged, expired or
// executed), /readyz is not ready, writ_audit_rollback_detected is 1, the
// hold is audited once (in the rolled-back log itself, the notifier's
// cursor moved back so that it is notified) and logged once at ERROR.
// What is still appended while it holds: the hold's own entry, envelopes
// received and refused at the door, and the API's own entries (logins,
// accounts, denials) — never an operation. One admin's password cannot
// end it: it ends when the signed quorum that adopts a change to what
// decides (trust rule 8: adminApprovals admins of the keyring in force, or
// the server's recovery keys) approves the statement about this hold
// (AuditAckStatement); the log as it is then becomes the tree the server
// expects.

// AuditAckSubject is the subject name of a statement acknowledging a
// rollback hold; its digest is AuditAckDigest's.
const AuditAckSubject = "audit-log/rollback"

// ErrNeedsSignatures is returned when a hold is acknowledged with a
// password or token: this one ends only with signed statements.
var ErrNeedsSignatures = errors.New("acknowledging this hold needs the admins' signed statements")

// auditHoldDetail is what an audit_rollback hold records.
type auditHoldDetail struct {
	Reason   string         `json:"reason"`
	Problem  string         `json:"problem"` // rolled_back | forked
	Log      audit.TreeHead `json:"log"`
	Expected audit.TreeHead `json:"expected"`
	Source   string         `json:"source"`
	Finding  string         `json:"finding,omitempty"` // tampered: what verification found
}

func (d auditHoldDetail) rollback() *audit.Rollback {
	err := audit.ErrRollback
	switch d.Problem {
	case "forked":
		err = audit.ErrFork
	case "tampered":
		err = audit.ErrTampered
	}
	return &audit.Rollback{Log: d.Log, Expected: d.Expected, Source: d.Source, Err: err, Finding: d.Finding}
}

// describes reports whether the hold h is the hold of the rollback rb:
// its key and its recorded trees and finding are rb's.
func describes(h *store.Hold, rb *audit.Rollback) bool {
	if h == nil || rb == nil || h.CommitSHA != rb.Key() {
		return false
	}
	var d auditHoldDetail
	if err := json.Unmarshal(h.Detail, &d); err != nil {
		return false
	}
	return sameTree(d.Log, rb.Log) && sameTree(d.Expected, rb.Expected) && d.Finding == rb.Finding
}

func sameTree(a, b audit.TreeHead) bool {
	return a.Size == b.Size && bytes.Equal(a.Root, b.Root)
}

// AuditAckDigest is the subject digest a statement acknowledging the
// rollback hold h binds: the hold, the tree the log no longer contains and
// the log as it was found.
func AuditAckDigest(h *store.Hold) (string, error) {
	var d auditHoldDetail
	if err := json.Unmarshal(h.Detail, &d); err != nil {
		return "", fmt.Errorf("hold %d: %w", h.ID, err)
	}
	msg := fmt.Appendf(nil, "writ audit rollback hold %d\nexpected %d %x\nlog %d %x\n",
		h.ID, d.Expected.Size, d.Expected.Root, d.Log.Size, d.Log.Root)
	if d.Finding != "" {
		// A log changed in place: the statement names what was found.
		msg = fmt.Appendf(msg, "finding %s\n", d.Finding)
	}
	sum := sha256.Sum256(msg)
	return hex.EncodeToString(sum[:]), nil
}

// AuditAckStatement is what an admin signs to acknowledge the rollback
// hold h: the change "the log the server expects is replaced" judged as a
// change to what decides, from the trusted commit (its statements name the
// trusted policy digest, as for any such change) — subject AuditAckSubject with AuditAckDigest, and a transition
// that replaces the expected tree's root.
func AuditAckStatement(h *store.Hold, trustedCommit string) (*trust.Change, error) {
	digest, err := AuditAckDigest(h)
	if err != nil {
		return nil, err
	}
	var d auditHoldDetail
	_ = json.Unmarshal(h.Detail, &d)
	return &trust.Change{
		Subjects:   []approval.Subject{{Path: AuditAckSubject, Digest: digest}},
		Transition: approval.Transition{TrustedCommit: trustedCommit, Replaces: map[string]string{AuditAckSubject: hex.EncodeToString(d.Expected.Root)}},
	}, nil
}

// CheckAuditLog checks the log against what the server knows of it, opens
// the hold on a rollback, and ends the hold when its signed quorum arrived.
// It reports whether writ holds. Without a watch (Options.AuditWatch) it
// does nothing.
func (r *Reconciler) CheckAuditLog(ctx context.Context) (bool, error) {
	w := r.opts.AuditWatch
	if w == nil {
		return false, nil
	}
	holds, err := r.opts.Store.OpenHolds(ctx)
	if err != nil {
		return w.Held() != nil, err
	}
	var open *store.Hold
	for _, h := range holds {
		if h.Kind != store.HoldAuditRollback {
			continue
		}
		// A hold acknowledged before and open again is an edit of the
		// holds table, not a finding: it is ignored (the log itself is
		// checked below, and whatever is wrong with it is held anew).
		if done, err := w.HoldAcknowledged(h.ID); err != nil {
			return w.Held() != nil, err
		} else if done {
			r.log.ErrorContext(ctx, "an audit hold acknowledged before is open again in the database: ignored; the log is checked afresh",
				slog.Int64("hold", h.ID))
			continue
		}
		var d auditHoldDetail
		if json.Unmarshal(h.Detail, &d) == nil {
			// Held by a previous process: still held.
			w.Restore(d.rollback())
			open = h
		}
	}
	rb, err := w.Check(ctx)
	if err != nil || rb == nil {
		return rb != nil, err
	}
	if open == nil || !describes(open, rb) {
		// The hold open in the database is not about what this server
		// found (an older hold reopened there, say): the finding gets a
		// hold of its own, and only statements about that one end it.
		if open, err = r.openAuditHold(ctx, rb); err != nil {
			return true, err
		}
	}
	acked, err := r.acknowledgeAuditHold(ctx, open, rb)
	return !acked, err
}

// openAuditHold records the hold (once), with its audit entry, and says so
// at ERROR once.
func (r *Reconciler) openAuditHold(ctx context.Context, rb *audit.Rollback) (*store.Hold, error) {
	problem := "rolled_back"
	switch {
	case errors.Is(rb.Err, audit.ErrFork):
		problem = "forked"
	case errors.Is(rb.Err, audit.ErrTampered):
		problem = "tampered"
	}
	d := auditHoldDetail{Reason: rb.Reason(), Problem: problem, Log: rb.Log, Expected: rb.Expected, Source: rb.Source, Finding: rb.Finding}
	var hold *store.Hold
	created := false
	err := r.store(ctx, func(tx *store.Store) error {
		h, c, err := tx.OpenHold(ctx, store.HoldAuditRollback, rb.Key(), "", d)
		if err != nil {
			return err
		}
		hold, created = h, c
		if !created {
			return nil
		}
		rs, err := r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: audit.EventAuditRollbackHeld, Success: false,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "audit-log"},
			Payload: audit.MustJSON(map[string]any{"hold": h.ID, "reason": d.Reason, "problem": problem,
				"log": d.Log, "expected": d.Expected, "source": d.Source, "finding": d.Finding}),
		})
		if err != nil {
			return err
		}
		// The notifier may have read past this seq in the log that was.
		return tx.RewindNotificationCursor(ctx, int64(rs[0].Seq))
	})
	if err != nil {
		return nil, fmt.Errorf("audit rollback hold: %w", err)
	}
	if created {
		r.log.ErrorContext(ctx, "holding: "+rb.Reason()+"; nothing executes until the admins sign its acknowledgement",
			slog.Int64("hold", hold.ID), slog.String("sign", AuditAckSubject))
	}
	return hold, nil
}

// acknowledgeAuditHold ends the hold when the signed quorum approved its
// statement and the log still contains the log the hold found: the log as
// it is now becomes the tree the server expects.
func (r *Reconciler) acknowledgeAuditHold(ctx context.Context, h *store.Hold, rb *audit.Rollback) (bool, error) {
	st, err := r.opts.Store.RepoState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil // no trust yet: nobody can sign
	}
	if err != nil {
		return false, err
	}
	adopted, err := r.trustAt(ctx, st.AdoptedSHA)
	if err != nil {
		return false, err
	}
	change, err := AuditAckStatement(h, st.AdoptedSHA)
	if err != nil {
		return false, err
	}
	verdict, how, recovery, err := r.verifyMeta(ctx, adopted, change)
	if err != nil || !verdict.QuorumMet {
		return false, err
	}
	w := r.opts.AuditWatch
	// The statements name the hold's row, which anyone with the
	// database's password can edit: they count only for a hold that
	// describes what this server found, and that was never acknowledged
	// before (recorded outside the database, in the checkpoint
	// directory's AckFile).
	if !describes(h, rb) {
		return false, nil
	}
	if done, err := w.HoldAcknowledged(h.ID); err != nil || done {
		if done {
			r.log.ErrorContext(ctx, "an audit hold acknowledged before is open again in the database: its statements do not end it twice",
				slog.Int64("hold", h.ID))
		}
		return false, err
	}
	var d auditHoldDetail
	_ = json.Unmarshal(h.Detail, &d)
	if ok, err := w.Contains(ctx, d.Log); err != nil || !ok {
		// Rolled back again since the hold: the statements are about a
		// log that is gone.
		return false, err
	}
	head, err := r.opts.Audit.Head(ctx)
	if err != nil {
		return false, err
	}
	var by []string
	for _, c := range verdict.Counted {
		by = append(by, c.Approver)
	}
	base := audit.TreeHead{Size: head.Size, Root: head.Root}
	if err := w.Acknowledge(rb, base, h.ID, by, r.opts.Now()); err != nil {
		return false, err
	}
	err = r.store(ctx, func(tx *store.Store) error {
		if err := tx.ResolveHold(ctx, h.ID, strings.Join(by, ","), store.HoldAcknowledged, "acknowledged with signed statements: "+how); err != nil {
			return err
		}
		_, err := r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: audit.EventAuditRollbackAcknowledged, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "audit-log"},
			Payload: audit.MustJSON(map[string]any{"hold": h.ID, "how": how, "recovery": recovery, "by": by,
				"replaced": d.Expected, "base": base, "reason": d.Reason}),
		})
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return true, fmt.Errorf("audit rollback hold %d: %w", h.ID, err)
	}
	r.log.WarnContext(ctx, "audit rollback hold acknowledged with signed statements: the log as it is now is the one expected",
		slog.Int64("hold", h.ID), slog.String("how", how), slog.Bool("recovery", recovery), slog.Uint64("size", base.Size))
	return true, nil
}

// stepAuditHold stops the pass while the audit log is held, checking
// first whether the hold's signed quorum arrived.
func (r *Reconciler) stepAuditHold(ctx context.Context, p *pass) error {
	if r.opts.AuditWatch == nil || r.opts.AuditWatch.Held() == nil {
		return nil
	}
	held, err := r.CheckAuditLog(ctx)
	if err != nil {
		r.log.WarnContext(ctx, "audit rollback check", slog.Any("error", err))
	}
	if held || err != nil {
		p.holding = true
		return errStop
	}
	return nil
}

// WatchAuditLog verifies and checks the audit log now and every interval
// (the checkpoint interval) until ctx ends; a failing check is logged and tried
// again at the next tick. A hold found nudges a pass, which stops at it.
func (r *Reconciler) WatchAuditLog(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// Every entry verified, then the trees compared: a log changed in
		// place is held like one rolled back (audit.RollbackWatch.Scrub).
		if r.opts.AuditWatch != nil {
			if _, err := r.opts.AuditWatch.Scrub(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "audit log verification", slog.Any("error", err))
			}
		}
		if held, err := r.CheckAuditLog(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "audit rollback check", slog.Any("error", err))
		} else if held {
			r.Nudge()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// AuditWatch is Options.AuditWatch.
func (r *Reconciler) AuditWatch() *audit.RollbackWatch { return r.opts.AuditWatch }
