package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

func TestGitHubDeliveryQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	// The queue is read at explicit times: leases and delays are checked
	// without waiting for them.
	t0 := time.Now()
	at := func(d time.Duration) *time.Time { t := t0.Add(d); return &t }
	ids := map[string]int64{}
	for _, guid := range []string{"a-1", "b-2", "c-3"} {
		id, created, err := st.InsertDelivery(ctx, at(0), store.Delivery{Forge: "github", DeliveryID: guid, Event: "push", Payload: []byte(`{}`),
			BodySHA256: digestOf("body of " + guid)})
		if err != nil || !created {
			t.Fatalf("insert %s: %v %v", guid, created, err)
		}
		ids[guid] = id
	}
	// A redelivery (the same delivery id) is stored once and returns the
	// stored id, whatever its body.
	id, created, err := st.InsertDelivery(ctx, at(0), store.Delivery{Forge: "github", DeliveryID: "b-2", Event: "push", Payload: []byte(`{"other":1}`),
		BodySHA256: digestOf("body of b-2")})
	if err != nil || created || id != ids["b-2"] {
		t.Fatalf("redelivery: %d %v %v", id, created, err)
	}
	// A body stored before under a new delivery id is a replay: refused,
	// not stored, naming the row that holds the body.
	id, created, err = st.InsertDelivery(ctx, at(0), store.Delivery{Forge: "github", DeliveryID: "d-4", Event: "push", Payload: []byte(`{}`),
		BodySHA256: digestOf("body of b-2")})
	if !errors.Is(err, store.ErrDeliveryReplayed) || !errors.Is(err, store.ErrConflict) || created || id != ids["b-2"] {
		t.Fatalf("replay under a new delivery id: %d %v %v", id, created, err)
	}
	if _, err := st.DeliveryByGUID(ctx, "github", "d-4"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the replay was stored: %v", err)
	}
	// Invalid ids, events and digests are refused by the schema.
	for _, d := range []store.Delivery{
		{Forge: "github", DeliveryID: "../x", Event: "push", Payload: []byte(`{}`), BodySHA256: digestOf("x")},
		{Forge: "github", DeliveryID: "e-5", Event: "push", Payload: []byte(`{}`)},
		{Forge: "github", DeliveryID: "e-6", Event: "push", Payload: []byte(`{}`), BodySHA256: "not a digest"},
	} {
		if _, _, err := st.InsertDelivery(ctx, at(0), d); err == nil {
			t.Fatalf("stored an invalid delivery %+v", d)
		}
	}
	if d, err := st.DeliveryByGUID(ctx, "github", "a-1"); err != nil || d.BodySHA256 != digestOf("body of a-1") {
		t.Fatalf("stored digest: %+v %v", d, err)
	}

	// Oldest first; a claimed delivery is leased.
	d1, err := st.ClaimDelivery(ctx, "github", at(0), time.Hour)
	if err != nil || d1.DeliveryID != "a-1" || d1.Attempts != 1 {
		t.Fatalf("first claim: %+v %v", d1, err)
	}
	d2, err := st.ClaimDelivery(ctx, "github", at(0), time.Hour)
	if err != nil || d2.DeliveryID != "b-2" || string(d2.Payload) != `{}` {
		t.Fatalf("second claim: %+v %v", d2, err)
	}
	if err := st.FinishDelivery(ctx, d2.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	// A retry is due only after its delay; giving up marks it failed.
	if err := st.RetryDelivery(ctx, at(0), d1.ID, "boom", time.Second, false); err != nil {
		t.Fatal(err)
	}
	// Just before a-1's retry is due, the next claim skips it for c-3.
	d3, err := st.ClaimDelivery(ctx, "github", at(time.Second-time.Millisecond), 10*time.Second)
	if err != nil || d3.DeliveryID != "c-3" || d3.Attempts != 1 {
		t.Fatalf("claim before the retry is due: %+v %v", d3, err)
	}
	d4, err := st.ClaimDelivery(ctx, "github", at(time.Second), time.Hour)
	if err != nil || d4.DeliveryID != "a-1" || d4.Attempts != 2 || d4.LastError != "boom" {
		t.Fatalf("retried claim: %+v %v", d4, err)
	}
	if err := st.RetryDelivery(ctx, at(time.Second), d4.ID, "boom again", 0, true); err != nil {
		t.Fatal(err)
	}
	// c-3 is leased until 11s-1ms: nobody takes it before.
	if d, err := st.ClaimDelivery(ctx, "github", at(11*time.Second-2*time.Millisecond), time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a leased delivery was claimed: %+v %v", d, err)
	}
	// c-3's lease ran out: claimed again.
	d5, err := st.ClaimDelivery(ctx, "github", at(11*time.Second), time.Hour)
	if err != nil || d5.DeliveryID != "c-3" || d5.Attempts != 2 {
		t.Fatalf("claim after the lease: %+v %v", d5, err)
	}
	if _, err := st.ClaimDelivery(ctx, "github", at(time.Minute), time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("nothing due: %v", err)
	}
	counts, err := st.DeliveryCounts(ctx, "github")
	if err != nil || counts[store.DeliveryDone] != 1 || counts[store.DeliveryFailed] != 1 || counts[store.DeliveryQueued] != 1 {
		t.Fatalf("counts: %v %v", counts, err)
	}
	if err := st.FinishDelivery(ctx, 999999, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("finish of an unknown delivery: %v", err)
	}
}

func TestGitHubRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	const repo = "acme/secops"
	sha := "0123456789abcdef0123456789abcdef01234567"
	if err := st.SavePullRequest(ctx, store.GitHubPullRequest{Repository: repo, Number: 7, State: "open", BaseRef: "main", HeadSHA: sha, Author: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddRequestedReviewers(ctx, repo, 7, []string{"carol", "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddRequestedReviewers(ctx, repo, 7, []string{"bob", "dave"}); err != nil {
		t.Fatal(err)
	}
	// Saving again keeps the reviewers asked.
	if err := st.SavePullRequest(ctx, store.GitHubPullRequest{Repository: repo, Number: 7, State: "open", BaseRef: "main", HeadSHA: sha, Author: "alice"}); err != nil {
		t.Fatal(err)
	}
	p, err := st.GitHubPullRequestByNumber(ctx, repo, 7)
	if err != nil || len(p.RequestedReviewers) != 3 || p.RequestedReviewers[0] != "bob" {
		t.Fatalf("pull request: %+v %v", p, err)
	}
	open, err := st.OpenGitHubPullRequests(ctx, repo, 10)
	if err != nil || len(open) != 1 {
		t.Fatalf("open: %v %v", open, err)
	}
	if err := st.SavePullRequest(ctx, store.GitHubPullRequest{Repository: repo, Number: 7, State: "merged", BaseRef: "main", HeadSHA: sha}); err != nil {
		t.Fatal(err)
	}
	if open, _ := st.OpenGitHubPullRequests(ctx, repo, 10); len(open) != 0 {
		t.Fatalf("a merged pull request is listed open")
	}

	if _, err := st.GitHubCheckRunFor(ctx, repo, sha, "writ"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no check run yet: %v", err)
	}
	run := store.GitHubCheckRun{Repository: repo, HeadSHA: sha, Name: "writ", CheckRunID: 5, PullRequest: 7, Conclusion: "success", OutputDigest: "o", AnnotationsDigest: "a"}
	if err := st.SaveGitHubCheckRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	run.CheckRunID, run.Conclusion = 6, "failure"
	if err := st.SaveGitHubCheckRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	got, err := st.GitHubCheckRunFor(ctx, repo, sha, "writ")
	if err != nil || got.CheckRunID != 6 || got.Conclusion != "failure" {
		t.Fatalf("check run: %+v %v", got, err)
	}

	stmt := store.GitHubStatement{Repository: repo, Kind: store.GitHubReview, RefID: 99, PullRequest: 7, Login: "bob",
		State: "approved", BodySHA256: "x", Envelopes: 1, Outcome: store.StatementAccepted, Message: "ok"}
	if err := st.SaveGitHubStatement(ctx, stmt); err != nil {
		t.Fatal(err)
	}
	stmt.Outcome = "bogus"
	if err := st.SaveGitHubStatement(ctx, stmt); err == nil {
		t.Fatal("an unknown outcome was stored")
	}
	list, err := st.GitHubStatementsForPR(ctx, repo, 7)
	if err != nil || len(list) != 1 || list[0].Outcome != store.StatementAccepted {
		t.Fatalf("statements: %+v %v", list, err)
	}
	if err := st.SaveGitHubInstallation(ctx, 3, "acme", "created"); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveGitHubInstallation(ctx, 3, "acme", "suspend"); err != nil {
		t.Fatal(err)
	}
	if _, action, err := st.GitHubInstallation(ctx, 3); err != nil || action != "suspend" {
		t.Fatalf("installation: %s %v", action, err)
	}
}

// Migration 008 gives the deliveries stored before it the digest of their
// payload (their body, for application/json), so that their replays are
// refused too; a payload stored more than once (replays that got in
// before) keeps it on its first row only. It can be undone.
func TestMigrationDigestsStoredDeliveries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn, m := migrator(t)
	if err := m.MigrateTo(ctx, 7); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct{ guid, payload string }{{"old-1", `{"n":1}`}, {"old-2", `{"n":2}`}, {"replay-of-1", `{"n":1}`}} {
		if _, err := conn.Exec(ctx, `INSERT INTO github_deliveries (delivery_id, event, payload) VALUES ($1, 'push', $2)`,
			d.guid, []byte(d.payload)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.MigrateTo(ctx, 8); err != nil {
		t.Fatal(err)
	}
	// On to the current schema (deliveries are forge_deliveries from 021).
	if err := m.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for guid, want := range map[string]string{"old-1": digestOf(`{"n":1}`), "old-2": digestOf(`{"n":2}`), "replay-of-1": ""} {
		if d, err := st.DeliveryByGUID(ctx, "github", guid); err != nil || d.BodySHA256 != want {
			t.Fatalf("%s after the migration: %+v %v; want digest %q", guid, d, err, want)
		}
	}
	if _, _, err := st.InsertDelivery(ctx, nil, store.Delivery{Forge: "github", DeliveryID: "new-1", Event: "push", Payload: []byte(`{"n":2}`),
		BodySHA256: digestOf(`{"n":2}`)}); !errors.Is(err, store.ErrDeliveryReplayed) {
		t.Fatalf("a body stored before the migration, under a new delivery id: %v", err)
	}
	if err := m.MigrateTo(ctx, 7); err != nil {
		t.Fatalf("down: %v", err)
	}
}

// TestDeliveriesPerForge: forges share the inbox but not their ids,
// bodies or queues: GitLab's delivery with GitHub's id and body is its
// own, each forge claims only its own, and a replay is caught per forge.
func TestDeliveriesPerForge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	body := digestOf(`{"object_kind":"merge_request"}`)
	gh, created, err := st.InsertDelivery(ctx, nil, store.Delivery{Forge: "github", DeliveryID: "same-id", Event: "push", Payload: []byte(`{}`), BodySHA256: body})
	if err != nil || !created {
		t.Fatalf("github delivery: %v %v", created, err)
	}
	gl, created, err := st.InsertDelivery(ctx, nil, store.Delivery{Forge: "gitlab", DeliveryID: "same-id", Event: "merge_request", Payload: []byte(`{}`), BodySHA256: body})
	if err != nil || !created || gl == gh {
		t.Fatalf("gitlab delivery with github's id and body: %d %v %v", gl, created, err)
	}
	if _, _, err := st.InsertDelivery(ctx, nil, store.Delivery{Forge: "gitlab", DeliveryID: "other-id", Event: "merge_request", Payload: []byte(`{}`), BodySHA256: body}); !errors.Is(err, store.ErrDeliveryReplayed) {
		t.Fatalf("gitlab replay under a new id: %v", err)
	}
	if _, _, err := st.InsertDelivery(ctx, nil, store.Delivery{Forge: "GitLab!", DeliveryID: "x", Event: "push", Payload: []byte(`{}`), BodySHA256: digestOf("x")}); err == nil {
		t.Fatal("a forge name the schema refuses was stored")
	}
	d, err := st.ClaimDelivery(ctx, "gitlab", nil, time.Hour)
	if err != nil || d.ID != gl || d.Forge != "gitlab" || d.Event != "merge_request" {
		t.Fatalf("gitlab claim: %+v %v", d, err)
	}
	if _, err := st.ClaimDelivery(ctx, "gitlab", nil, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("gitlab claimed another forge's delivery: %v", err)
	}
	if d, err := st.DeliveryByGUID(ctx, "github", "same-id"); err != nil || d.ID != gh {
		t.Fatalf("github's delivery by id: %+v %v", d, err)
	}
	counts, err := st.DeliveryCounts(ctx, "github")
	if err != nil || counts[store.DeliveryQueued] != 1 {
		t.Fatalf("github counts: %v %v", counts, err)
	}
}
