package reconcile

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/internal/trust"
)

// What waits for signatures (GET /api/v1/pending, writ pending): the
// playbook operations whose judgement found their proposal or approvals
// missing, and the change to policies/ and .writ/ the branch holds. Each
// item carries everything a statement about it must bind, so that an
// approver signs it without a checkout and without copying a digest:
// writ approve ID fetches the item, shows it, checks what it can
// (content, plan and policy digests are recomputed on the approver's
// machine) and signs exactly that.

// Kinds of pending items.
const (
	PendingApply  = "apply"
	PendingRevert = "revert"
	// PendingHeal is the heal of a drift incident (drift.go): signed like
	// an apply, naming the heal and its incident.
	PendingHeal        = "heal"
	PendingTrustChange = "trust_change"
	// PendingAuditRollback is the acknowledgement of an audit rollback
	// hold (audithold.go): signed like a change to what decides.
	PendingAuditRollback = "audit_rollback"
)

// ErrNotPending means an id names nothing that waits for signatures (any
// more): the error says what became of it.
var ErrNotPending = errors.New("not pending")

var pendingIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(op|trust|audit)-([1-9][0-9]{0,18})$`) })

// ValidPendingID reports whether s has the form of a pending item's id:
// op-N (a playbook operation) or trust-N (a change to what decides).
func ValidPendingID(s string) bool { return pendingIDRE().MatchString(s) }

// PendingSubject is one subject a statement names.
type PendingSubject struct {
	Path   string `json:"path"`
	Digest string `json:"digest"`
}

// PendingSignature is one statement received about an item.
type PendingSignature struct {
	Approver string `json:"approver"`
	Decision string `json:"decision"`
	// Counted: it counts now (a valid proposal, approval or rejection).
	Counted bool `json:"counted"`
	// ValidUntil is when a counted statement stops counting.
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	// Code and Note say why it does not count.
	Code string `json:"code,omitempty"`
	Note string `json:"note,omitempty"`
}

// PendingSigner is someone who may give a missing signature.
type PendingSigner struct {
	ID    string   `json:"id"`
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles"`
	// Decision is what they may sign: propose or approve.
	Decision string `json:"decision"`
	// KeyIDs are their keys' fingerprints (SHA256:...), by which writ
	// approve finds who its key belongs to.
	KeyIDs []string `json:"key_ids"`
}

// PendingNeeds says what an item still needs and who may give it.
type PendingNeeds struct {
	// Proposal: the signed proposal (the author's statement) is missing;
	// ProposerRoles may give it.
	Proposal      bool     `json:"proposal"`
	ProposerRoles []string `json:"proposer_roles,omitempty"`
	Proposer      string   `json:"proposer,omitempty"`
	// Approvals is how many approvals are required, Missing how many more,
	// Roles whose approvals count.
	Approvals int      `json:"approvals"`
	Missing   int      `json:"missing"`
	Roles     []string `json:"roles"`
	// Signed lists the statements received (counted or not, and why).
	Signed []PendingSignature `json:"signed"`
	// Eligible lists who may still give what is missing: qualified, not
	// disabled, not the author when approving, not already counted.
	Eligible []PendingSigner `json:"eligible"`
	Summary  string          `json:"summary"`
}

// Pending is one item that waits for signatures.
type Pending struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Playbook operations.
	Playbook    string   `json:"playbook,omitempty"`
	Path        string   `json:"path,omitempty"`
	Action      string   `json:"action,omitempty"`
	Environment string   `json:"environment,omitempty"`
	Targets     []string `json:"targets,omitempty"`
	Trigger     string   `json:"trigger,omitempty"`
	// What a statement binds.
	Operation string `json:"operation,omitempty"`
	// Incident is the drift incident a heal answers (kind heal).
	Incident     int64                `json:"incident,omitempty"`
	Subjects     []PendingSubject     `json:"subjects"`
	Transition   *approval.Transition `json:"transition,omitempty"`
	Repository   string               `json:"repository"`
	Commit       string               `json:"commit"`
	PolicyDigest string               `json:"policy_digest"`
	PlanDigest   string               `json:"plan_digest,omitempty"`
	// Why it waits.
	ReasonCode string       `json:"reason_code"`
	Reason     string       `json:"reason"`
	Needs      PendingNeeds `json:"needs"`
	Since      time.Time    `json:"since"`
	// Command is the command that signs it.
	Command string `json:"command"`
	// BreakGlass is set for an emergency apply the policies let break
	// glass: who may, and, once invoked, by whom and until when its
	// approvals are due.
	BreakGlass *PendingBreakGlass `json:"break_glass,omitempty"`
}

// PendingBreakGlass says how an emergency apply may break, or broke, glass
// (docs/design.md, Break-glass containment).
type PendingBreakGlass struct {
	// Eligible are the holders of the break-glass role, who may sign the
	// one statement that lets it run before its approvals (Command).
	Eligible []PendingSigner `json:"eligible"`
	// Command signs the break-glass statement; empty once invoked.
	Command string `json:"command,omitempty"`
	// Signer, InvokedAt and Deadline are set once it ran on break-glass:
	// its approvals (Needs) are due by Deadline, or it is reverted.
	Signer    string     `json:"signer,omitempty"`
	InvokedAt *time.Time `json:"invoked_at,omitempty"`
	Deadline  *time.Time `json:"deadline,omitempty"`
}

// PendingFile is a file's content at one side of a change ("" and
// Missing when the file does not exist there).
type PendingFile struct {
	Path    string `json:"path"`
	Content string `json:"content"`
	Missing bool   `json:"missing,omitempty"`
}

// PendingDetail is an item with what a reviewer reads before signing and
// what the approver's writ recomputes the digests from.
type PendingDetail struct {
	Pending
	// Content is the playbook's content (a playbook operation), and
	// Replaces the version it replaces (an update's apply), or nil.
	Content  *PendingFile `json:"content,omitempty"`
	Replaces *PendingFile `json:"replaces,omitempty"`
	// TargetsFile is the targets file the playbook names (spec.targetsFile)
	// as stored with its version, and ReplacesTargetsFile that of the
	// version it replaces: the content digest covers it.
	TargetsFile         *PendingFile `json:"targets_file,omitempty"`
	ReplacesTargetsFile *PendingFile `json:"replaces_targets_file,omitempty"`
	// Decision, Plan and Verdict are the operation's last judgement.
	Decision json.RawMessage `json:"decision,omitempty"`
	Plan     json.RawMessage `json:"plan,omitempty"`
	// TrustedFiles are the files under policies/ and .writ/ at the trusted
	// commit; ChangedFiles the same at the changed commit (a change to
	// what decides only). The trusted policies are also sent with a
	// playbook operation, so that its policy digest is checked too.
	TrustedFiles []PendingFile `json:"trusted_files"`
	ChangedFiles []PendingFile `json:"changed_files,omitempty"`
	// DefaultPolicies says the trusted tree has no policies/: the
	// built-in policies judge it.
	DefaultPolicies bool `json:"default_policies,omitempty"`
}

// targetsFileOf is the targets file stored with a version, or nil.
func targetsFileOf(v *store.PlaybookVersion) *PendingFile {
	if v.TargetsFile == nil {
		return nil
	}
	return &PendingFile{Path: v.TargetsPath, Content: string(v.TargetsFile)}
}

// maxPendingFiles bounds what an item sends of a tree.
const maxPendingFiles = 2000

// Pending lists what waits for signatures: playbook operations oldest
// first, then the change to what decides the branch holds.
func (r *Reconciler) Pending(ctx context.Context) ([]Pending, error) {
	ops, err := r.opts.Store.WaitingForSignatures(ctx)
	if err != nil {
		return nil, err
	}
	out := []Pending{}
	if len(ops) > 0 {
		t, err := r.currentTrust(ctx)
		if err != nil {
			return nil, err
		}
		digests := make([]string, 0, len(ops))
		for _, e := range ops {
			digests = append(digests, e.Digest)
		}
		byDigest, err := r.opts.Store.ApprovalsForDigests(ctx, digests)
		if err != nil {
			return nil, err
		}
		for _, e := range ops {
			p := r.pendingOp(e, t, byDigest[e.Digest])
			if err := r.spentBreakGlass(ctx, e, &p); err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	confirm, err := r.pendingBreakGlass(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range confirm {
		if i := slices.IndexFunc(out, func(p Pending) bool { return p.ID == d.ID }); i >= 0 {
			out[i] = d.Pending // invoked, stopped and waiting again: its deadline shows
		} else {
			out = append(out, d.Pending)
		}
	}
	tc, err := r.pendingTrust(ctx, false)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		out = append(out, tc.Pending)
	}
	audits, err := r.pendingAudit(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range audits {
		out = append(out, a.Pending)
	}
	return out, nil
}

// pendingAudit lists the open audit rollback holds as items to sign: the
// statement AuditAckStatement makes, judged like a change to what decides
// (admin quorum of the trusted keyring, or the recovery keys).
func (r *Reconciler) pendingAudit(ctx context.Context) ([]*PendingDetail, error) {
	holds, err := r.opts.Store.OpenHolds(ctx)
	if err != nil {
		return nil, err
	}
	var out []*PendingDetail
	for _, h := range holds {
		if h.Kind != store.HoldAuditRollback {
			continue
		}
		st, err := r.opts.Store.RepoState(ctx)
		if err != nil {
			return nil, err
		}
		adopted, err := r.trustAt(ctx, st.AdoptedSHA)
		if err != nil {
			return nil, err
		}
		change, err := AuditAckStatement(h, st.AdoptedSHA)
		if err != nil {
			return nil, err
		}
		verdict, _, _, err := r.verifyMeta(ctx, adopted, change)
		if err != nil {
			return nil, err
		}
		var d auditHoldDetail
		_ = json.Unmarshal(h.Detail, &d)
		id := fmt.Sprintf("audit-%d", h.ID)
		tr := change.Transition
		item := &PendingDetail{Pending: Pending{
			ID: id, Kind: PendingAuditRollback, Transition: &tr, Repository: r.opts.Repository,
			Commit: st.ProcessedSHA, PolicyDigest: adopted.PolicyDigest, ReasonCode: store.HoldAuditRollback,
			Reason: d.Reason + "; signing accepts the log as it is now as the one writ expects: " + verdict.Summary(),
			Since:  h.CreatedAt, Command: "writ approve " + id,
		}}
		for _, s := range change.Subjects {
			item.Subjects = append(item.Subjects, PendingSubject{Path: s.Path, Digest: s.Digest})
		}
		item.Needs = needsOf(verdict, adopted.Keyring, []string{approval.RoleAdmin}, nil, verdict.Required)
		out = append(out, item)
	}
	return out, nil
}

// PendingItem is one pending item with its detail. An id that names
// nothing pending gives an error wrapping ErrNotPending that says what
// became of it.
func (r *Reconciler) PendingItem(ctx context.Context, id string) (*PendingDetail, error) {
	m := pendingIDRE().FindStringSubmatch(id)
	if m == nil {
		return nil, fmt.Errorf("%w: %q is not a pending item's id (op-N or trust-N, as writ pending lists them)", ErrNotPending, id)
	}
	n, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrNotPending, id, err)
	}
	if m[1] == "audit" {
		items, err := r.pendingAudit(ctx)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if it.ID == id {
				return it, nil
			}
		}
		return nil, fmt.Errorf("%w: there is no open audit rollback hold %s (acknowledged, or never held)", ErrNotPending, id)
	}
	if m[1] == "trust" {
		d, err := r.pendingTrust(ctx, true)
		if err != nil {
			return nil, err
		}
		if d == nil || d.ID != id {
			return nil, r.trustNotPending(ctx, id, n)
		}
		return d, nil
	}
	e, err := r.opts.Store.ExecutionByID(ctx, n)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: there is no operation %s", ErrNotPending, id)
	}
	if err != nil {
		return nil, err
	}
	if b, err := r.opts.Store.BreakGlassOf(ctx, e.ID); err == nil && b.State == store.BreakGlassOpen {
		return r.breakGlassItem(ctx, e, b, true)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if e.State != store.ExecWaiting || (e.ReasonCode != string(judgement.CodeAwaitingApproval) && e.ReasonCode != string(judgement.CodePlanChanged)) {
		return nil, fmt.Errorf("%w: the %s of %s (%s@%.12s) waits for no signature: it is %s (%s)", ErrNotPending,
			e.Operation, e.Path, e.Name, e.Digest, e.State, cmp.Or(e.Reason, e.ReasonCode))
	}
	t, err := r.currentTrust(ctx)
	if err != nil {
		return nil, err
	}
	approvals, err := r.opts.Store.ApprovalsForDigest(ctx, e.Digest)
	if err != nil {
		return nil, err
	}
	p := r.pendingOp(e, t, approvals)
	if err := r.spentBreakGlass(ctx, e, &p); err != nil {
		return nil, err
	}
	return r.opDetail(ctx, e, t, p)
}

// spentBreakGlass withdraws the break-glass offer of an emergency apply
// whose invocation was confirmed or lapsed: it runs only on its normal
// quorum now (noBreakGlass), so a break-glass statement would let nothing
// run.
func (r *Reconciler) spentBreakGlass(ctx context.Context, e *store.Execution, p *Pending) error {
	if p.BreakGlass == nil || p.BreakGlass.InvokedAt != nil {
		return nil
	}
	b, err := r.opts.Store.BreakGlassOf(ctx, e.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case b.State != store.BreakGlassOpen:
		p.BreakGlass = nil
	}
	return nil
}

// opDetail adds to a playbook operation's item what a reviewer reads and
// the approver's writ recomputes the digests from.
func (r *Reconciler) opDetail(ctx context.Context, e *store.Execution, t *trusted, p Pending) (*PendingDetail, error) {
	d := &PendingDetail{Pending: p, Decision: e.Decision, Plan: e.Plan}
	v, err := r.opts.Store.PlaybookVersionByID(ctx, e.VersionID)
	if err != nil {
		return nil, err
	}
	d.Content = &PendingFile{Path: v.Path, Content: string(v.Content)}
	d.TargetsFile = targetsFileOf(v)
	if e.Operation == string(action.Apply) && e.ChangeType == "update" {
		if prev, err := r.replacedVersion(ctx, v); err != nil {
			return nil, err
		} else if prev != nil {
			d.Replaces = &PendingFile{Path: prev.Path, Content: string(prev.Content)}
			d.ReplacesTargetsFile = targetsFileOf(prev)
		}
	}
	tree, err := r.opts.Source.FS(t.Commit)
	if err != nil {
		return nil, fmt.Errorf("read trusted commit %.12s: %w", t.Commit, err)
	}
	if d.TrustedFiles, d.DefaultPolicies, err = decidingFiles(tree, false); err != nil {
		return nil, fmt.Errorf("trusted policies at %.12s: %w", t.Commit, err)
	}
	return d, nil
}

// trustNotPending says what became of a trust-N id.
func (r *Reconciler) trustNotPending(ctx context.Context, id string, n int64) error {
	h, err := r.opts.Store.HoldByID(ctx, n)
	if errors.Is(err, store.ErrNotFound) || (err == nil && h.Kind != store.HoldMetaChange) {
		return fmt.Errorf("%w: there is no change to policies/ or .writ/ %s", ErrNotPending, id)
	}
	if err != nil {
		return err
	}
	if h.ResolvedAt != nil {
		return fmt.Errorf("%w: the change to policies/ and .writ/ %s was %s (%s)", ErrNotPending, id, h.ResolvedAs, h.Resolution)
	}
	return fmt.Errorf("%w: %s is superseded: the branch changed what decides again; run writ pending", ErrNotPending, id)
}

// replacedVersion is the version of the same playbook an update's apply
// replaces: the newest older version.
func (r *Reconciler) replacedVersion(ctx context.Context, v *store.PlaybookVersion) (*store.PlaybookVersion, error) {
	all, err := r.opts.Store.PlaybookVersionsByName(ctx, v.Name)
	if err != nil {
		return nil, err
	}
	for _, o := range all { // newest first
		if o.ID < v.ID && o.Digest != v.Digest {
			return o, nil
		}
	}
	return nil, nil
}

// pendingOp describes a waiting playbook operation, its statements
// verified afresh against the trust in force (so that a statement that
// just arrived shows).
func (r *Reconciler) pendingOp(e *store.Execution, t *trusted, approvals []*store.Approval) Pending {
	id := fmt.Sprintf("op-%d", e.ID)
	p := Pending{
		ID: id, Kind: e.Operation, Playbook: e.Name, Path: e.Path, Action: e.Action, Environment: e.Environment,
		Targets: e.Targets, Trigger: e.Trigger, Operation: e.Operation, Incident: e.Incident,
		Subjects:   []PendingSubject{{Path: e.Path, Digest: e.Digest}},
		Repository: r.opts.Repository, Commit: e.CommitSHA, PolicyDigest: e.PolicyDigest, PlanDigest: e.PlanDigest,
		ReasonCode: e.ReasonCode, Reason: e.Reason, Since: e.UpdatedAt, Command: "writ approve " + id,
	}
	var d policy.Decision
	_ = json.Unmarshal(e.Decision, &d)
	envs := make([]approval.Submitted, 0, len(approvals))
	for _, a := range approvals {
		envs = append(envs, submitted(a))
	}
	op := judgement.Operation{Kind: action.Operation(e.Operation), Trigger: judgement.Trigger(e.Trigger), ChangeType: e.ChangeType}
	v := approval.Verify(approval.Input{
		Subject: approval.Subject{Path: e.Path, Digest: e.Digest}, Operation: e.Operation, Incident: e.Incident, Repository: r.opts.Repository,
		ApprovalsRequired: d.ApprovalsRequired, ApproverRoles: d.ApproverRoles,
		PolicyDigest: e.PolicyDigest, PlanDigest: e.PlanDigest, Keyring: t.Keyring, Envelopes: envs, Now: r.opts.Now(),
		Options: judgement.ApprovalOptions(r.opts.Approval, op, d),
	})
	roles := d.ApproverRoles
	if len(roles) == 0 && d.ApprovalsRequired > 0 {
		roles = []string{approval.RoleApprover}
	}
	p.Needs = needsOf(v, t.Keyring, roles, []string{approval.RoleAnalyst}, d.ApprovalsRequired)
	if d.Emergency && e.Operation == string(action.Apply) && !v.QuorumMet {
		p.BreakGlass = &PendingBreakGlass{Eligible: breakGlassHolders(t.Keyring), Command: "writ approve " + id + " --break-glass"}
	}
	return p
}

// breakGlassHolders are the people of the keyring who may invoke
// break-glass.
func breakGlassHolders(kr *approval.Keyring) []PendingSigner {
	out := []PendingSigner{}
	if kr == nil {
		return out
	}
	for _, p := range kr.People() {
		if p.Disabled || !p.Has(approval.RoleBreakGlass) {
			continue
		}
		var keyIDs []string
		for _, k := range p.Keys {
			keyIDs = append(keyIDs, k.DSSEKeyID)
		}
		out = append(out, PendingSigner{ID: p.ID, Name: p.Name, Roles: p.Roles, Decision: approval.Approve, KeyIDs: keyIDs})
	}
	return out
}

// pendingBreakGlass lists the emergency applies that ran on break-glass
// and wait for their normal quorum (stepBreakGlass confirms or reverts
// them).
func (r *Reconciler) pendingBreakGlass(ctx context.Context) ([]*PendingDetail, error) {
	open, err := r.opts.Store.OpenBreakGlass(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*PendingDetail, 0, len(open))
	for _, b := range open {
		e, err := r.opts.Store.ExecutionByID(ctx, b.ExecutionID)
		if err != nil {
			return nil, err
		}
		d, err := r.breakGlassItem(ctx, e, b, false)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// breakGlassItem is the item of an emergency apply that ran on
// break-glass: its approvals are signed under the trust in force now (the
// policy digest stepBreakGlass judges them with) for the plan that ran.
func (r *Reconciler) breakGlassItem(ctx context.Context, e *store.Execution, b *store.BreakGlass, files bool) (*PendingDetail, error) {
	t, err := r.currentTrust(ctx)
	if err != nil {
		return nil, err
	}
	approvals, err := r.opts.Store.ApprovalsForDigest(ctx, e.Digest)
	if err != nil {
		return nil, err
	}
	c := *e
	c.PolicyDigest = t.PolicyDigest
	p := r.pendingOp(&c, t, approvals)
	p.ReasonCode = string(judgement.CodeBreakGlass)
	p.Reason = fmt.Sprintf("ran on break-glass by %s at %s (%s); its approvals are due by %s, or it is reverted: %s",
		b.Signer, b.InvokedAt.UTC().Format(time.RFC3339), e.State, b.Deadline.UTC().Format(time.RFC3339), p.Needs.Summary)
	invoked, deadline := b.InvokedAt, b.Deadline
	p.BreakGlass = &PendingBreakGlass{Eligible: []PendingSigner{}, Signer: b.Signer, InvokedAt: &invoked, Deadline: &deadline}
	p.Since = b.InvokedAt
	if !files {
		return &PendingDetail{Pending: p}, nil
	}
	return r.opDetail(ctx, &c, t, p)
}

// pendingTrust describes the change to what decides the branch holds (an
// open meta_change hold), or nil when there is none; with files, also the
// trusted and changed files (the detail: the list does not read them).
func (r *Reconciler) pendingTrust(ctx context.Context, files bool) (*PendingDetail, error) {
	holds, err := r.opts.Store.OpenHolds(ctx)
	if err != nil {
		return nil, err
	}
	var hold *store.Hold
	for _, h := range holds {
		if h.Kind == store.HoldMetaChange {
			hold = h
		}
	}
	if hold == nil {
		return nil, nil
	}
	st, err := r.opts.Store.RepoState(ctx)
	if err != nil {
		return nil, err
	}
	adopted, err := r.trustAt(ctx, st.AdoptedSHA)
	if err != nil {
		return nil, err
	}
	change, err := r.metaChange(ctx, adopted, st.ProcessedSHA)
	if err != nil {
		return nil, err
	}
	if change == nil {
		return nil, nil
	}
	verdict, _, _, err := r.verifyMeta(ctx, adopted, change)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("trust-%d", hold.ID)
	var subjects []PendingSubject
	for _, s := range change.Subjects {
		subjects = append(subjects, PendingSubject{Path: s.Path, Digest: s.Digest})
	}
	tr := change.Transition
	d := &PendingDetail{Pending: Pending{
		ID: id, Kind: PendingTrustChange, Subjects: subjects, Transition: &tr, Repository: r.opts.Repository,
		Commit: st.ProcessedSHA, PolicyDigest: adopted.PolicyDigest, ReasonCode: store.HoldMetaChange,
		Reason: "a change to policies/ or .writ/ waits for the admins' signatures: " + verdict.Summary(),
		Since:  hold.CreatedAt, Command: "writ approve " + id,
	}}
	d.Needs = needsOf(verdict, adopted.Keyring, []string{approval.RoleAdmin}, nil, verdict.Required)
	if !files {
		return d, nil
	}
	base, err := r.opts.Source.FS(st.AdoptedSHA)
	if err != nil {
		return nil, err
	}
	head, err := r.opts.Source.FS(st.ProcessedSHA)
	if err != nil {
		return nil, err
	}
	if d.TrustedFiles, d.DefaultPolicies, err = decidingFiles(base, true); err != nil {
		return nil, fmt.Errorf("trusted files at %.12s: %w", st.AdoptedSHA, err)
	}
	if d.ChangedFiles, _, err = decidingFiles(head, true); err != nil {
		return nil, fmt.Errorf("changed files at %.12s: %w", st.ProcessedSHA, err)
	}
	return d, nil
}

// needsOf turns a verdict into what is missing and who may give it.
func needsOf(v approval.Verdict, kr *approval.Keyring, roles, proposerRoles []string, required int) PendingNeeds {
	n := PendingNeeds{
		Proposal: v.ProposalMissing, Proposer: v.Proposer, Approvals: required, Missing: v.Missing,
		Roles: slices.Clone(roles), Signed: []PendingSignature{}, Eligible: []PendingSigner{}, Summary: v.Summary(),
	}
	if n.Roles == nil {
		n.Roles = []string{}
	}
	if v.ProposalMissing {
		n.ProposerRoles = proposerRoles
	}
	done := map[string]bool{}
	authors := map[string]bool{}
	for _, p := range v.Proposals {
		authors[p.Proposer] = true
		exp := p.ExpiresAt
		n.Signed = append(n.Signed, PendingSignature{Approver: p.Proposer, Decision: approval.Propose, Counted: true, ValidUntil: &exp})
	}
	for _, c := range v.Counted {
		done[c.Approver] = true
		until := c.ValidUntil
		n.Signed = append(n.Signed, PendingSignature{Approver: c.Approver, Decision: approval.Approve, Counted: true, ValidUntil: &until})
	}
	for _, rj := range v.Rejected {
		done[rj.Approver] = true
		n.Signed = append(n.Signed, PendingSignature{Approver: rj.Approver, Decision: approval.Reject, Counted: true, Note: rj.Reason})
	}
	for _, nc := range v.NotCounted {
		n.Signed = append(n.Signed, PendingSignature{Approver: nc.Approver, Decision: nc.Decision, Code: string(nc.Code), Note: nc.Message})
	}
	if kr == nil {
		return n
	}
	for _, p := range kr.People() {
		if p.Disabled {
			continue
		}
		var keyIDs []string
		for _, k := range p.Keys {
			keyIDs = append(keyIDs, k.DSSEKeyID)
		}
		switch {
		case v.ProposalMissing && hasAny(p, proposerRoles):
			n.Eligible = append(n.Eligible, PendingSigner{ID: p.ID, Name: p.Name, Roles: p.Roles, Decision: approval.Propose, KeyIDs: keyIDs})
		case v.Missing > 0 && hasAny(p, roles) && !done[p.ID] && !authors[p.ID]:
			n.Eligible = append(n.Eligible, PendingSigner{ID: p.ID, Name: p.Name, Roles: p.Roles, Decision: approval.Approve, KeyIDs: keyIDs})
		}
	}
	return n
}

func hasAny(p *approval.Person, roles []string) bool {
	return slices.ContainsFunc(roles, p.Has)
}

// decidingFiles reads the files under policies/ (and with writ, .writ/)
// of a tree, sorted by path. noPolicies reports a tree without policies/
// (the built-in policies judge it).
func decidingFiles(tree fs.FS, writ bool) (files []PendingFile, noPolicies bool, err error) {
	dirs := []string{trust.PoliciesDir}
	if writ {
		dirs = append(dirs, trust.WritDir)
	}
	for _, dir := range dirs {
		err := fs.WalkDir(tree, dir, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == dir {
					if dir == trust.PoliciesDir {
						noPolicies = true
					}
					return fs.SkipAll
				}
				return err
			}
			if de.IsDir() {
				return nil
			}
			if len(files) >= maxPendingFiles {
				return fmt.Errorf("more than %d files under policies/ and .writ/", maxPendingFiles)
			}
			data, prob, err := playbook.ReadFile(tree, p)
			if err != nil {
				return err
			}
			if prob != nil {
				// Not readable as a file (a symlink, too large): the
				// reviewer sees why; the digests cover it the same way.
				files = append(files, PendingFile{Path: p, Content: "unreadable: " + prob.Message, Missing: true})
				return nil
			}
			files = append(files, PendingFile{Path: p, Content: string(data)})
			return nil
		})
		if err != nil {
			return nil, false, err
		}
	}
	slices.SortFunc(files, func(a, b PendingFile) int { return strings.Compare(a.Path, b.Path) })
	return files, noPolicies, nil
}

// Statement is the statement that signs an item: decision (propose,
// approve or reject) by approver, with reason, issued at now and valid for
// validity. It binds what the item binds (subjects, repository, commit,
// policy digest, and the operation and plan digest, or the transition); an
// approval of a playbook operation binds its plan digest too. `writ
// approve ID` and the console sign exactly this.
//
// BreakGlassStatement is the approval that invokes break-glass instead.
func (p *Pending) Statement(decision, approver, reason string, now time.Time, validity time.Duration) (approval.Statement, error) {
	now = now.UTC().Truncate(time.Second)
	pred := approval.Predicate{
		Decision: decision, Approver: approver, Repository: p.Repository, HeadCommit: p.Commit,
		PolicyDigest: p.PolicyDigest, Reason: reason, IssuedAt: now, ExpiresAt: now.Add(validity),
	}
	if p.Transition != nil {
		pred.Transition = p.Transition
	} else {
		pred.Operation, pred.Incident = p.Operation, p.Incident
		if decision == approval.Approve {
			pred.PlanDigest = p.PlanDigest
		}
	}
	subjects := make([]approval.Subject, 0, len(p.Subjects))
	for _, s := range p.Subjects {
		subjects = append(subjects, approval.Subject{Path: s.Path, Digest: s.Digest})
	}
	st := approval.NewStatement(subjects, pred)
	if err := st.Validate(); err != nil {
		return approval.Statement{}, fmt.Errorf("statement for %s: %w", p.ID, err)
	}
	return st, nil
}

// BreakGlassStatement is the approval by approver, a holder of the
// break-glass role, that lets an emergency apply run before its normal
// approvals. It binds what an approval binds (content, repository,
// operation, policy and plan digests) and is marked breakGlass, so it
// never counts toward the quorum.
func (p *Pending) BreakGlassStatement(approver, reason string, now time.Time, validity time.Duration) (approval.Statement, error) {
	switch {
	case p.BreakGlass == nil:
		return approval.Statement{}, fmt.Errorf("%s cannot break glass: the policies allow no emergency for it (only an apply of a playbook marked emergency: true, where emergency.rego allows it)", p.ID)
	case p.BreakGlass.InvokedAt != nil:
		return approval.Statement{}, fmt.Errorf("%s already ran on break-glass by %s: it needs its approvals now", p.ID, p.BreakGlass.Signer)
	}
	st, err := p.Statement(approval.Approve, approver, reason, now, validity)
	if err != nil {
		return st, err
	}
	st.Predicate.BreakGlass = true
	if err := st.Validate(); err != nil {
		return approval.Statement{}, fmt.Errorf("statement for %s: %w", p.ID, err)
	}
	return st, nil
}
