package github

import (
	"fmt"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/forge/github/githubfake"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
)

// A pull request whose head tree holds an entry writ will not read (here
// a directory named ".." under playbooks/, pushed with other tools than
// git's porcelain) fails its check with the commit, the entry and the
// problem, and its delivery is done: it is not retried for ever as an
// error. A pull request opened after it is judged as usual.
func TestMalformedPullRequestFailsItsCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := e.mainHead()
	evil := e.repo.Tree(gittest.TreeEntry{Mode: "100644", Name: "evil.yaml", Hash: e.repo.Blob(playbookYAML("evil", "INC-6", "203.0.113.66", "low", "staging"))})
	tree := e.repo.TreeWith(base, "playbooks", gittest.TreeEntry{Mode: gittest.Dir, Name: "..", Hash: evil})
	head := e.repo.CommitTree(tree, base, "the attack")
	e.repo.Git("push", "--quiet", "--force", "origin", head+":refs/heads/pr-9", head+":refs/pull/9/head")
	e.gh.AddPullRequest(githubfake.PullRequest{Number: 9, Author: "mallory-gh", BaseRef: "main", BaseSHA: base, HeadRef: "pr-9", HeadSHA: head})
	e.deliverPR(&pr{number: 9, branch: "pr-9", head: head}, "opened")
	e.process()

	run := e.check(head)
	if run.Status != "completed" || run.Conclusion != ConclusionFailure ||
		run.Title != `Not judged: the tree is malformed (unsafe_name at "playbooks/..")` {
		t.Fatalf("check: %s/%s: %s", run.Status, run.Conclusion, run.Title)
	}
	for _, want := range []string{"writ did not judge #9", fmt.Sprintf("`%s`", head), "`\"playbooks/..\"`", "names a directory itself or its parent"} {
		if !strings.Contains(run.Summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, run.Summary)
		}
	}

	p := e.openPR(10, "alice-gh", "", map[string]string{pbPath("fine"): playbookYAML("fine", "INC-7", "203.0.113.10", "low", "staging")})
	e.process()
	if run := e.check(p.head); run.Conclusion == ConclusionFailure {
		t.Fatalf("the next pull request: %s: %s", run.Conclusion, run.Title)
	}
}
