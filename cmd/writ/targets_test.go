package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/reconcile"
)

const feedPlaybookPath = "playbooks/network/block-feed.yaml"

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

// writ approve signs a playbook with a targets file under the digest of
// both files, read from the checkout; an approval of one version of the
// file does not count for another.
func TestApproveBindsTheTargetsFile(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst", "bob:approver")
	feed := "# feed\n203.0.113.7\n198.51.100.0/24\n"
	r.write(t, feedPlaybookPath, []byte(feedPlaybook))
	r.write(t, "indicators/feed.txt", []byte(feed))
	proposal := r.approve(t, "alice", "--propose", r.path(feedPlaybookPath))
	bob := r.approve(t, "bob", r.path(feedPlaybookPath))
	st := parseEnvelopeFile(t, bob).Statement
	if len(st.Subject) != 1 || st.Subject[0].Name != feedPlaybookPath || st.Subject[0].SHA256() != playbook.BundleDigest([]byte(feedPlaybook), []byte(feed)) {
		t.Fatalf("subject %+v", st.Subject)
	}
	verify := func(envelopes ...string) (int, string) {
		all := append([]string{"--data-dir", r.dataDir, "approvals", "verify", "--approvers", r.path(".writ/approvers.yaml"),
			"--playbook", r.path(feedPlaybookPath)}, envelopes...)
		code, out, _ := runCLI(t, all...)
		return code, out
	}
	if code, out := verify(proposal, bob); code != exitOK {
		t.Fatalf("verify: %d\n%s", code, out)
	}
	// One line of the file changes: the statements no longer cover it.
	r.write(t, "indicators/feed.txt", []byte(strings.Replace(feed, "203.0.113.7", "203.0.113.8", 1)))
	if code, out := verify(proposal, bob); code != exitFailure || !strings.Contains(out, "not counted") {
		t.Fatalf("verify after the edit: %d\n%s", code, out)
	}
}

// writ validate and writ plan read the targets file from the repository
// the playbook is in, and locate its problems file:line:col.
func TestValidateTargetsFile(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(feedPlaybookPath, feedPlaybook)
	write("indicators/feed.txt", "203.0.113.7\n# a typo below\n  203.0.113.300\n")
	for _, arg := range []string{root, filepath.Join(root, "playbooks"), filepath.Join(root, filepath.FromSlash(feedPlaybookPath))} {
		code, out, _ := runCLI(t, "validate", arg)
		if code != exitFailure || !strings.Contains(out, `indicators/feed.txt:3:3: "203.0.113.300" is not a valid IP address or CIDR prefix`) {
			t.Errorf("validate %s: %d\n%s", arg, code, out)
		}
	}
	write("indicators/feed.txt", "203.0.113.7\n203.0.113.0/24\n203.0.113.7\n")
	code, out, errOut := runCLI(t, "--data-dir", t.TempDir(), "plan", "--format", "json", root)
	if code != exitOK {
		t.Fatalf("plan: %d\n%s%s", code, out, errOut)
	}
	var plans []planEntry
	if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("plan json: %v\n%s", err, out)
	}
	p := plans[0]
	if p.TargetsFile == nil || p.TargetsFile.Path != "indicators/feed.txt" || p.TargetsFile.Targets != 2 || p.TargetsFile.Duplicates != 1 ||
		p.Digest != playbook.BundleDigest([]byte(feedPlaybook), []byte("203.0.113.7\n203.0.113.0/24\n203.0.113.7\n")) || p.Plan == nil || len(p.Plan.Targets) != 2 {
		t.Fatalf("plan %+v", p)
	}
}

// writ approve ID recomputes the content digest from the playbook and its
// targets file as the server sent them, and refuses a file that does not
// match.
func TestApprovePendingWithTargetsFile(t *testing.T) {
	t.Parallel()
	key, keyID := bobKey(t)
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "203.0.%d.%d\n", 113+i/250, i%250+1)
	}
	feed := b.String()
	item := func() *reconcile.PendingDetail {
		d := honestItem(t, keyID)
		d.Content.Content = dayPlaybook
		d.TargetsFile = &reconcile.PendingFile{Path: "indicators/feed.txt", Content: feed}
		d.Subjects[0].Digest = playbook.BundleDigest([]byte(dayPlaybook), []byte(feed))
		return d
	}
	url, posted := pendingServer(t, item())
	code, out, errOut := runCLIInput(t, nil, "", "approve", "op-7", "--key", key, "--server", url, "--yes")
	if code != exitOK || posted.Load() != 1 {
		t.Fatalf("honest: %d %s", code, errOut)
	}
	for _, want := range []string{"targets file indicators/feed.txt (sha256 ", "): 500 targets", "203.0.113.1, 203.0.113.2", "… and 480 more (500 in all)"} {
		if !strings.Contains(out, want) {
			t.Errorf("shown lacks %q:\n%s", want, out)
		}
	}
	tampered := item()
	tampered.TargetsFile.Content = strings.Replace(feed, "203.0.113.7\n", "10.0.0.7\n", 1)
	url, posted = pendingServer(t, tampered)
	code, _, errOut = runCLIInput(t, nil, "", "approve", "op-7", "--key", key, "--server", url, "--yes")
	if code != exitFailure || posted.Load() != 0 || !strings.Contains(errOut, "the content the server sent has sha256") {
		t.Fatalf("tampered file: %d %s", code, errOut)
	}
	outside := item()
	outside.TargetsFile.Path = "../etc/feed.txt"
	url, posted = pendingServer(t, outside)
	code, _, errOut = runCLIInput(t, nil, "", "approve", "op-7", "--key", key, "--server", url, "--yes")
	if code != exitFailure || posted.Load() != 0 || !strings.Contains(errOut, "not under indicators/") {
		t.Fatalf("a file outside indicators/: %d %s", code, errOut)
	}
}

// BenchmarkPlanTargetsFile100000 is `writ plan` of a playbook whose
// targets file holds 100,000 addresses: read and validate the file,
// decide with the default policies, dry-run on the blocklist backend and
// write the text plan.
func BenchmarkPlanTargetsFile100000(b *testing.B) {
	root := b.TempDir()
	var feed strings.Builder
	feed.WriteString("# the whole feed\n")
	for i := range playbook.MaxFileTargets {
		fmt.Fprintf(&feed, "11.%d.%d.%d\n", i>>16, (i>>8)&255, i&255)
	}
	for rel, content := range map[string]string{feedPlaybookPath: feedPlaybook, "indicators/feed.txt": feed.String()} {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	data := b.TempDir()
	for b.Loop() {
		code, out, errOut := runCLI(b, "--data-dir", data, "plan", root)
		if code != exitOK || !strings.Contains(out, "100,000 targets: 100,000 would_block") {
			b.Fatalf("%d\n%s%s", code, out, errOut)
		}
	}
}
