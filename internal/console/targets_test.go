package console

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// An operation on a targets file's 100,000 targets is shown as counts and
// its first targets, never as 100,000 rows.
func TestBulkExecutionPage(t *testing.T) {
	t.Parallel()
	e := newPagesEnv(t, envOptions{})
	var b strings.Builder
	b.WriteString("# feed\n")
	targets := make([]string, 100_000)
	plan := action.Plan{Action: "block_ip", Backend: "nftables", Environment: "production", Operation: action.Apply}
	results := make([]store.TargetResult, len(targets))
	for i := range targets {
		targets[i] = fmt.Sprintf("11.%d.%d.%d", i>>16, (i>>8)&255, i&255)
		b.WriteString(targets[i] + "\n")
		r := action.AlreadyBlocked
		if i%4 != 0 {
			r = action.WouldBlock
		}
		plan.Targets = append(plan.Targets, action.TargetPlan{Target: targets[i], Result: r})
		results[i] = store.TargetResult{Target: targets[i], Planned: r, Result: "changed", Detail: "blocked"}
	}
	feed := b.String()
	content := `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-feed
spec:
  action: block_ip
  targetsFile: indicators/feed.txt
  justification: C2 addresses from the threat feed
  severity: high
  environment: production
`
	v, _, err := e.st.EnsurePlaybookVersion(e.ctx, store.PlaybookVersion{Name: "block-feed", Path: "playbooks/block-feed.yaml",
		Digest: playbook.BundleDigest([]byte(content), []byte(feed)), Content: []byte(content), TargetsPath: "indicators/feed.txt",
		TargetsFile: []byte(feed), Action: "block_ip", Environment: "production", Severity: "high", CommitSHA: strings.Repeat("d", 40)})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(plan)
	ex, _, err := e.st.CreateExecution(e.ctx, store.Execution{VersionID: v.ID, Name: v.Name, Digest: v.Digest, Path: v.Path,
		Action: "block_ip", Environment: "production", Operation: "apply", State: store.ExecCompleted, Targets: targets,
		Trigger: "merge", ChangeType: "create", Plan: raw, ReasonCode: "done", Reason: "applied: 100000 changed, 0 unchanged"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.SaveTargetResults(e.ctx, ex.ID, results); err != nil {
		t.Fatal(err)
	}
	body := e.mustGet("viewer", "/executions/"+itoa(ex.ID), 200)
	contains(t, "execution", body, "100,000 changed; the first 20 below, and 99980 more",
		"100000 targets: 75,000 would_block, 25,000 already_blocked. The first 20:", "… and 99980 more: the API has the whole plan.",
		"11.0.0.19", "11.0.0.0")
	lacks(t, "execution", body, "11.0.0.20<", "11.1.134.159")
	if n := strings.Count(body, "<tr>"); n > 60 {
		t.Errorf("the page has %d rows", n)
	}
	pb := e.mustGet("viewer", "/playbooks/block-feed", 200)
	contains(t, "playbook", pb, "indicators/feed.txt", "<dd>100000</dd>")
}

// The pending page shows a targets file against the one it replaces as the
// targets added and removed.
func TestTargetsFileDiff(t *testing.T) {
	t.Parallel()
	was := &reconcile.PendingFile{Path: "indicators/feed.txt", Content: "203.0.113.7\n203.0.113.8\n198.51.100.0/24\n"}
	now := &reconcile.PendingFile{Path: "indicators/feed.txt", Content: "# more\n203.0.113.7\n203.0.113.9\n198.51.100.0/24\n203.0.113.7\n"}
	d := targetsFileDiff(now, was)
	var got []string
	for _, l := range d.Lines {
		got = append(got, l.Op+l.Text)
	}
	want := " 3 targets, sha256 " + playbook.Digest([]byte(now.Content)) + " (1 repeated lines merged); 1 added, 1 removed|-203.0.113.8|+203.0.113.9"
	if strings.Join(got, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, "|"), want)
	}
}
