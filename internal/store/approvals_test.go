package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

var approvalTime = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// newApproval is a stored-approval row; the envelope bytes only need to be
// unique here (the engine verifies them, not the store).
func newApproval(envelope, approver, decision string, pr int, subjects ...string) store.Approval {
	a := store.Approval{
		Envelope: []byte(envelope), EnvelopeSHA256: digestOf(envelope),
		Decision: decision, Approver: approver, Repository: "acme/secops", PullRequest: pr,
		HeadCommit: strings.Repeat("b", 40), PolicyDigest: digestOf("policies"), PlanDigest: digestOf("plan"),
		Reason: "ok", IssuedAt: approvalTime, ExpiresAt: approvalTime.Add(24 * time.Hour),
		Source: store.ApprovalSourceAPI,
	}
	for _, s := range subjects {
		a.Subjects = append(a.Subjects, store.ApprovalSubject{Digest: digestOf(s), Name: "playbooks/" + s + ".yaml"})
	}
	return a
}

func envelopes(list []*store.Approval) string {
	var out []string
	for _, a := range list {
		out = append(out, string(a.Envelope))
	}
	return strings.Join(out, " ")
}

func TestInsertApprovalIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)

	a := newApproval("env-1", "bob", "approve", 42, "block-c2", "block-scanner")
	got, created, err := st.InsertApproval(ctx, a)
	if err != nil || !created {
		t.Fatalf("insert: created=%v err=%v", created, err)
	}
	if got.ID == 0 || got.Approver != "bob" || got.PullRequest != 42 || !got.IssuedAt.Equal(approvalTime) || got.WithdrawnAt != nil || got.ReceivedAt.IsZero() {
		t.Fatalf("stored %+v", got)
	}
	if len(got.Subjects) != 2 || got.Subjects[0].Name != "playbooks/block-c2.yaml" || got.Subjects[0].Digest != digestOf("block-c2") {
		t.Fatalf("subjects %+v", got.Subjects)
	}

	// The same envelope through another channel is the same row.
	again := a
	again.Source, again.SourceRef, again.SourceLogin = store.ApprovalSourceGitHub, "review-9", "bob-gh"
	dup, created, err := st.InsertApproval(ctx, again)
	if err != nil || created || dup.ID != got.ID || dup.Source != store.ApprovalSourceAPI || len(dup.Subjects) != 2 {
		t.Fatalf("second insert: %+v created=%v err=%v", dup, created, err)
	}

	// Concurrent inserts of one envelope make one row.
	b := newApproval("env-2", "carol", "approve", 42, "block-c2")
	var wg sync.WaitGroup
	var mu sync.Mutex
	createdCount := 0
	for range 4 {
		wg.Go(func() {
			_, c, err := st.InsertApproval(ctx, b)
			if err != nil {
				t.Error(err)
				return
			}
			if c {
				mu.Lock()
				createdCount++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if createdCount != 1 {
		t.Fatalf("%d concurrent inserts reported created; want 1", createdCount)
	}
	list, err := st.ApprovalsForDigest(ctx, digestOf("block-c2"))
	if err != nil || envelopes(list) != "env-1 env-2" {
		t.Fatalf("for digest: %q %v", envelopes(list), err)
	}
}

func TestInsertApprovalRefusesBadRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	cases := map[string]func(a *store.Approval){
		"no subjects":       func(a *store.Approval) { a.Subjects = nil },
		"bad decision":      func(a *store.Approval) { a.Decision = "lgtm" },
		"bad source":        func(a *store.Approval) { a.Source = "email" },
		"bad envelope hash": func(a *store.Approval) { a.EnvelopeSHA256 = "abc" },
		"bad subject":       func(a *store.Approval) { a.Subjects[0].Digest = "xyz" },
		"oversized":         func(a *store.Approval) { a.Envelope = make([]byte, 256<<10+1) },
	}
	for name, edit := range cases {
		a := newApproval("bad-"+name, "bob", "approve", 1, "x")
		edit(&a)
		if _, _, err := st.InsertApproval(ctx, a); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A refused subject leaves no approval behind.
	list, err := st.ListApprovals(ctx, store.ApprovalFilter{Withdrawn: true})
	if err != nil || len(list) != 0 {
		t.Fatalf("refused rows left %d rows (%v)", len(list), err)
	}
}

// An edited text withdraws the envelopes it no longer carries, and only
// those.
func TestWithdrawApprovalsKeeps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	for _, env := range []string{"e1", "e2", "e3"} {
		a := newApproval(env, "alice", "propose", 9, "e")
		a.Source, a.SourceRef = store.ApprovalSourceGitHub, "comment:5"
		if _, _, err := st.InsertApproval(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	n, err := st.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, "comment:5", digestOf("e2"), digestOf("e3"))
	if err != nil || n != 1 {
		t.Fatalf("withdraw all but e2 and e3: %d %v", n, err)
	}
	if list, _ := st.ApprovalsForDigest(ctx, digestOf("e")); envelopes(list) != "e2 e3" {
		t.Fatalf("after the edit: %q, want e2 e3", envelopes(list))
	}
	if n, _ := st.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, "comment:5"); n != 2 {
		t.Fatalf("withdraw the rest marked %d, want 2", n)
	}
}

func TestApprovalQueries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	insert := func(a store.Approval) *store.Approval {
		t.Helper()
		got, _, err := st.InsertApproval(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	insert(newApproval("p1", "alice", "propose", 7, "a"))
	gh := newApproval("g1", "bob", "approve", 7, "a")
	gh.Source, gh.SourceRef, gh.SourceLogin = store.ApprovalSourceGitHub, "review-100", "bob-gh"
	insert(gh)
	insert(newApproval("c1", "carol", "reject", 7, "a", "b"))
	insert(newApproval("o1", "bob", "approve", 8, "b"))
	noPR := newApproval("n1", "dave", "approve", 0, "a")
	noPR.Repository = ""
	insert(noPR)

	if list, err := st.ApprovalsForDigest(ctx, digestOf("a")); err != nil || envelopes(list) != "p1 g1 c1 n1" {
		t.Fatalf("for digest a: %q %v", envelopes(list), err)
	}
	if list, err := st.ApprovalsForPullRequest(ctx, "acme/secops", 7); err != nil || envelopes(list) != "p1 g1 c1" {
		t.Fatalf("for PR 7: %q %v", envelopes(list), err)
	}
	if list, _ := st.ApprovalsForPullRequest(ctx, "acme/other", 7); len(list) != 0 {
		t.Fatalf("another repository: %q", envelopes(list))
	}

	// A dismissed review withdraws its envelope, and only that one.
	n, err := st.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, "review-100")
	if err != nil || n != 1 {
		t.Fatalf("withdraw: %d %v", n, err)
	}
	if n, _ := st.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, "review-100"); n != 0 {
		t.Fatalf("second withdraw marked %d", n)
	}
	if _, err := st.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, ""); err == nil {
		t.Fatal("withdraw with an empty reference accepted")
	}
	if list, _ := st.ApprovalsForDigest(ctx, digestOf("a")); envelopes(list) != "p1 c1 n1" {
		t.Fatalf("after withdraw, for digest a: %q", envelopes(list))
	}
	if list, _ := st.ApprovalsForPullRequest(ctx, "acme/secops", 7); envelopes(list) != "p1 c1" {
		t.Fatalf("after withdraw, for PR 7: %q", envelopes(list))
	}
	// Resubmitting a withdrawn envelope does not bring it back.
	if got, created, err := st.InsertApproval(ctx, gh); err != nil || created || got.WithdrawnAt == nil {
		t.Fatalf("resubmitted withdrawn envelope: %+v %v %v", got, created, err)
	}

	// The API list: newest first, filters, keyset pages.
	all, err := st.ListApprovals(ctx, store.ApprovalFilter{Withdrawn: true})
	if err != nil || envelopes(all) != "n1 o1 c1 g1 p1" {
		t.Fatalf("list all: %q %v", envelopes(all), err)
	}
	for _, tc := range []struct {
		f    store.ApprovalFilter
		want string
	}{
		{store.ApprovalFilter{}, "n1 o1 c1 p1"},
		{store.ApprovalFilter{Approver: "bob", Withdrawn: true}, "o1 g1"},
		{store.ApprovalFilter{Decision: "reject"}, "c1"},
		{store.ApprovalFilter{Repository: "acme/secops", PullRequest: 7}, "c1 p1"},
		{store.ApprovalFilter{Digest: digestOf("b")}, "o1 c1"},
		{store.ApprovalFilter{Limit: 2}, "n1 o1"},
		{store.ApprovalFilter{Limit: 2, AfterID: all[1].ID}, "c1 p1"},
		{store.ApprovalFilter{Limit: 2, AfterID: all[4].ID}, ""},
	} {
		got, err := st.ListApprovals(ctx, tc.f)
		if err != nil || envelopes(got) != tc.want {
			t.Errorf("list %+v: %q %v; want %q", tc.f, envelopes(got), err, tc.want)
		}
	}
	c1 := all[2]
	if len(c1.Subjects) != 2 || c1.Decision != "reject" {
		t.Fatalf("listed subjects %+v", c1)
	}
	got, err := st.ApprovalByID(ctx, c1.ID)
	if err != nil || string(got.Envelope) != "c1" || len(got.Subjects) != 2 {
		t.Fatalf("by id: %+v %v", got, err)
	}
	if _, err := st.ApprovalByID(ctx, 1<<40); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing id: %v", err)
	}
}

func TestListApprovalsPagesThroughEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	for i := range 25 {
		if _, _, err := st.InsertApproval(ctx, newApproval(fmt.Sprintf("e%02d", i), "bob", "approve", 1, "x")); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	after := int64(0)
	for page := 0; ; page++ {
		list, err := st.ListApprovals(ctx, store.ApprovalFilter{Limit: 10, AfterID: after})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			break
		}
		for _, a := range list {
			seen = append(seen, string(a.Envelope))
		}
		after = list[len(list)-1].ID
		if page > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if len(seen) != 25 || seen[0] != "e24" || seen[24] != "e00" {
		t.Fatalf("pages gave %v", seen)
	}
}
