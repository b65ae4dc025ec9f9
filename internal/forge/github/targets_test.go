package github

import (
	"fmt"
	"strings"
	"testing"
)

const feedPlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-feed
  ticket: INC-20
spec:
  action: block_ip
  targetsFile: indicators/feed.txt
  justification: C2 addresses from the threat feed
  severity: high
  environment: production
`

// A bad line of a targets file is annotated on that file's line and
// column.
func TestTargetsFileProblemsAreAnnotatedOnTheFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.openPR(5, "alice-gh", "", map[string]string{
		pbPath("block-feed"):  feedPlaybook,
		"indicators/feed.txt": "# feed\n203.0.113.7\n  203.0.113.300 # typo\n",
	})
	e.process()
	run := e.check(p.head)
	if run.Conclusion != ConclusionFailure {
		t.Fatalf("check: %s/%s: %s", run.Status, run.Conclusion, run.Title)
	}
	found := false
	for _, a := range run.Annotations {
		if a.Path == "indicators/feed.txt" && a.StartLine == 3 && a.StartColumn != nil && *a.StartColumn == 3 &&
			strings.Contains(a.Message, `"203.0.113.300" is not a valid IP address`) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no annotation at indicators/feed.txt:3:3: %+v", run.Annotations)
	}
	if !strings.Contains(run.Summary, "`indicators/feed.txt` line 3, column 3") {
		t.Errorf("summary:\n%s", run.Summary)
	}
}

// A plan of thousands of targets is summarized: counts per result and
// the first 20, with the targets file named.
func TestBulkPlanIsSummarized(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "11.0.%d.%d\n", i>>8, i&255)
	}
	p := e.openPR(6, "alice-gh", "", map[string]string{pbPath("block-feed"): feedPlaybook, "indicators/feed.txt": b.String()})
	e.process()
	run := e.check(p.head)
	for _, want := range []string{"- Targets file: `indicators/feed.txt`, 5,000 targets", "5,000 targets: 5,000 would_block; the first 20:",
		"`11.0.0.19`", "… and 4,980 more"} {
		if !strings.Contains(run.Summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, run.Summary)
		}
	}
	if strings.Contains(run.Summary, "`11.0.0.20`") {
		t.Error("the summary lists more than the first 20 targets")
	}
}
