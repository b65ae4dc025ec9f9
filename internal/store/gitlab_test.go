package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

func TestGitLabRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	const project = "acme/sec/ops"
	head := strings.Repeat("a", 40)

	if _, err := st.GitLabMergeRequestByIID(ctx, project, 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown merge request: %v", err)
	}
	if err := st.SaveGitLabReportNote(ctx, project, 3, 9, "d"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("report note of an unknown merge request: %v", err)
	}
	if err := st.SaveGitLabMergeRequest(ctx, store.GitLabMergeRequest{Project: project, IID: 3, State: "open", TargetBranch: "main",
		HeadSHA: head, Author: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveGitLabReportNote(ctx, project, 3, 901, "digest-1"); err != nil {
		t.Fatal(err)
	}
	// An update without a head or author keeps them, and keeps the note.
	if err := st.SaveGitLabMergeRequest(ctx, store.GitLabMergeRequest{Project: project, IID: 3, State: "open", TargetBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	m, err := st.GitLabMergeRequestByIID(ctx, project, 3)
	if err != nil || m.HeadSHA != head || m.Author != "alice" || m.ReportNoteID != 901 || m.ReportDigest != "digest-1" {
		t.Fatalf("merge request: %+v %v", m, err)
	}
	if err := st.SaveGitLabMergeRequest(ctx, store.GitLabMergeRequest{Project: project, IID: 4, State: "merged", TargetBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveGitLabMergeRequest(ctx, store.GitLabMergeRequest{Project: project, IID: 5, State: "shut", TargetBranch: "main"}); err == nil {
		t.Fatal("an unknown state was stored")
	}
	open, err := st.OpenGitLabMergeRequests(ctx, project, 10)
	if err != nil || len(open) != 1 || open[0].IID != 3 {
		t.Fatalf("open: %+v %v", open, err)
	}
	if open, _ := st.OpenGitLabMergeRequests(ctx, "other/project", 10); len(open) != 0 {
		t.Fatalf("another project's merge requests: %+v", open)
	}

	if _, err := st.GitLabCommitStatusFor(ctx, project, head, "writ"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no status yet: %v", err)
	}
	for _, state := range []string{"pending", "success"} {
		if err := st.SaveGitLabCommitStatus(ctx, store.GitLabCommitStatus{Project: project, HeadSHA: head, Name: "writ", MergeRequest: 3,
			State: state, Digest: "s-" + state}); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := st.GitLabCommitStatusFor(ctx, project, head, "writ")
	if err != nil || cs.State != "success" || cs.Digest != "s-success" || cs.MergeRequest != 3 {
		t.Fatalf("status: %+v %v", cs, err)
	}
	if err := st.SaveGitLabCommitStatus(ctx, store.GitLabCommitStatus{Project: project, HeadSHA: "HEAD", Name: "writ", State: "success"}); err == nil {
		t.Fatal("a head that is not a commit id was stored")
	}

	for _, g := range []store.GitLabStatement{
		{Project: project, Kind: store.GitLabNote, RefID: 11, MergeRequest: 3, Login: "bob", BodySHA256: "b1", Envelopes: 1, Outcome: store.StatementAccepted, Message: "approve by bob accepted"},
		{Project: project, Kind: store.GitLabDescription, RefID: 3, MergeRequest: 3, Login: "alice", BodySHA256: "d1", Envelopes: 1, Outcome: store.StatementAccepted},
		{Project: project, Kind: store.GitLabNote, RefID: 12, MergeRequest: 4, Login: "carol", BodySHA256: "c1", Outcome: store.StatementRefused},
	} {
		if err := st.SaveGitLabStatement(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SaveGitLabStatement(ctx, store.GitLabStatement{Project: project, Kind: store.GitLabNote, RefID: 11, MergeRequest: 3, Login: "bob",
		Outcome: store.StatementWithdrawn, Message: "deleted"}); err != nil {
		t.Fatal(err)
	}
	g, err := st.GitLabStatementFor(ctx, project, store.GitLabNote, 11)
	if err != nil || g.Outcome != store.StatementWithdrawn || g.BodySHA256 != "" || g.Message != "deleted" {
		t.Fatalf("statement: %+v %v", g, err)
	}
	list, err := st.GitLabStatementsForMR(ctx, project, 3)
	if err != nil || len(list) != 2 || list[0].Kind != store.GitLabDescription || list[1].RefID != 11 {
		t.Fatalf("statements of !3: %+v %v", list, err)
	}
	if err := st.SaveGitLabStatement(ctx, store.GitLabStatement{Project: project, Kind: "review", RefID: 1, Outcome: store.StatementAccepted}); err == nil {
		t.Fatal("a kind GitLab has not was stored")
	}
}
