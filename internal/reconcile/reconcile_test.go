package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/store"
)

// An allowed playbook (staging, low) with its analyst's signed proposal is
// executed once after the merge, and the blocklist holds its targets.
func TestAllowedPlaybookRunsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass() // bootstrap on the initial commit
	name := "block-scanner"
	e.merge("scanner", map[string]string{pbPath(name): playbookYAML(name, "INC-1", "203.0.113.7", "low", "staging", "")})
	e.pass()
	if st, reason := e.status(name); st != store.StatusAwaitingApproval || !strings.Contains(reason, "no signed proposal") {
		t.Fatalf("without a proposal: %s (%s)", st, reason)
	}
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusCompleted {
		t.Fatalf("status %s (%s)", st, reason)
	}
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.7"}) {
		t.Fatalf("blocklist %v", got)
	}
	// More passes (and a restart of the loop) change nothing.
	e.pass()
	e.pass()
	if n := e.journal("staging")["writ:"+name+":"+e.execution(name, "apply").Digest+":apply block"]; n != 1 {
		t.Fatalf("the backend changed state %d times for one playbook; want 1 (journal %v)", n, e.journal("staging"))
	}
	e.verifyAudit()
}

// A production playbook needs an approval: merged without one it waits
// and says why; the approval arriving later executes it.
func TestApprovalArrivingLaterExecutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-c2"
	e.merge("c2", map[string]string{pbPath(name): playbookYAML(name, "INC-2", "203.0.113.7, 198.51.100.0/24", "high", "production", "")})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	st, reason := e.status(name)
	if st != store.StatusAwaitingApproval || !strings.Contains(reason, "0 of 1 approval") {
		t.Fatalf("before approval: %s (%s)", st, reason)
	}
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("executed without approval: %v", got)
	}
	// The proposer approving their own playbook does not count.
	e.approveVersion(name, "apply", map[string]string{"alice": "approve"})
	e.pass()
	if st, _ := e.status(name); st != store.StatusAwaitingApproval {
		t.Fatalf("self-approval counted: %s", st)
	}
	e.approveVersion(name, "apply", map[string]string{"bob": "approve"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusCompleted {
		t.Fatalf("after approval: %s (%s)", st, reason)
	}
	if got := e.blocked("production"); !slices.Equal(got, []string{"198.51.100.0/24", "203.0.113.7"}) {
		t.Fatalf("blocklist %v", got)
	}
	e.verifyAudit()
}

// A denied playbook never runs; a signed rejection blocks.
func TestDeniedAndRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("deny", map[string]string{
		pbPath("block-loopback"): playbookYAML("block-loopback", "INC-3", "127.0.0.1", "low", "staging", ""),
		pbPath("block-reject"):   playbookYAML("block-reject", "INC-4", "203.0.113.9", "high", "production", ""),
	})
	e.pass()
	e.approveVersion("block-reject", "apply", map[string]string{"alice": "propose", "carol": "reject"})
	e.pass()
	if st, reason := e.status("block-loopback"); st != store.StatusDenied || !strings.Contains(reason, "denied by policy") {
		t.Fatalf("loopback: %s (%s)", st, reason)
	}
	if st, reason := e.status("block-reject"); st != store.StatusRejected || !strings.Contains(reason, "carol") {
		t.Fatalf("rejected: %s (%s)", st, reason)
	}
	// A statement about an operation already done is refused at the door,
	// saying so; what is stored stays.
	ex := e.execution("block-reject", "apply")
	late := e.signWith("bob", approval.Predicate{Decision: approval.Approve, Operation: ex.Operation, PolicyDigest: ex.PolicyDigest, PlanDigest: ex.PlanDigest},
		[]approval.Subject{{Path: ex.Path, Digest: ex.Digest}})
	if _, err := e.rec.SubmitApproval(e.ctx, late, approval.Submitted{Source: "api"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no longer pending: it is rejected") {
		t.Fatalf("an approval of a rejected apply: %v", err)
	}
	if stored, err := e.st.ApprovalsForDigest(e.ctx, ex.Digest); err != nil || len(stored) != 2 {
		t.Fatalf("the statements stored before: %d, %v", len(stored), err)
	}
	e.pass()
	if st, _ := e.status("block-reject"); st != store.StatusRejected {
		t.Fatalf("an approval after a rejection changed it: %s", st)
	}
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("blocklist %v", got)
	}
}

// Deleting a playbook reverts its effects, except targets another playbook
// in force still holds.
func TestDeletedPlaybookReverts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("two", map[string]string{
		pbPath("block-a"): playbookYAML("block-a", "INC-5", "203.0.113.1, 203.0.113.2", "low", "staging", ""),
		pbPath("block-b"): playbookYAML("block-b", "INC-6", "203.0.113.2", "low", "staging", ""),
	})
	e.pass()
	e.approveVersion("block-a", "apply", map[string]string{"alice": "propose"})
	e.approveVersion("block-b", "apply", map[string]string{"alice": "propose"})
	e.pass()
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.1", "203.0.113.2"}) {
		t.Fatalf("blocklist after apply %v", got)
	}
	e.merge("remove-a", nil, pbPath("block-a"))
	// Deleting an allowed playbook is allowed by the same policies, but the
	// revert is an operation of its own: the analyst's proposal of the
	// apply does not authorise it.
	e.pass()
	if rv := e.execution("block-a", "revert"); rv.State != store.ExecWaiting || rv.ReasonCode != "awaiting_approval" ||
		!strings.Contains(rv.Reason, "no signed proposal") {
		t.Fatalf("revert with only the apply's proposal: %s %s (%s)", rv.State, rv.ReasonCode, rv.Reason)
	}
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.1", "203.0.113.2"}) {
		t.Fatalf("reverted without its own proposal: %v", got)
	}
	e.approveVersion("block-a", "revert", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status("block-a"); st != store.StatusReverted {
		t.Fatalf("after deletion: %s (%s)", st, reason)
	}
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.2"}) {
		t.Fatalf("blocklist after revert %v; 203.0.113.2 is still wanted by block-b", got)
	}
	e.verifyAudit()
}

// expiresAfter reverts on time, with no further approval.
func TestExpiredPlaybookReverts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-temp"
	e.merge("temp", map[string]string{pbPath(name): playbookYAML(name, "INC-7", "203.0.113.50", "low", "staging", "  expiresAfter: 2h\n")})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.50"}) {
		t.Fatalf("blocklist %v", got)
	}
	e.clock.Advance(time.Hour)
	e.pass()
	if got := e.blocked("staging"); len(got) != 1 {
		t.Fatalf("reverted before its expiry: %v", got)
	}
	e.clock.Advance(61 * time.Minute)
	e.pass()
	if st, reason := e.status(name); st != store.StatusExpired {
		t.Fatalf("after expiry: %s (%s)", st, reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("blocklist after expiry %v", got)
	}
	e.verifyAudit()
}

// The revert expiresAfter scheduled is due by the approved content: one
// approver's signed rejection of it does not keep the block past its
// time (to keep it longer, change the playbook); the rejection is
// reported as not counting.
func TestExpiryNotHeldBackByARejectionOfTheRevert(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-temp"
	e.merge("temp", map[string]string{pbPath(name): playbookYAML(name, "INC-7", "203.0.113.50", "low", "staging", "  expiresAfter: 2h\n")})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.50"}) {
		t.Fatalf("blocklist %v", got)
	}
	ap := e.execution(name, "apply")
	e.submit(e.signWith("carol", approval.Predicate{Decision: approval.Reject, Operation: approval.OperationRevert, Reason: "keep it"},
		[]approval.Subject{{Path: ap.Path, Digest: ap.Digest}}))
	e.clock.Advance(2*time.Hour + time.Second)
	e.pass()
	rv := e.execution(name, "revert")
	if rv.Trigger != string(judgement.Expiry) || rv.State != store.ExecCompleted {
		t.Fatalf("the expiry's revert: %s %s (%s)", rv.Trigger, rv.State, rv.Reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("a rejection of the revert kept an expired block: %v", got)
	}
	if !strings.Contains(string(rv.Verdict), string(approval.CodeRejectionNotBinding)) {
		t.Fatalf("carol's rejection is not reported as not counting: %s", rv.Verdict)
	}
	e.verifyAudit()
}

// A force push executes nothing and is reported; an admin's
// acknowledgement lets writ move on.
func TestForcePushHolds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("one", map[string]string{pbPath("block-one"): playbookYAML("block-one", "INC-8", "203.0.113.11", "low", "staging", "")})
	e.pass()
	// Rewrite history: drop the merge and push a different playbook.
	e.repo.Git("reset", "--quiet", "--hard", "HEAD~1")
	e.repo.Write(pbPath("block-two"), playbookYAML("block-two", "INC-9", "203.0.113.12", "low", "staging", ""))
	head := e.repo.Commit("rewritten")
	e.repo.ForcePush()
	e.pass()
	st := e.rec.Status()
	if len(st.Holds) != 1 || !strings.Contains(st.Holds[0], "rewritten") {
		t.Fatalf("status holds %v", st.Holds)
	}
	if _, err := e.st.LatestPlaybookVersion(e.ctx, "block-two"); err == nil {
		t.Fatal("a playbook from rewritten history was processed")
	}
	holds, _ := e.st.OpenHolds(e.ctx)
	if len(holds) != 1 || holds[0].CommitSHA != head {
		t.Fatalf("holds %+v", holds)
	}
	if err := e.rec.AcknowledgeHold(e.ctx, holds[0].ID, audit.Actor{ID: "dave", Role: "admin"}); err != nil {
		t.Fatal(err)
	}
	e.pass()
	if st := e.rec.Status(); len(st.Holds) != 0 || st.Processed != head {
		t.Fatalf("after acknowledgement: %+v", st)
	}
	if _, err := e.st.LatestPlaybookVersion(e.ctx, "block-two"); err != nil {
		t.Fatalf("the acknowledged head was not adopted: %v", err)
	}
	e.verifyAudit()
}

// An acknowledgement is of one rewrite: when the branch moves on and is
// later force-pushed back to the head an admin once acknowledged, writ
// holds again and asks again.
func TestForcePushBackToAnAcknowledgedHeadHolds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("one", map[string]string{pbPath("block-one"): playbookYAML("block-one", "INC-8", "203.0.113.11", "low", "staging", "")})
	e.pass()
	e.repo.Git("reset", "--quiet", "--hard", "HEAD~1")
	e.repo.Write("README", "rewritten\n")
	h1 := e.repo.Commit("rewritten")
	e.repo.ForcePush()
	e.pass()
	holds, _ := e.st.OpenHolds(e.ctx)
	if len(holds) != 1 {
		t.Fatalf("holds %+v", holds)
	}
	if err := e.rec.AcknowledgeHold(e.ctx, holds[0].ID, audit.Actor{ID: "dave", Role: "admin"}); err != nil {
		t.Fatal(err)
	}
	e.pass()
	// The branch moves on normally.
	e.merge("two", map[string]string{pbPath("block-two"): playbookYAML("block-two", "INC-9", "203.0.113.12", "low", "staging", "")})
	e.pass()
	if st := e.rec.Status(); st.Processed == h1 || len(st.Holds) != 0 {
		t.Fatalf("status after moving on: %+v", st)
	}
	moved := e.rec.Status().Processed
	// A push rewrites it back to h1.
	e.repo.Git("reset", "--quiet", "--hard", h1)
	e.repo.ForcePush()
	e.pass()
	st := e.rec.Status()
	if st.Processed != moved || len(st.Holds) != 1 || !strings.Contains(st.Holds[0], "rewritten") {
		t.Fatalf("rewritten back to %.12s: processed %.12s, holds %v; want a new hold and nothing followed", h1, st.Processed, st.Holds)
	}
	list, err := e.st.ListExecutions(e.ctx, store.ExecutionFilter{Name: "block-two"})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range list {
		if x.Operation == "revert" {
			t.Fatalf("an unacknowledged rewrite recorded the revert of block-two: %+v", x)
		}
	}
	e.verifyAudit()
}

// A change to policies/ without two admins' approvals is not adopted:
// writ keeps judging with the old policies.
func TestUnapprovedPolicyChangeIsNotAdopted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	before := e.rec.Status().Adopted
	// A permissive "policy" that would allow everything.
	permissive := "package writ\n\ndecision := {\"deny\": set(), \"require_approval\": set(), \"approvals_required\": 0, \"approver_roles\": set()}\n"
	e.merge("loosen", map[string]string{"policies/decision.rego": permissive})
	e.pass()
	st := e.rec.Status()
	if st.Adopted != before || len(st.Holds) != 1 || !strings.Contains(st.Holds[0], "admin approvals") {
		t.Fatalf("status after unapproved change: %+v", st)
	}
	// Judged by the old policies: production still needs an approval.
	e.merge("after", map[string]string{pbPath("block-prod"): playbookYAML("block-prod", "INC-10", "203.0.113.20", "low", "production", "")})
	e.pass()
	e.approveVersion("block-prod", "apply", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status("block-prod"); st != store.StatusAwaitingApproval {
		t.Fatalf("judged by the unadopted policy: %s (%s)", st, reason)
	}
	// Two admins approve the change: it is adopted.
	head := e.rec.Status().Processed
	for _, who := range []string{"dave", "erin"} {
		e.submit(e.signMeta(who, "approve"))
	}
	e.pass()
	if st := e.rec.Status(); st.Adopted != head || len(st.Holds) != 0 {
		t.Fatalf("after admin approvals: %+v", st)
	}
	e.verifyAudit()
}

// An unsigned or foreign envelope is refused at the door and audited with
// its reason code and where it came from.
func TestSubmitRefusesUnverifiable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	bobs := e.sign("bob", "approve", []approval.Subject{{Path: "playbooks/x.yaml", Digest: strings.Repeat("a", 64)}}, strings.Repeat("b", 64), strings.Repeat("c", 64), e.clock.Now())
	cases := []struct {
		name string
		raw  []byte
		ch   approval.Submitted
		code approval.Code
	}{
		{"garbage", []byte("{not json"), approval.Submitted{Source: "api", Remote: "192.0.2.1"}, approval.CodeMalformed},
		{"tampered", []byte(strings.Replace(string(bobs), `"sig":"`, `"sig":"AAAA`, 1)), approval.Submitted{Source: "api", Remote: "192.0.2.2"},
			approval.CodeUnknownKey},
		{"another login", bobs, approval.Submitted{Source: "github", SourceRef: "77", SourceLogin: "mallory-gh"}, approval.CodeLoginMismatch},
	}
	for _, c := range cases {
		if _, err := e.rec.SubmitApproval(e.ctx, c.raw, c.ch); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v; want refused", c.name, err)
		}
	}
	list, err := e.st.ListApprovals(e.ctx, store.ApprovalFilter{})
	if err != nil || len(list) != 0 {
		t.Fatalf("refused envelopes were stored: %d %v", len(list), err)
	}
	es, err := e.st.AuditEntries(e.ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range es {
		if x.Event != string(audit.EventApprovalRefused) {
			continue
		}
		d, err := audit.Decode(x.Entry)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Code        string `json:"code"`
			Source      string `json:"source"`
			Remote      string `json:"remote"`
			SourceLogin string `json:"source_login"`
		}
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Code+" "+p.Source+" "+p.Remote+p.SourceLogin)
	}
	want := []string{"malformed api 192.0.2.1", "unknown_key api 192.0.2.2", "login_mismatch github mallory-gh"}
	if !slices.Equal(got, want) {
		t.Fatalf("refusals audited %q; want %q", got, want)
	}
	e.verifyAudit()
}

var _ = fmt.Sprint

// A playbook marked execution: manual waits, once approved, for an
// executor to start it.
func TestManualExecution(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-manual"
	e.merge("manual", map[string]string{pbPath(name): playbookYAML(name, "INC-M", "203.0.113.70", "low", "staging", "  execution: manual\n")})
	e.pass()
	x := e.execution(name, "apply")
	if err := e.rec.RunManual(e.ctx, x.ID, audit.Actor{ID: "erin", Role: "executor"}); !errors.Is(err, ErrNotRunnable) {
		t.Fatalf("run before approval: %v", err)
	}
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusApproved || !strings.Contains(reason, "executor") {
		t.Fatalf("approved manual playbook: %s (%s)", st, reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("a manual playbook ran by itself: %v", got)
	}
	if err := e.rec.RunManual(e.ctx, x.ID, audit.Actor{ID: "erin", Role: "executor"}); err != nil {
		t.Fatal(err)
	}
	e.pass()
	if st, _ := e.status(name); st != store.StatusCompleted {
		t.Fatalf("after the executor started it: %s", st)
	}
	if err := e.rec.RunManual(e.ctx, x.ID, audit.Actor{ID: "erin", Role: "executor"}); !errors.Is(err, ErrNotRunnable) {
		t.Fatalf("second run: %v", err)
	}
	e.verifyAudit()
}

// A policy set that does not compile in time denies, stays cached for a
// while (a pull request's slow set is not recompiled at every event), and
// is compiled again after compileRetry: a busy moment must not deny
// everything for good.
func TestPoliciesThatCompileTooSlowlyAreRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sha, err := e.rec.opts.Source.Fetch(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.rec.opts.PolicyCompileTimeout = time.Nanosecond
	slow, err := e.rec.trustAt(e.ctx, sha)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(slow.PolicyErr, policy.ErrCompileTimeout) || !slow.Policies.Failed() {
		t.Fatalf("policies compiled past a 1ns deadline: %v", slow.PolicyErr)
	}
	e.rec.opts.PolicyCompileTimeout = 0 // policy's default from here on
	e.clock.Advance(compileRetry - time.Second)
	again, err := e.rec.trustAt(e.ctx, sha)
	if err != nil {
		t.Fatal(err)
	}
	if again.Policies != slow.Policies {
		t.Fatal("a timed-out policy set was compiled again before compileRetry")
	}
	e.clock.Advance(2 * time.Second)
	fresh, err := e.rec.trustAt(e.ctx, sha)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.PolicyErr != nil || fresh.Policies.Failed() {
		t.Fatalf("policies not compiled again after compileRetry: %v", fresh.PolicyErr)
	}
	if d := fresh.Policies.Decide(e.ctx, policy.Input{Playbook: map[string]any{"spec": map[string]any{"action": "block_ip", "targets": []any{"203.0.113.7"}}},
		Environment: map[string]any{"name": "staging", "production": false}}); d.Outcome != policy.Allow {
		t.Fatalf("recompiled policies: %+v", d)
	}
	// The fresh set is cached for good.
	e.clock.Advance(time.Hour)
	if last, err := e.rec.trustAt(e.ctx, sha); err != nil || last.Policies != fresh.Policies {
		t.Fatalf("a compiled policy set was not kept: %v", err)
	}
}

// readdedAfterRemoval is a playbook blocking 203.0.113.5 in staging,
// applied, removed from the branch (its revert waits for its own signed
// proposal) and merged again with the very same bytes: its apply is not
// repeated.
func readdedAfterRemoval(t *testing.T, e *env, name string) (apply, revert *store.Execution) {
	t.Helper()
	content := playbookYAML(name, "INC-31", "203.0.113.5", "low", "staging", "")
	e.mergeProposed("add", name, content)
	apply = e.execution(name, "apply")
	if apply.State != store.ExecCompleted || !slices.Equal(e.blocked("staging"), []string{"203.0.113.5"}) {
		t.Fatalf("apply: %s (%s); blocked %v", apply.State, apply.Reason, e.blocked("staging"))
	}
	e.merge("remove", nil, pbPath(name))
	e.pass()
	revert = e.execution(name, "revert")
	if revert.State != store.ExecWaiting || revert.ReasonCode != "awaiting_approval" {
		t.Fatalf("the removal's revert: %s %s (%s)", revert.State, revert.ReasonCode, revert.Reason)
	}
	e.merge("readd", map[string]string{pbPath(name): content})
	e.pass()
	if ap := e.execution(name, "apply"); ap.ID != apply.ID || ap.State != store.ExecCompleted {
		t.Fatalf("re-added: apply %d %s; want %d not repeated", ap.ID, ap.State, apply.ID)
	}
	if _, err := e.st.ActiveByName(e.ctx, name); err != nil {
		t.Fatalf("re-added playbook not in force: %v", err)
	}
	return apply, revert
}

// A revert still waiting when the very same playbook content comes back
// on the branch never runs: the branch says the block is in force again
// and its apply is not repeated, so running the revert would release it
// for good. The commit that brings the version back cancels the revert
// (restored), and a proposal signed for it afterwards runs nothing.
func TestRevertCancelledWhenItsVersionComesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-readd"
	_, revert := readdedAfterRemoval(t, e, name)
	rv := e.execution(name, "revert")
	if rv.ID != revert.ID || rv.State != store.ExecCancelled || rv.ReasonCode != string(codeRestored) {
		t.Fatalf("the revert after the version came back: %d %s %s (%s)", rv.ID, rv.State, rv.ReasonCode, rv.Reason)
	}
	cancelled := auditOf(t, e, audit.EventExecutionCancelled)
	if len(cancelled) != 1 || !strings.Contains(string(cancelled[0].Payload), `"reason_code":"restored"`) {
		t.Fatalf("cancellation entries %+v", cancelled)
	}
	// A proposal of the revert signed now is taken (a later removal takes
	// the revert up again) but runs nothing while the version is in force.
	e.approveVersion(name, "revert", map[string]string{"alice": "propose"})
	e.pass()
	if rv := e.execution(name, "revert"); rv.State != store.ExecCancelled || rv.Attempts != 0 {
		t.Fatalf("the revert after its proposal: %s, %d attempts (%s)", rv.State, rv.Attempts, rv.Reason)
	}
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.5"}) {
		t.Fatalf("released while the playbook is in force: %v", got)
	}
	if st, reason := e.status(name); st != store.StatusCompleted {
		t.Fatalf("version status %s (%s)", st, reason)
	}
	e.verifyAudit()
}

// The check at the moment of use does the same: a revert about to run
// whose very version is in force on the branch is cancelled (restored)
// without touching the backend. Here the version is put back in force
// directly, standing for any path that would bring it back without the
// commit's cancellation.
func TestRevertCancelledAtUseWhenItsVersionIsInForce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-readd"
	content := playbookYAML(name, "INC-31", "203.0.113.5", "low", "staging", "")
	e.mergeProposed("add", name, content)
	apply := e.execution(name, "apply")
	e.merge("remove", nil, pbPath(name))
	e.pass()
	e.approveVersion(name, "revert", map[string]string{"alice": "propose"})
	rv := e.execution(name, "revert")
	if err := e.rec.judgeByID(e.ctx, rv.ID); err != nil {
		t.Fatal(err)
	}
	if rv = e.execution(name, "revert"); rv.State != store.ExecPending {
		t.Fatalf("the signed revert: %s (%s)", rv.State, rv.Reason)
	}
	if err := e.st.SetActive(e.ctx, store.ActivePlaybook{Path: pbPath(name), Name: name, VersionID: apply.VersionID, SinceCommit: apply.CommitSHA}); err != nil {
		t.Fatal(err)
	}
	e.pass()
	rv = e.execution(name, "revert")
	if rv.State != store.ExecCancelled || rv.ReasonCode != string(codeRestored) || rv.Attempts != 0 {
		t.Fatalf("the revert at the moment of use: %s %s, %d attempts (%s)", rv.State, rv.ReasonCode, rv.Attempts, rv.Reason)
	}
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.5"}) {
		t.Fatalf("released while the playbook is in force: %v", got)
	}
	if j := e.journal("staging"); len(j) != 1 {
		t.Fatalf("backend changes %v; want the apply's only", j)
	}
	stopped := auditOf(t, e, audit.EventExecutionStopped)
	if len(stopped) != 1 || !strings.Contains(string(stopped[0].Payload), `"reason_code":"restored"`) {
		t.Fatalf("stop entries %+v", stopped)
	}
	e.verifyAudit()
}

// Removing the playbook again after its version came back releases what
// it holds: the revert its return cancelled before it ran is taken up
// again by the new removal (the same row: the version is still reverted
// at most once), back to waiting with the new commit, judged afresh and
// audited as intended.
func TestRemovedAgainAfterItCameBackReleases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-readd"
	_, revert := readdedAfterRemoval(t, e, name)
	sha := e.merge("remove-again", nil, pbPath(name))
	e.pass()
	rv := e.execution(name, "revert")
	if rv.ID != revert.ID || rv.State != store.ExecWaiting || rv.ReasonCode != "awaiting_approval" ||
		rv.CommitSHA != sha || rv.Trigger != "delete" || !slices.Equal(rv.Targets, []string{"203.0.113.5"}) {
		t.Fatalf("the revert after the second removal: %d %s %s at %.12s, %s %v (%s)",
			rv.ID, rv.State, rv.ReasonCode, rv.CommitSHA, rv.Trigger, rv.Targets, rv.Reason)
	}
	var revived int
	for _, en := range auditOf(t, e, audit.EventExecutionIntended) {
		if strings.Contains(string(en.Payload), `"revived":true`) {
			revived++
		}
	}
	if revived != 1 {
		t.Fatalf("%d revived intents audited; want 1", revived)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose"})
	e.pass()
	if rv = e.execution(name, "revert"); rv.State != store.ExecCompleted {
		t.Fatalf("the revert: %s %s (%s)", rv.State, rv.ReasonCode, rv.Reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("still blocked after the second removal: %v", got)
	}
	if st, reason := e.status(name); st != store.StatusReverted {
		t.Fatalf("version status %s (%s)", st, reason)
	}
	e.verifyAudit()
}

// A playbook with expiresAfter removed before its time, and back on the
// branch before its revert ran, still expires on time: the expiry takes
// up the revert its return cancelled, and runs it.
func TestExpiryAfterTheVersionCameBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-temp"
	content := playbookYAML(name, "INC-7", "203.0.113.50", "low", "staging", "  expiresAfter: 2h\n")
	e.mergeProposed("temp", name, content)
	e.merge("remove", nil, pbPath(name))
	e.pass()
	e.merge("readd", map[string]string{pbPath(name): content})
	e.pass()
	if rv := e.execution(name, "revert"); rv.State != store.ExecCancelled || rv.ReasonCode != string(codeRestored) {
		t.Fatalf("the removal's revert after the return: %s %s (%s)", rv.State, rv.ReasonCode, rv.Reason)
	}
	e.clock.Advance(2*time.Hour + time.Minute)
	e.pass()
	rv := e.execution(name, "revert")
	if rv.State != store.ExecCompleted || rv.Trigger != "expiry" {
		t.Fatalf("the expiry: %s %s (%s)", rv.State, rv.Trigger, rv.Reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("blocked after the expiry: %v", got)
	}
	if st, reason := e.status(name); st != store.StatusExpired {
		t.Fatalf("version status %s (%s)", st, reason)
	}
	e.verifyAudit()
}

// A version whose revert completed holds nothing, even with its very
// bytes back on the branch (not repeated). v1 blocks A and B; v2 (B and
// C) applies and v1's update revert releases A. Back to v1's bytes: v1 is
// not applied again, so v2's update revert releases B and C, not only C
// (B is not held by v1), drift expects nothing of v1, and removing v1
// leaves nothing blocked.
func TestRevertedVersionBackOnTheBranchHoldsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-set"
	v1 := playbookYAML(name, "INC-41", "203.0.113.1, 203.0.113.2", "low", "staging", "")
	v2 := playbookYAML(name, "INC-42", "203.0.113.2, 203.0.113.3", "low", "staging", "")
	e.mergeProposed("v1", name, v1)
	first := e.execution(name, "apply")
	e.mergeProposed("v2", name, v2)
	e.approveVersion(name, "revert", map[string]string{"alice": "propose"})
	e.pass()
	rv1, err := e.st.ExecutionByKey(e.ctx, name, first.Digest, "revert")
	if err != nil || rv1.State != store.ExecCompleted || !slices.Equal(rv1.Targets, []string{"203.0.113.1"}) {
		t.Fatalf("v1's update revert: %+v %v", rv1, err)
	}
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.2", "203.0.113.3"}) {
		t.Fatalf("blocked under v2: %v", got)
	}
	e.merge("back-to-v1", map[string]string{pbPath(name): v1})
	e.pass()
	if ap, err := e.st.ExecutionByKey(e.ctx, name, first.Digest, "apply"); err != nil || ap.ID != first.ID || ap.State != store.ExecCompleted {
		t.Fatalf("v1's apply after its return: %+v %v", ap, err)
	}
	rv2 := e.execution(name, "revert")
	if rv2.Digest == first.Digest || rv2.Trigger != "update" || !slices.Equal(rv2.Targets, []string{"203.0.113.2", "203.0.113.3"}) {
		t.Fatalf("v2's update revert on the way back to v1: %s %v", rv2.Trigger, rv2.Targets)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose"})
	e.pass()
	if rv2 = e.execution(name, "revert"); rv2.State != store.ExecCompleted {
		t.Fatalf("v2's revert: %s (%s)", rv2.State, rv2.Reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("blocked with only v1, reverted, on the branch: %v", got)
	}
	desired, err := e.st.DriftDesired(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range desired {
		if d.Held {
			t.Fatalf("drift expects %s held by %s@%.12s", d.Target, d.Name, d.Digest)
		}
	}
	e.merge("remove", nil, pbPath(name))
	e.pass()
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("blocked after the removal: %v", got)
	}
	e.verifyAudit()
}

// The plain deletion: a playbook removed and reverted, merged again with
// the same bytes (not repeated, holding nothing) and removed again has
// nothing to release and leaves nothing blocked.
func TestRevertedPlaybookReaddedAndRemovedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	name := "block-readd"
	content := playbookYAML(name, "INC-31", "203.0.113.5", "low", "staging", "")
	e.mergeProposed("add", name, content)
	e.merge("remove", nil, pbPath(name))
	e.pass()
	e.approveVersion(name, "revert", map[string]string{"alice": "propose"})
	e.pass()
	revert := e.execution(name, "revert")
	if revert.State != store.ExecCompleted || len(e.blocked("staging")) != 0 {
		t.Fatalf("revert: %s (%s); blocked %v", revert.State, revert.Reason, e.blocked("staging"))
	}
	e.merge("readd", map[string]string{pbPath(name): content})
	e.pass()
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("applied again after its revert: %v", got)
	}
	held, err := e.st.HeldTargets(e.ctx, "block_ip", "staging", 0)
	if err != nil || len(held) != 0 {
		t.Fatalf("held by the reverted version back on the branch: %v %v", held, err)
	}
	e.merge("remove-again", nil, pbPath(name))
	e.pass()
	if rv := e.execution(name, "revert"); rv.ID != revert.ID || rv.State != store.ExecCompleted {
		t.Fatalf("the revert after the second removal: %d %s (%s)", rv.ID, rv.State, rv.Reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("blocked after the second removal: %v", got)
	}
	e.verifyAudit()
}
