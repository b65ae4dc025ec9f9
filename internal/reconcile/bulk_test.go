package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// bulkYAML is a block_ip playbook that takes its targets from
// indicators/feed.txt.
func bulkYAML(name, severity, environment string) string {
	return fmt.Sprintf(`apiVersion: writ/v1
kind: Playbook
metadata:
  name: %s
  ticket: INC-20
spec:
  action: block_ip
  targetsFile: indicators/feed.txt
  justification: C2 addresses from the threat feed
  severity: %s
  environment: %s
`, name, severity, environment)
}

const feedPath = "indicators/feed.txt"

// The targets file is part of the content approvals sign: approvals signed
// for a playbook and its file do not count once a later commit edits one
// line of the file, exactly as if the playbook had been edited. The
// version they signed never runs; the new one waits for its own.
func TestTargetsFileEditInvalidatesApprovals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-feed"
	pb := bulkYAML(name, "high", "production")
	feed1 := "# C2 from the feed, 2026-03-04\n203.0.113.7\n198.51.100.0/24\n203.0.113.9 # beacon\n203.0.113.7\n"
	e.merge("feed", map[string]string{pbPath(name): pb, feedPath: feed1})
	e.pass()
	v1 := e.execution(name, "apply")
	if v1.Digest != playbook.BundleDigest([]byte(pb), []byte(feed1)) {
		t.Fatalf("the apply's digest %s is not the bundle digest of the playbook and its file", v1.Digest)
	}
	if !slices.Equal(v1.Targets, []string{"203.0.113.7", "198.51.100.0/24", "203.0.113.9"}) {
		t.Fatalf("targets %v", v1.Targets)
	}
	stored, err := e.st.PlaybookVersionByID(e.ctx, v1.VersionID)
	if err != nil || stored.TargetsPath != feedPath || string(stored.TargetsFile) != feed1 {
		t.Fatalf("stored version: %q %q %v", stored.TargetsPath, stored.TargetsFile, err)
	}
	// The analyst proposes and an approver approves exactly this content.
	e.approveVersion(name, "apply", map[string]string{"alice": "propose", "bob": "approve"})

	// Before writ acts on them, one line of the file changes; the
	// playbook itself does not.
	feed2 := strings.Replace(feed1, "203.0.113.9 # beacon", "203.0.113.10 # beacon", 1)
	e.merge("feed-edit", map[string]string{feedPath: feed2})
	e.pass()
	v1, err = e.st.ExecutionByKey(e.ctx, name, v1.Digest, "apply")
	if err != nil || v1.State != store.ExecCancelled || v1.ReasonCode != string(codeSuperseded) {
		t.Fatalf("the approved version: %s %s (%s) %v", v1.State, v1.ReasonCode, v1.Reason, err)
	}
	v2 := e.execution(name, "apply")
	if v2.Digest == v1.Digest || v2.Digest != playbook.BundleDigest([]byte(pb), []byte(feed2)) {
		t.Fatalf("the edited version has digest %s", v2.Digest)
	}
	if v2.State != store.ExecWaiting || v2.ReasonCode != string(codeAwaitingApprovalCode) || !strings.Contains(v2.Reason, "no signed proposal") {
		t.Fatalf("the edited version: %s %s (%s)", v2.State, v2.ReasonCode, v2.Reason)
	}
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("executed with the approvals of other content: %v", got)
	}
	// The statements signed for the first file, sent again, are refused:
	// what they sign can never run.
	late := e.signWith("carol", approval.Predicate{Decision: approval.Approve, Operation: "apply", PolicyDigest: v1.PolicyDigest, PlanDigest: v1.PlanDigest},
		[]approval.Subject{{Path: pbPath(name), Digest: v1.Digest}})
	if _, err := e.rec.SubmitApproval(e.ctx, late, approval.Submitted{Source: "api"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("an approval of the superseded content: %v", err)
	}

	// Approved as it now is, it runs.
	e.approveVersion(name, "apply", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusCompleted {
		t.Fatalf("after approving the edited file: %s (%s)", st, reason)
	}
	if got := e.blocked("production"); !slices.Equal(got, []string{"198.51.100.0/24", "203.0.113.10", "203.0.113.7"}) {
		t.Fatalf("blocklist %v", got)
	}

	// A later edit of the file drops a target and adds one: a new apply,
	// and the revert of what it drops, each judged and approved on its own.
	feed3 := strings.Replace(feed2, "198.51.100.0/24\n", "192.0.2.77\n", 1)
	e.merge("feed-edit-2", map[string]string{feedPath: feed3})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	rv := e.execution(name, "revert")
	if rv.Trigger != "update" || !slices.Equal(rv.Targets, []string{"198.51.100.0/24"}) || rv.State != store.ExecWaiting {
		t.Fatalf("the revert of the dropped target: %s %v %s (%s)", rv.Trigger, rv.Targets, rv.State, rv.Reason)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if got := e.blocked("production"); !slices.Equal(got, []string{"192.0.2.77", "203.0.113.10", "203.0.113.7"}) {
		t.Fatalf("blocklist after the second edit %v", got)
	}
	e.verifyAudit()
}

// codeAwaitingApprovalCode is judgement's code, as executions store it.
const codeAwaitingApprovalCode = "awaiting_approval"

// A targets file that no longer reads (a bad line, or deleted) makes its
// playbook invalid at that commit, located file:line:col; the version in
// force stays, nothing is reverted until the playbook itself is deleted.
func TestBrokenTargetsFileKeepsTheVersionInForce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-feed"
	e.merge("feed", map[string]string{pbPath(name): bulkYAML(name, "low", "staging"), feedPath: "203.0.113.7\n203.0.113.8\n"})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.7", "203.0.113.8"}) {
		t.Fatalf("blocklist %v", got)
	}
	e.merge("typo", map[string]string{feedPath: "203.0.113.7\n\n  203.0.113.800\n"})
	e.pass()
	e.merge("gone", nil, feedPath)
	e.pass()
	if st, reason := e.status(name); st != store.StatusCompleted {
		t.Fatalf("the version in force: %s (%s)", st, reason)
	}
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.7", "203.0.113.8"}) {
		t.Fatalf("blocklist changed: %v", got)
	}
	var problems []string
	for _, en := range e.events() {
		if en.Event == audit.EventPlaybookInvalid {
			var p struct {
				Problems string `json:"problems"`
			}
			_ = json.Unmarshal(en.Payload, &p)
			problems = append(problems, p.Problems)
		}
	}
	if len(problems) != 2 || problems[0] != `indicators/feed.txt:3:3: "203.0.113.800" is not a valid IP address or CIDR prefix` ||
		!strings.Contains(problems[1], "spec.targetsFile: indicators/feed.txt does not exist in the repository") {
		t.Fatalf("playbook.invalid problems: %q", problems)
	}
	// Deleting the playbook reverts what its version in force applied,
	// read from the version stored with its file: the tree has none.
	e.merge("remove", nil, pbPath(name))
	e.pass()
	e.approveVersion(name, "revert", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusReverted {
		t.Fatalf("after deletion: %s (%s)", st, reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("blocklist after the revert: %v", got)
	}
	e.verifyAudit()
}

// A pull request that edits only a targets file is judged as an update of
// the playbook naming it, with the new digest.
func TestPullRequestEditingTargetsFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name := "block-feed"
	pb := bulkYAML(name, "low", "staging")
	e.merge("feed", map[string]string{pbPath(name): pb, feedPath: "203.0.113.7\n"})
	e.pass()
	base := e.repo.Head()
	e.repo.Branch("pr-8")
	e.repo.Write(feedPath, "203.0.113.7\n203.0.113.0/24\n")
	head := e.repo.Commit("more addresses")
	e.repo.PushRef("refs/heads/pr-8")
	ev, err := e.rec.Evaluate(e.ctx, base, head, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Playbooks) != 1 {
		t.Fatalf("%d playbooks judged", len(ev.Playbooks))
	}
	p := ev.Playbooks[0]
	if p.Path != pbPath(name) || p.ChangeType != "update" || p.Digest != playbook.BundleDigest([]byte(pb), []byte("203.0.113.7\n203.0.113.0/24\n")) ||
		p.Plan == nil || len(p.Plan.Targets) != 2 {
		t.Fatalf("judged %+v", p)
	}
}

// A playbook of 100,000 targets goes through the whole engine: recorded
// with its file, decided by the default policies within their deadline,
// planned, approved, applied and audited (the entries within the log's
// size limit, the whole list in the execution).
func TestHundredThousandTargetsThroughTheEngine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	var b strings.Builder
	b.WriteString("# the whole feed\n")
	for i := range playbook.MaxFileTargets {
		fmt.Fprintf(&b, "11.%d.%d.%d\n", i>>16, (i>>8)&255, i&255)
	}
	name := "block-feed"
	e.merge("feed", map[string]string{pbPath(name): bulkYAML(name, "high", "production"), feedPath: b.String()})
	e.pass()
	ex := e.execution(name, "apply")
	if len(ex.Targets) != playbook.MaxFileTargets || ex.ReasonCode != codeAwaitingApprovalCode {
		t.Fatalf("%d targets, %s (%s)", len(ex.Targets), ex.ReasonCode, ex.Reason)
	}
	var plan action.Plan
	if err := json.Unmarshal(ex.Plan, &plan); err != nil || len(plan.Targets) != playbook.MaxFileTargets {
		t.Fatalf("plan of %d targets, %v", len(plan.Targets), err)
	}
	e.approveVersion(name, "apply", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusCompleted || reason != "applied: 100000 changed, 0 unchanged" {
		t.Fatalf("%s (%s)", st, reason)
	}
	if got := e.blocked("production"); len(got) != playbook.MaxFileTargets {
		t.Fatalf("%d blocked", len(got))
	}
	results, err := e.st.ExecutionTargets(e.ctx, ex.ID)
	if err != nil || len(results) != playbook.MaxFileTargets {
		t.Fatalf("%d results, %v", len(results), err)
	}
	completed := false
	for _, en := range e.events() {
		if en.Event != audit.EventExecutionCompleted {
			continue
		}
		var p struct {
			Targets []string       `json:"targets"`
			Total   int            `json:"targets_total"`
			Results []any          `json:"results"`
			Counts  map[string]int `json:"results_counts"`
			Sum     string         `json:"results_sha256"`
		}
		if err := json.Unmarshal(en.Payload, &p); err != nil {
			t.Fatal(err)
		}
		completed = len(p.Targets) == action.ShownTargets && p.Total == playbook.MaxFileTargets && len(p.Results) == action.ShownTargets &&
			p.Counts[action.Changed] == playbook.MaxFileTargets && len(p.Sum) == 64
		if !completed {
			t.Fatalf("execution.completed payload: %d targets of %d, %d results, %v", len(p.Targets), p.Total, len(p.Results), p.Counts)
		}
	}
	if !completed {
		t.Fatal("no execution.completed entry")
	}
	e.verifyAudit()
}

// A playbook posted to the dry-run reads the targets file it names from
// the branch as writ processed it.
func TestDryRunReadsTheTargetsFileFromTheBranch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	feed := "203.0.113.7\n203.0.113.0/24\n"
	e.merge("feed", map[string]string{feedPath: feed})
	e.pass()
	posted := bulkYAML("block-posted", "low", "staging")
	pe, err := e.rec.DryRun(e.ctx, "playbooks/posted.yaml", []byte(posted))
	if err != nil {
		t.Fatal(err)
	}
	if pe.Outcome() == "invalid" || pe.Digest != playbook.BundleDigest([]byte(posted), []byte(feed)) || pe.Plan == nil || len(pe.Plan.Targets) != 2 {
		t.Fatalf("dry-run: %s %+v", pe.Outcome(), pe.Problems)
	}
	missing := strings.Replace(posted, feedPath, "indicators/none.txt", 1)
	pe, err = e.rec.DryRun(e.ctx, "playbooks/posted.yaml", []byte(missing))
	if err != nil || pe.Outcome() != "invalid" || !strings.Contains(pe.Problems.Error(), "indicators/none.txt does not exist in the repository") {
		t.Fatalf("dry-run of a missing file: %v %+v", err, pe)
	}
}
