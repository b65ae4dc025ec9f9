package gitlab

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/writ-sec/writ/internal/forge/gitlab/gitlabfake"
	fr "github.com/writ-sec/writ/internal/forge/report"
)

// GitLab refuses a note body over 1,000,000 characters and a status
// description over 255: writ's note and description fit, cut on a
// character boundary with a visible mark.
func TestReportFitsGitLabLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := strings.Repeat("e", 40)
	e.gl.AddMergeRequest(gitlabfake.MergeRequest{IID: 9, Title: "t", Author: "alice.gl", SourceBranch: "x", TargetBranch: "main", SHA: head})
	client, err := gl.NewClient(testToken, gl.WithBaseURL(e.gl.URL()+"/api/v4"), gl.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	// The fake holds GitLab's limits.
	_, resp, err := client.Notes.CreateMergeRequestNote(testProject, 9, &gl.CreateMergeRequestNoteOptions{Body: gl.Ptr(strings.Repeat("a", gitlabfake.MaxNoteBody+1))})
	if err == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a note over the limit: %v", err)
	}
	_, resp, err = client.Commits.SetCommitStatus(testProject, head, &gl.SetCommitStatusOptions{State: gl.Success, Description: gl.Ptr(strings.Repeat("d", 256))})
	if err == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a description over the limit: %v", err)
	}

	// A report far over the limit, of multi-byte and astral characters.
	huge := fr.Report{Conclusion: fr.ConclusionActionRequired, Title: strings.Repeat("é😀", 300),
		Summary: strings.Repeat("| `playbooks/x.yaml` | ✅ ready | 😀 |\n", 40_000)}
	m := mrInfo{IID: 9, HeadSHA: head, TargetBranch: "main", Author: "alice.gl", State: "open"}
	if err := e.svc.saveMR(e.ctx, m); err != nil {
		t.Fatal(err)
	}
	body := e.svc.noteBody(m, huge)
	if n := utf8.RuneCountInString(body); n > gitlabfake.MaxNoteBody || !strings.HasSuffix(body, fr.SummaryCut) || !utf8.ValidString(body) {
		t.Fatalf("note body: %d characters, ends %q", n, body[len(body)-80:])
	}
	if err := e.svc.writeNote(e.ctx, m, huge); err != nil {
		t.Fatalf("GitLab refused the cut note: %v", err)
	}
	desc := description(huge)
	if n := utf8.RuneCountInString(desc); n > MaxStatusDescription || !strings.HasSuffix(desc, fr.TruncatedMark) {
		t.Fatalf("description: %d characters: %q", n, desc)
	}
	if err := e.svc.setStatus(e.ctx, m, StateFailed, desc, ""); err != nil {
		t.Fatalf("GitLab refused the cut description: %v", err)
	}
}

// A report note someone deleted is written anew, and an unchanged report
// is not written again.
func TestReportNoteRewrittenWhenDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.openMR(6, "alice.gl", "", map[string]string{pbPath("y"): playbookYAML("y", "INC-6", "203.0.113.6", "low", "staging")})
	e.process()
	first := e.report(m)
	writes := func() int {
		n := 0
		for _, r := range e.gl.Requests() {
			if strings.HasSuffix(r.Path, "/merge_requests/6/notes") && r.Method == http.MethodPost || strings.Contains(r.Path, "/merge_requests/6/notes/") {
				n++
			}
		}
		return n
	}
	before := writes()
	if err := e.svc.RefreshOpen(context.Background()); err != nil {
		t.Fatal(err)
	}
	if writes() != before {
		t.Fatal("an unchanged report was written again")
	}
	e.gl.DeleteNote(6, first.ID)
	if err := e.svc.RefreshOpen(context.Background()); err != nil {
		t.Fatal(err)
	}
	if again := e.report(m); again.ID == first.ID {
		t.Fatal("the deleted report note was not written anew")
	}
}
