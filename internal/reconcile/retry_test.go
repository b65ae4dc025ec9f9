package reconcile

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/webhook/webhooktest"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

// Retries and partial failure, end to end: a real PostgreSQL, a real git
// content repository, the real webhook backend against an EDR on
// loopback that can fail one host and isolate another.

const isolateTmpl = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: %s
  ticket: %s
spec:
  action: isolate_host
  targets: [%s]
  justification: ransomware staging seen by EDR
  severity: high
  environment: production
`

var executor = audit.Actor{ID: "erin-oncall", Role: "executor"}

// edrEnv is the test environment with isolate_host in production bound
// to the EDR, and a playbook isolating two hosts merged, proposed and
// approved; the first pass after it runs its apply.
func edrEnv(t testing.TB, tune ...func(o *Options)) (*env, *webhooktest.Receiver, string) {
	t.Helper()
	return edrEnvSpec(t, "", tune...)
}

// edrEnvSpec is edrEnv with more spec lines in the playbook (indented,
// each ending in a newline).
func edrEnvSpec(t testing.TB, moreSpec string, tune ...func(o *Options)) (*env, *webhooktest.Receiver, string) {
	t.Helper()
	tune = append(tune, func(o *Options) { o.MaxAttempts = 1 }) // a transient error fails at once
	e := newEnv(t, tune...)
	edr := webhooktest.New(t)
	reg := action.NewRegistry()
	reg.Register("isolate_host", "production", edr.Backend("webhook:edr"))
	e.rec.opts.Backends = reg
	e.pass()
	name := "isolate-fin-ws"
	e.merge("isolate", map[string]string{pbPath(name): fmt.Sprintf(isolateTmpl, name, "INC-77", "fin-ws-12, fin-ws-13") + moreSpec})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose", "bob": "approve"})
	return e, edr, name
}

// partlyApplied runs the apply while the EDR fails fin-ws-13: fin-ws-12
// is isolated, fin-ws-13 is not, and the execution failed.
func partlyApplied(t testing.TB, e *env, edr *webhooktest.Receiver, name string) *store.Execution {
	t.Helper()
	edr.Fail("fin-ws-13", "the EDR agent on fin-ws-13 is offline")
	e.pass()
	ex := e.execution(name, "apply")
	if ex.State != store.ExecFailed || ex.ReasonCode != string(codeBackendError) {
		t.Fatalf("apply with one host failing: %s %s (%s)", ex.State, ex.ReasonCode, ex.Reason)
	}
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12"}) {
		t.Fatalf("contained %v", got)
	}
	want := map[string]string{"fin-ws-12": action.Changed, "fin-ws-13": action.Failed}
	targets, err := e.st.ExecutionTargets(e.ctx, ex.ID)
	if err != nil || len(targets) != 2 {
		t.Fatalf("targets %v %v", targets, err)
	}
	for _, tg := range targets {
		if tg.Result != want[tg.Target] {
			t.Fatalf("target %s: %s (%s)", tg.Target, tg.Result, tg.Detail)
		}
		if tg.Target == "fin-ws-13" && !strings.Contains(tg.Detail, "offline") {
			t.Fatalf("the failed target does not carry the backend's error: %q", tg.Detail)
		}
	}
	return ex
}

// approvalCount is how many statements the server holds.
func approvalCount(t *testing.T, e *env) int {
	t.Helper()
	list, err := e.st.ListApprovals(e.ctx, store.ApprovalFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// A transient backend failure (the EDR is down) fails the apply; once it
// is back, an executor's retry runs with the approvals collected before:
// none is asked for or added.
func TestRetryAfterTransientFailure(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	edr.Busy(true)
	e.pass()
	ex := e.execution(name, "apply")
	if ex.State != store.ExecFailed || !strings.Contains(ex.LastError, "503") {
		t.Fatalf("apply while the EDR is down: %s (%s) %q", ex.State, ex.Reason, ex.LastError)
	}
	signed := approvalCount(t, e)

	// While it is down altogether the backend cannot plan it: refused,
	// nothing changes.
	edr.Down(true)
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); !errors.Is(err, ErrRetryNoPlan) {
		t.Fatalf("retry while the EDR is down: %v", err)
	}
	if got := e.execution(name, "apply"); got.State != store.ExecFailed {
		t.Fatalf("a refused retry changed the execution: %s", got.State)
	}
	edr.Down(false)
	edr.Busy(false)
	got, err := e.rec.Retry(e.ctx, ex.ID, executor)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.ExecPending || got.ReasonCode != string(codeRetryRequested) || !strings.Contains(got.Reason, executor.ID) {
		t.Fatalf("after the retry request: %s %s (%s)", got.State, got.ReasonCode, got.Reason)
	}
	if st, _ := e.status(name); st != store.StatusApproved {
		t.Fatalf("version status after the retry request: %s", st)
	}
	e.pass()
	done := e.execution(name, "apply")
	if done.State != store.ExecCompleted {
		t.Fatalf("after the retry: %s %s (%s)", done.State, done.ReasonCode, done.Reason)
	}
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12", "fin-ws-13"}) {
		t.Fatalf("contained %v", got)
	}
	if n := approvalCount(t, e); n != signed {
		t.Fatalf("statements %d, were %d: a retry needs none", n, signed)
	}
	if st, _ := e.status(name); st != store.StatusCompleted {
		t.Fatalf("version status %s", st)
	}
	// Audited with the executor, with the execution's digests.
	entries := auditOf(t, e, audit.EventExecutionRetryRequested)
	if len(entries) != 1 || entries[0].Actor != executor || entries[0].Subject.Digest != ex.Digest {
		t.Fatalf("retry_requested entries %+v", entries)
	}
	if !strings.Contains(string(entries[0].Payload), `"plan_digest":"`+ex.PlanDigest+`"`) {
		t.Fatalf("the entry does not name the plan it runs with: %s", entries[0].Payload)
	}
	// A completed operation is not retried.
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); !errors.Is(err, ErrNotRetryable) || !strings.Contains(err.Error(), "at most once") {
		t.Fatalf("retry of a completed execution: %v", err)
	}
	e.verifyAudit()
}

// A partly applied playbook (one host isolated, the other failed) is
// finished by a retry that sends only the host not isolated: the EDR
// never sees a second apply of fin-ws-12.
func TestRetryFinishesPartlyAppliedPlaybook(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	ex := partlyApplied(t, e, edr, name)
	if st, _ := e.status(name); st != store.StatusFailed {
		t.Fatalf("version status %s", st)
	}
	edr.Fail("fin-ws-13", "")
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
		t.Fatal(err)
	}
	entry := auditOf(t, e, audit.EventExecutionRetryRequested)[0]
	if !strings.Contains(string(entry.Payload), `"applied":["fin-ws-12"]`) || !strings.Contains(string(entry.Payload), `"remaining":["fin-ws-13"]`) {
		t.Fatalf("the entry does not say what is left: %s", entry.Payload)
	}
	e.pass()
	done := e.execution(name, "apply")
	if done.State != store.ExecCompleted || !strings.Contains(done.Reason, "1 by an earlier attempt") {
		t.Fatalf("after the retry: %s (%s)", done.State, done.Reason)
	}
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12", "fin-ws-13"}) {
		t.Fatalf("contained %v", got)
	}
	if n := edr.Count(action.Apply, "fin-ws-12"); n != 1 {
		t.Fatalf("fin-ws-12 was sent %d applies; want 1 (%+v)", n, edr.Sent())
	}
	if n := edr.Count(action.Apply, "fin-ws-13"); n != 2 {
		t.Fatalf("fin-ws-13 was sent %d applies; want 2 (%+v)", n, edr.Sent())
	}
	targets, _ := e.st.ExecutionTargets(e.ctx, done.ID)
	for _, tg := range targets {
		if tg.Result != action.Changed {
			t.Fatalf("target %s: %s", tg.Target, tg.Result)
		}
	}
	// More passes send nothing.
	e.pass()
	if n := len(edr.Sent()); n != 2 {
		t.Fatalf("requests %d after more passes", n)
	}
	e.verifyAudit()
}

// A retry is refused, with what changed, when the approvals no longer
// bind what would run: the playbook changed, the policies changed, live
// state moved; and while rewritten history is held.
func TestRetryRefusedWhenWhatWasApprovedChanged(t *testing.T) {
	t.Parallel()
	changed := func(t *testing.T, err error, what string) {
		t.Helper()
		var rc *RetryChangedError
		if !errors.As(err, &rc) || rc.What != what {
			t.Fatalf("want a %s change, got %v", what, err)
		}
	}

	t.Run("plan", func(t *testing.T) {
		t.Parallel()
		e, edr, name := edrEnv(t)
		ex := partlyApplied(t, e, edr, name)
		edr.Fail("fin-ws-13", "")
		edr.Forget("fin-ws-13") // decommissioned: the plan is not the approved one
		_, err := e.rec.Retry(e.ctx, ex.ID, executor)
		changed(t, err, ChangedPlan)
		if !strings.Contains(err.Error(), "fin-ws-13 would_isolate → not_found") {
			t.Fatalf("the refusal does not say what moved: %v", err)
		}
		if got := e.execution(name, "apply"); got.State != store.ExecFailed {
			t.Fatalf("a refused retry changed the execution: %s", got.State)
		}
	})

	t.Run("content", func(t *testing.T) {
		t.Parallel()
		e, edr, name := edrEnv(t)
		ex := partlyApplied(t, e, edr, name)
		e.merge("ticket", map[string]string{pbPath(name): fmt.Sprintf(isolateTmpl, name, "INC-78", "fin-ws-12, fin-ws-13")})
		e.pass()
		_, err := e.rec.Retry(e.ctx, ex.ID, executor)
		changed(t, err, ChangedContent)
	})

	t.Run("policy", func(t *testing.T) {
		t.Parallel()
		e, edr, name := edrEnv(t)
		ex := partlyApplied(t, e, edr, name)
		data, err := fs.ReadFile(policies.FS, "data.yaml")
		if err != nil {
			t.Fatal(err)
		}
		e.merge("policy", map[string]string{"policies/data.yaml": string(data) + "# reviewed for INC-77\n"})
		e.pass()
		// Held, unadopted: the policy in force is still the one that
		// judged it, so the retry is not refused for it.
		if err := e.rec.retryable(e.ctx, ex); err != nil {
			t.Fatalf("a held (unadopted) policy change refused the retry: %v", err)
		}
		e.submit(e.signMeta("dave", "approve"))
		e.submit(e.signMeta("erin", "approve"))
		e.pass()
		if st := e.rec.Status(); st.Adopted != st.Processed {
			t.Fatalf("not adopted: %+v", st)
		}
		_, err = e.rec.Retry(e.ctx, ex.ID, executor)
		changed(t, err, ChangedPolicy)
	})

	t.Run("held", func(t *testing.T) {
		t.Parallel()
		e, edr, name := edrEnv(t)
		ex := partlyApplied(t, e, edr, name)
		edr.Fail("fin-ws-13", "")
		e.repo.Git("reset", "--quiet", "--hard", "HEAD~1")
		e.repo.Write("README", "rewritten\n")
		e.repo.Commit("rewritten")
		e.repo.ForcePush()
		e.pass()
		if _, err := e.rec.Retry(e.ctx, ex.ID, executor); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "rewritten") {
			t.Fatalf("retry under a history hold: %v", err)
		}
	})

	t.Run("not failed", func(t *testing.T) {
		t.Parallel()
		e, _, name := edrEnv(t)
		ex := e.execution(name, "apply") // pending: approved, not run yet
		if _, err := e.rec.Retry(e.ctx, ex.ID, executor); !errors.Is(err, ErrNotRetryable) {
			t.Fatalf("retry of a %s execution: %v", ex.State, err)
		}
		if _, err := e.rec.Retry(e.ctx, 999999, executor); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("retry of no execution: %v", err)
		}
	})
}

// A retry accepted is still judged again before the backend is called:
// a host the adopted policies now protect is denied, a hold opened since
// keeps it from running, and the approvals are verified again.
func TestRetryCheckedAtTheMomentOfUse(t *testing.T) {
	t.Parallel()

	t.Run("protected since", func(t *testing.T) {
		t.Parallel()
		e, edr, name := edrEnv(t)
		ex := partlyApplied(t, e, edr, name)
		edr.Fail("fin-ws-13", "")
		data, err := fs.ReadFile(policies.FS, "data.yaml")
		if err != nil {
			t.Fatal(err)
		}
		stricter := strings.Replace(string(data), "    protected_hosts:\n", "    protected_hosts:\n      - fin-ws-13\n", 1)
		if stricter == string(data) {
			t.Fatal("data.yaml has no protected_hosts")
		}
		e.merge("protect", map[string]string{"policies/data.yaml": stricter})
		e.pass() // held until the admins sign: the trusted policies stay in force
		if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
			t.Fatalf("retry under the policies in force: %v", err)
		}
		// The admins' signatures arrive before the executor runs it.
		e.submit(e.signMeta("dave", "approve"))
		e.submit(e.signMeta("erin", "approve"))
		sent := len(edr.Sent())
		e.pass()
		got := e.execution(name, "apply")
		if got.State != store.ExecDenied || !strings.Contains(got.Reason, "fin-ws-13") {
			t.Fatalf("retry of a host protected since: %s %s (%s)", got.State, got.ReasonCode, got.Reason)
		}
		if len(edr.Sent()) != sent {
			t.Fatalf("the backend was called: %+v", edr.Sent()[sent:])
		}
		if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12"}) {
			t.Fatalf("contained %v", got)
		}
	})

	t.Run("hold opened since", func(t *testing.T) {
		t.Parallel()
		e, edr, name := edrEnv(t)
		ex := partlyApplied(t, e, edr, name)
		edr.Fail("fin-ws-13", "")
		if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
			t.Fatal(err)
		}
		e.repo.Git("reset", "--quiet", "--hard", "HEAD~1")
		e.repo.Write("README", "rewritten\n")
		e.repo.Commit("rewritten")
		e.repo.ForcePush()
		sent := len(edr.Sent())
		e.pass()
		e.pass()
		if got := e.execution(name, "apply"); got.State != store.ExecPending {
			t.Fatalf("under the hold: %s (%s)", got.State, got.Reason)
		}
		if len(edr.Sent()) != sent {
			t.Fatalf("the backend was called under a hold: %+v", edr.Sent()[sent:])
		}
	})

	t.Run("approvals expired since", func(t *testing.T) {
		t.Parallel()
		e, edr, name := edrEnv(t)
		ex := partlyApplied(t, e, edr, name)
		edr.Fail("fin-ws-13", "")
		e.clock.Advance(25 * time.Hour) // past the approvals' maximum age
		if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
			t.Fatal(err)
		}
		sent := len(edr.Sent())
		e.pass()
		got := e.execution(name, "apply")
		if got.State != store.ExecWaiting || got.ReasonCode != "awaiting_approval" {
			t.Fatalf("a retry with expired approvals: %s %s (%s)", got.State, got.ReasonCode, got.Reason)
		}
		if len(edr.Sent()) != sent {
			t.Fatalf("the backend was called: %+v", edr.Sent()[sent:])
		}
		// Fresh signatures of the plan it would now run (fin-ws-12 already
		// isolated) let it finish, still without a second apply of fin-ws-12.
		e.approveVersion(name, "apply", map[string]string{"alice": "propose", "bob": "approve"})
		e.pass()
		if got := e.execution(name, "apply"); got.State != store.ExecCompleted {
			t.Fatalf("after new approvals: %s (%s)", got.State, got.Reason)
		}
		if n := edr.Count(action.Apply, "fin-ws-12"); n != 1 {
			t.Fatalf("fin-ws-12 was sent %d applies", n)
		}
		if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12", "fin-ws-13"}) {
			t.Fatalf("contained %v", got)
		}
	})

	t.Run("rejected since", func(t *testing.T) {
		t.Parallel()
		e, edr, name := edrEnv(t)
		ex := partlyApplied(t, e, edr, name)
		edr.Fail("fin-ws-13", "")
		if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
			t.Fatal(err)
		}
		e.approveVersion(name, "apply", map[string]string{"carol": "reject"})
		sent := len(edr.Sent())
		e.pass()
		if got := e.execution(name, "apply"); got.State != store.ExecRejected {
			t.Fatalf("after a rejection: %s (%s)", got.State, got.Reason)
		}
		if len(edr.Sent()) != sent {
			t.Fatalf("the backend was called: %+v", edr.Sent()[sent:])
		}
	})
}

// A partly applied playbook is rolled back by removing it from the
// branch: its revert releases exactly the host it isolated, judged like
// any revert (its own proposal and approval), and the host that failed is
// never sent.
func TestPartlyAppliedPlaybookRevertedByRemoval(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	partlyApplied(t, e, edr, name)
	e.merge("remove", nil, pbPath(name))
	e.pass()
	rv := e.execution(name, "revert")
	if !slices.Equal(rv.Targets, []string{"fin-ws-12"}) {
		t.Fatalf("the revert's targets %v; want exactly the applied host", rv.Targets)
	}
	if rv.State != store.ExecWaiting || rv.ReasonCode != "awaiting_approval" {
		t.Fatalf("the revert before its approvals: %s %s (%s)", rv.State, rv.ReasonCode, rv.Reason)
	}
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12"}) {
		t.Fatalf("released before the revert was approved: %v", got)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	rv = e.execution(name, "revert")
	if rv.State != store.ExecCompleted {
		t.Fatalf("the revert: %s (%s)", rv.State, rv.Reason)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("still contained %v", got)
	}
	if n := edr.Count(action.Revert, "fin-ws-13"); n != 0 {
		t.Fatalf("the failed host was sent %d reverts", n)
	}
	if n := edr.Count(action.Revert, "fin-ws-12"); n != 1 {
		t.Fatalf("the isolated host was sent %d reverts", n)
	}
	if st, _ := e.status(name); st != store.StatusReverted {
		t.Fatalf("version status %s", st)
	}
	e.verifyAudit()
}

// revertedThenReadded is a partly applied playbook rolled back by removal
// (its revert, signed, released fin-ws-12) whose very same content was
// merged again: not repeated, its failed apply is the one on record, and
// the EDR no longer fails fin-ws-13.
func revertedThenReadded(t *testing.T, e *env, edr *webhooktest.Receiver, name string) *store.Execution {
	t.Helper()
	ex := partlyApplied(t, e, edr, name)
	e.merge("remove", nil, pbPath(name))
	e.pass()
	e.approveVersion(name, "revert", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if rv := e.execution(name, "revert"); rv.State != store.ExecCompleted {
		t.Fatalf("revert: %s (%s)", rv.State, rv.Reason)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("after the revert: %v", got)
	}
	edr.Fail("fin-ws-13", "")
	e.merge("readd", map[string]string{pbPath(name): fmt.Sprintf(isolateTmpl, name, "INC-77", "fin-ws-12, fin-ws-13")})
	e.pass()
	if ap := e.execution(name, "apply"); ap.ID != ex.ID || ap.State != store.ExecFailed {
		t.Fatalf("re-added: apply %d %s", ap.ID, ap.State)
	}
	return ex
}

// A partly applied playbook whose revert ran is not applied again when
// the same content comes back on the branch: a retry of its failed apply
// is refused (the version's revert is its last operation, and a later
// removal could not release what the retry applied), and the playbook
// removed again leaves nothing in force.
func TestRetryRefusedAfterRevert(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	ex := revertedThenReadded(t, e, edr, name)
	_, err := e.rec.Retry(e.ctx, ex.ID, executor)
	if !errors.Is(err, ErrNotRetryable) || !strings.Contains(err.Error(), "revert") {
		t.Fatalf("retry of an apply after its revert: %v", err)
	}
	e.pass()
	if ap := e.execution(name, "apply"); ap.State != store.ExecFailed {
		t.Fatalf("the apply after a refused retry: %s (%s)", ap.State, ap.Reason)
	}
	if n := edr.Count(action.Apply, "fin-ws-13"); n != 1 {
		t.Fatalf("fin-ws-13 was sent %d applies; want the first attempt's only", n)
	}
	e.merge("remove-again", nil, pbPath(name))
	e.pass()
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("in force after the second removal: %v", got)
	}
	e.verifyAudit()
}

// A retry of a failed apply accepted before its version's revert was
// recorded, still pending when the same content is back on the branch, is
// cancelled at the moment of use: it never runs after the revert.
func TestRetryAfterRevertCancelledAtUse(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	ex := revertedThenReadded(t, e, edr, name)
	// The retry accepted in a race with the removal (its checks passed
	// before the revert was recorded): pending again.
	if err := e.st.RequeueFailedExecution(e.ctx, ex.ID, e.clock.Now(), string(codeRetryRequested), "retry requested"); err != nil {
		t.Fatal(err)
	}
	e.pass()
	ap := e.execution(name, "apply")
	if ap.State != store.ExecCancelled || ap.ReasonCode != string(codeRemoved) || !strings.Contains(ap.Reason, "revert") {
		t.Fatalf("the retried apply after its revert: %s %s (%s)", ap.State, ap.ReasonCode, ap.Reason)
	}
	if n := edr.Count(action.Apply, "fin-ws-13"); n != 1 {
		t.Fatalf("fin-ws-13 was sent %d applies; the retry ran after the revert", n)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("contained after the cancelled retry: %v", got)
	}
	if st, _ := e.status(name); st != store.StatusReverted {
		t.Fatalf("version status %s", st)
	}
	e.verifyAudit()
}

// retryWaiting is a partly applied apply an executor asked to retry once
// the EDR came back, not run again yet.
func retryWaiting(t *testing.T, e *env, edr *webhooktest.Receiver, name string) *store.Execution {
	t.Helper()
	ex := partlyApplied(t, e, edr, name)
	edr.Fail("fin-ws-13", "")
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
		t.Fatal(err)
	}
	return ex
}

// A partly applied playbook removed from the branch while its retry waits
// to run: the retry is cancelled and never runs, and the revert releases
// what the earlier attempt applied, judged like any revert.
func TestRemovalBeforeRetryRevertsWhatWasApplied(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	retryWaiting(t, e, edr, name)
	e.merge("remove", nil, pbPath(name))
	e.pass()
	ap := e.execution(name, "apply")
	if ap.State != store.ExecCancelled || !strings.Contains(ap.Reason, "before its retry ran") {
		t.Fatalf("the retried apply: %s (%s)", ap.State, ap.Reason)
	}
	if n := edr.Count(action.Apply, "fin-ws-13"); n != 1 {
		t.Fatalf("fin-ws-13 was sent %d applies; the cancelled retry ran", n)
	}
	rv := e.execution(name, "revert")
	if !slices.Equal(rv.Targets, []string{"fin-ws-12"}) || rv.Trigger != "delete" {
		t.Fatalf("the revert: %s %v; want exactly the applied host", rv.Trigger, rv.Targets)
	}
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12"}) {
		t.Fatalf("released before the revert was approved: %v", got)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if rv = e.execution(name, "revert"); rv.State != store.ExecCompleted {
		t.Fatalf("the revert: %s (%s)", rv.State, rv.Reason)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("still contained %v", got)
	}
	if st, _ := e.status(name); st != store.StatusReverted {
		t.Fatalf("version status %s", st)
	}
	e.verifyAudit()
}

// An update merged while a partly applied version's retry waits: the
// retry is superseded, and the targets the earlier attempt applied that
// the new version drops are released by the update's revert.
func TestUpdateBeforeRetryReleasesDroppedTargets(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	ex := retryWaiting(t, e, edr, name)
	e.merge("narrow", map[string]string{pbPath(name): fmt.Sprintf(isolateTmpl, name, "INC-78", "fin-ws-13")})
	e.pass()
	old, err := e.st.ExecutionByID(e.ctx, ex.ID)
	if err != nil {
		t.Fatal(err)
	}
	if old.State != store.ExecCancelled || !strings.Contains(old.Reason, "before its retry ran") {
		t.Fatalf("the superseded retry: %s (%s)", old.State, old.Reason)
	}
	rv, err := e.st.ExecutionByKey(e.ctx, name, ex.Digest, string(action.Revert))
	if err != nil {
		t.Fatalf("no revert of the old version: %v", err)
	}
	if !slices.Equal(rv.Targets, []string{"fin-ws-12"}) || rv.Trigger != "update" {
		t.Fatalf("the update's revert of the old version: %s %v", rv.Trigger, rv.Targets)
	}
	if n := edr.Count(action.Apply, "fin-ws-13"); n != 1 {
		t.Fatalf("fin-ws-13 was sent %d applies; the superseded retry ran", n)
	}
	e.verifyAudit()
}

// A playbook removed from the branch while its apply was executing (the
// process stopped mid-apply and the removal was merged before it came
// back): the resumed apply is cancelled at the moment of use and never
// runs, and the removal's revert releases every target the interrupted
// attempt may have applied.
func TestRemovalWhileApplyExecuting(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	// Judged ready and claimed, and no further: the process stopped there.
	if err := e.rec.judgeByID(e.ctx, e.execution(name, "apply").ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ClaimExecution(e.ctx, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if ap := e.execution(name, "apply"); ap.State != store.ExecExecuting {
		t.Fatalf("the apply after the claim: %s (%s)", ap.State, ap.Reason)
	}
	e.merge("remove", nil, pbPath(name))
	e.pass()
	ap := e.execution(name, "apply")
	if ap.State != store.ExecCancelled || ap.ReasonCode != "removed" {
		t.Fatalf("the interrupted apply after the removal: %s %s (%s)", ap.State, ap.ReasonCode, ap.Reason)
	}
	if n := len(edr.Sent()); n != 0 {
		t.Fatalf("the backend was sent %d requests after the removal: %+v", n, edr.Sent())
	}
	rv := e.execution(name, "revert")
	if !slices.Equal(rv.Targets, []string{"fin-ws-12", "fin-ws-13"}) || rv.Trigger != "delete" {
		t.Fatalf("the revert: %s %v; want every target the apply may have applied", rv.Trigger, rv.Targets)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if rv = e.execution(name, "revert"); rv.State != store.ExecCompleted {
		t.Fatalf("the revert: %s (%s)", rv.State, rv.Reason)
	}
	if n := edr.Count(action.Apply, "fin-ws-12") + edr.Count(action.Apply, "fin-ws-13"); n != 0 {
		t.Fatalf("%d applies sent after the removal", n)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("still contained %v", got)
	}
	if st, _ := e.status(name); st != store.StatusReverted {
		t.Fatalf("version status %s", st)
	}
	e.verifyAudit()
}

// An update merged while the version it replaces was executing (the
// process stopped mid-apply): the old apply is cancelled at the moment of
// use as superseded and sends nothing, and the update's revert names the
// targets the old version may have applied that the new one drops.
func TestUpdateWhileApplyExecuting(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	old := e.execution(name, "apply")
	if err := e.rec.judgeByID(e.ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ClaimExecution(e.ctx, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.merge("narrow", map[string]string{pbPath(name): fmt.Sprintf(isolateTmpl, name, "INC-78", "fin-ws-13")})
	e.pass()
	ap, err := e.st.ExecutionByID(e.ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ap.State != store.ExecCancelled || ap.ReasonCode != "superseded" {
		t.Fatalf("the interrupted apply after the update: %s %s (%s)", ap.State, ap.ReasonCode, ap.Reason)
	}
	if n := len(edr.Sent()); n != 0 {
		t.Fatalf("the backend was sent %d requests after the update: %+v", n, edr.Sent())
	}
	rv, err := e.st.ExecutionByKey(e.ctx, name, old.Digest, string(action.Revert))
	if err != nil {
		t.Fatalf("no revert of the replaced version: %v", err)
	}
	if rv.Trigger != "update" || !slices.Equal(rv.Targets, []string{"fin-ws-12"}) {
		t.Fatalf("the update's revert: %s %v; want the dropped host", rv.Trigger, rv.Targets)
	}
	e.verifyAudit()
}

// A partly applied playbook expires on time: its expiresAfter counts from
// the attempt that applied part of it, its expiry releases exactly what
// was applied (no approval, as for any scheduled expiry), and the failed
// apply can no longer be retried.
func TestPartlyAppliedPlaybookExpires(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnvSpec(t, "  expiresAfter: 2h\n")
	ex := partlyApplied(t, e, edr, name)
	scheduled := auditOf(t, e, audit.EventPlaybookExpiryScheduled)
	if len(scheduled) != 1 || !strings.Contains(string(scheduled[0].Payload), `"partly_applied":true`) {
		t.Fatalf("expiry entries %+v", scheduled)
	}
	edr.Fail("fin-ws-13", "")
	e.clock.Advance(time.Hour)
	e.pass()
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12"}) {
		t.Fatalf("contained before the expiry %v", got)
	}
	if _, err := e.st.ExecutionByKey(e.ctx, name, ex.Digest, string(action.Revert)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a revert before the expiry: %v", err)
	}
	e.clock.Advance(61 * time.Minute)
	e.pass()
	rv := e.execution(name, "revert")
	if rv.Trigger != "expiry" || !slices.Equal(rv.Targets, []string{"fin-ws-12"}) || rv.State != store.ExecCompleted {
		t.Fatalf("the expiry's revert: %s %v %s (%s)", rv.Trigger, rv.Targets, rv.State, rv.Reason)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("still contained after the expiry %v", got)
	}
	if n := edr.Count(action.Revert, "fin-ws-13"); n != 0 {
		t.Fatalf("the host never isolated was sent %d reverts", n)
	}
	if st, _ := e.status(name); st != store.StatusExpired {
		t.Fatalf("version status %s", st)
	}
	_, err := e.rec.Retry(e.ctx, ex.ID, executor)
	if !errors.Is(err, ErrNotRetryable) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("retry of the expired apply: %v", err)
	}
	e.pass()
	if n := edr.Count(action.Apply, "fin-ws-13"); n != 1 {
		t.Fatalf("fin-ws-13 was sent %d applies after the expiry; want the first only", n)
	}
	if due, err := e.st.NextExpiry(e.ctx); err != nil || due != nil {
		t.Fatalf("an expiry still pending: %v %v", due, err)
	}
	e.verifyAudit()
}

// An expiry whose revert failed is not due again (the revert is an
// operation of its own, retried by an executor), and the reconciler does
// not wake for it.
func TestFailedExpiryIsNotDueAgain(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnvSpec(t, "  expiresAfter: 2h\n")
	partlyApplied(t, e, edr, name)
	edr.Fail("fin-ws-12", "the EDR agent on fin-ws-12 is offline")
	e.clock.Advance(121 * time.Minute)
	e.pass()
	rv := e.execution(name, "revert")
	if rv.Trigger != "expiry" || rv.State != store.ExecFailed {
		t.Fatalf("the expiry's revert: %s %s (%s)", rv.Trigger, rv.State, rv.Reason)
	}
	if due, err := e.st.NextExpiry(e.ctx); err != nil || due != nil {
		t.Fatalf("the failed expiry is still pending at %v (%v): the reconciler would wake for it at once, again and again", due, err)
	}
	if due, err := e.st.DueExpiries(e.ctx, e.clock.Now()); err != nil || len(due) != 0 {
		t.Fatalf("due expiries %v %v", due, err)
	}
	e.pass()
	if n := edr.Count(action.Revert, "fin-ws-12"); n != 1 {
		t.Fatalf("fin-ws-12 was sent %d reverts; want 1", n)
	}
	e.verifyAudit()
}

// A retry that finishes a partly applied playbook does not extend its
// expiry: the time counts from the attempt that first acted.
func TestRetryKeepsTheExpiry(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnvSpec(t, "  expiresAfter: 2h\n")
	ex := partlyApplied(t, e, edr, name)
	first, err := e.st.PlaybookVersionByID(e.ctx, ex.VersionID)
	if err != nil || first.ExpiresAt == nil {
		t.Fatalf("no expiry after the partial apply: %v", err)
	}
	e.clock.Advance(time.Hour)
	edr.Fail("fin-ws-13", "")
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
		t.Fatal(err)
	}
	e.pass()
	if done := e.execution(name, "apply"); done.State != store.ExecCompleted {
		t.Fatalf("after the retry: %s (%s)", done.State, done.Reason)
	}
	v, err := e.st.PlaybookVersionByID(e.ctx, ex.VersionID)
	if err != nil || v.ExpiresAt == nil || !v.ExpiresAt.Equal(*first.ExpiresAt) {
		t.Fatalf("expiry moved from %v to %v (%v)", first.ExpiresAt, v.ExpiresAt, err)
	}
	if n := len(auditOf(t, e, audit.EventPlaybookExpiryScheduled)); n != 1 {
		t.Fatalf("%d expiry entries; want the first only", n)
	}
	e.clock.Advance(61 * time.Minute)
	e.pass()
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("still contained after the expiry %v", got)
	}
	rv := e.execution(name, "revert")
	if !slices.Equal(rv.Targets, []string{"fin-ws-12", "fin-ws-13"}) || rv.State != store.ExecCompleted {
		t.Fatalf("the expiry's revert: %v %s (%s)", rv.Targets, rv.State, rv.Reason)
	}
	e.verifyAudit()
}

// A host a partly applied playbook isolated is held by it: another
// playbook's revert does not release it.
func TestPartlyAppliedPlaybookHoldsWhatItApplied(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	partlyApplied(t, e, edr, name)
	other := "isolate-ws-12"
	e.merge("other", map[string]string{pbPath(other): fmt.Sprintf(isolateTmpl, other, "INC-79", "fin-ws-12")})
	e.pass()
	e.approveVersion(other, "apply", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if st, _ := e.status(other); st != store.StatusCompleted {
		t.Fatalf("%s: %s", other, st)
	}
	// Removing the other playbook releases nothing: its only host is held
	// by the partly applied one, so its revert has nothing to do (no
	// approval needed, no backend call).
	e.merge("remove-other", nil, pbPath(other))
	e.pass()
	rv := e.execution(other, "revert")
	if rv.State != store.ExecCompleted {
		t.Fatalf("%s's revert: %s (%s)", other, rv.State, rv.Reason)
	}
	targets, _ := e.st.ExecutionTargets(e.ctx, rv.ID)
	if len(targets) != 1 || targets[0].Result != action.Unchanged || !strings.Contains(targets[0].Detail, "still held") {
		t.Fatalf("%s's revert targets %+v", other, targets)
	}
	if n := edr.Count(action.Revert, "fin-ws-12"); n != 0 {
		t.Fatalf("fin-ws-12 was sent %d reverts", n)
	}
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12"}) {
		t.Fatalf("contained %v: the partly applied playbook still isolates fin-ws-12", got)
	}
}

// auditOf decodes the audit entries of an event.
func auditOf(t *testing.T, e *env, event audit.Event) []audit.Entry {
	t.Helper()
	rows, err := e.st.AuditEntries(e.ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, r := range rows {
		if r.Event != string(event) {
			continue
		}
		d, err := audit.Decode(r.Entry)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// BenchmarkRetryRequest measures an executor's retry request of a partly
// applied operation: the checks (holds, content, the trusted policy set,
// a dry-run through the webhook backend against the EDR on loopback) and
// the transaction that puts it back to pending with its audit entry. Each
// iteration then fails it again outside the timer.
func BenchmarkRetryRequest(b *testing.B) {
	e, edr, name := edrEnv(b)
	ex := partlyApplied(b, e, edr, name)
	for b.Loop() {
		if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := e.st.ClaimExecution(e.ctx, e.clock.Now()); err != nil {
			b.Fatal(err)
		}
		if err := e.st.FinishExecution(e.ctx, ex.ID, store.ExecFailed, "again", string(codeBackendError), "failed again"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// Removing a partly applied playbook whose retry was rejected releases
// what the earlier attempt applied: a rejected apply is final, but it
// held fin-ws-12, and its removal's revert names it. Before, a rejected
// (or denied, or cancelled) apply counted as never applied, and the host
// stayed isolated with no playbook holding it.
func TestRemovedAfterARejectedRetryReleasesWhatWasApplied(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	ex := partlyApplied(t, e, edr, name)
	edr.Fail("fin-ws-13", "")
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
		t.Fatalf("retry: %v", err)
	}
	e.submit(e.signWith("carol", approval.Predicate{Decision: approval.Reject, Reason: "not fin-ws-13"},
		[]approval.Subject{{Path: ex.Path, Digest: ex.Digest}}))
	e.pass()
	if ex = e.execution(name, "apply"); ex.State != store.ExecRejected {
		t.Fatalf("the retry after carol's rejection: %s %s (%s)", ex.State, ex.ReasonCode, ex.Reason)
	}
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12"}) {
		t.Fatalf("contained %v", got)
	}
	e.merge("remove", nil, pbPath(name))
	e.pass()
	rv := e.execution(name, "revert")
	if rv.Trigger != "delete" || !slices.Equal(rv.Targets, []string{"fin-ws-12"}) {
		t.Fatalf("the removal's revert: %s %s %v (%s)", rv.Trigger, rv.State, rv.Targets, rv.Reason)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": approval.Propose, "bob": approval.Approve})
	e.pass()
	if rv = e.execution(name, "revert"); rv.State != store.ExecCompleted {
		t.Fatalf("the removal's revert: %s %s (%s)", rv.State, rv.ReasonCode, rv.Reason)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("after the removal: contained %v", got)
	}
	e.verifyAudit()
}

// A partly applied playbook removed from the branch and merged again with
// the same bytes before its revert ran is in force again: the revert is
// cancelled (restored) and does not count as its version's revert, so a
// retry of the failed apply is accepted and runs, and removing the
// playbook again takes the revert up again for every target the apply
// applied by then.
func TestRetryAfterTheVersionCameBackBeforeItsRevert(t *testing.T) {
	t.Parallel()
	e, edr, name := edrEnv(t)
	ex := partlyApplied(t, e, edr, name)
	e.merge("remove", nil, pbPath(name))
	e.pass()
	rv := e.execution(name, "revert")
	if rv.State != store.ExecWaiting || !slices.Equal(rv.Targets, []string{"fin-ws-12"}) {
		t.Fatalf("the removal's revert: %s %v (%s)", rv.State, rv.Targets, rv.Reason)
	}
	e.merge("readd", map[string]string{pbPath(name): fmt.Sprintf(isolateTmpl, name, "INC-77", "fin-ws-12, fin-ws-13")})
	e.pass()
	if rv = e.execution(name, "revert"); rv.State != store.ExecCancelled || rv.ReasonCode != string(codeRestored) {
		t.Fatalf("the revert after the return: %s %s (%s)", rv.State, rv.ReasonCode, rv.Reason)
	}
	edr.Fail("fin-ws-13", "")
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
		t.Fatalf("retry of the apply in force again: %v", err)
	}
	e.pass()
	if ap := e.execution(name, "apply"); ap.State != store.ExecCompleted {
		t.Fatalf("the retried apply: %s (%s)", ap.State, ap.Reason)
	}
	if got := edr.Contained(); !slices.Equal(got, []string{"fin-ws-12", "fin-ws-13"}) {
		t.Fatalf("contained after the retry: %v", got)
	}
	e.merge("remove-again", nil, pbPath(name))
	e.pass()
	again := e.execution(name, "revert")
	if again.ID != rv.ID || again.State != store.ExecWaiting || !slices.Equal(again.Targets, []string{"fin-ws-12", "fin-ws-13"}) {
		t.Fatalf("the revert after the second removal: %d %s %v (%s)", again.ID, again.State, again.Targets, again.Reason)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if again = e.execution(name, "revert"); again.State != store.ExecCompleted {
		t.Fatalf("the revert: %s (%s)", again.State, again.Reason)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("still contained %v", got)
	}
	e.verifyAudit()
}
