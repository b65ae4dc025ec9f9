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

// What a pull request or a comment carries is inert in the report: every
// character that opens markup is escaped, mentions and addresses the
// forges would link are broken, and the text stays on its line and in its
// table cell.
func TestUntrustedTextIsInert(t *testing.T) {
	t.Parallel()
	hostile := "[Approve](https://evil.example/login) ![x](y) @acme/security-team @all <a href=x>d</a> &lt; **b** `c` ~~g~~ a|b www.evil.example m@evil.example\n\n# h\r\n> q"
	want := "\\[Approve\\](https:\u200b//evil.example/login) !\\[x\\](y) @\u200bacme/security-team @\u200ball \\<a href=x\\>d\\</a\\> \\&lt; \\*\\*b\\*\\* \\`c\\` \\~\\~g\\~\\~ a\\|b www\u200b.evil.example m@\u200bevil.example  # h \\> q"
	if got := MD(hostile); got != want {
		t.Errorf("MD:\n got %q\nwant %q", got, want)
	}
	if got := Code("x`y|z\n\n# h\r\n"); got != "`x'y\\|z  # h `" {
		t.Errorf("Code: %q", got)
	}
}
