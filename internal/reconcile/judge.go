package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/store"
)

// stepJudge judges again every operation not started yet (waiting, and
// pending: a rejection or a withdrawal must stop it too): statements may
// have arrived, expired or been withdrawn, live state (the plan) may have
// changed, and the trust in force may have changed.
//
// A full sweep runs every JudgeInterval (statements expire, live state
// drifts) and whenever the adopted trust changes; in between, only
// operations whose statements changed are judged, so a pass costs what
// changed, not what waits.
func (r *Reconciler) stepJudge(ctx context.Context, p *pass) error {
	now := r.opts.Now()
	var ops []*store.Execution
	var err error
	full := now.Sub(r.lastSweep) >= r.opts.JudgeInterval || p.state == nil || p.state.AdoptedSHA != r.sweptTrust
	if full {
		var dbNow time.Time
		if dbNow, err = r.opts.Store.Now(ctx); err == nil {
			ops, err = r.opts.Store.UndoneExecutions(ctx)
			r.approvalsSeen = dbNow.Add(-time.Second)
		}
	} else {
		ops, r.approvalsSeen, err = r.opts.Store.WaitingExecutionsTouchedSince(ctx, r.approvalsSeen)
	}
	if err != nil {
		return err
	}
	if err := r.judgeAll(ctx, ops); err != nil {
		return err
	}
	if full {
		r.lastSweep = now
		if p.state != nil {
			r.sweptTrust = p.state.AdoptedSHA
		}
	}
	return nil
}

// judgeAll judges operations under the trust in force, loading their
// statements and versions in one query each, and records the judgements
// that changed in transactions of judgeBatch operations (a trust change
// re-judges everything not yet done: it must cost a few round trips per
// hundred operations, not several per operation).
func (r *Reconciler) judgeAll(ctx context.Context, ops []*store.Execution) error {
	if len(ops) == 0 {
		return nil
	}
	t, err := r.currentTrust(ctx)
	if err != nil {
		return err
	}
	digests := make([]string, 0, len(ops))
	ids := make([]int64, 0, len(ops))
	for _, e := range ops {
		digests = append(digests, e.Digest)
		ids = append(ids, e.VersionID)
	}
	byDigest, err := r.opts.Store.ApprovalsForDigests(ctx, digests)
	if err != nil {
		return err
	}
	versions, err := r.opts.Store.PlaybookVersionsByID(ctx, ids)
	if err != nil {
		return err
	}
	var changed []judged
	for _, e := range ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		envs := make([]approval.Submitted, 0, len(byDigest[e.Digest]))
		for _, a := range byDigest[e.Digest] {
			envs = append(envs, submitted(a))
		}
		u, err := r.judgement(ctx, e, versions[e.VersionID], t, envs)
		if err != nil {
			return fmt.Errorf("judge execution %d (%s %s): %w", e.ID, e.Operation, e.Name, err)
		}
		if !unchanged(e, u) {
			changed = append(changed, judged{e, u})
		}
		if len(changed) == judgeBatch {
			if err := r.recordJudgements(ctx, changed); err != nil {
				return err
			}
			changed = changed[:0]
		}
	}
	return r.recordJudgements(ctx, changed)
}

// judgeBatch is how many changed judgements one transaction records.
const judgeBatch = 200

// judged is an operation and its new judgement.
type judged struct {
	e *store.Execution
	u store.Judged
}

// judgeByID judges one operation if it has not started.
func (r *Reconciler) judgeByID(ctx context.Context, id int64) error {
	e, err := r.opts.Store.ExecutionByID(ctx, id)
	if err != nil {
		return err
	}
	if e.State != store.ExecWaiting && e.State != store.ExecPending {
		return nil
	}
	t, err := r.currentTrust(ctx)
	if err != nil {
		return err
	}
	envs, err := r.envelopesFor(ctx, e.Digest)
	if err != nil {
		return err
	}
	return r.judgeWith(ctx, e, t, envs)
}

// approvedOf is what a pending or executing operation was approved with:
// the plan of the judgement that let it run. A waiting one has none.
func approvedOf(e *store.Execution) *judgement.Approved {
	if e.State == store.ExecWaiting {
		return nil
	}
	a := &judgement.Approved{PlanDigest: e.PlanDigest}
	if len(e.Plan) > 0 {
		var p action.Plan
		if json.Unmarshal(e.Plan, &p) == nil {
			a.Plan = &p
		}
	}
	// Executing: the claim counted this attempt; an earlier one may have
	// changed live state. Pending with attempts: a retry after one did.
	a.Resuming = e.Attempts > 1 || e.State == store.ExecPending && e.Attempts > 0
	return a
}

// judgeWith judges an operation that has not started (waiting or pending)
// and records what changed.
func (r *Reconciler) judgeWith(ctx context.Context, e *store.Execution, t *trusted, envs []approval.Submitted) error {
	u, err := r.judgement(ctx, e, nil, t, envs)
	if err != nil {
		return err
	}
	if unchanged(e, u) {
		return nil
	}
	return r.recordJudgements(ctx, []judged{{e, u}})
}

// judgement judges an operation that has not started (its version v
// preloaded, or nil to load it): a pending one against what it was
// approved with, as at the moment of use.
func (r *Reconciler) judgement(ctx context.Context, e *store.Execution, v *store.PlaybookVersion, t *trusted, envs []approval.Submitted) (store.Judged, error) {
	op, _, err := r.operationOf(ctx, e, v)
	if errors.Is(err, errUnreadable) {
		// Nothing can judge it until its content parses again (the action
		// it uses is configured again): it waits, and says why.
		return store.Judged{State: store.ExecWaiting, ReasonCode: string(codeUnreadable), Reason: err.Error(),
			Decision: e.Decision, PolicyDigest: e.PolicyDigest, PlanDigest: e.PlanDigest, Plan: e.Plan, Verdict: e.Verdict}, nil
	}
	if err != nil {
		return store.Judged{}, err
	}
	return r.next(ctx, e, r.judgeOp(ctx, e, op, t, envs))
}

// judgeOp judges an execution's operation under trust t with its
// statements: fresh, or for a pending or claimed one against what it was
// approved with (approvedOf), as at the moment of use.
func (r *Reconciler) judgeOp(ctx context.Context, e *store.Execution, op judgement.Operation, t *trusted, envs []approval.Submitted) judgement.Judgement {
	j := judgement.Judge(ctx, op, r.judging(t), judgement.Inputs{
		Planner: r.opts.Backends, Envelopes: envs, Now: r.opts.Now(), Approved: approvedOf(e),
		NoBreakGlass: r.noBreakGlass(ctx, e, op),
	})
	if j.DecisionTime > 0 {
		r.opts.Metrics.PolicyDecision(j.DecisionTime)
	}
	return j
}

// executionEvents name the audit event of an operation reaching a state.
// An operation becomes executing through its claim (execution.started or
// execution.resumed), never through eventFor.
var executionEvents = map[store.ExecState]audit.Event{
	store.ExecWaiting:   audit.EventExecutionWaiting,
	store.ExecPending:   audit.EventExecutionPending,
	store.ExecCompleted: audit.EventExecutionCompleted,
	store.ExecFailed:    audit.EventExecutionFailed,
	store.ExecDenied:    audit.EventExecutionDenied,
	store.ExecRejected:  audit.EventExecutionRejected,
	store.ExecCancelled: audit.EventExecutionCancelled,
	store.ExecExecuting: audit.EventExecutionStarted,
}

// eventFor is the audit event of an operation reaching state s.
func eventFor(s store.ExecState) audit.Event {
	if e, ok := executionEvents[s]; ok {
		return e
	}
	return audit.Event("execution." + string(s)) // a state added to the store without its event: still recorded
}

// next maps a judgement of an operation not started to what is recorded:
// its state, reason and the judgement's decision, plan and verdict.
func (r *Reconciler) next(ctx context.Context, e *store.Execution, j judgement.Judgement) (store.Judged, error) {
	u := store.Judged{ReasonCode: string(j.Reason.Code), Reason: j.Reason.Text, PolicyDigest: j.Decision.PolicyDigest}
	if j.Decision.Outcome != "" {
		u.Decision, _ = json.Marshal(j.Decision)
	}
	if j.Verdict != nil {
		u.Verdict, _ = json.Marshal(verdictJSON(*j.Verdict))
	}
	record := func(plan *judgementPlan) {
		if plan.plan != nil {
			u.Plan, _ = json.Marshal(plan.plan)
		}
		u.PlanDigest = plan.digest
	}
	fresh := &judgementPlan{plan: j.Plan, digest: j.PlanDigest}
	switch j.Outcome {
	case judgement.Denied:
		u.State = store.ExecDenied
		record(fresh)
		return u, nil
	case judgement.Rejected:
		u.State = store.ExecRejected
		record(fresh)
		return u, nil
	case judgement.Waiting:
		u.State = store.ExecWaiting
		record(fresh)
		return u, nil
	}
	// Ready.
	if e.State == store.ExecPending {
		// It keeps the plan it was approved with, its time and its reason.
		u.State, u.ReasonCode, u.Reason = store.ExecPending, e.ReasonCode, e.Reason
		u.PlanDigest, u.Plan = e.PlanDigest, e.Plan
		return u, nil
	}
	record(fresh)
	if e.Trigger == string(judgement.Update) {
		done, waitFor, err := r.updateApplied(ctx, e)
		if err != nil {
			return u, err
		}
		if !done {
			u.State, u.ReasonCode = store.ExecWaiting, string(codeAfterApply)
			u.Reason = fmt.Sprintf("runs after %s is applied (%s)", waitFor, j.Reason.Text)
			return u, nil
		}
	}
	if e.Manual && e.Operation == string(action.Apply) {
		u.State, u.ReasonCode = store.ExecWaiting, string(codeAwaitingRunner)
		u.Reason = j.Reason.Text + "; waiting for an executor (execution: manual)"
		return u, nil
	}
	now := r.opts.Now()
	u.State, u.NotBefore = store.ExecPending, &now
	return u, nil
}

type judgementPlan struct {
	plan   *action.Plan
	digest string
}

// updateApplied reports whether the update an update's revert belongs to
// has been applied: the version now in force under the name completed its
// apply (or the name left the branch, so nothing is left to wait for).
func (r *Reconciler) updateApplied(ctx context.Context, e *store.Execution) (bool, string, error) {
	a, err := r.opts.Store.ActiveByName(ctx, e.Name)
	if errors.Is(err, store.ErrNotFound) {
		return true, "", nil
	}
	if err != nil {
		return false, "", err
	}
	v, err := r.opts.Store.PlaybookVersionByID(ctx, a.VersionID)
	if err != nil {
		return false, "", err
	}
	what := fmt.Sprintf("%s@%.12s", v.Name, v.Digest)
	if v.Digest == e.Digest {
		return true, what, nil
	}
	applied, err := r.opts.Store.ExecutionByKey(ctx, v.Name, v.Digest, string(action.Apply))
	if errors.Is(err, store.ErrNotFound) {
		return false, what, nil
	}
	if err != nil {
		return false, what, err
	}
	return applied.State == store.ExecCompleted, what, nil
}

// verdictJSON is the part of a verdict the API and the audit log show.
func verdictJSON(v approval.Verdict) map[string]any {
	counted := []string{}
	for _, c := range v.Counted {
		counted = append(counted, c.Approver)
	}
	var notCounted []map[string]any
	for _, n := range v.NotCounted {
		notCounted = append(notCounted, map[string]any{"approver": n.Approver, "code": string(n.Code), "message": n.Message})
	}
	var rejected []map[string]string
	for _, rj := range v.Rejected {
		rejected = append(rejected, map[string]string{"approver": rj.Approver, "reason": rj.Reason})
	}
	out := map[string]any{
		"quorum_met": v.QuorumMet, "required": v.Required, "missing": v.Missing, "counted": counted,
		"proposer": v.Proposer, "proposal_missing": v.ProposalMissing, "summary": v.Summary(),
	}
	if notCounted != nil {
		out["not_counted"] = notCounted
	}
	if rejected != nil {
		out["rejected"] = rejected
	}
	if v.ValidUntil != nil {
		out["valid_until"] = *v.ValidUntil
	}
	return out
}

// unchanged reports whether a judgement records nothing new.
func unchanged(e *store.Execution, u store.Judged) bool {
	return u.State == e.State && u.ReasonCode == e.ReasonCode && u.Reason == e.Reason && u.PlanDigest == e.PlanDigest &&
		jsonEqual(u.Verdict, e.Verdict) && jsonEqual(u.Decision, e.Decision)
}

// recordJudgements writes judgements that changed something, each with its
// audit entry and its version's status, in one transaction. An operation
// that started (or ended) meanwhile keeps what it has.
func (r *Reconciler) recordJudgements(ctx context.Context, list []judged) error {
	if len(list) == 0 {
		return nil
	}
	return r.store(ctx, func(tx *store.Store) error {
		var entries []audit.Entry
		for _, c := range list {
			ne, err := tx.RecordJudgement(ctx, c.e.ID, c.u, c.e.State)
			if errors.Is(err, store.ErrConflict) {
				continue
			}
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
		if len(entries) == 0 {
			return nil
		}
		_, err := r.appendAudit(ctx, tx, entries...)
		return err
	})
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ax, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(ax) == string(by)
}
