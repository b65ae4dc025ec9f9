package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/store"
)

// stepJudge re-judges every operation waiting for approvals: approvals may
// have arrived, expired or been withdrawn, and live state (the plan) may
// have changed.
//
// A full sweep runs every JudgeInterval (approvals expire, live state
// drifts) and when the trusted approvers change; in between, only
// operations whose approvals changed are judged, so a pass costs what
// changed, not what waits.
func (r *Reconciler) stepJudge(ctx context.Context, p *pass) error {
	now := r.opts.Now()
	var waiting []*store.Execution
	var err error
	full := now.Sub(r.lastSweep) >= r.opts.JudgeInterval || p.state == nil || p.state.AdoptedSHA != r.sweptTrust
	if full {
		var dbNow time.Time
		if dbNow, err = r.opts.Store.Now(ctx); err == nil {
			waiting, err = r.opts.Store.WaitingExecutions(ctx)
			r.approvalsSeen = dbNow.Add(-time.Second)
		}
	} else {
		waiting, r.approvalsSeen, err = r.opts.Store.WaitingExecutionsTouchedSince(ctx, r.approvalsSeen)
	}
	if err != nil {
		return err
	}
	if full {
		r.lastSweep = now
		if p.state != nil {
			r.sweptTrust = p.state.AdoptedSHA
		}
	}
	for _, e := range waiting {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.judge(ctx, e); err != nil {
			return fmt.Errorf("judge execution %d (%s): %w", e.ID, e.Name, err)
		}
	}
	return nil
}

func (r *Reconciler) judgeByID(ctx context.Context, id int64) error {
	e, err := r.opts.Store.ExecutionByID(ctx, id)
	if err != nil {
		return err
	}
	if e.State != store.ExecWaiting {
		return nil
	}
	return r.judge(ctx, e)
}

// versionPlaybook parses the stored content of an operation's version.
func (r *Reconciler) versionPlaybook(ctx context.Context, e *store.Execution) (*playbook.Playbook, error) {
	v, err := r.opts.Store.PlaybookVersionByID(ctx, e.VersionID)
	if err != nil {
		return nil, err
	}
	pb, problems := playbook.Parse(v.Path, v.Content, playbook.Options{Actions: r.opts.Catalog})
	if problems != nil {
		return nil, fmt.Errorf("stored playbook %s no longer parses: %w", v.Name, problems)
	}
	return pb, nil
}

// request builds the backend request of an operation. A revert releases
// only targets no other playbook in force still holds.
func (r *Reconciler) request(ctx context.Context, e *store.Execution, pb *playbook.Playbook) (action.Request, []string, error) {
	req := action.Request{
		Playbook: e.Name, Digest: e.Digest, Action: e.Action, Environment: e.Environment,
		Operation: action.Operation(e.Operation), Targets: slices.Clone(e.Targets), Params: pb.Spec.Params,
		IdempotencyKey: fmt.Sprintf("writ:%s:%s:%s", e.Name, e.Digest, e.Operation),
	}
	var held []string
	if req.Operation == action.Revert {
		h, err := r.opts.Store.HeldTargets(ctx, e.Action, e.Environment, e.VersionID)
		if err != nil {
			return req, nil, err
		}
		req.Targets = slices.DeleteFunc(req.Targets, func(t string) bool {
			if h[t] {
				held = append(held, t)
				return true
			}
			return false
		})
	}
	return req, held, nil
}

// judge decides what a waiting operation does next: wait, run, or stop.
func (r *Reconciler) judge(ctx context.Context, e *store.Execution) error {
	if e.Trigger == "update" {
		return nil // runs when the update's apply completes
	}
	var d policy.Decision
	if err := json.Unmarshal(e.Decision, &d); err != nil {
		return fmt.Errorf("stored decision: %w", err)
	}
	pb, err := r.versionPlaybook(ctx, e)
	if err != nil {
		return err
	}
	req, _, err := r.request(ctx, e, pb)
	if err != nil {
		return err
	}
	u := store.ExecutionUpdate{State: store.ExecWaiting, Decision: e.Decision, PolicyDigest: e.PolicyDigest}
	plan, perr := r.planOf(ctx, req)
	if perr != nil {
		u.Reason = "cannot plan yet: " + perr.Error()
		return r.applyJudgement(ctx, e, u)
	}
	u.Plan, _ = json.Marshal(plan)
	u.PlanDigest = plan.Digest()

	adopted, err := r.currentTrust(ctx)
	if err != nil {
		return err
	}
	envs, err := r.envelopesFor(ctx, e.Digest)
	if err != nil {
		return err
	}
	verdict := approval.Verify(approval.Input{
		Subject:           approval.Subject{Path: e.Path, Digest: e.Digest},
		Repository:        r.opts.Repository,
		ApprovalsRequired: d.ApprovalsRequired,
		ApproverRoles:     d.ApproverRoles,
		PolicyDigest:      e.PolicyDigest,
		PlanDigest:        u.PlanDigest,
		Keyring:           adopted.keyring,
		Envelopes:         envs,
		Now:               r.opts.Now(),
		Options:           r.opts.Approval,
	})
	u.Verdict, _ = json.Marshal(verdictJSON(verdict))
	switch {
	case len(verdict.Rejected) > 0:
		u.State = store.ExecRejected
		var parts []string
		for _, rj := range verdict.Rejected {
			parts = append(parts, fmt.Sprintf("%s (%s)", rj.Approver, rj.Reason))
		}
		u.Reason = "rejected by " + strings.Join(parts, ", ")
	case verdict.QuorumMet && e.Manual && e.Operation == string(action.Apply):
		u.Reason = "approved; waiting for an executor (execution: manual)"
	case verdict.QuorumMet:
		u.State = store.ExecPending
		now := r.opts.Now()
		u.NotBefore = &now
		if d.Outcome == policy.Allow {
			u.Reason = "allowed by policy"
		} else {
			u.Reason = "approved: " + verdict.Summary()
		}
		if verdict.Proposer != "" && d.Outcome == policy.Allow {
			u.Reason += "; proposed by " + verdict.Proposer
		}
	default:
		u.Reason = "awaiting approval: " + verdict.Summary()
		if verdict.Err != nil && errors.Is(adopted.keyringErr, errNoApprovers) {
			u.Reason += " (the repository has no .writ/approvers.yaml)"
		}
	}
	return r.applyJudgement(ctx, e, u)
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

// applyJudgement writes a judgement that changed something, with its audit
// entry and the version's status, in one transaction.
func (r *Reconciler) applyJudgement(ctx context.Context, e *store.Execution, u store.ExecutionUpdate) error {
	if u.State == e.State && u.Reason == e.Reason && u.PlanDigest == e.PlanDigest && jsonEqual(u.Verdict, e.Verdict) {
		return nil
	}
	return r.store(ctx, func(tx *store.Store) error {
		if err := tx.UpdateExecution(ctx, e.ID, u); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return nil // it started meanwhile
			}
			return err
		}
		ne, err := tx.ExecutionByID(ctx, e.ID)
		if err != nil {
			return err
		}
		entries := []audit.Entry{executionEntry(ne, "execution."+ne.State, ne.Reason)}
		es, err := r.syncVersionStatus(ctx, tx, ne, ne.CommitSHA)
		if err != nil {
			return err
		}
		entries = append(entries, es...)
		_, err = r.appendAudit(ctx, tx, entries...)
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

// currentTrust is the trust in force now.
func (r *Reconciler) currentTrust(ctx context.Context) (*trust, error) {
	st, err := r.opts.Store.RepoState(ctx)
	if err != nil {
		return nil, err
	}
	return r.trustAt(ctx, st.AdoptedSHA)
}

// planOf dry-runs a request; a revert with nothing left to release needs no
// backend.
func (r *Reconciler) planOf(ctx context.Context, req action.Request) (*action.Plan, error) {
	if len(req.Targets) == 0 {
		return &action.Plan{Action: req.Action, Backend: "none", Environment: req.Environment, Operation: req.Operation, Targets: []action.TargetPlan{}}, nil
	}
	return r.opts.Backends.Plan(ctx, req)
}
