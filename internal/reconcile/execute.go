package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/retry"
	"github.com/writ-sec/writ/internal/store"
)

// stepExecute runs every operation whose time has come, one at a time.
func (r *Reconciler) stepExecute(ctx context.Context, p *pass) error {
	if p.holding {
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := r.claim(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := r.run(ctx, e); err != nil {
			return fmt.Errorf("execution %d (%s %s): %w", e.ID, e.Operation, e.Name, err)
		}
	}
}

// claim takes the next runnable operation and records its start (with its
// audit entry) before anything touches a backend. An operation found
// executing was interrupted by a crash: it is claimed again and finished
// through the backend's idempotent Apply or Revert after re-reading live
// state, never blindly repeated.
func (r *Reconciler) claim(ctx context.Context) (*store.Execution, error) {
	var e *store.Execution
	err := r.store(ctx, func(tx *store.Store) error {
		var err error
		e, err = tx.ClaimExecution(ctx, r.opts.Now())
		if err != nil {
			return err
		}
		event := eventStarted
		if e.Attempts > 1 {
			event = eventResumed
		}
		entries := []audit.Entry{executionEntry(e, event, "")}
		es, err := r.syncVersionStatus(ctx, tx, e, e.CommitSHA)
		if err != nil {
			return err
		}
		entries = append(entries, es...)
		_, err = r.appendAudit(ctx, tx, entries...)
		return err
	})
	return e, err
}

// run carries out one claimed operation and records its outcome. Right
// before the backend is called it is judged once more (the time-of-use
// check): a fresh decision under the trust in force now, its statements
// verified again against the plan they approved, and live state read
// again and compared with that plan. Anything that no longer holds sends
// it back (to waiting, denied or rejected) without touching the backend.
func (r *Reconciler) run(ctx context.Context, e *store.Execution) error {
	op, held, err := r.operation(ctx, e)
	if errors.Is(err, errUnreadable) {
		return r.finish(ctx, e, nil, nil, 0, err)
	}
	if err != nil {
		return err
	}
	log := r.log.With(slog.Int64("execution", e.ID), slog.String("playbook", e.Name), slog.String("operation", e.Operation))
	// A started execution finishes even when shutdown begins: stopping
	// halfway would only make the next start resume it.
	execCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()

	// An apply or a heal runs only while its version is the one in force:
	// one whose playbook was removed or replaced since it was judged (a
	// heal signed before the removal; an apply a crash left executing,
	// resumed now) is cancelled, and the removal's or update's revert
	// releases what the version holds. So is one whose version was
	// reverted (the same content back on the branch does not bring it
	// back), and a heal whose version expired or whose drift incident was
	// resolved.
	if code, why, err := r.notInForce(ctx, e); err != nil {
		return err
	} else if why != "" {
		log.WarnContext(ctx, "cancelled at the moment of use", slog.String("reason", why))
		return r.cancelAtUse(ctx, e, code, why)
	}
	j, err := r.checkAtUse(execCtx, e, op)
	if err != nil {
		return err
	}
	if j.Outcome != judgement.Ready {
		log.WarnContext(ctx, "stopped at the moment of use", slog.String("reason_code", string(j.Reason.Code)), slog.String("reason", j.Reason.Text))
		return r.stop(ctx, e, j)
	}
	if j.Reason.Code == judgement.CodeBreakGlass {
		if err := r.invokeBreakGlass(ctx, e, j); err != nil {
			return err
		}
		log.WarnContext(ctx, "break-glass: an emergency apply runs before its approvals", slog.String("reason", j.Reason.Text))
	}
	req := j.Request
	// Exactly once per target: what an earlier attempt applied (a partly
	// applied operation, retried) is not sent to the backend again.
	before, err := r.appliedBefore(ctx, e)
	if err != nil {
		return err
	}
	earlier := 0
	if len(before) > 0 {
		req.Targets = slices.DeleteFunc(slices.Clone(req.Targets), func(t string) bool { return before[t] })
		earlier = len(before)
	}
	if len(req.Targets) == 0 {
		results := make([]action.TargetResult, 0, len(held))
		for _, t := range held {
			results = append(results, action.TargetResult{Target: t, Result: action.Unchanged, Detail: "still held by another playbook in force"})
		}
		return r.finish(ctx, e, j.Plan, results, earlier, nil)
	}
	results, err := r.opts.Backends.Execute(execCtx, req)
	for _, t := range held {
		results = append(results, action.TargetResult{Target: t, Result: action.Unchanged, Detail: "still held by another playbook in force"})
	}
	if err != nil {
		log.WarnContext(ctx, "execution failed", slog.Any("error", err), slog.Int("attempt", e.Attempts))
	}
	return r.finish(ctx, e, j.Plan, results, earlier, err)
}

// errUnreadable marks an operation whose stored playbook no longer parses.
var errUnreadable = errors.New("the stored playbook cannot be read")

// checkAtUse is the time-of-use check of a claimed operation: its
// judgement under the trust in force now, against what it was approved
// with.
func (r *Reconciler) checkAtUse(ctx context.Context, e *store.Execution, op judgement.Operation) (judgement.Judgement, error) {
	start := time.Now()
	t, err := r.currentTrust(ctx)
	if err != nil {
		return judgement.Judgement{}, err
	}
	envs, err := r.envelopesFor(ctx, e.Digest)
	if err != nil {
		return judgement.Judgement{}, err
	}
	j := r.judgeOp(ctx, e, op, t, envs)
	r.opts.Metrics.TimeOfUse(time.Since(start), j.Outcome == judgement.Ready)
	return j, nil
}

// stop sends a claimed operation back (waiting, denied or rejected) with
// the judgement that stopped it, audited, before any backend call. The
// attempt it was claimed for does not count: the backend was not called.
func (r *Reconciler) stop(ctx context.Context, e *store.Execution, j judgement.Judgement) error {
	u := store.Judged{ReasonCode: string(j.Reason.Code), Reason: "stopped at the moment of use: " + j.Reason.Text,
		PolicyDigest: j.Decision.PolicyDigest, PlanDigest: j.PlanDigest}
	switch j.Outcome {
	case judgement.Denied:
		u.State = store.ExecDenied
	case judgement.Rejected:
		u.State = store.ExecRejected
	default:
		u.State = store.ExecWaiting
	}
	if j.Decision.Outcome != "" {
		u.Decision, _ = json.Marshal(j.Decision)
	}
	if j.Plan != nil {
		u.Plan, _ = json.Marshal(j.Plan)
	}
	if j.Verdict != nil {
		u.Verdict, _ = json.Marshal(verdictJSON(*j.Verdict))
	}
	return r.recordStop(ctx, e, u)
}

// recordStop sends a claimed operation the moment of use stopped to the
// state u says, with its audit entry and its version's status; the
// attempt it was claimed for is not counted.
func (r *Reconciler) recordStop(ctx context.Context, e *store.Execution, u store.Judged) error {
	ctx = context.WithoutCancel(ctx)
	err := r.store(ctx, func(tx *store.Store) error {
		if err := tx.StopExecution(ctx, e.ID, u); err != nil {
			return err
		}
		ne, err := tx.ExecutionByID(ctx, e.ID)
		if err != nil {
			return err
		}
		entries := []audit.Entry{executionEntry(ne, eventStopped, ne.Reason)}
		es, err := r.syncVersionStatus(ctx, tx, ne, ne.CommitSHA)
		if err != nil {
			return err
		}
		entries = append(entries, es...)
		if ne.State == store.ExecCancelled && ne.Operation == string(action.Apply) {
			// An apply cancelled after its version's revert ran (the same
			// content back on the branch): the version is what its revert
			// made it (reverted, expired), not executing.
			rv, err := tx.ExecutionByKey(ctx, ne.Name, ne.Digest, string(action.Revert))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if rv != nil {
				es, err := r.syncVersionStatus(ctx, tx, rv, ne.CommitSHA)
				if err != nil {
					return err
				}
				entries = append(entries, es...)
			}
		}
		_, err = r.appendAudit(ctx, tx, entries...)
		return err
	})
	if err == nil {
		r.opts.Metrics.Executed(e.Operation, "stopped")
	}
	return err
}

// notInForce says why an apply or a heal may no longer run: its playbook
// left the branch, or another version of it replaced this one; or, the
// version on the branch, it may not act again (versionOver: a revert of it
// is recorded; for a heal, its version expired or its incident was
// resolved). For a revert, the counterpart (restoredInForce): the version
// it releases is back in force on the branch. "" when it may run.
func (r *Reconciler) notInForce(ctx context.Context, e *store.Execution) (judgement.Code, string, error) {
	if e.Operation == string(action.Revert) {
		return r.restoredInForce(ctx, e)
	}
	if e.Operation != string(action.Apply) && e.Operation != judgement.OperationHeal {
		return "", "", nil
	}
	what := "this attempt"
	if e.Operation == judgement.OperationHeal {
		what = "this heal"
	}
	a, err := r.opts.Store.ActiveByName(ctx, e.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return codeRemoved, fmt.Sprintf("the playbook was removed from the branch before %s ran; the removal's revert releases what it holds", what), nil
	case err != nil:
		return "", "", err
	case a.VersionID != e.VersionID:
		return codeSuperseded, fmt.Sprintf("playbook %s on the branch is another version now: this one was superseded before %s ran, and the update's revert releases what the new version drops", e.Name, what), nil
	}
	code, why, err := r.versionOver(ctx, e)
	if err != nil || why == "" {
		return "", "", err
	}
	return code, why + fmt.Sprintf(" (%s did not run)", what), nil
}

// restoredInForce says why a claimed revert of a removal or an update may
// not run: its very version is back in force on the branch (the same
// bytes merged again), and releasing what it holds would undo what the
// branch asks while its apply, completed, is never repeated (rule 4).
// Only a first attempt is cancelled so (restored: a later removal or
// update takes the revert up again); one that may have acted already,
// resumed after a crash or tried again, finishes (restorable). The commit
// that brings the version back cancels the revert that waits
// (cancelRestoredRevert); this is the check at the moment of use.
func (r *Reconciler) restoredInForce(ctx context.Context, e *store.Execution) (judgement.Code, string, error) {
	a, err := r.opts.Store.ActiveByName(ctx, e.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", "", nil
	case err != nil:
		return "", "", err
	case a.VersionID != e.VersionID:
		return "", "", nil
	}
	if ok, err := restorable(ctx, r.opts.Store, e, 1); err != nil || !ok {
		return "", "", err
	}
	return codeRestored, fmt.Sprintf("%s@%.12s is back on the branch (since commit %.12s): it is in force again, so this revert did not run; its next removal or update takes it up again",
		e.Name, e.Digest, a.SinceCommit), nil
}

// cancelAtUse cancels a claimed operation that may no longer run, with
// its audit entry and its version's status.
func (r *Reconciler) cancelAtUse(ctx context.Context, e *store.Execution, code judgement.Code, why string) error {
	return r.recordStop(ctx, e, store.Judged{State: store.ExecCancelled, ReasonCode: string(code), Reason: why,
		PolicyDigest: e.PolicyDigest, PlanDigest: e.PlanDigest, Decision: e.Decision, Plan: e.Plan, Verdict: e.Verdict})
}

// finish records an operation's per-target results and its end (completed,
// failed, or a retry after a transient error), with audit entries and the
// version's status, in one transaction. earlier is how many of its targets
// an earlier attempt applied (not sent to the backend again).
func (r *Reconciler) finish(ctx context.Context, e *store.Execution, plan *action.Plan, results []action.TargetResult, earlier int, runErr error) error {
	planned := map[string]string{}
	if plan != nil {
		for _, t := range plan.Targets {
			planned[t.Target] = t.Result
		}
	}
	rows := make([]store.TargetResult, 0, len(results))
	for _, res := range results {
		rows = append(rows, store.TargetResult{Target: res.Target, Planned: planned[res.Target], Result: res.Result, Detail: res.Detail})
	}
	retry := runErr != nil && errors.Is(runErr, action.ErrTransient) && e.Attempts < r.opts.MaxAttempts
	// Finishing must not be lost to a cancelled context (shutdown): the
	// backend has acted.
	ctx = context.WithoutCancel(ctx)
	var next []int64
	err := r.store(ctx, func(tx *store.Store) error {
		next = next[:0]
		if err := tx.SaveTargetResults(ctx, e.ID, rows); err != nil {
			return err
		}
		var entries []audit.Entry
		switch {
		case retry:
			at := r.opts.Now().Add(r.backoff(e.Attempts))
			why := fmt.Sprintf("transient error; retry at %s", at.UTC().Format(time.RFC3339))
			if err := tx.RetryExecution(ctx, e.ID, at, runErr.Error(), string(codeRetry), why); err != nil {
				return err
			}
			ne, err := tx.ExecutionByID(ctx, e.ID)
			if err != nil {
				return err
			}
			entry := executionEntry(ne, eventRetry, why)
			entry.Payload = withResults(entry.Payload, results)
			entries = append(entries, entry)
		default:
			state, msg, code := store.ExecCompleted, "", codeDone
			if runErr != nil {
				state, msg, code = store.ExecFailed, runErr.Error(), codeBackendError
				if errors.Is(runErr, errUnreadable) {
					code = codeUnreadable
				}
			}
			if err := tx.FinishExecution(ctx, e.ID, state, msg, string(code), outcome(e, results, earlier, runErr)); err != nil {
				return err
			}
			ne, err := tx.ExecutionByID(ctx, e.ID)
			if err != nil {
				return err
			}
			entry := executionEntry(ne, eventFor(state), msg)
			entry.Payload = withResults(entry.Payload, results)
			entries = append(entries, entry)
			es, err := r.syncVersionStatus(ctx, tx, ne, ne.CommitSHA)
			if err != nil {
				return err
			}
			entries = append(entries, es...)
			switch {
			case state == store.ExecCompleted && ne.Operation == string(action.Apply):
				es, ids, err := r.afterApply(ctx, tx, ne)
				if err != nil {
					return err
				}
				entries = append(entries, es...)
				next = append(next, ids...)
			case state == store.ExecFailed && ne.Operation == string(action.Apply) && (earlier > 0 || slices.ContainsFunc(results, func(r action.TargetResult) bool { return appliedResult(r.Result) })):
				// A partly applied playbook holds what it applied: its
				// expiry releases that on time, retried or not.
				es, err := r.scheduleExpiry(ctx, tx, ne, true)
				if err != nil {
					return err
				}
				entries = append(entries, es...)
			}
		}
		_, err := r.appendAudit(ctx, tx, entries...)
		return err
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	switch {
	case retry:
		r.opts.Metrics.Executed(e.Operation, "retry")
	case runErr != nil:
		r.status.Failed++
		r.opts.Metrics.Executed(e.Operation, "failed")
	default:
		r.status.Executed++
		r.opts.Metrics.Executed(e.Operation, "completed")
	}
	r.mu.Unlock()
	// What the apply let go (an update's revert) is judged now.
	for _, id := range next {
		if err := r.judgeByID(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// outcome says in one line what an operation did.
func outcome(e *store.Execution, results []action.TargetResult, earlier int, runErr error) string {
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Result]++
	}
	verb := "applied"
	if e.Operation == string(action.Revert) {
		verb = "reverted"
	}
	s := fmt.Sprintf("%s: %d changed, %d unchanged", verb, counts[action.Changed], counts[action.Unchanged])
	if n := counts[action.Failed]; n > 0 {
		s += fmt.Sprintf(", %d failed", n)
	}
	if earlier > 0 {
		s += fmt.Sprintf(", %d by an earlier attempt", earlier)
	}
	if runErr != nil {
		s = "failed: " + runErr.Error() + " (" + s + ")"
	}
	return s
}

func withResults(payload json.RawMessage, results []action.TargetResult) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return payload
	}
	auditResults(m, results)
	return audit.MustJSON(m)
}

// afterApply schedules what a completed apply starts: its expiry; and it
// returns the update's reverts waiting for it, to be judged.
func (r *Reconciler) afterApply(ctx context.Context, tx *store.Store, e *store.Execution) ([]audit.Entry, []int64, error) {
	var ids []int64
	entries, err := r.scheduleExpiry(ctx, tx, e, false)
	if err != nil {
		return nil, nil, err
	}
	waiting, err := tx.WaitingExecutions(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range waiting {
		if w.Trigger == string(judgement.Update) && w.Name == e.Name && w.Operation == string(action.Revert) {
			ids = append(ids, w.ID)
		}
	}
	return entries, ids, nil
}

// scheduleExpiry sets the expiry of an apply's version when its playbook
// has expiresAfter: the approved duration counts from the first attempt
// that acted on live systems, so an expiry already set (by an attempt
// that applied part of the targets and failed) stays, and a retry that
// finishes the apply later does not extend it. partly says the apply
// failed after applying some targets.
func (r *Reconciler) scheduleExpiry(ctx context.Context, tx *store.Store, e *store.Execution, partly bool) ([]audit.Entry, error) {
	pb, err := r.versionPlaybook(ctx, e)
	if err != nil {
		return nil, err
	}
	d, ok := pb.Expiry()
	if !ok {
		return nil, nil
	}
	v, err := tx.PlaybookVersionByID(ctx, e.VersionID)
	if err != nil {
		return nil, err
	}
	if v.ExpiresAt != nil {
		return nil, nil
	}
	at := r.opts.Now().Add(d)
	if err := tx.SetPlaybookExpiry(ctx, e.VersionID, &at); err != nil {
		return nil, err
	}
	payload := map[string]any{"expires_at": at.UTC().Format(time.RFC3339), "after": pb.Spec.ExpiresAfter}
	if partly {
		payload["partly_applied"] = true
	}
	return []audit.Entry{{
		Actor: audit.SystemActor, Event: audit.EventPlaybookExpiryScheduled, Success: true,
		Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: e.Name, Digest: e.Digest},
		Payload: audit.MustJSON(payload),
	}}, nil
}

// backoff is the pause before an execution's next attempt (1-based
// attempts so far), jittered.
func (r *Reconciler) backoff(attempt int) time.Duration {
	return retry.Backoff{Initial: r.opts.RetryBase, Max: r.opts.RetryMax}.Delay(attempt - 1)
}

// stepExpire records the revert of every applied playbook whose
// expiresAfter has passed. It is judged like every operation: the default
// policies let the revert a playbook scheduled run without approvals of
// its own (its time was part of the approved content), and a team that
// wants more changes its decision.rego (docs/design.md, What a revert
// needs).
func (r *Reconciler) stepExpire(ctx context.Context, p *pass) error {
	if p.holding {
		return nil
	}
	due, err := r.opts.Store.DueExpiries(ctx, r.opts.Now())
	if err != nil {
		return err
	}
	for _, v := range due {
		// What the version holds: every target of a completed apply,
		// those a partly applied one applied.
		targets, err := r.appliedTargets(ctx, v)
		if err != nil {
			return err
		}
		var id int64
		err = r.store(ctx, func(tx *store.Store) error {
			reason := fmt.Sprintf("expiresAfter %s has passed", v.ExpiresAt.UTC().Format(time.RFC3339))
			e, created, revived, err := r.createOperation(ctx, tx, store.Execution{
				VersionID: v.ID, Name: v.Name, Digest: v.Digest, Path: v.Path, Action: v.Action, Environment: v.Environment,
				Operation: string(action.Revert), CommitSHA: v.CommitSHA, Targets: slices.Clone(targets),
				Trigger: string(judgement.Expiry), ChangeType: "expiry", State: store.ExecWaiting,
				ReasonCode: string(codeIntended), Reason: reason,
			})
			if err != nil || !created {
				return err
			}
			id = e.ID
			entry := executionEntry(e, eventIntended, e.Reason)
			if revived {
				entry.Payload = withFields(entry.Payload, map[string]any{"revived": true})
			}
			_, err = r.appendAudit(ctx, tx, entry)
			return err
		})
		if err != nil {
			return err
		}
		if id != 0 {
			if err := r.judgeByID(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}
