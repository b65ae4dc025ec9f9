// Package judgement is writ's one judgement of an operation: given an
// operation on live systems (the apply of a playbook, or one of its
// reverts) and the trust in force (policy set, approvers keyring,
// repository identity), it returns the policy decision, the dry-run plan
// and the verdict on the signed statements, and sums them up as one
// outcome with a typed reason.
//
// Every caller judges through Judge: the reconciler when an operation is
// intended, whenever its statements or the trust change, and immediately
// before every backend call (with Inputs.Approved, the time-of-use check);
// the API's dry-run; `writ plan`; `writ approvals verify`; and the pull
// request check. The trust rules it enforces are in docs/design.md.
package judgement

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
)

// Trigger says why an operation exists.
type Trigger string

// Triggers.
const (
	// Merge: a merged playbook is applied (created or changed).
	Merge Trigger = "merge"
	// Update: an update dropped targets of the version it replaces; their
	// revert.
	Update Trigger = "update"
	// Delete: a deleted playbook is reverted.
	Delete Trigger = "delete"
	// Expiry: a playbook's expiresAfter passed; its revert.
	Expiry Trigger = "expiry"
	// BreakGlass: an emergency apply that ran on a break-glass statement
	// did not gather its normal quorum within the window (or was rejected
	// meanwhile); its revert.
	BreakGlass Trigger = "breakglass"
	// Proposed: a change judged before it is merged (a pull request, a
	// dry-run, `writ plan`); nothing runs.
	Proposed Trigger = "proposed"
	// Drift: a drift check found targets of a playbook in force missing
	// from live state; their heal re-applies them (an apply, judged as
	// one, whose statements name the heal and its incident).
	Drift Trigger = "drift"
)

// OperationHeal is the operation of a heal as executions record it and
// statements name it (approval.OperationHeal).
const OperationHeal = approval.OperationHeal

// Operation is one thing writ may do to a live system.
type Operation struct {
	// Kind is apply (contain the targets) or revert (release them).
	Kind action.Operation
	// Trigger says why it exists.
	Trigger Trigger
	// ChangeType is what policies see as input.change.type: create or
	// update for an apply; delete, update or expiry for a revert.
	ChangeType string
	// Playbook is the content acted on: for a revert, the version being
	// undone. Its digest is what statements sign.
	Playbook *playbook.Playbook
	// Targets are the canonical targets acted on (a revert releases only
	// what no other playbook in force still holds; an update's revert only
	// the dropped targets). Nil: every target of the playbook.
	Targets []string
	// PullRequest, when not 0, is passed to policies.
	PullRequest int
	// Incident is the drift incident a heal (Trigger Drift) answers.
	Incident int64
}

// Heal reports whether the operation re-applies drifted targets.
func (o Operation) Heal() bool { return o.Trigger == Drift && o.Kind == action.Apply }

// Signed is the operation statements must name: apply, revert, or heal
// for the heal of a drift incident (whose statements also name the
// incident), so that the statements of an apply never authorise a heal.
func (o Operation) Signed() string {
	if o.Heal() {
		return OperationHeal
	}
	return string(o.Kind)
}

// Request is the backend request of the operation.
func (o Operation) Request() action.Request {
	req := action.RequestFor(o.Playbook, o.Kind)
	if o.Targets != nil {
		req.Targets = slices.Clone(o.Targets)
	}
	req.IdempotencyKey = fmt.Sprintf("writ:%s:%s:%s", req.Playbook, req.Digest, req.Operation)
	if o.Heal() {
		// A receiver answers a repeated key without acting: a heal is a
		// new request, one per incident.
		req.IdempotencyKey = fmt.Sprintf("writ:%s:%s:%s:%d", req.Playbook, req.Digest, OperationHeal, o.Incident)
	}
	return req
}

// policyInput is what the policies see: the playbook as written, with the
// targets the operation acts on.
func (o Operation) policyInput(envs policy.Environments) policy.Input {
	pb := o.Playbook.PolicyInput()
	if o.Targets != nil {
		spec, _ := pb["spec"].(map[string]any)
		if spec != nil {
			targets := make([]any, len(o.Targets))
			for i, t := range o.Targets {
				targets[i] = t
			}
			c := make(map[string]any, len(spec))
			for k, v := range spec {
				c[k] = v
			}
			c["targets"] = targets
			pb["spec"] = c
		}
	}
	env, _ := envs.Lookup(o.Playbook.Spec.Environment) // nil for an unknown one: Decide denies
	return policy.Input{
		Operation:   string(o.Kind),
		Emergency:   o.emergency(),
		Playbook:    pb,
		Change:      policy.Change{Type: o.ChangeType, PullRequest: o.PullRequest},
		Environment: env,
	}
}

// emergency reports whether the operation asks for break-glass: the apply
// of a playbook marked emergency. A heal is an apply too, but never an
// emergency: it is an operation of its own, keyed by its drift incident,
// and a break-glass statement signed for the playbook's apply never lets
// it run (trust rule 7).
func (o Operation) emergency() bool {
	return o.Kind == action.Apply && !o.Heal() && o.Playbook != nil && o.Playbook.Spec.Emergency
}

// Trust is what decides: the policy set and keyring of the trusted commit,
// the repository's identity and the approval rules.
type Trust struct {
	Policies *policy.Set
	// Keyring is the approvers in force; nil: nobody can approve
	// (KeyringErr says why).
	Keyring      *approval.Keyring
	KeyringErr   error
	Repository   string
	Environments policy.Environments
	Approval     approval.Options
}

// Planner dry-runs a request against live state (action.Registry).
type Planner interface {
	Plan(ctx context.Context, req action.Request) (*action.Plan, error)
}

// Approved is what an operation was approved with, for the time-of-use
// check: the plan its statements were verified against.
type Approved struct {
	PlanDigest string
	Plan       *action.Plan
	// Resuming: an earlier attempt may have changed part of live state (a
	// crash or a transient error interrupted it), so the fresh plan may
	// show some approved changes as done.
	Resuming bool
}

// Inputs are the rest of what a judgement needs.
type Inputs struct {
	// Planner dry-runs the operation; nil judges without a plan (the
	// verdict then needs an explicit PlanDigest).
	Planner Planner
	// PlanDigest, with no Planner, is the plan statements must cite.
	PlanDigest string
	// Envelopes are the signed statements about the playbook's digest.
	Envelopes []approval.Submitted
	Now       time.Time
	// Approved, when set, makes this the time-of-use check of an operation
	// about to run: statements are verified against the approved plan, and
	// the fresh plan must be that plan (or, resuming, have progressed from
	// it).
	Approved *Approved
	// NoBreakGlass judges the normal quorum only, even for an emergency
	// apply the policies let break glass: the confirmation of an emergency
	// apply that ran on a break-glass statement.
	NoBreakGlass bool
}

// Outcome sums a judgement up.
type Outcome string

// Outcomes.
const (
	// Denied: the policies refuse the operation.
	Denied Outcome = "denied"
	// Rejected: a qualified person signed a rejection.
	Rejected Outcome = "rejected"
	// Waiting: approvals, a signed proposal or a plan are missing.
	Waiting Outcome = "waiting"
	// Ready: allowed (with its signed proposal) or approved: it may run.
	Ready Outcome = "ready"
)

// Code is a reason's stable, machine-readable part.
type Code string

// Reason codes of judgements.
const (
	CodeAllowed          Code = "allowed"           // ready: the policies allow it, and it has its signed proposal
	CodeApproved         Code = "approved"          // ready: the approval quorum is met
	CodeBreakGlass       Code = "break_glass"       // ready: an emergency apply on a break-glass statement; its quorum is due within the window
	CodeDenied           Code = "denied_by_policy"  // the policies refuse it
	CodeRejected         Code = "rejected"          // a signed rejection blocks it
	CodeAwaitingApproval Code = "awaiting_approval" // approvals or the signed proposal are missing
	CodeNoPlan           Code = "no_plan"           // the dry-run failed; judged again later
	CodePlanChanged      Code = "plan_changed"      // at the moment of use, live state differs from the approved plan
	CodeNothingToDo      Code = "nothing_to_do"     // a revert whose every target another playbook in force still holds
	CodePolicyFailed     Code = "policy_failed"     // the policies could not decide (did not compile, timed out); judged again
)

// Reason says why an operation is where it is: a stable code and a text
// for people. Code never reads state out of the text.
type Reason struct {
	Code Code   `json:"code"`
	Text string `json:"text"`
}

func (r Reason) String() string { return r.Text }

// Judgement is the outcome of Judge.
type Judgement struct {
	Operation Operation
	Request   action.Request
	Decision  policy.Decision
	// Plan is nil when the operation is denied (no dry-run is made) or the
	// dry-run failed (PlanError).
	Plan       *action.Plan
	PlanError  error
	PlanDigest string
	// Verdict is nil when the operation is denied or could not be planned.
	Verdict *approval.Verdict
	// BreakGlass is the break-glass verdict of an emergency apply the
	// policies let break glass and whose quorum is not met; nil otherwise.
	// When it is met, the outcome is Ready with CodeBreakGlass.
	BreakGlass *approval.Verdict
	Outcome    Outcome
	Reason     Reason
	// DecisionTime is how long the policy decision took (for metrics).
	DecisionTime time.Duration
}

// Judge judges one operation under the trust in force. It writes nothing;
// its only I/O is the Planner's dry-run.
func Judge(ctx context.Context, op Operation, t Trust, in Inputs) Judgement {
	j := Judgement{Operation: op, Request: op.Request()}
	if op.Targets != nil && len(op.Targets) == 0 {
		// Every target is still held by another playbook in force: the
		// operation touches no live system, and needs no decision.
		j.Plan = &action.Plan{Action: j.Request.Action, Backend: "none", Environment: j.Request.Environment,
			Operation: j.Request.Operation, Targets: []action.TargetPlan{}}
		j.PlanDigest = j.Plan.Digest()
		j.Outcome, j.Reason = Ready, Reason{CodeNothingToDo, "nothing to release: another playbook in force holds every target"}
		return j
	}
	start := time.Now()
	j.Decision = t.Policies.Decide(ctx, op.policyInput(t.Environments))
	j.DecisionTime = time.Since(start)
	if j.Decision.Outcome == policy.Deny {
		if policyFailed(j.Decision) {
			// Fail-closed, but not final: the policies did not decide (they
			// do not compile, ran past a deadline); nothing runs until they
			// do, and the operation is judged again.
			j.Outcome, j.Reason = Waiting, Reason{CodePolicyFailed, "the policies could not decide, so nothing runs until they do: " + ReasonText(j.Decision)}
			return j
		}
		j.Outcome, j.Reason = Denied, Reason{CodeDenied, "denied by policy: " + ReasonText(j.Decision)}
		return j
	}

	// The plan: live state read through the backend.
	if in.Planner != nil {
		j.Plan, j.PlanError = in.Planner.Plan(ctx, j.Request)
		if j.PlanError != nil {
			j.Plan = nil
			j.Outcome, j.Reason = Waiting, Reason{CodeNoPlan, "cannot plan yet: " + j.PlanError.Error()}
			return j
		}
	}
	if j.Plan != nil {
		j.PlanDigest = j.Plan.Digest()
	} else {
		j.PlanDigest = in.PlanDigest
	}

	// The statements: verified against the approved plan at the moment of
	// use (a resumed attempt's fresh plan may show its own progress), else
	// against the plan just read.
	cite := j.PlanDigest
	if in.Approved != nil {
		cite = in.Approved.PlanDigest
	}
	v := approval.Verify(approval.Input{
		Subject:           approval.Subject{Path: op.Playbook.Path, Digest: op.Playbook.Digest},
		Operation:         op.Signed(),
		Incident:          op.Incident,
		Repository:        t.Repository,
		ApprovalsRequired: j.Decision.ApprovalsRequired,
		ApproverRoles:     j.Decision.ApproverRoles,
		PolicyDigest:      t.Policies.Digest(),
		PlanDigest:        cite,
		Keyring:           t.Keyring,
		Envelopes:         in.Envelopes,
		Now:               in.Now,
		Options:           ApprovalOptions(t.Approval, op, j.Decision),
	})
	j.Verdict = &v
	switch {
	case len(v.Rejected) > 0:
		j.Outcome, j.Reason = Rejected, Reason{CodeRejected, v.Summary()}
	case !v.QuorumMet && j.breakGlass(t, in, cite):
		j.Outcome, j.Reason = Ready, Reason{CodeBreakGlass, fmt.Sprintf("break-glass by %s: an emergency apply runs before its approvals, which are due within the break-glass window (%s)",
			j.BreakGlass.Counted[0].Approver, v.Summary())}
	case !v.QuorumMet:
		text := "awaiting approval: " + v.Summary()
		if t.Keyring == nil && t.KeyringErr != nil {
			text += fmt.Sprintf(" (%v)", t.KeyringErr)
		}
		j.Outcome, j.Reason = Waiting, Reason{CodeAwaitingApproval, text}
	case j.Decision.Outcome == policy.Allow:
		text := "allowed by policy"
		if v.Proposer != "" {
			text += "; proposed by " + v.Proposer
		}
		j.Outcome, j.Reason = Ready, Reason{CodeAllowed, text}
	default:
		j.Outcome, j.Reason = Ready, Reason{CodeApproved, "approved: " + v.Summary()}
	}

	// At the moment of use, live state must be what was approved.
	if in.Approved != nil && j.Outcome == Ready && j.Plan != nil {
		a := in.Approved
		switch {
		case j.PlanDigest == a.PlanDigest:
		case a.Resuming && j.Plan.ProgressedFrom(a.Plan):
		default:
			j.Outcome = Waiting
			j.Reason = Reason{CodePlanChanged, fmt.Sprintf("live state changed since it was judged: the plan is now %.12s, not the approved %.12s%s",
				j.PlanDigest, a.PlanDigest, PlanDifference(a.Plan, j.Plan))}
		}
	}
	return j
}

// breakGlass judges whether an emergency apply whose quorum is not met may
// run on a break-glass statement: the policies allow an emergency for it
// (the decision's emergency field, never with a denial) and a holder of the
// break-glass role signed one, citing this content, policy set and plan.
func (j *Judgement) breakGlass(t Trust, in Inputs, cite string) bool {
	op := j.Operation
	if in.NoBreakGlass || op.Heal() || !op.emergency() || !j.Decision.Emergency || j.Decision.Outcome == policy.Deny {
		return false
	}
	// Defence in depth: the statement is verified for exactly this
	// operation and incident, and VerifyBreakGlass counts nothing for
	// anything but an apply.
	bv := approval.VerifyBreakGlass(approval.Input{
		Subject:      approval.Subject{Path: op.Playbook.Path, Digest: op.Playbook.Digest},
		Operation:    op.Signed(),
		Incident:     op.Incident,
		Repository:   t.Repository,
		PolicyDigest: t.Policies.Digest(),
		PlanDigest:   cite,
		Keyring:      t.Keyring,
		Envelopes:    in.Envelopes,
		Now:          in.Now,
		Options:      t.Approval,
	})
	j.BreakGlass = &bv
	return bv.QuorumMet && len(bv.Counted) > 0
}

// ApprovalOptions are the approval rules for one operation. A signed
// proposal is the author's statement that the operation is intended; the
// revert that expiresAfter scheduled was intended by the apply's signed
// content, and the revert of a lapsed break-glass apply undoes what ran
// before its approvals, so when its policies ask no approval neither
// needs a proposal. Nor does a signed rejection hold either back: the
// expiry's time was approved with the content (to keep the block longer,
// change the playbook), and the lapse is how the quorum the emergency
// apply never gathered is enforced, which one person's rejection of the
// revert must not undo.
func ApprovalOptions(o approval.Options, op Operation, d policy.Decision) approval.Options {
	if (op.Trigger == Expiry || op.Trigger == BreakGlass) && op.Kind == action.Revert {
		o.RejectionsDoNotBind = true
		if d.ApprovalsRequired == 0 {
			o.RelaxProposal = true
		}
	}
	return o
}

// policyFailed reports whether a denial only says that the policies could
// not decide (writ's own fail-closed reasons: the set did not compile, the
// decision had the wrong shape, evaluation failed or ran past its
// deadline), rather than that a policy refused the operation.
func policyFailed(d policy.Decision) bool {
	deny := d.ReasonsOf(policy.KindDeny)
	if len(deny) == 0 {
		return false
	}
	for _, r := range deny {
		switch r.Rule {
		case policy.RuleCompile, policy.RuleShape, policy.RuleRuntime, policy.RuleTimeout:
		default:
			return false
		}
	}
	return true
}

// ReasonText joins a decision's reasons for people.
func ReasonText(d policy.Decision) string {
	var parts []string
	for _, rs := range d.Reasons {
		parts = append(parts, rs.Message)
	}
	if len(parts) == 0 {
		return string(d.Outcome)
	}
	return strings.Join(parts, "; ")
}

// PlanDifference names the first targets whose planned result changed, as
// " (a would_block → already_blocked, …)", or "" when none did.
func PlanDifference(was, now *action.Plan) string {
	if was == nil || now == nil {
		return ""
	}
	before := map[string]string{}
	for _, t := range was.Targets {
		before[t.Target] = t.Result
	}
	var diffs []string
	for _, t := range now.Targets {
		if b, ok := before[t.Target]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s now %s", t.Target, t.Result))
		} else if b != t.Result {
			diffs = append(diffs, fmt.Sprintf("%s %s → %s", t.Target, b, t.Result))
		}
		if len(diffs) == 3 {
			break
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return " (" + strings.Join(diffs, ", ") + ")"
}
