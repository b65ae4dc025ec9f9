package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/store"
)

// Break-glass containment (docs/design.md, Break-glass containment).
//
// An apply of a playbook marked emergency, which the policies allow to
// break glass, may run on one signed break-glass statement by a holder of
// the break-glass role (judgement.Judge, reason break_glass). The
// reconciler records the invocation, with the deadline of its normal
// quorum, in the transaction that audits it and before the backend is
// called (invokeBreakGlass). Every pass then judges each open invocation's
// normal quorum, without break-glass, against the plan that ran
// (stepBreakGlass): met, it is confirmed and stays in force; rejected,
// denied by the trust in force now, or not met by the deadline, it lapses:
// its revert (trigger breakglass) is recorded and judged like any
// operation, and the default policies let it run without approvals of its
// own. A lapsed invocation never lets the apply run on its break-glass
// statement again.

// codeBreakGlassLapsed: an emergency apply that had not run when its
// break-glass lapsed is cancelled: only its normal quorum could have let it
// run, and its revert is already recorded.
const codeBreakGlassLapsed judgement.Code = "breakglass_lapsed"

// noBreakGlass reports whether an operation may not run on a break-glass
// statement: anything but an apply (a heal is keyed by its incident, and
// the statement signed for the apply never covers it), or an emergency
// apply whose invocation is no longer open. A lapsed one never runs on
// break-glass again; a confirmed one (a retry of a partly applied apply,
// say) runs only on its normal quorum, which the confirmation found and
// which must still hold: its window is closed, so nothing would ever ask
// for the quorum again.
func (r *Reconciler) noBreakGlass(ctx context.Context, e *store.Execution, op judgement.Operation) bool {
	if e.Operation != string(action.Apply) || op.Kind != action.Apply || op.Heal() {
		return true
	}
	if op.Playbook == nil || !op.Playbook.Spec.Emergency {
		return false
	}
	b, err := r.opts.Store.BreakGlassOf(ctx, e.ID)
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	// Unknown (the database failed): judge without break-glass, which can
	// only keep the apply waiting.
	return err != nil || b.State != store.BreakGlassOpen
}

// invokeBreakGlass records that an emergency apply is about to run on a
// break-glass statement, with its deadline, audited, before its backend is
// called. A resumed or retried attempt keeps the first deadline while its
// window is open; once the invocation is confirmed or lapsed it is an
// error (noBreakGlass keeps such an apply from being judged ready on
// break-glass), and nothing is called.
func (r *Reconciler) invokeBreakGlass(ctx context.Context, e *store.Execution, j judgement.Judgement) error {
	if e.Operation != string(action.Apply) || j.Operation.Heal() {
		return fmt.Errorf("execution %d: break-glass for a %s: only an apply runs on break-glass", e.ID, e.Operation)
	}
	if j.BreakGlass == nil || len(j.BreakGlass.Counted) == 0 {
		return fmt.Errorf("execution %d: break-glass judgement without its statement", e.ID)
	}
	signer := j.BreakGlass.Counted[0].Approver
	now := r.opts.Now()
	deadline := now.Add(r.opts.BreakGlassWindow)
	return r.store(context.WithoutCancel(ctx), func(tx *store.Store) error {
		b, created, err := tx.InvokeBreakGlass(ctx, store.BreakGlass{ExecutionID: e.ID, Name: e.Name, Digest: e.Digest,
			Environment: e.Environment, Signer: signer, InvokedAt: now, Deadline: deadline})
		if err != nil {
			return err
		}
		if !created {
			if b.State != store.BreakGlassOpen {
				return fmt.Errorf("execution %d: its break-glass is %s (%s): it runs only on its normal quorum now", e.ID, b.State, b.Resolution)
			}
			return nil
		}
		entry := executionEntry(e, audit.EventBreakGlassInvoked, j.Reason.Text)
		entry.Actor = audit.Actor{ID: signer, Role: approval.RoleBreakGlass}
		entry.Payload = withFields(entry.Payload, map[string]any{
			"signer": signer, "deadline": b.Deadline.UTC().Format(time.RFC3339), "window": r.opts.BreakGlassWindow.String(),
			"plan_digest": j.PlanDigest, "policy_digest": j.Decision.PolicyDigest,
		})
		_, err = r.appendAudit(ctx, tx, entry)
		return err
	})
}

// stepBreakGlass judges every open break-glass invocation's normal quorum:
// confirmed when met, lapsed (and its revert recorded) when rejected,
// denied now, or past its deadline.
func (r *Reconciler) stepBreakGlass(ctx context.Context, p *pass) error {
	if p.holding {
		return nil
	}
	open, err := r.opts.Store.OpenBreakGlass(ctx)
	if err != nil || len(open) == 0 {
		return err
	}
	t, err := r.currentTrust(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range open {
		if err := r.settleBreakGlass(ctx, b, t); err != nil {
			errs = append(errs, fmt.Errorf("break-glass of execution %d (%s): %w", b.ExecutionID, b.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) settleBreakGlass(ctx context.Context, b *store.BreakGlass, t *trusted) error {
	e, err := r.opts.Store.ExecutionByID(ctx, b.ExecutionID)
	if err != nil {
		return err
	}
	if e.State == store.ExecExecuting {
		return nil // an interrupted attempt: settled once it has finished
	}
	op, _, err := r.operation(ctx, e)
	if errors.Is(err, errUnreadable) {
		// The stored playbook no longer parses (its action left the
		// server's configuration, say): its quorum cannot be judged, so it
		// never confirms, and at the deadline it lapses like any other,
		// reverting what the stored execution says it applied. Erring
		// here at every pass would keep the block in force for good.
		if r.opts.Now().Before(b.Deadline) {
			return nil
		}
		return r.lapseBreakGlass(ctx, b, e, fmt.Sprintf("its approvals could not be judged by %s: %v", b.Deadline.UTC().Format(time.RFC3339), err))
	}
	if err != nil {
		return err
	}
	envs, err := r.envelopesFor(ctx, e.Digest)
	if err != nil {
		return err
	}
	// The normal quorum, without break-glass, for the plan that ran (or,
	// for an apply not run yet, the plan it was judged with). A pass that
	// comes after the deadline (a history hold skipped this step, the
	// leader was down) judges the quorum as it stood at the deadline:
	// statements issued after it do not count (issued_in_future), and the
	// door refuses them (stale), so only a quorum that came in time
	// confirms.
	now := r.opts.Now()
	late := !now.Before(b.Deadline)
	at := now
	if late {
		at = b.Deadline
	}
	j := judgement.Judge(ctx, op, r.judging(t), judgement.Inputs{
		PlanDigest: e.PlanDigest, Envelopes: envs, Now: at, NoBreakGlass: true,
	})
	switch {
	case j.Outcome == judgement.Ready:
		return r.confirmBreakGlass(ctx, b, e, j)
	case j.Outcome == judgement.Rejected, j.Outcome == judgement.Denied:
		return r.lapseBreakGlass(ctx, b, e, j.Reason.Text)
	case late:
		return r.lapseBreakGlass(ctx, b, e, fmt.Sprintf("its approvals did not come by %s: %s", b.Deadline.UTC().Format(time.RFC3339), j.Reason.Text))
	}
	return nil
}

func (r *Reconciler) confirmBreakGlass(ctx context.Context, b *store.BreakGlass, e *store.Execution, j judgement.Judgement) error {
	var who []string
	if j.Verdict != nil {
		for _, c := range j.Verdict.Counted {
			who = append(who, c.Approver)
		}
	}
	resolution := "confirmed: " + j.Reason.Text
	err := r.store(ctx, func(tx *store.Store) error {
		if err := tx.ResolveBreakGlass(ctx, b.ExecutionID, store.BreakGlassConfirmed, resolution, r.opts.Now(), nil); err != nil {
			return err
		}
		entry := executionEntry(e, audit.EventBreakGlassConfirmed, resolution)
		fields := map[string]any{"deadline": b.Deadline.UTC().Format(time.RFC3339), "approvers": who}
		if j.Verdict != nil {
			fields["approvals"] = verdictJSON(*j.Verdict)
		}
		entry.Payload = withFields(entry.Payload, fields)
		_, err := r.appendAudit(ctx, tx, entry)
		return err
	})
	if err == nil {
		r.log.InfoContext(ctx, "break-glass confirmed", slog.Int64("execution", e.ID), slog.String("playbook", e.Name),
			slog.String("approvers", strings.Join(who, ", ")))
	}
	return err
}

// errLapseLater: a lapse found the version's revert executing; it is
// settled on a later pass, once that revert has finished.
var errLapseLater = errors.New("the version's revert is executing")

// lapseBreakGlass ends an invocation whose quorum did not come: what the
// apply applied is reverted (trigger breakglass), and an apply that has
// not run (again) is cancelled. What it applied is read whatever its
// state: a partly applied apply whose retry waits, or that a check at
// the moment of use stopped or rejected, holds what its earlier attempts
// applied (mayHaveApplied).
func (r *Reconciler) lapseBreakGlass(ctx context.Context, b *store.BreakGlass, e *store.Execution, why string) error {
	targets, err := r.mayHaveApplied(ctx, e)
	if err != nil {
		return err
	}
	var revertID int64
	err = r.store(ctx, func(tx *store.Store) error {
		revertID = 0
		var entries []audit.Entry
		var ref *int64
		if len(targets) > 0 {
			v, err := tx.PlaybookVersionByID(ctx, e.VersionID)
			if err != nil {
				return err
			}
			rv, created, err := tx.CreateExecution(ctx, store.Execution{
				VersionID: v.ID, Name: v.Name, Digest: v.Digest, Path: v.Path, Action: v.Action, Environment: v.Environment,
				Operation: string(action.Revert), CommitSHA: v.CommitSHA, Targets: targets,
				Trigger: string(judgement.BreakGlass), ChangeType: string(judgement.BreakGlass), State: store.ExecWaiting,
				ReasonCode: string(codeIntended), Reason: "break-glass lapsed: " + why,
			})
			if err != nil {
				return err
			}
			ref = &rv.ID
			switch {
			case created:
				revertID = rv.ID
				entries = append(entries, executionEntry(rv, eventIntended, rv.Reason))
			case rv.Trigger == string(judgement.BreakGlass):
				// Already the lapse's.
			case rv.State == store.ExecExecuting:
				// The deletion's or update's revert is running (or was
				// interrupted and is resumed next): the lapse waits for it
				// to finish rather than resolve without a runnable revert.
				return errLapseLater
			case rv.State == store.ExecCompleted:
				// It ran: what it released is released, and what it did not
				// name (an update keeps targets) is held by the version in
				// force, whose own apply completed before its revert ran.
			default:
				// The playbook was deleted or updated inside the window: its
				// revert waits for statements of its own, or was rejected,
				// denied or failed. The emergency apply never had its quorum,
				// so that revert becomes the lapse's, releasing everything
				// the apply applied (rejections do not hold it back):
				// otherwise a push inside the window would keep the block in
				// force unapproved.
				ne, err := tx.RetriggerRevertForBreakGlass(ctx, rv.ID, targets, "break-glass lapsed: "+why)
				if err != nil {
					return err
				}
				revertID = ne.ID
				entries = append(entries, executionEntry(ne, eventIntended, ne.Reason))
			}
		}
		if e.State == store.ExecWaiting || e.State == store.ExecPending {
			err := tx.SetExecutionState(ctx, e.ID, []store.ExecState{store.ExecWaiting, store.ExecPending}, store.ExecCancelled,
				string(codeBreakGlassLapsed), "cancelled: its break-glass lapsed before it ran ("+why+")", nil)
			if err != nil {
				return err
			}
			ne, err := tx.ExecutionByID(ctx, e.ID)
			if err != nil {
				return err
			}
			entries = append(entries, executionEntry(ne, eventFor(ne.State), ne.Reason))
			es, err := r.syncVersionStatus(ctx, tx, ne, ne.CommitSHA)
			if err != nil {
				return err
			}
			entries = append(entries, es...)
		}
		if err := tx.ResolveBreakGlass(ctx, b.ExecutionID, store.BreakGlassLapsed, why, r.opts.Now(), ref); err != nil {
			return err
		}
		entry := executionEntry(e, audit.EventBreakGlassLapsed, why)
		fields := map[string]any{"deadline": b.Deadline.UTC().Format(time.RFC3339)}
		if ref != nil {
			fields["revert"] = *ref
		}
		entry.Payload = withFields(entry.Payload, fields)
		entry.Success = false
		_, err := r.appendAudit(ctx, tx, append([]audit.Entry{entry}, entries...)...)
		return err
	})
	if errors.Is(err, errLapseLater) {
		r.log.InfoContext(ctx, "break-glass lapse waits for the revert under way", slog.Int64("execution", e.ID), slog.String("playbook", e.Name))
		return nil
	}
	if err != nil {
		return err
	}
	r.log.WarnContext(ctx, "break-glass lapsed", slog.Int64("execution", e.ID), slog.String("playbook", e.Name), slog.String("why", why))
	if revertID != 0 {
		return r.judgeByID(ctx, revertID)
	}
	return nil
}
