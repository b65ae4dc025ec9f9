package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// A version keeps its targets file (path and bytes) beside its content,
// and the playbooks in force are found by the targets file they name.
func TestVersionsKeepTheirTargetsFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	feed := []byte("# feed\n203.0.113.7\n198.51.100.0/24\n")
	v := newVersion("block-feed", "feed playbook")
	v.TargetsPath, v.TargetsFile = "indicators/feed.txt", feed
	got, created, err := st.EnsurePlaybookVersion(ctx, v)
	if err != nil || !created {
		t.Fatalf("ensure: %v %v", created, err)
	}
	again, err := st.PlaybookVersionByID(ctx, got.ID)
	if err != nil || again.TargetsPath != "indicators/feed.txt" || string(again.TargetsFile) != string(feed) {
		t.Fatalf("read back %q %q %v", again.TargetsPath, again.TargetsFile, err)
	}
	plain, _, err := st.EnsurePlaybookVersion(ctx, newVersion("block-one", "inline playbook"))
	if err != nil || plain.TargetsPath != "" || plain.TargetsFile != nil {
		t.Fatalf("inline version: %q %v %v", plain.TargetsPath, plain.TargetsFile, err)
	}
	commit := strings.Repeat("c", 40)
	for _, a := range []store.ActivePlaybook{{Path: got.Path, Name: got.Name, VersionID: got.ID, SinceCommit: commit},
		{Path: plain.Path, Name: plain.Name, VersionID: plain.ID, SinceCommit: commit}} {
		if err := st.SetActive(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	paths, err := st.ActiveNamingTargetsFiles(ctx, []string{"indicators/feed.txt", "indicators/other.txt"})
	if err != nil || len(paths) != 1 || paths[0] != "playbooks/block-feed.yaml" {
		t.Fatalf("naming: %v %v", paths, err)
	}
	if paths, err := st.ActiveNamingTargetsFiles(ctx, []string{"indicators/other.txt"}); err != nil || len(paths) != 0 {
		t.Fatalf("naming another file: %v %v", paths, err)
	}

	// The database refuses a path outside indicators/, and a path without
	// its file.
	bad := newVersion("block-bad", "bad")
	bad.TargetsPath, bad.TargetsFile = "../etc/passwd", feed
	if _, _, err := st.EnsurePlaybookVersion(ctx, bad); err == nil {
		t.Error("stored a targets path outside indicators/")
	}
	bad = newVersion("block-bad2", "bad2")
	bad.TargetsPath = "indicators/feed.txt"
	if _, _, err := st.EnsurePlaybookVersion(ctx, bad); err == nil {
		t.Error("stored a targets path without its file")
	}
}

// 100,000 per-target results are saved in one statement, and saved again
// they count a second attempt.
func TestSaveTargetResultsInBulk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	e := newExecution(t, st, "block-bulk", "bulk", "apply")
	results := make([]store.TargetResult, 100_000)
	for i := range results {
		results[i] = store.TargetResult{Target: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), Planned: "would_block", Result: "changed", Detail: "blocked"}
	}
	// A target given twice keeps its last result.
	results = append(results, store.TargetResult{Target: "10.0.0.0", Result: "failed", Detail: "last"})
	if err := st.SaveTargetResults(ctx, e.ID, results); err != nil {
		t.Fatal(err)
	}
	ts, err := st.ExecutionTargets(ctx, e.ID)
	if err != nil || len(ts) != 100_000 {
		t.Fatalf("%d targets, %v", len(ts), err)
	}
	if ts[0].Target != "10.0.0.0" || ts[0].Result != "failed" || ts[0].Detail != "last" || ts[0].Attempts != 1 {
		t.Fatalf("first %+v", ts[0])
	}
	if err := st.SaveTargetResults(ctx, e.ID, results[1:3]); err != nil {
		t.Fatal(err)
	}
	ts, _ = st.ExecutionTargets(ctx, e.ID)
	for _, tr := range ts {
		if tr.Target == results[1].Target && (tr.Attempts != 2 || tr.Planned != "would_block") {
			t.Fatalf("saved again: %+v", tr)
		}
	}
}
