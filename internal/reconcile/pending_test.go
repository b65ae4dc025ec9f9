package reconcile

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/store"
)

// pendingByID finds an item of the queue.
func (e *env) pendingByID(id string) *Pending {
	e.t.Helper()
	list, err := e.rec.Pending(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

func eligible(p *Pending) []string {
	var out []string
	for _, s := range p.Needs.Eligible {
		out = append(out, s.ID+":"+s.Decision)
	}
	slices.Sort(out)
	return out
}

// The queue says what a production apply needs and who may give it, as
// statements arrive; its detail carries what a statement binds.
func TestPendingQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.merge("block", map[string]string{pbPath("block-prod"): playbookYAML("block-prod", "INC-7", "203.0.113.7", "high", "production", "")})
	e.pass()
	ex := e.execution("block-prod", "apply")
	id := fmt.Sprintf("op-%d", ex.ID)
	p := e.pendingByID(id)
	if p == nil {
		t.Fatalf("%s is not pending: %s (%s)", id, ex.State, ex.Reason)
	}
	if p.Kind != PendingApply || p.Operation != "apply" || p.Repository != testRepo || len(p.Subjects) != 1 ||
		p.Subjects[0] != (PendingSubject{Path: ex.Path, Digest: ex.Digest}) || p.PolicyDigest != ex.PolicyDigest ||
		p.PlanDigest != ex.PlanDigest || p.Command != "writ approve "+id {
		t.Fatalf("item: %+v", p)
	}
	if !p.Needs.Proposal || p.Needs.Approvals != 1 || p.Needs.Missing != 1 || !slices.Equal(p.Needs.Roles, []string{"approver"}) {
		t.Fatalf("needs before the proposal: %+v", p.Needs)
	}
	if got := eligible(p); !slices.Equal(got, []string{"alice:propose", "bob:approve", "carol:approve", "mallory:propose"}) {
		t.Fatalf("who may sign first: %v", got)
	}

	e.approveVersion("block-prod", "apply", map[string]string{"alice": "propose", "mallory": "approve"})
	p = e.pendingByID(id)
	if p == nil || p.Needs.Proposal || p.Needs.Proposer != "alice" || p.Needs.Missing != 1 {
		t.Fatalf("needs after alice proposed: %+v", p)
	}
	// Analysts and admins hold no approver role; once proposed, nobody is
	// asked to propose.
	if got := eligible(p); !slices.Equal(got, []string{"bob:approve", "carol:approve"}) {
		t.Fatalf("who may approve: %v", got)
	}
	var signed []string
	for _, s := range p.Needs.Signed {
		if s.Counted && s.ValidUntil == nil {
			t.Fatalf("a counted statement without its validity: %+v", s)
		}
		signed = append(signed, s.Approver+":"+s.Decision)
	}
	slices.Sort(signed)
	if !slices.Equal(signed, []string{"alice:propose", "mallory:approve"}) {
		t.Fatalf("signed: %v", signed)
	}

	d, err := e.rec.PendingItem(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Content == nil || d.Content.Path != ex.Path || !strings.Contains(d.Content.Content, "203.0.113.7") || len(d.Plan) == 0 || len(d.Decision) == 0 {
		t.Fatalf("detail: %+v", d)
	}
	if !slices.ContainsFunc(d.TrustedFiles, func(f PendingFile) bool { return strings.HasPrefix(f.Path, "policies/") }) {
		t.Fatalf("the trusted policies are not sent: %+v", d.TrustedFiles)
	}

	e.approveVersion("block-prod", "apply", map[string]string{"bob": "approve"})
	e.pass()
	if p := e.pendingByID(id); p != nil {
		t.Fatalf("still pending after its quorum: %+v", p)
	}
	if _, err := e.rec.PendingItem(e.ctx, id); !errors.Is(err, ErrNotPending) || !strings.Contains(err.Error(), "completed") {
		t.Fatalf("a done operation: %v", err)
	}
	for _, bad := range []string{"op-0", "op-x", "hold-1", "op-99999"} {
		if _, err := e.rec.PendingItem(e.ctx, bad); !errors.Is(err, ErrNotPending) {
			t.Fatalf("%s: %v", bad, err)
		}
	}
}

// An update supersedes a version that never ran: its apply is cancelled
// (never applied later, whatever is signed), and a statement about it is
// refused at the door, saying why.
func TestSupersededVersionIsCancelledAndRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.merge("v1", map[string]string{pbPath("block-prod"): playbookYAML("block-prod", "INC-8", "203.0.113.8", "high", "production", "")})
	e.pass()
	old := e.execution("block-prod", "apply")
	e.merge("v2", map[string]string{pbPath("block-prod"): playbookYAML("block-prod", "INC-8", "203.0.113.9", "high", "production", "")})
	e.pass()
	got, err := e.st.ExecutionByID(e.ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.ExecCancelled || got.ReasonCode != "superseded" {
		t.Fatalf("the replaced version's apply: %s %s (%s)", got.State, got.ReasonCode, got.Reason)
	}
	// No revert of targets the first version never applied.
	list, err := e.st.ListExecutions(e.ctx, store.ExecutionFilter{Name: "block-prod"})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range list {
		if x.Operation == "revert" {
			t.Fatalf("a revert of a version that never ran: %+v", x)
		}
	}
	raw := e.signWith("bob", approval.Predicate{Decision: approval.Approve, Operation: "apply", PolicyDigest: old.PolicyDigest, PlanDigest: old.PlanDigest},
		[]approval.Subject{{Path: old.Path, Digest: old.Digest}})
	_, err = e.rec.SubmitApproval(e.ctx, raw, approval.Submitted{Source: "api"})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no longer pending") || !strings.Contains(err.Error(), "superseded") {
		t.Fatalf("an approval of the superseded version: %v", err)
	}
	if _, err := e.rec.PendingItem(e.ctx, fmt.Sprintf("op-%d", old.ID)); !errors.Is(err, ErrNotPending) || !strings.Contains(err.Error(), "superseded") {
		t.Fatalf("the superseded item: %v", err)
	}
	// The new version waits, and is what the queue lists.
	cur := e.execution("block-prod", "apply")
	if cur.ID == old.ID || e.pendingByID(fmt.Sprintf("op-%d", cur.ID)) == nil {
		t.Fatalf("the new version's apply is not pending: %+v", cur)
	}
}

// A change to what decides is pending for the admins with its transition
// and both sides' files; once adopted it is not, and a statement from the
// old trusted commit is refused at the door.
func TestPendingTrustChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	trusted := e.rec.Status().Adopted
	k2 := e.approversFile(append(slices.Clone(roster), struct {
		id    string
		roles []string
	}{"zed", []string{"approver"}}))
	e.merge("add-zed", map[string]string{".writ/approvers.yaml": k2})
	e.pass()
	list, err := e.rec.Pending(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var p *Pending
	for i := range list {
		if list[i].Kind == PendingTrustChange {
			p = &list[i]
		}
	}
	if p == nil || !strings.HasPrefix(p.ID, "trust-") || p.Transition == nil || p.Transition.TrustedCommit != trusted ||
		len(p.Subjects) != 1 || p.Subjects[0].Path != ".writ/approvers.yaml" || p.Needs.Approvals != 2 || p.Needs.Missing != 2 {
		t.Fatalf("the trust change: %+v", p)
	}
	if got := eligible(p); !slices.Equal(got, []string{"dave:approve", "erin:approve"}) {
		t.Fatalf("who may approve a trust change: %v", got)
	}
	d, err := e.rec.PendingItem(e.ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	find := func(files []PendingFile, path string) string {
		for _, f := range files {
			if f.Path == path {
				return f.Content
			}
		}
		return ""
	}
	if old, changed := find(d.TrustedFiles, ".writ/approvers.yaml"), find(d.ChangedFiles, ".writ/approvers.yaml"); strings.Contains(old, "zed") || !strings.Contains(changed, "zed") {
		t.Fatalf("both sides of the change: old has zed %v, new has zed %v", strings.Contains(old, "zed"), strings.Contains(changed, "zed"))
	}
	early := e.signMeta("dave", "approve")
	e.submit(early)
	e.submit(e.signMeta("erin", "approve"))
	e.pass()
	if _, err := e.rec.PendingItem(e.ctx, p.ID); !errors.Is(err, ErrNotPending) || !strings.Contains(err.Error(), "adopted") {
		t.Fatalf("an adopted change: %v", err)
	}
	// A statement from the commit no longer trusted cannot count: refused.
	env, err := approval.Parse(early)
	if err != nil {
		t.Fatal(err)
	}
	pred := env.Statement.Predicate
	pred.IssuedAt, pred.Reason = pred.IssuedAt.Add(time.Second), "again"
	var subs []approval.Subject
	for _, s := range env.Statement.Subject {
		subs = append(subs, approval.Subject{Path: s.Name, Digest: s.SHA256()})
	}
	_, err = e.rec.SubmitApproval(e.ctx, e.signWith("erin", pred, subs), approval.Submitted{Source: "api"})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "trust in force is commit") {
		t.Fatalf("a statement from the old trusted commit: %v", err)
	}
}
