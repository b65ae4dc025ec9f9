package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/forge/github/githubfake"
	"github.com/writ-sec/writ/internal/store"
)

// The receiver: only a valid signature gets in, a replayed delivery id is
// stored once, an oversized body and events writ does not handle are
// never stored.
func TestWebhookReceiver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tune: func(o *Options) { o.MaxBodyBytes = 64 << 10 }})
	install := e.fixture("installation.created.json")
	delete(install, "repository") // installation events name no repository
	payload, _ := json.Marshal(install)
	huge := bytes.Repeat([]byte(" "), 70<<10)
	hugePayload := append(append([]byte{}, payload[:len(payload)-1]...), append(huge, '}')...)
	star, _ := json.Marshal(e.fixture("star.created.json"))
	otherRepo := e.fixture("issue_comment.created.json")
	otherRepo["repository"] = map[string]any{"full_name": "someone/else"}
	other, _ := json.Marshal(otherRepo)
	edited := e.fixture("installation.created.json")
	delete(edited, "repository")
	edited["action"] = "renamed"
	unhandledAction, _ := json.Marshal(edited)

	cases := []struct {
		name      string
		event     string
		payload   []byte
		signature string // "" signs; "-" none
		guid      string
		status    int
		answer    string
		stored    bool
	}{
		{"valid", "installation", payload, "", "guid-valid-1", http.StatusAccepted, "queued", true},
		{"replayed delivery id", "installation", payload, "", "guid-valid-1", http.StatusOK, "duplicate", true},
		{"missing signature", "installation", payload, "-", "guid-nosig", http.StatusUnauthorized, "unauthorized", false},
		{"wrong signature", "installation", payload, Sign([]byte("another secret"), payload), "guid-badsig", http.StatusUnauthorized, "unauthorized", false},
		{"signature of other bytes", "installation", payload, Sign(testSecret, append(payload, ' ')), "guid-otherbytes", http.StatusUnauthorized, "unauthorized", false},
		{"malformed signature", "installation", payload, "sha1=abc", "guid-sha1", http.StatusUnauthorized, "unauthorized", false},
		{"oversized body", "installation", hugePayload, "", "guid-huge", http.StatusRequestEntityTooLarge, "too_large", false},
		{"unknown event", "star", star, "", "guid-star", http.StatusAccepted, "ignored", false},
		{"action not handled", "installation", unhandledAction, "", "guid-renamed", http.StatusAccepted, "ignored", false},
		{"another repository", "issue_comment", other, "", "guid-other", http.StatusAccepted, "ignored", false},
		{"ping", "ping", []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`), "", "guid-ping", http.StatusOK, "pong", false},
		{"not JSON", "installation", []byte("{nope"), "", "guid-notjson", http.StatusBadRequest, "bad_request", false},
		{"bad delivery id", "installation", payload, "", "../../etc", http.StatusBadRequest, "bad_request", false},
	}
	for _, c := range cases {
		a, err := githubfake.Deliver(e.ctx, nil, e.hook.URL+WebhookPath, testSecret,
			githubfake.Delivery{Event: c.event, GUID: c.guid, Payload: c.payload, Signature: c.signature})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if a.Status != c.status || !strings.Contains(a.Body, `"status":"`+c.answer+`"`) {
			t.Errorf("%s: answered %d %s; want %d %s", c.name, a.Status, a.Body, c.status, c.answer)
		}
		_, err = e.st.DeliveryByGUID(e.ctx, "github", c.guid)
		if stored := err == nil; stored != c.stored {
			t.Errorf("%s: stored = %v; want %v (%v)", c.name, stored, c.stored, err)
		}
	}
	counts, err := e.st.DeliveryCounts(e.ctx, "github")
	if err != nil {
		t.Fatal(err)
	}
	if counts[store.DeliveryQueued] != 1 {
		t.Fatalf("queued deliveries: %v; want exactly the valid one", counts)
	}
	// The one stored is processed once: the installation is recorded.
	e.process()
	if account, action, err := e.st.GitHubInstallation(e.ctx, 2); err != nil || account != "octocat" || action != "created" {
		t.Fatalf("installation: %q %q %v", account, action, err)
	}
	d, err := e.st.DeliveryByGUID(e.ctx, "github", "guid-valid-1")
	if err != nil || d.State != store.DeliveryDone || d.Attempts != 1 {
		t.Fatalf("delivery: %+v %v", d, err)
	}
	// A replay after processing is still not processed again.
	a, err := githubfake.Deliver(e.ctx, nil, e.hook.URL+WebhookPath, testSecret, githubfake.Delivery{Event: "installation", GUID: "guid-valid-1", Payload: payload})
	if err != nil || a.Status != http.StatusOK {
		t.Fatalf("replay after processing: %d %v", a.Status, err)
	}
	if d2, _ := e.st.DeliveryByGUID(e.ctx, "github", "guid-valid-1"); d2.Attempts != 1 || d2.State != store.DeliveryDone {
		t.Fatalf("replayed delivery was processed again: %+v", d2)
	}
}

// GitHub's signature covers the body, not X-GitHub-Delivery: a captured
// delivery re-sent under a new delivery id is a replay, refused with 409
// and never stored or processed, before or after the original was
// processed, while GitHub's own redelivery (the same id and body) is still
// a duplicate. The replay is logged at warn, without the body.
func TestWebhookReplayUnderNewDeliveryID(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var logMu sync.Mutex
	e := newEnv(t, envOptions{tune: func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	payloadOf := func(action, marker string) []byte {
		m := e.fixture("installation.created.json")
		delete(m, "repository")
		m["action"] = action
		m["marker"] = marker // only in the body: it must never reach the logs
		b, _ := json.Marshal(m)
		return b
	}
	created := payloadOf("created", "body-marker-created-4711")
	deliver := func(guid string, payload []byte) githubfake.Answer {
		t.Helper()
		a, err := githubfake.Deliver(e.ctx, nil, e.hook.URL+WebhookPath, testSecret, githubfake.Delivery{Event: "installation", GUID: guid, Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	wantAnswer := func(what string, a githubfake.Answer, status int, answer string) {
		t.Helper()
		if a.Status != status || !strings.Contains(a.Body, `"status":"`+answer+`"`) {
			t.Fatalf("%s: answered %d %s; want %d %s", what, a.Status, a.Body, status, answer)
		}
	}
	wantAnswer("the delivery", deliver("guid-created", created), http.StatusAccepted, "queued")
	wantAnswer("GitHub's redelivery", deliver("guid-created", created), http.StatusOK, "duplicate")
	a := deliver("guid-forged-1", created)
	wantAnswer("the body under a new delivery id", a, http.StatusConflict, "replayed_delivery")
	if !strings.Contains(a.Body, `"reason":"this body was delivered before`) {
		t.Fatalf("the replay's answer gives no reason: %s", a.Body)
	}
	e.process()
	if _, action, err := e.st.GitHubInstallation(e.ctx, 2); err != nil || action != "created" {
		t.Fatalf("installation: %q %v", action, err)
	}

	// GitHub suspends the installation; the captured "created" delivery,
	// replayed under yet another id, must not undo it.
	wantAnswer("the suspension", deliver("guid-suspend", payloadOf("suspend", "body-marker-suspend")), http.StatusAccepted, "queued")
	e.process()
	wantAnswer("the replay after processing", deliver("guid-forged-2", created), http.StatusConflict, "replayed_delivery")
	if n, err := e.svc.ProcessPending(e.ctx); err != nil || n != 0 {
		t.Fatalf("processed %d, %v after the replay; want nothing", n, err)
	}
	if _, action, err := e.st.GitHubInstallation(e.ctx, 2); err != nil || action != "suspend" {
		t.Fatalf("installation after the replay: %q %v; want suspend", action, err)
	}
	for _, guid := range []string{"guid-forged-1", "guid-forged-2"} {
		if _, err := e.st.DeliveryByGUID(e.ctx, "github", guid); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("replay %s was stored: %v", guid, err)
		}
	}
	if d, err := e.st.DeliveryByGUID(e.ctx, "github", "guid-created"); err != nil || d.Attempts != 1 || d.State != store.DeliveryDone {
		t.Fatalf("the original delivery: %+v %v; want processed once", d, err)
	}
	counts, err := e.st.DeliveryCounts(e.ctx, "github")
	if err != nil || counts[store.DeliveryDone] != 2 || counts[store.DeliveryQueued] != 0 || counts[store.DeliveryFailed] != 0 {
		t.Fatalf("deliveries %v %v; want the two genuine ones, done", counts, err)
	}

	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	warned := 0
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), "under a new delivery id") {
			warned++
		}
	}
	if warned != 2 {
		t.Fatalf("%d warnings of a replay; want 2:\n%s", warned, out)
	}
	if strings.Contains(out, "body-marker") {
		t.Fatalf("the logs carry the body:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// GitHub's other content type: the payload form field, signed as sent.
func TestWebhookFormEncoded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	install := e.fixture("installation.created.json")
	delete(install, "repository")
	payload, _ := json.Marshal(install)
	body := []byte("payload=" + url.QueryEscape(string(payload)))
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.hook.URL+WebhookPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-GitHub-Event", "installation")
	req.Header.Set("X-GitHub-Delivery", "form-1")
	req.Header.Set("X-Hub-Signature-256", Sign(testSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d", resp.StatusCode)
	}
	d, err := e.st.DeliveryByGUID(e.ctx, "github", "form-1")
	if err != nil || !json.Valid(d.Payload) || d.Action != "created" {
		t.Fatalf("stored: %+v %v", d, err)
	}
}

// A crash between storing a delivery and processing it loses nothing:
// the next process (a new Service on the same database) processes it.
// So does a crash in the middle of processing, once the lease runs out.
func TestDeliverySurvivesCrash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.openPR(5, "alice-gh", "", map[string]string{pbPath("fine"): playbookYAML("fine", "INC-5", "203.0.113.5", "low", "staging")})
	// Stored and acknowledged; the process "crashes" before processing.
	if runs := e.gh.CheckRuns(p.head); len(runs) != 0 {
		t.Fatalf("checked before processing: %+v", runs)
	}
	restarted := e.restart()
	n, err := restarted.ProcessPending(e.ctx)
	if err != nil || n != 1 {
		t.Fatalf("after the restart processed %d, %v; want 1", n, err)
	}
	if run := e.check(p.head); run.Status != "completed" {
		t.Fatalf("check after restart: %+v", run)
	}

	// A processor that claimed a delivery and died: nobody else takes it
	// while its lease holds; after, the next processor does.
	e.deliverPR(p, "synchronize")
	now := e.clock.Now()
	claimed, err := e.st.ClaimDelivery(e.ctx, "github", &now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	again := e.restart()
	e.clock.Advance(time.Minute - time.Millisecond)
	if n, err := again.ProcessPending(e.ctx); err != nil || n != 0 {
		t.Fatalf("a leased delivery was taken: %d %v", n, err)
	}
	e.clock.Advance(time.Millisecond)
	if n, err := again.ProcessPending(e.ctx); err != nil || n != 1 {
		t.Fatalf("after the lease: %d %v", n, err)
	}
	d, err := e.st.DeliveryByGUID(e.ctx, "github", claimed.DeliveryID)
	if err != nil || d.State != store.DeliveryDone || d.Attempts != 2 {
		t.Fatalf("delivery after the crash: %+v %v", d, err)
	}
}

// Processing a delivery ends within its lease, so that no other processor
// claims it while it is still being worked on: a GitHub that stops
// answering makes the delivery fail and be retried, not hang past its
// lease.
func TestProcessingEndsWithinTheLease(t *testing.T) {
	t.Parallel()
	// A short lease, so that the stall outlasts it; the retry is due only
	// when the test's clock says so, so it cannot come round again within
	// the same ProcessPending however slow the machine is.
	e := newEnv(t, envOptions{tune: func(o *Options) { o.Lease = time.Second; o.RetryBase = time.Minute; o.RetryMax = time.Minute }})
	release := e.gh.Stall("/check-runs")
	defer release()
	p := e.openPR(6, "alice-gh", "", map[string]string{pbPath("fine"): playbookYAML("fine", "INC-6", "203.0.113.6", "low", "staging")})
	if n, err := e.svc.ProcessPending(e.ctx); err != nil || n != 0 {
		t.Fatalf("processed %d, %v while GitHub stalls", n, err)
	}
	d, err := e.st.DeliveryByGUID(e.ctx, "github", p.opened)
	if err != nil || d.State != store.DeliveryQueued || d.Attempts != 1 || !strings.Contains(d.LastError, "processing ran past its lease of 1s") {
		t.Fatalf("delivery after the stall: %+v %v", d, err)
	}
	if n, err := e.svc.ProcessPending(e.ctx); err != nil || n != 0 {
		t.Fatalf("processed %d, %v before the retry is due", n, err)
	}

	// GitHub answers again and the retry comes due. The second attempt
	// runs with a lease a loaded machine cannot outlast.
	release()
	e.clock.Advance(time.Minute)
	e.svc.opts.Lease = time.Hour
	if n, err := e.svc.ProcessPending(e.ctx); err != nil || n != 1 {
		t.Fatalf("processed %d, %v after GitHub answers again", n, err)
	}
	if d, err = e.st.DeliveryByGUID(e.ctx, "github", p.opened); err != nil || d.State != store.DeliveryDone || d.Attempts != 2 {
		t.Fatalf("delivery after GitHub answers again: %+v %v", d, err)
	}
	if run := e.check(p.head); run.Status != "completed" {
		t.Fatalf("check: %+v", run)
	}
}

// restart makes a new Service on the same database, source and fake, as
// after a crash.
func (e *env) restart() *Service {
	e.t.Helper()
	client, err := NewClient(ClientOptions{BaseURL: e.gh.URL(), Token: testToken})
	if err != nil {
		e.t.Fatal(err)
	}
	o := e.svc.opts
	o.Client = client
	s, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// A delivery whose check run cannot be written stays queued with its
// error and is written when GitHub answers again; after MaxAttempts it is
// marked failed.
func TestFailedDeliveryIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tune: func(o *Options) { o.APIAttempts = 2; o.MaxAttempts = 3 }})
	e.gh.FailNext(2, "/check-runs")
	p := e.openPR(6, "alice-gh", "", map[string]string{pbPath("fine"): playbookYAML("fine", "INC-6", "203.0.113.6", "low", "staging")})
	if _, err := e.svc.ProcessPending(e.ctx); err != nil {
		t.Fatal(err)
	}
	counts, _ := e.st.DeliveryCounts(e.ctx, "github")
	if counts[store.DeliveryQueued] != 1 {
		t.Fatalf("after a failed write: %v; want it queued", counts)
	}
	e.clock.Advance(time.Second) // the retry delay
	e.process()
	if run := e.check(p.head); run.Status != "completed" {
		t.Fatalf("check: %+v", run)
	}

	e.gh.FailNext(100, "/check-runs")
	// A new head needs a new check run: it cannot be created.
	e.repo.Checkout(p.branch)
	e.repo.Write(pbPath("fine"), playbookYAML("fine", "INC-66", "203.0.113.6", "low", "staging"))
	head := e.repo.Commit("new head")
	e.repo.PushRef("refs/pull/6/head")
	e.repo.Checkout("main")
	e.gh.SetHead(6, head)
	e.deliverPR(p, "synchronize")
	for range 3 {
		if _, err := e.svc.ProcessPending(e.ctx); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second) // the retry delay
	}
	counts, _ = e.st.DeliveryCounts(e.ctx, "github")
	if counts[store.DeliveryFailed] == 0 {
		t.Fatalf("deliveries: %v; want one failed after 3 attempts", counts)
	}
}

// Rate limits are waited out: a secondary limit (Retry-After) and an
// exhausted primary limit (X-RateLimit-Reset) delay the check, never lose
// it.
func TestRateLimitsAreRespected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var waits []time.Duration
	var wakes []time.Time
	e.svc.sleep = func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		wakes = append(wakes, time.Now().Add(d))
		time.Sleep(min(d, 3*time.Second))
		return nil
	}
	p := e.openPR(8, "alice-gh", "", map[string]string{pbPath("fine"): playbookYAML("fine", "INC-8", "203.0.113.8", "low", "staging")})
	e.gh.SecondaryRateLimit(2, 1)
	e.process()
	if run := e.check(p.head); run.Status != "completed" {
		t.Fatalf("check after a secondary rate limit: %+v", run)
	}
	if len(waits) < 2 || waits[0] < time.Second {
		t.Fatalf("waits %v; want at least two, the first Retry-After (1s)", waits)
	}
	limited := 0
	for _, r := range e.gh.Requests() {
		if r.Status == http.StatusForbidden {
			limited++
		}
	}
	if limited != 2 {
		t.Fatalf("%d requests answered 403; want 2", limited)
	}

	waits, wakes = nil, nil
	reset := e.gh.ExhaustRateLimit(time.Second)
	e.deliverPR(p, "synchronize")
	e.process()
	// However long the request took, the client slept until the announced
	// reset, not less.
	if len(wakes) == 0 || wakes[0].Before(reset) {
		t.Fatalf("waits %v ending %v; want one until the primary limit resets at %v", waits, wakes, reset)
	}
}

func TestValidSignature(t *testing.T) {
	t.Parallel()
	body := []byte(`{"action":"opened"}`)
	good := Sign(testSecret, body)
	cases := []struct {
		header string
		want   bool
	}{
		{good, true},
		{"", false},
		{strings.TrimPrefix(good, "sha256="), false},
		{"sha256=" + strings.Repeat("0", 64), false},
		{"sha256=" + strings.ToUpper(strings.TrimPrefix(good, "sha256=")), true},
		{good[:len(good)-2], false},
		{"sha256=zz" + good[9:], false},
	}
	for _, c := range cases {
		if got := ValidSignature(testSecret, c.header, body); got != c.want {
			t.Errorf("ValidSignature(%q) = %v; want %v", c.header, got, c.want)
		}
	}
	if ValidSignature([]byte("other"), good, body) {
		t.Error("a signature with another secret passed")
	}
}
