package report

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/writ-sec/writ/internal/reconcile"
)

// A report is worded per forge, and cut to the forge's limit.
func TestBuildWordsPerForge(t *testing.T) {
	t.Parallel()
	ev := &reconcile.Evaluation{Head: strings.Repeat("a", 40), TrustedCommit: strings.Repeat("b", 40), PolicyDigest: "p",
		TooManyPlaybooks: 1200, PlaybookLimit: 1000}
	gitlab := Forge{Change: "merge request", Ref: "!", Sign: "--repo g/p --pr 3 --out s.json", StatementsNote: "Notes count.", SummaryLimit: 0}
	r := Build(Input{Forge: gitlab, Branch: "main", Number: 3, Eval: ev,
		Statements: []Statement{{What: "note 5 by @bob", Outcome: "refused", Message: "refused | pipe"}}})
	if r.Conclusion != ConclusionFailure || r.Title != "1200 playbooks changed: more than the 1000 writ judges in one merge request" {
		t.Fatalf("%s %q", r.Conclusion, r.Title)
	}
	for _, want := range []string{"writ judged !3 at `aaaaaaaaaaaa`", "never by the ones this merge request changes",
		"Split the change into smaller merge requests", "### Signed statements read on this merge request",
		"- ❌ note 5 by @bob: refused \\| pipe", "\nNotes count.\n"} {
		if !strings.Contains(r.Summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.Summary)
		}
	}
	if strings.Contains(r.Summary, "pull request") {
		t.Errorf("a GitLab report speaks of pull requests:\n%s", r.Summary)
	}
	gitlab.SummaryLimit = 200
	cut := Build(Input{Forge: gitlab, Branch: "main", Number: 3, Eval: ev}).Summary
	if n := utf8.RuneCountInString(cut); n > 200 || !strings.HasSuffix(cut, SummaryCut) {
		t.Fatalf("cut summary: %d characters: %q", n, cut)
	}
	if Build(Input{Forge: gitlab, Number: 3, Eval: &reconcile.Evaluation{}}).Conclusion != ConclusionSuccess {
		t.Fatal("an empty change does not succeed")
	}
}
