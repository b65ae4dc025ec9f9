package reconcile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/policy"
)

// A pull request is judged as its merge would be, without writing
// anything: invalid files with located problems, policy decisions, plans,
// approvals counted; a policy change shows what the new policies would
// decide, not in force.
func TestEvaluatePullRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.merge("existing", map[string]string{pbPath("block-old"): playbookYAML("block-old", "INC-1", "203.0.113.60", "low", "staging", "")})
	e.pass()
	base := e.repo.Head()

	e.repo.Branch("pr-7")
	e.repo.Write(pbPath("block-new"), playbookYAML("block-new", "INC-2", "203.0.113.61", "high", "production", ""))
	e.repo.Write(pbPath("broken"), "apiVersion: writ/v1\nkind: Playbook\nmetadata: {name: broken}\nspec:\n  action: block_ip\n  targets: [999.1.1.1]\n  justification: x\n  severity: low\n  environment: staging\n")
	e.repo.Remove(pbPath("block-old"))
	e.repo.Write("policies/extra.rego", "package writ.extra\n\nnote := \"not in force\"\n")
	head := e.repo.Commit("pr 7")
	e.repo.PushRef("refs/heads/pr-7")

	ev, err := e.rec.Evaluate(e.ctx, base, head, 7)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*PlaybookEvaluation{}
	for i := range ev.Playbooks {
		got[ev.Playbooks[i].Path] = &ev.Playbooks[i]
	}
	if p := got[pbPath("broken")]; p == nil || p.Outcome() != "invalid" || !strings.Contains(p.Problems.Error(), pbPath("broken")+":6:13") {
		t.Fatalf("broken: %+v", p)
	}
	nw := got[pbPath("block-new")]
	if nw == nil || nw.Outcome() != "awaiting" || nw.Decision.Outcome != policy.RequireApproval || nw.Plan == nil || nw.Plan.Targets[0].Result != action.WouldBlock {
		t.Fatalf("block-new: %+v", nw)
	}
	old := got[pbPath("block-old")]
	if old == nil || old.Operation != action.Revert || old.ChangeType != "delete" {
		t.Fatalf("block-old: %+v", old)
	}
	if ev.Meta == nil || len(ev.Meta.Subjects) != 1 || ev.Meta.Subjects[0].Path != "policies/" || ev.Meta.Verdict.QuorumMet {
		t.Fatalf("meta: %+v", ev.Meta)
	}
	if _, ok := ev.Meta.Shadow[pbPath("block-new")]; !ok {
		t.Fatal("no shadow decision from the changed policies")
	}

	// Signed approvals for exactly what the evaluation shows make it ready.
	subject := []approval.Subject{{Path: nw.Path, Digest: nw.Digest}}
	e.submit(e.sign("alice", "propose", subject, ev.PolicyDigest, nw.PlanDigest, e.clock.Now()))
	e.submit(e.sign("bob", "approve", subject, ev.PolicyDigest, nw.PlanDigest, e.clock.Now()))
	ev, err = e.rec.Evaluate(e.ctx, base, head, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ev.Playbooks {
		if p.Path == nw.Path && p.Outcome() != "ready" {
			t.Fatalf("after approvals: %s (%s)", p.Outcome(), p.Verdict.Summary())
		}
	}
	// Evaluating wrote nothing.
	if _, err := e.st.LatestPlaybookVersion(e.ctx, "block-new"); err == nil {
		t.Fatal("evaluation stored a playbook version")
	}
}

func TestDryRunPostedPlaybook(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	pe, err := e.rec.DryRun(e.ctx, "playbooks/posted.yaml", []byte(playbookYAML("posted", "INC-P", "203.0.113.80", "high", "production", "")))
	if err != nil {
		t.Fatal(err)
	}
	if pe.Outcome() != "awaiting" || pe.Decision.ApprovalsRequired != 1 || pe.Plan == nil || pe.Plan.Targets[0].Result != action.WouldBlock {
		t.Fatalf("dry-run: %+v", pe)
	}
	bad, err := e.rec.DryRun(e.ctx, "playbooks/bad.yaml", []byte("apiVersion: writ/v1\n"))
	if err != nil || bad.Outcome() != "invalid" {
		t.Fatalf("invalid dry-run: %+v %v", bad, err)
	}
	if _, err := e.st.LatestPlaybookVersion(e.ctx, "posted"); err == nil {
		t.Fatal("a dry-run stored a version")
	}
}

// A change with more playbooks than MaxPlaybooksPerChange is not judged
// (no decision, no dry-run against live systems); at the limit it is.
func TestEvaluateBoundsThePlaybooksOfAChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.rec.opts.MaxPlaybooksPerChange = 3
	base := e.repo.Head()
	e.repo.Branch("pr-8")
	for i := range 3 {
		name := fmt.Sprintf("block-%d", i)
		e.repo.Write(pbPath(name), playbookYAML(name, "INC-8", fmt.Sprintf("203.0.113.%d", 70+i), "low", "staging", ""))
	}
	atLimit := e.repo.Commit("three playbooks")
	e.repo.PushRef("refs/heads/pr-8")
	ev, err := e.rec.Evaluate(e.ctx, base, atLimit, 8)
	if err != nil {
		t.Fatal(err)
	}
	if ev.TooManyPlaybooks != 0 || len(ev.Playbooks) != 3 || ev.Playbooks[0].Plan == nil {
		t.Fatalf("at the limit: too many %d, judged %d", ev.TooManyPlaybooks, len(ev.Playbooks))
	}
	e.repo.Write(pbPath("block-3"), playbookYAML("block-3", "INC-8", "203.0.113.73", "low", "staging", ""))
	e.repo.Write("policies/extra.rego", "package writ.extra\n\nnote := \"not in force\"\n")
	over := e.repo.Commit("a fourth playbook")
	e.repo.PushRef("refs/heads/pr-8")
	ev, err = e.rec.Evaluate(e.ctx, base, over, 8)
	if err != nil {
		t.Fatal(err)
	}
	if ev.TooManyPlaybooks != 4 || ev.PlaybookLimit != 3 || len(ev.Playbooks) != 0 {
		t.Fatalf("over the limit: too many %d (limit %d), judged %d", ev.TooManyPlaybooks, ev.PlaybookLimit, len(ev.Playbooks))
	}
	if ev.Meta == nil || len(ev.Meta.Subjects) != 1 {
		t.Fatalf("the policy change is still judged: %+v", ev.Meta)
	}
}
