package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/store"
)

// A failed operation — a backend error, or a playbook applied to some
// targets and not to others — is not a dead end: an executor may ask for a
// new attempt of the same operation (Retry). Its statements were signed
// for its content, the policy set that judged it and the plan they
// approved; while those three are unchanged they still count, so the
// retry needs no new signatures. It is still judged again at the moment
// of use like every attempt (a fresh decision, the statements verified
// again, live state read again), and the targets an earlier attempt
// applied are not applied again.

// codeRetryRequested: an executor asked for a new attempt of a failed
// operation; it runs once the check at the moment of use lets it.
const codeRetryRequested judgement.Code = "retry_requested"

// ErrNotRetryable is returned when a retry is asked for an operation that
// did not fail.
var ErrNotRetryable = errors.New("only a failed operation can be retried")

// ErrHeld is returned when writ holds (rewritten history, a rolled-back
// audit log): nothing executes, so nothing is retried.
var ErrHeld = errors.New("writ is holding: nothing executes until the hold is resolved")

// ErrRetryNoPlan is returned when the backend cannot plan the operation
// now: whether live state is still what was approved cannot be told.
var ErrRetryNoPlan = errors.New("cannot plan the operation now")

// What a RetryChangedError names.
const (
	ChangedContent = "content" // the playbook on the branch is no longer this content
	ChangedPolicy  = "policy"  // the policy set in force is not the one that judged it
	ChangedPlan    = "plan"    // live state is no longer what the approved plan leads to
)

// RetryChangedError refuses a retry because what the operation's
// statements bind changed: its content, the policy set or the plan.
type RetryChangedError struct {
	// What changed: ChangedContent, ChangedPolicy or ChangedPlan.
	What   string
	Detail string
}

func (e *RetryChangedError) Error() string {
	return fmt.Sprintf("the %s changed since the operation was approved: %s", e.What, e.Detail)
}

// Retry asks for a new attempt of a failed operation, as executor actor:
// allowed when its content is still the one on the branch (for a revert:
// not back on it), for an apply or a heal its version neither expired nor
// reverted (versionOver; for a heal also its incident open), the policy
// set in force is the one that judged it, and
// a fresh dry-run plan is the approved one or what it becomes once the
// targets applied so far are applied (action.(*Plan).ProgressedFrom). Then
// its statements still count. The operation goes back to pending (audited
// with the actor, execution.retry_requested) and runs through the
// executor like any other: judged again at the moment of use, and only
// its targets not applied yet are sent to the backend.
func (r *Reconciler) Retry(ctx context.Context, id int64, actor audit.Actor) (*store.Execution, error) {
	e, err := r.opts.Store.ExecutionByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := r.retryable(ctx, e); err != nil {
		return nil, err
	}
	now := r.opts.Now()
	var out *store.Execution
	err = r.store(ctx, func(tx *store.Store) error {
		locked, err := tx.LockExecution(ctx, id)
		if err != nil {
			return err
		}
		if locked.State != store.ExecFailed {
			return notRetryable(locked)
		}
		results, err := tx.ExecutionTargets(ctx, id)
		if err != nil {
			return err
		}
		applied, remaining := splitApplied(locked.Targets, results)
		reason := fmt.Sprintf("retry requested by %s", actor.ID)
		if len(applied) > 0 {
			reason += fmt.Sprintf(": %d of %d targets were applied by an earlier attempt and are not applied again",
				len(applied), len(locked.Targets))
		}
		if err := tx.RequeueFailedExecution(ctx, id, now, string(codeRetryRequested), reason); err != nil {
			return err
		}
		ne, err := tx.ExecutionByID(ctx, id)
		if err != nil {
			return err
		}
		entry := executionEntry(ne, audit.EventExecutionRetryRequested, reason)
		entry.Actor = actor
		entry.Payload = withFields(entry.Payload, map[string]any{"applied": applied, "remaining": remaining})
		entries := []audit.Entry{entry}
		es, err := r.syncVersionStatus(ctx, tx, ne, ne.CommitSHA)
		if err != nil {
			return err
		}
		if _, err := r.appendAudit(ctx, tx, append(entries, es...)...); err != nil {
			return err
		}
		out = ne
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.Nudge()
	return out, nil
}

// retryable checks what a retry needs: a failed operation, no hold that
// stops execution, its version not expired nor reverted (nor, for a heal,
// its incident resolved), and its content, policy set and plan unchanged.
func (r *Reconciler) retryable(ctx context.Context, e *store.Execution) error {
	if e.State != store.ExecFailed {
		return notRetryable(e)
	}
	if err := r.executionHeld(ctx); err != nil {
		return err
	}
	if err := r.contentInForce(ctx, e); err != nil {
		return err
	}
	if err := r.notExpired(ctx, e); err != nil {
		return err
	}
	if _, why, err := r.versionOver(ctx, e); err != nil {
		return err
	} else if why != "" {
		return fmt.Errorf("execution %d: %w: %s", e.ID, ErrNotRetryable, why)
	}
	t, err := r.currentTrust(ctx)
	if err != nil {
		return err
	}
	if d := t.Policies.Digest(); d != e.PolicyDigest {
		return &RetryChangedError{What: ChangedPolicy, Detail: fmt.Sprintf(
			"the policy set in force is %.12s, its approvals bind %.12s; it needs a judgement under the policies in force (change the playbook to record a new operation)",
			d, e.PolicyDigest)}
	}
	op, _, err := r.operation(ctx, e)
	if errors.Is(err, errUnreadable) {
		return fmt.Errorf("execution %d: %w: %w", e.ID, ErrNotRetryable, err)
	}
	if err != nil {
		return err
	}
	return r.planUnchanged(ctx, e, op)
}

func notRetryable(e *store.Execution) error {
	what := fmt.Sprintf("it is %s (%s)", e.State, e.Reason)
	switch e.State {
	case store.ExecCompleted:
		what = "it completed: an operation runs at most once; to run it again, change the playbook (its ticket, say)"
	case store.ExecWaiting, store.ExecPending, store.ExecExecuting:
		what = fmt.Sprintf("it is %s (%s): it runs when its judgement lets it", e.State, e.Reason)
	case store.ExecDenied, store.ExecRejected, store.ExecCancelled:
		what = fmt.Sprintf("it is %s (%s), which is final: to run such content, change it", e.State, e.Reason)
	}
	return fmt.Errorf("execution %d: %w: %s", e.ID, ErrNotRetryable, what)
}

// executionHeld refuses while a hold stops every execution: rewritten
// history or a rolled-back audit log (a held change to policies/ or
// .writ/ does not stop execution: the trusted version stays in force).
func (r *Reconciler) executionHeld(ctx context.Context) error {
	holds, err := r.opts.Store.OpenHolds(ctx)
	if err != nil {
		return err
	}
	for _, h := range holds {
		if h.Kind == store.HoldHistoryRewritten || h.Kind == store.HoldAuditRollback {
			return fmt.Errorf("%w: %s", ErrHeld, describeHold(h))
		}
	}
	return nil
}

// contentInForce checks that the operation is still what the branch asks:
// an apply's or a heal's version is the one on the branch under its name;
// a revert's version is not back on it (an expiry's revert is due whatever
// the branch holds).
func (r *Reconciler) contentInForce(ctx context.Context, e *store.Execution) error {
	a, err := r.opts.Store.ActiveByName(ctx, e.Name)
	if errors.Is(err, store.ErrNotFound) {
		a, err = nil, nil
	}
	if err != nil {
		return err
	}
	acts := e.Operation == string(action.Apply) || e.Operation == judgement.OperationHeal
	switch {
	case acts && a == nil:
		return &RetryChangedError{What: ChangedContent, Detail: fmt.Sprintf(
			"playbook %s is no longer on the branch; its removal is an operation of its own", e.Name)}
	case acts && a.VersionID != e.VersionID:
		v, err := r.opts.Store.PlaybookVersionByID(ctx, a.VersionID)
		if err != nil {
			return err
		}
		return &RetryChangedError{What: ChangedContent, Detail: fmt.Sprintf(
			"playbook %s on the branch is now %.12s, not the %.12s this operation applies; the new version is an operation of its own",
			e.Name, v.Digest, e.Digest)}
	case e.Operation == string(action.Revert) && e.Trigger != string(judgement.Expiry) && a != nil && a.VersionID == e.VersionID:
		return &RetryChangedError{What: ChangedContent, Detail: fmt.Sprintf(
			"the content this operation releases (%s@%.12s) is on the branch again", e.Name, e.Digest)}
	}
	return nil
}

// notExpired refuses to apply again a playbook whose expiresAfter has
// passed: its time, part of what was approved, counts from the first
// attempt that acted, and its expiry releases what that attempt applied.
func (r *Reconciler) notExpired(ctx context.Context, e *store.Execution) error {
	if e.Operation != string(action.Apply) {
		return nil
	}
	v, err := r.opts.Store.PlaybookVersionByID(ctx, e.VersionID)
	if err != nil {
		return err
	}
	if v.ExpiresAt == nil || r.opts.Now().Before(*v.ExpiresAt) {
		return nil
	}
	return fmt.Errorf("execution %d: %w: playbook %s expired at %s (its expiresAfter counts from the attempt that first applied part of it); its expiry releases what was applied, and an expired playbook is not applied again: to act again, change the playbook",
		e.ID, ErrNotRetryable, e.Name, v.ExpiresAt.UTC().Format(time.RFC3339))
}

// versionOver says why an apply or a heal may no longer act on live
// systems although its version is the one on the branch ("" when it may),
// with the code it is cancelled with at the moment of use:
//
//   - a revert of its version is recorded, in any state but cancelled
//     before it ran: the same content merged again after it was removed
//     (or replaced) is not in force again (trust rule 4: it is not applied
//     again, retried or healed), and what it applied now could never be
//     released, since the version's revert, keyed by (name, digest,
//     revert), is already the one recorded. A revert its version's return
//     cancelled before it ran (restored) does not count: the next removal
//     or update takes it up again (createOperation);
//   - for a heal, its version's expiresAfter has passed (its expiry
//     releases what the version holds), or its drift incident was
//     resolved (a drift that comes back is a new incident with a heal of
//     its own).
//
// Retry refuses such an operation, and notInForce cancels it at the moment
// of use.
func (r *Reconciler) versionOver(ctx context.Context, e *store.Execution) (judgement.Code, string, error) {
	heal := e.Operation == judgement.OperationHeal
	if e.Operation != string(action.Apply) && !heal {
		return "", "", nil
	}
	if heal {
		v, err := r.opts.Store.PlaybookVersionByID(ctx, e.VersionID)
		if err != nil {
			return "", "", err
		}
		if v.ExpiresAt != nil && !r.opts.Now().Before(*v.ExpiresAt) {
			return codeDriftResolved, fmt.Sprintf("playbook %s expired at %s: its expiry releases what it holds, and an expired version is not healed; to act again, change the playbook",
				e.Name, v.ExpiresAt.UTC().Format(time.RFC3339)), nil
		}
	}
	rv, err := r.opts.Store.ExecutionByKey(ctx, e.Name, e.Digest, string(action.Revert))
	if err == nil && rv.State == store.ExecCancelled {
		// A revert cancelled before it ran (its version came back on the
		// branch): the version is in force again, and the next removal or
		// update takes that revert up again to release what it holds.
		unrun, uerr := neverRan(ctx, r.opts.Store, rv, 0)
		if uerr != nil {
			return "", "", uerr
		}
		if unrun {
			rv, err = nil, store.ErrNotFound
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return "", "", err
	default:
		code := codeRemoved
		switch {
		case heal:
			code = codeDriftResolved
		case rv.Trigger == string(judgement.Update):
			code = codeSuperseded
		case rv.Trigger == string(judgement.BreakGlass):
			code = codeBreakGlassLapsed
		}
		return code, fmt.Sprintf("a revert of %s@%.12s is recorded (execution %d, trigger %s, %s): a version does not act again after its revert, even when the same content is back on the branch, and nothing could release what it applied now; to act again, change the playbook (its ticket, say)",
			e.Name, e.Digest, rv.ID, rv.Trigger, rv.State), nil
	}
	if heal {
		inc, err := r.opts.Store.IncidentByID(ctx, e.Incident)
		if err != nil {
			return "", "", err
		}
		if inc.ResolvedAt != nil {
			return codeDriftResolved, fmt.Sprintf("drift incident %d was resolved at %s: a drift that comes back is a new incident, with a heal of its own",
				inc.ID, inc.ResolvedAt.UTC().Format(time.RFC3339)), nil
		}
	}
	return "", "", nil
}

// planUnchanged reads live state through the backend's dry-run and checks
// it is the plan the operation was approved with, or what that plan
// becomes once some of its changes happened.
func (r *Reconciler) planUnchanged(ctx context.Context, e *store.Execution, op judgement.Operation) error {
	if op.Targets != nil && len(op.Targets) == 0 {
		return nil // another playbook in force holds every target: no backend is called
	}
	fresh, err := r.opts.Backends.Plan(ctx, op.Request())
	if err != nil {
		return fmt.Errorf("execution %d: %w: %w", e.ID, ErrRetryNoPlan, err)
	}
	digest := fresh.Digest()
	if digest == e.PlanDigest {
		return nil
	}
	var approved *action.Plan
	if len(e.Plan) > 0 {
		var p action.Plan
		if json.Unmarshal(e.Plan, &p) == nil {
			approved = &p
		}
	}
	if approved != nil && approved.Digest() == e.PlanDigest && fresh.ProgressedFrom(approved) {
		return nil
	}
	return &RetryChangedError{What: ChangedPlan, Detail: fmt.Sprintf(
		"live state changed: the plan is now %.12s, not the approved %.12s%s; its approvals do not cover that plan: change the playbook (its new version is judged and approved as an operation of its own)",
		digest, e.PlanDigest, judgement.PlanDifference(approved, fresh))}
}

// appliedResult reports whether a stored per-target result means the
// target is in the state the operation leads to (changed by it, or found
// so).
func appliedResult(result string) bool {
	return result == action.Changed || result == action.Unchanged
}

// splitApplied sorts an operation's targets into those an attempt applied
// and the rest (failed, or never attempted), in the operation's order.
func splitApplied(targets []string, results []store.TargetResult) (applied, remaining []string) {
	done := map[string]bool{}
	for _, t := range results {
		if appliedResult(t.Result) {
			done[t.Target] = true
		}
	}
	applied, remaining = []string{}, []string{}
	for _, t := range targets {
		if done[t] {
			applied = append(applied, t)
		} else {
			remaining = append(remaining, t)
		}
	}
	return applied, remaining
}

// appliedBefore is the set of an operation's targets an earlier attempt
// applied: they are not sent to the backend again.
func (r *Reconciler) appliedBefore(ctx context.Context, e *store.Execution) (map[string]bool, error) {
	results, err := r.opts.Store.ExecutionTargets(ctx, e.ID)
	if err != nil {
		return nil, err
	}
	applied, _ := splitApplied(e.Targets, results)
	out := make(map[string]bool, len(applied))
	for _, t := range applied {
		out[t] = true
	}
	return out, nil
}

// partlyApplied is what a failed apply did apply: the targets whose
// result is changed or unchanged, which a revert of it releases.
func (r *Reconciler) partlyApplied(ctx context.Context, e *store.Execution) ([]string, error) {
	results, err := r.opts.Store.ExecutionTargets(ctx, e.ID)
	if err != nil {
		return nil, err
	}
	applied, _ := splitApplied(e.Targets, results)
	return slices.Clip(applied), nil
}

// mayHaveApplied is what an apply may hold in live state, whatever its
// state: every target once it completed; the targets whose recorded
// result is applied once it failed (partlyApplied); nothing before its
// first attempt; and once an attempt ran but the apply went back to
// waiting or pending (a retry), or ended rejected, denied or cancelled
// (stopped or cancelled at the moment of use, a lapsed break-glass), the
// targets an attempt recorded as applied and those no attempt recorded a
// result for, which an attempt interrupted before it could record them
// may have applied (releasing a target that was not applied is a no-op).
// An executing apply may have applied every target.
func (r *Reconciler) mayHaveApplied(ctx context.Context, e *store.Execution) ([]string, error) {
	switch {
	case e.State == store.ExecCompleted, e.State == store.ExecExecuting:
		return slices.Clone(e.Targets), nil
	case e.State == store.ExecFailed:
		return r.partlyApplied(ctx, e)
	case e.Attempts == 0:
		return nil, nil
	}
	results, err := r.opts.Store.ExecutionTargets(ctx, e.ID)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(results))
	applied := make(map[string]bool, len(results))
	for _, t := range results {
		known[t.Target] = true
		applied[t.Target] = appliedResult(t.Result)
	}
	var out []string
	for _, t := range e.Targets {
		if applied[t] || !known[t] {
			out = append(out, t)
		}
	}
	return out, nil
}

func withFields(payload json.RawMessage, fields map[string]any) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return payload
	}
	for k, v := range fields {
		m[k] = v
	}
	return audit.MustJSON(m)
}
