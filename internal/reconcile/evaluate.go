package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/store"
)

// Evaluation is the judgement of a proposed change (a pull request) as its
// merge would be judged now: what is in force decides (trust rule 1), the
// plans come from live state, approvals are the stored signed ones. Nothing
// is written.
type Evaluation struct {
	Base      string // the target branch's commit the change is judged against
	Head      string
	MergeBase string
	// TrustedCommit is the commit whose policies and approvers judged it.
	TrustedCommit string
	PolicyDigest  string
	Playbooks     []PlaybookEvaluation
	// TooManyPlaybooks, when not 0, is how many playbook files the change
	// touches, more than Options.MaxPlaybooksPerChange: none was judged
	// (each judgement dry-runs against live systems), and the change fails.
	TooManyPlaybooks int
	// PlaybookLimit is Options.MaxPlaybooksPerChange.
	PlaybookLimit int
	// Meta is set when the change touches policies/ or .writ/.
	Meta *MetaEvaluation
	// Malformed, when set, is why nothing was judged: the change's tree
	// holds content writ will not read (gitsrc.ErrMalformed). The change
	// fails; merged, its commit would be refused as a whole.
	Malformed *gitsrc.MalformedError
}

// PlaybookEvaluation is one changed playbook file, judged as the operation
// its merge would intend (judgement.Judge).
type PlaybookEvaluation struct {
	Path   string
	Change gitsrc.ChangeType
	// Problems make the file invalid (located, for annotations).
	Problems diag.Problems
	Name     string
	Digest   string
	// Operation is apply (added or changed) or revert (deleted).
	Operation  action.Operation
	ChangeType string // create, update, delete (what policies saw)
	Decision   *policy.Decision
	Plan       *action.Plan
	PlanError  string
	PlanDigest string
	Verdict    *approval.Verdict
	// Reason is the judgement's reason (empty when invalid).
	Reason judgement.Reason
	// Playbook is the content judged: the changed file, or for a deleted
	// one the version it removes (nil when invalid).
	Playbook *playbook.Playbook
}

// Outcome sums a playbook's evaluation up: invalid, deny, awaiting
// (approvals or proposal missing, or no plan yet), rejected, or ready.
func (p *PlaybookEvaluation) Outcome() string {
	switch {
	case len(p.Problems) > 0:
		return "invalid"
	case p.Reason.Code == judgement.CodeDenied, p.Reason.Code == judgement.CodePolicyFailed:
		return "deny"
	case p.Reason.Code == judgement.CodeRejected:
		return "rejected"
	case p.Reason.Code == judgement.CodeAllowed, p.Reason.Code == judgement.CodeApproved, p.Reason.Code == judgement.CodeNothingToDo:
		return "ready"
	}
	return "awaiting"
}

// MetaEvaluation is a change to what decides.
type MetaEvaluation struct {
	Subjects []approval.Subject
	// Transition is what an admin approval of the change names: the
	// trusted commit and the content each subject replaces.
	Transition approval.Transition
	Verdict    approval.Verdict
	// Shadow are the decisions the changed policies would make on the
	// change's playbooks: shown, never in force.
	Shadow map[string]policy.Decision
	// ShadowError says why the changed policies do not load.
	ShadowError string
}

// Evaluate judges the change from base to head (a pull request: base is
// the target branch's head, head the PR's head commit). Files are compared
// from the merge base, as a forge shows them. pullRequest, when not 0, is
// passed to policies as input.change.pullRequest.
//
// A tree writ will not read, in what the change adds or in what judging it
// reads, is no error: the evaluation says so in Malformed and the change
// fails, rather than being retried for ever. Errors are the
// infrastructure's.
func (r *Reconciler) Evaluate(ctx context.Context, base, head string, pullRequest int) (*Evaluation, error) {
	ev, err := r.evaluate(ctx, base, head, pullRequest)
	var bad *gitsrc.MalformedError
	if errors.As(err, &bad) {
		return &Evaluation{Base: base, Head: head, PlaybookLimit: r.opts.MaxPlaybooksPerChange, Malformed: bad}, nil
	}
	return ev, err
}

func (r *Reconciler) evaluate(ctx context.Context, base, head string, pullRequest int) (*Evaluation, error) {
	mb, err := r.opts.Source.MergeBase(base, head)
	if err != nil {
		return nil, err
	}
	st, err := r.opts.Store.RepoState(ctx)
	trustedAt := base
	if err == nil {
		trustedAt = st.AdoptedSHA
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	t, err := r.trustAt(ctx, trustedAt)
	if err != nil {
		return nil, err
	}
	ev := &Evaluation{Base: base, Head: head, MergeBase: mb, TrustedCommit: trustedAt, PolicyDigest: t.Policies.Digest()}
	changes, err := r.opts.Source.Changes(ctx, mb, head)
	if err != nil {
		return nil, err
	}
	headFS, err := r.opts.Source.FS(head)
	if err != nil {
		return nil, err
	}
	baseFS, err := r.opts.Source.FS(base)
	if err != nil {
		return nil, err
	}
	ev.PlaybookLimit = r.opts.MaxPlaybooksPerChange
	var pbChanges []gitsrc.Change
	meta := false
	for _, ch := range changes {
		switch {
		case playbook.IsPlaybookPath(ch.Path):
			pbChanges = append(pbChanges, ch)
		case ch.Path == policiesDir || strings.HasPrefix(ch.Path, policiesDir+"/") || strings.HasPrefix(ch.Path, writDir+"/"):
			meta = true
		}
	}
	// A changed targets file changes the playbooks in force that name it.
	if pbChanges, err = r.withTargetsFiles(ctx, changes, pbChanges); err != nil {
		return nil, err
	}
	if len(pbChanges) > r.opts.MaxPlaybooksPerChange {
		ev.TooManyPlaybooks = len(pbChanges) // none is judged: the change fails as a whole
		pbChanges = nil
	}
	for _, ch := range pbChanges {
		pe, err := r.evaluatePlaybook(ctx, ch, baseFS, headFS, t, pullRequest)
		if err != nil {
			return nil, err
		}
		ev.Playbooks = append(ev.Playbooks, *pe)
	}
	if meta {
		m, err := r.evaluateMeta(ctx, ev, t, head)
		if err != nil {
			return nil, err
		}
		ev.Meta = m
	}
	return ev, nil
}

func (r *Reconciler) evaluatePlaybook(ctx context.Context, ch gitsrc.Change, baseFS, headFS fs.FS, t *trusted, pr int) (*PlaybookEvaluation, error) {
	pe := &PlaybookEvaluation{Path: ch.Path, Change: ch.Type, Operation: action.Apply, ChangeType: "create"}
	opts := playbook.Options{Actions: r.opts.Catalog, Environments: r.opts.Environments.Names(), Files: headFS}
	op := judgement.Operation{Kind: action.Apply, Trigger: judgement.Proposed, ChangeType: "create", PullRequest: pr}
	if ch.Type == gitsrc.Deleted {
		// Judge the revert of what the base has at that path.
		pe.Operation, pe.ChangeType = action.Revert, "delete"
		data, prob, err := playbook.ReadFile(baseFS, ch.Path)
		if err != nil || prob != nil {
			return pe, nil // nothing valid was there: nothing to revert
		}
		baseOpts := opts
		baseOpts.Files = baseFS
		old, problems := playbook.Parse(ch.Path, data, baseOpts)
		if problems != nil {
			return pe, nil
		}
		op.Kind, op.ChangeType, op.Playbook = action.Revert, "delete", old
		held, err := r.opts.Store.HeldTargets(ctx, old.Spec.Action, old.Spec.Environment, r.activeVersionID(ctx, old))
		if err != nil {
			return nil, err
		}
		op.Targets = []string{}
		for _, tg := range action.RequestFor(old, action.Revert).Targets {
			if !held[tg] {
				op.Targets = append(op.Targets, tg)
			}
		}
	} else {
		data, prob, err := playbook.ReadFile(headFS, ch.Path)
		if err != nil {
			return nil, err
		}
		if prob != nil {
			pe.Problems = diag.Problems{*prob}
			return pe, nil
		}
		parsed, problems := playbook.Parse(ch.Path, data, opts)
		if problems != nil {
			pe.Problems = problems
			return pe, nil
		}
		op.Playbook = parsed
		if _, err := fs.Stat(baseFS, ch.Path); err == nil {
			pe.ChangeType, op.ChangeType = "update", "update"
		}
	}
	envs, err := r.envelopesFor(ctx, op.Playbook.Digest)
	if err != nil {
		return nil, err
	}
	j := judgement.Judge(ctx, op, r.judging(t), judgement.Inputs{Planner: r.opts.Backends, Envelopes: envs, Now: r.opts.Now()})
	pe.fill(j)
	return pe, nil
}

// fill copies a judgement into the evaluation.
func (p *PlaybookEvaluation) fill(j judgement.Judgement) {
	pb := j.Operation.Playbook
	p.Playbook, p.Name, p.Digest = pb, pb.Metadata.Name, pb.Digest
	p.Reason = j.Reason
	if j.Decision.Outcome != "" {
		d := j.Decision
		p.Decision = &d
	}
	if j.Outcome == judgement.Denied {
		return
	}
	if j.PlanError != nil {
		p.PlanError = j.PlanError.Error()
		return
	}
	p.Plan, p.PlanDigest, p.Verdict = j.Plan, j.PlanDigest, j.Verdict
}

// activeVersionID is the id of the version in force with pb's name and
// digest (0 when none), so a revert's plan ignores its own hold.
func (r *Reconciler) activeVersionID(ctx context.Context, pb *playbook.Playbook) int64 {
	v, err := r.opts.Store.PlaybookVersion(ctx, pb.Metadata.Name, pb.Digest)
	if err != nil {
		return 0
	}
	return v.ID
}

func (r *Reconciler) evaluateMeta(ctx context.Context, ev *Evaluation, t *trusted, head string) (*MetaEvaluation, error) {
	change, err := r.metaChange(ctx, t, head)
	if err != nil {
		return nil, err
	}
	if change == nil {
		return nil, nil // the change decides as what is in force does
	}
	m := &MetaEvaluation{Subjects: change.Subjects, Transition: change.Transition, Shadow: map[string]policy.Decision{}}
	m.Verdict, _, _, err = r.verifyMeta(ctx, t, change)
	if err != nil {
		return nil, err
	}
	// What the new policies would decide, for the record only.
	shadow, err := r.trustAt(ctx, head)
	if err != nil {
		return nil, err
	}
	if shadow.PolicyErr != nil {
		m.ShadowError = shadow.PolicyErr.Error()
		return m, nil
	}
	for _, p := range ev.Playbooks {
		if p.Playbook == nil {
			continue
		}
		env, _ := r.opts.Environments.Lookup(p.Playbook.Spec.Environment)
		m.Shadow[p.Path] = shadow.Policies.Decide(ctx, policy.Input{Operation: string(p.Operation), Playbook: p.Playbook.PolicyInput(),
			Change: policy.Change{Type: p.ChangeType}, Environment: env})
	}
	return m, nil
}

// MarshalJSON gives an evaluation's playbook the shape the API shows.
func (p PlaybookEvaluation) MarshalJSON() ([]byte, error) {
	type out struct {
		Path       string           `json:"path"`
		Change     string           `json:"change"`
		Outcome    string           `json:"outcome"`
		Problems   diag.Problems    `json:"problems,omitempty"`
		Name       string           `json:"name,omitempty"`
		Digest     string           `json:"digest,omitempty"`
		Operation  string           `json:"operation"`
		Decision   *policy.Decision `json:"decision,omitempty"`
		Plan       *action.Plan     `json:"plan,omitempty"`
		PlanError  string           `json:"plan_error,omitempty"`
		PlanDigest string           `json:"plan_digest,omitempty"`
		Approvals  map[string]any   `json:"approvals,omitempty"`
	}
	o := out{Path: p.Path, Change: string(p.Change), Outcome: p.Outcome(), Problems: p.Problems, Name: p.Name, Digest: p.Digest,
		Operation: string(p.Operation), Decision: p.Decision, Plan: p.Plan, PlanError: p.PlanError, PlanDigest: p.PlanDigest}
	if p.Verdict != nil {
		o.Approvals = verdictJSON(*p.Verdict)
	}
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("marshal evaluation of %s: %w", p.Path, err)
	}
	return b, nil
}

// DryRun judges one playbook file that is not in the repository (posted to
// the API) as the apply its merge would intend: validation, the decision of
// the policies in force, the live plan, and the statements stored for its
// digest. A targets file it names is read from the branch at the commit
// writ processed last. Nothing is written or executed.
func (r *Reconciler) DryRun(ctx context.Context, path string, data []byte) (*PlaybookEvaluation, error) {
	st, err := r.opts.Store.RepoState(ctx)
	if err != nil {
		return nil, fmt.Errorf("dry-run before the first reconcile pass: %w", err)
	}
	t, err := r.trustAt(ctx, st.AdoptedSHA)
	if err != nil {
		return nil, err
	}
	pe := &PlaybookEvaluation{Path: path, Change: gitsrc.Added, Operation: action.Apply, ChangeType: "create"}
	// A targets file the posted playbook names is read from the branch as
	// writ last processed it.
	tree, err := r.opts.Source.FS(st.ProcessedSHA)
	if err != nil {
		return nil, err
	}
	pb, problems := playbook.Parse(path, data, playbook.Options{Actions: r.opts.Catalog, Environments: r.opts.Environments.Names(), Files: tree})
	if problems != nil {
		pe.Problems = problems
		return pe, nil
	}
	if a, err := r.opts.Store.ActiveByPath(ctx, path); err == nil && a.Name == pb.Metadata.Name {
		pe.ChangeType = "update"
	}
	envs, err := r.envelopesFor(ctx, pb.Digest)
	if err != nil {
		return nil, err
	}
	op := judgement.Operation{Kind: action.Apply, Trigger: judgement.Proposed, ChangeType: pe.ChangeType, Playbook: pb}
	pe.fill(judgement.Judge(ctx, op, r.judging(t), judgement.Inputs{Planner: r.opts.Backends, Envelopes: envs, Now: r.opts.Now()}))
	return pe, nil
}
