package gitlab

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/forge/gitlab/gitlabfake"
	"github.com/writ-sec/writ/internal/store"
)

// The whole life of a merge request on GitLab, with the real reconciler,
// PostgreSQL, git, OPA and the blocklist backend: opened, judged (a
// pending then failed commit status, the report in one note); signed
// notes count, a note by the wrong GitLab user is refused, an edit and a
// deletion withdraw; merged, the playbook runs exactly once, even with the
// merge's webhooks delivered again.
func TestMergeRequestFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.gl.SetMaxPerPage(2) // notes span pages (X-Next-Page)
	path := pbPath("block-c2")
	target := "203.0.113.77"
	m := e.openMR(7, "alice.gl", "Blocking the C2 server.", map[string]string{path: playbookYAML("block-c2", "INC-7", target, "critical", "production")})
	e.process()

	sts := e.gl.Statuses(m.head)
	if len(sts) != 1 || sts[0].State != "failed" || !strings.HasPrefix(sts[0].Description, "Awaiting signatures") ||
		sts[0].TargetURL != e.gl.MRWebURL(7) || sts[0].Author != botLogin {
		t.Fatalf("statuses after the open: %+v", sts)
	}
	ev := e.evaluation(m)
	pe := e.playbookEval(ev, path)
	rep := e.report(m)
	for _, want := range []string{reportMarker, "writ judged !7", "would_block", pe.PlanDigest, ev.PolicyDigest, "--pr 7", "no signed proposal"} {
		if !strings.Contains(rep.Body, want) {
			t.Errorf("the report note lacks %q:\n%s", want, rep.Body)
		}
	}
	subject := []approval.Subject{{Path: path, Digest: pe.Digest}}
	approve := func(who string) []byte {
		return e.sign(who, approval.Approve, subject, ev.PolicyDigest, pe.PlanDigest, 7)
	}
	later := func() { e.clock.Advance(2 * time.Second) }
	// step processes what was delivered and expects the status's state and
	// a phrase of the report note.
	step := func(what, state, want string) {
		t.Helper()
		e.process()
		st := e.status(m.head)
		rep := e.report(m)
		if st.State != state || !strings.Contains(rep.Body, want) {
			t.Fatalf("%s: %s (%s)\n%s", what, st.State, st.Description, rep.Body)
		}
	}

	// The analyst's signed proposal, in a note of hers.
	e.note(m, "alice.gl", block("Signed proposal:", e.sign("alice", approval.Propose, subject, ev.PolicyDigest, "", 7)))
	step("after the proposal", "failed", "0 of 2 approvals")
	// Ordinary conversation is not recorded; bob's envelope posted from
	// mallory's account is refused; a system note is never read.
	e.note(m, "carol-gl", "Looks right to me, signing after lunch.")
	e.gl.AddSystemNote(7, block("", approve("bob")))
	e.note(m, "mallory-gl", block("", approve("bob")))
	step("after statements that must not count", "failed", "0 of 2 approvals")
	if rep := e.report(m); !strings.Contains(rep.Body, "by @mallory-gl: refused") {
		t.Fatalf("the refusal is not shown:\n%s", rep.Body)
	}

	e.note(m, "bob_gl", block("Approved.", approve("bob")))
	step("after one approval", "failed", "1 of 2 approvals")
	carol := e.note(m, "carol-gl", block("Approved.", approve("carol")))
	step("after two approvals", "success", "2 approvals, 2 required")

	// An edit that keeps the envelope keeps the approval; one that drops
	// it withdraws it.
	carolEnv := approve("carol")
	later()
	e.editNote(m, carol, "Approved (typo fixed).\n\n"+block("", carolEnv))
	step("after an edit that swaps the envelope", "success", "")
	e.editNote(m, carol, "Not yet: the ticket needs an update.")
	step("after an edit that drops the envelope", "failed", "1 of 2 approvals")

	// A deleted note withdraws its approval: GitLab sends no webhook, the
	// next event on the merge request (or the refresh) finds it gone.
	later()
	again := e.note(m, "carol-gl", block("Approved again.", approve("carol")))
	step("after carol approves again", "success", "")
	e.gl.DeleteNote(7, again)
	if err := e.svc.RefreshOpen(e.ctx); err != nil {
		t.Fatal(err)
	}
	step("after the note's deletion", "failed", "deleted")
	later()
	e.note(m, "carol-gl", block("Approved, for good.", approve("carol")))
	step("after carol approves a third time", "success", "")
	if n := e.report(m); n.Edits == 0 {
		t.Fatal("the report note was never edited in place")
	}

	// The merge: a merge commit on main, GitLab's merge and push hooks,
	// then both delivered again (GitLab resends with the same UUID).
	e.repo.Checkout("main")
	before := e.mainHead()
	merged := e.repo.Merge(m.branch)
	e.repo.Push()
	e.gl.Merge(7, merged, m.head)
	mergeHook := e.deliver(gitlabfake.EventMergeRequest, e.gl.MergeRequestHook(7, "merge", "carol-gl"))
	pushPayload := e.gl.PushHook("main", before, merged, "carol-gl", []string{m.head, merged})
	push := e.deliver(gitlabfake.EventPush, pushPayload)
	e.process()
	e.pass()
	for _, d := range []gitlabfake.Delivery{
		{Event: gitlabfake.EventMergeRequest, UUID: mergeHook.UUID, Payload: e.gl.MergeRequestHook(7, "merge", "carol-gl")},
		{Event: gitlabfake.EventPush, UUID: push.UUID, Payload: pushPayload},
	} {
		if a := e.send(d); a.Status != http.StatusOK || !strings.Contains(a.Body, "duplicate") {
			t.Fatalf("redelivery of %s: %d %s", d.Event, a.Status, a.Body)
		}
	}
	e.process()
	e.pass()
	e.pass()
	if got := e.blocked("production"); !slices.Equal(got, []string{target}) {
		t.Fatalf("blocked after the merge: %v", got)
	}
	execs, err := e.st.ListExecutions(e.ctx, store.ExecutionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(execs) != 1 {
		t.Fatalf("%d executions; want exactly one", len(execs))
	}
	paged := false
	for _, r := range e.gl.Requests() {
		if strings.HasSuffix(r.Path, "/merge_requests/7/notes") && r.Method == http.MethodGet && strings.Contains(r.Query, "page=4") {
			paged = true
		}
	}
	if !paged {
		t.Fatal("the notes' fourth page was never read")
	}
	if mr, err := e.st.GitLabMergeRequestByIID(e.ctx, testProject, 7); err != nil || mr.State != "merged" {
		t.Fatalf("merge request after the merge: %+v %v", mr, err)
	}
}
