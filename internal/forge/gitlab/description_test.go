package gitlab

import (
	"slices"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/forge/gitlab/gitlabfake"
)

// The analyst's proposal may be in the description; an approval there is
// refused (anyone who may edit the description could add one). A squash
// merge whose merge hook was missed executes from the push hook alone.
func TestDescriptionProposalAndSquashMerge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	path := pbPath("block-squash")
	target := "198.51.100.44"
	m := e.openMR(8, "alice.gl", "Blocking.", map[string]string{path: playbookYAML("block-squash", "INC-8", target, "high", "production")})
	e.process()
	ev := e.evaluation(m)
	pe := e.playbookEval(ev, path)
	subject := []approval.Subject{{Path: path, Digest: pe.Digest}}
	proposal := block("", e.sign("alice", approval.Propose, subject, ev.PolicyDigest, "", 8))
	bobInDescription := block("", e.sign("bob", approval.Approve, subject, ev.PolicyDigest, pe.PlanDigest, 8))
	e.gl.SetDescription(8, "Blocking.\n\n"+proposal+"\n"+bobInDescription)
	e.deliver(gitlabfake.EventMergeRequest, e.gl.MergeRequestHook(8, "update", "alice.gl"))
	e.process()
	rep := e.report(m)
	if st := e.status(m.head); st.State != "failed" || !strings.Contains(rep.Body, "proposed by alice") ||
		!strings.Contains(rep.Body, "is read from a note only") {
		t.Fatalf("after the description: %s\n%s", st.State, rep.Body)
	}
	e.note(m, "bob_gl", block("Approved.", e.sign("bob", approval.Approve, subject, ev.PolicyDigest, pe.PlanDigest, 8)))
	e.process()
	if st := e.status(m.head); st.State != "success" {
		t.Fatalf("after bob's note: %s (%s)\n%s", st.State, st.Description, e.report(m).Body)
	}

	e.repo.Checkout("main")
	before := e.mainHead()
	e.repo.Git("merge", "--quiet", "--squash", m.branch)
	squashed := e.repo.Commit("Squashed !8")
	e.repo.Push()
	e.gl.Merge(8, squashed)
	e.deliver(gitlabfake.EventPush, e.gl.PushHook("main", before, squashed, "bob_gl", []string{squashed}))
	e.process()
	e.pass()
	if got := e.blocked("production"); !slices.Equal(got, []string{target}) {
		t.Fatalf("blocked after the squash merge: %v", got)
	}
	if mr, err := e.st.GitLabMergeRequestByIID(e.ctx, testProject, 8); err != nil || mr.State != "merged" {
		t.Fatalf("merge request after the push: %+v %v", mr, err)
	}
}
