package store_test

import (
	"context"
	"encoding/base64"
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
		Envelope: []byte(envelope), EnvelopeSHA256: digestOf(envelope), StatementSHA256: digestOf("statement " + envelope),
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

// An edited text withdraws the statements it no longer carries, and only
// those (keep names statements).
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
	n, err := st.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, "comment:5", digestOf("statement e2"), digestOf("statement e3"))
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

// A withdrawal is of the statement: every envelope carrying it, whichever
// channel brought each, stops counting — the same bytes that came first
// through the API before the review that is dismissed, and other bytes of
// the same statement (another encoding, key id hint or signature) sent
// before or after. StatementWithdrawn says so for the intake.
func TestWithdrawalIsOfTheStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	insert := func(env, statement, source, ref string) (*store.Approval, bool) {
		t.Helper()
		a := newApproval(env, "bob", "approve", 0, "s")
		a.StatementSHA256 = digestOf(statement)
		a.Source, a.SourceRef = source, ref
		got, created, err := st.InsertApproval(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return got, created
	}
	// Statement S1: the bytes came through the API first, then in a
	// review (a duplicate: nothing new stored, the review recorded);
	// other bytes of it came through the API too.
	insert("s1-bytes", "S1", store.ApprovalSourceAPI, "")
	if _, created := insert("s1-bytes", "S1", store.ApprovalSourceGitHub, "review-7"); created {
		t.Fatal("the same bytes were stored twice")
	}
	insert("s1-other-bytes", "S1", store.ApprovalSourceAPI, "")
	// Statement S2, by the same person about the same content, only
	// through the API: not in the review, not withdrawn.
	insert("s2-bytes", "S2", store.ApprovalSourceAPI, "")
	if list, _ := st.ApprovalsForDigest(ctx, digestOf("s")); envelopes(list) != "s1-bytes s1-other-bytes s2-bytes" {
		t.Fatalf("before the dismissal: %q", envelopes(list))
	}
	if w, err := st.StatementWithdrawn(ctx, digestOf("S1")); err != nil || w {
		t.Fatalf("S1 withdrawn before the dismissal: %v %v", w, err)
	}

	n, err := st.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, "review-7")
	if err != nil || n != 2 {
		t.Fatalf("dismissing review-7 withdrew %d envelopes (%v), want both of S1's", n, err)
	}
	if list, _ := st.ApprovalsForDigest(ctx, digestOf("s")); envelopes(list) != "s2-bytes" {
		t.Fatalf("after the dismissal, what counts: %q, want only S2's", envelopes(list))
	}
	if list, _ := st.ApprovalsForDigests(ctx, []string{digestOf("s")}); envelopes(list[digestOf("s")]) != "s2-bytes" {
		t.Fatalf("after the dismissal, by digests: %q", envelopes(list[digestOf("s")]))
	}
	if w, err := st.StatementWithdrawn(ctx, digestOf("S1")); err != nil || !w {
		t.Fatalf("S1 not withdrawn after the dismissal: %v %v", w, err)
	}
	// Bytes of S1 that arrive afterwards (stored before the intake
	// refused them, or by a race) count for nothing either.
	insert("s1-late-bytes", "S1", store.ApprovalSourceAPI, "")
	if list, _ := st.ApprovalsForDigest(ctx, digestOf("s")); envelopes(list) != "s2-bytes" {
		t.Fatalf("a late copy of S1 counts: %q", envelopes(list))
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

// Migration 023 gives every stored envelope its statement's sha256 (of
// its decoded payload) and records the channel each came through, so that
// a review dismissed after the upgrade withdraws its statement in every
// envelope stored before it. It can be undone.
func TestMigrationIdentifiesStoredStatements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn, m := migrator(t)
	if err := m.MigrateTo(ctx, 22); err != nil {
		t.Fatal(err)
	}
	statement := `{"_type":"https://in-toto.io/Statement/v1","predicate":{"approver":"bob"}}`
	envelope := func(keyID, space string) []byte {
		return []byte(fmt.Sprintf(`{"payloadType":"application/vnd.in-toto+json",%s"payload":%q,"signatures":[{"keyid":%q,"sig":"c2ln"}]}`,
			space, base64.StdEncoding.EncodeToString([]byte(statement)), keyID))
	}
	for _, row := range []struct {
		env         []byte
		source, ref string
	}{{envelope("k1", ""), "github", "review-1"}, {envelope("", " "), "api", ""}} {
		if _, err := conn.Exec(ctx, `INSERT INTO approvals (envelope, envelope_sha256, decision, approver, issued_at, expires_at, source, source_ref)
			VALUES ($1, $2, 'approve', 'bob', now(), now() + interval '1 day', $3, $4)`, row.env, digestOf(string(row.env)), row.source, row.ref); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.ListApprovals(ctx, store.ApprovalFilter{Withdrawn: true})
	if err != nil || len(all) != 2 {
		t.Fatalf("after the migration: %d %v", len(all), err)
	}
	for _, a := range all {
		if a.StatementSHA256 != digestOf(statement) {
			t.Fatalf("envelope %d: statement digest %q, want the payload's %s", a.ID, a.StatementSHA256, digestOf(statement))
		}
	}
	if n, err := st.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, "review-1"); err != nil || n != 2 {
		t.Fatalf("dismissing the review after the upgrade withdrew %d envelopes (%v), want both of its statement", n, err)
	}
	if err := m.MigrateTo(ctx, 22); err != nil {
		t.Fatalf("down: %v", err)
	}
}
