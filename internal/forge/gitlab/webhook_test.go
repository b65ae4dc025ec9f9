package gitlab

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/forge/gitlab/gitlabfake"
	"github.com/writ-sec/writ/internal/store"
)

// The receiver stores only authentic deliveries of handled events for the
// project, once: a missing or wrong token is 401 and nothing is stored; a
// redelivery is a duplicate; the same body under a new UUID is a replay.
func TestWebhookReceiver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.MaxBodyBytes = 64 << 10 })
	e.gl.AddMergeRequest(gitlabfake.MergeRequest{IID: 3, Title: "t", Author: "alice.gl", SourceBranch: "x", TargetBranch: "main",
		SHA: strings.Repeat("c", 40)})
	open := e.gl.MergeRequestHook(3, "open", "alice.gl")
	counts := func() map[string]int64 {
		t.Helper()
		c, err := e.st.DeliveryCounts(e.ctx, "gitlab")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	stored := func() int64 {
		c := counts()
		return c[store.DeliveryQueued] + c[store.DeliveryDone] + c[store.DeliveryFailed]
	}
	edit := func(payload []byte, f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	for _, c := range []struct {
		name   string
		d      gitlabfake.Delivery
		status int
		answer string
	}{
		{"no token", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: open, Token: "-"}, 401, "unauthorized"},
		{"wrong token", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: open, Token: "webhook secret token for test"}, 401, "unauthorized"},
		{"longer token", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: open, Token: testSecret + "s"}, 401, "unauthorized"},
		{"bad UUID", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: open, UUID: "../../etc"}, 400, "bad_request"},
		{"no event", gitlabfake.Delivery{Payload: open}, 400, "bad_request"},
		{"not JSON", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: []byte("{")}, 400, "bad_request"},
		{"kind mismatch", gitlabfake.Delivery{Event: gitlabfake.EventPush, Payload: open}, 400, "bad_request"},
		{"too large", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: []byte(`{"x":"` + strings.Repeat("a", 70<<10) + `"}`)}, 413, "too_large"},
		// The token is checked before the body is read: a stranger's
		// oversized request costs no read.
		{"too large, no token", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Token: "-",
			Payload: []byte(`{"x":"` + strings.Repeat("a", 70<<10) + `"}`)}, 401, "unauthorized"},
		{"unhandled event", gitlabfake.Delivery{Event: "Pipeline Hook", Payload: []byte(`{"object_kind":"pipeline"}`)}, 202, "ignored"},
		{"another project", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: edit(open, func(m map[string]any) {
			p := m["project"].(map[string]any)
			p["id"], p["path_with_namespace"] = 43, "acme/other"
		})}, 202, "ignored"},
		{"unhandled action", gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: edit(open, func(m map[string]any) {
			m["object_attributes"].(map[string]any)["action"] = "approved"
		})}, 202, "ignored"},
		{"push to another branch", gitlabfake.Delivery{Event: gitlabfake.EventPush,
			Payload: e.gl.PushHook("feature", strings.Repeat("0", 40), strings.Repeat("d", 40), "alice.gl", nil)}, 202, "ignored"},
	} {
		a := e.send(c.d)
		if a.Status != c.status || !strings.Contains(a.Body, `"`+c.answer+`"`) {
			t.Errorf("%s: %d %s; want %d %s", c.name, a.Status, a.Body, c.status, c.answer)
		}
	}
	if n := stored(); n != 0 {
		t.Fatalf("%d deliveries stored from refused or ignored ones", n)
	}

	first := e.deliver(gitlabfake.EventMergeRequest, open)
	// GitLab resends an event with its UUID: a duplicate, not stored again.
	if a := e.send(gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, UUID: first.UUID, Payload: open}); a.Status != http.StatusOK || !strings.Contains(a.Body, "duplicate") {
		t.Fatalf("redelivery: %d %s", a.Status, a.Body)
	}
	// The token does not cover the body: the same body under a new UUID
	// is a replay.
	if a := e.send(gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: open}); a.Status != http.StatusConflict || !strings.Contains(a.Body, "replayed_delivery") {
		t.Fatalf("replay: %d %s", a.Status, a.Body)
	}
	if n := stored(); n != 1 {
		t.Fatalf("%d deliveries stored; want 1", n)
	}
	// A note on an issue is not read.
	issueNote := edit(e.gl.MergeRequestHook(3, "open", "alice.gl"), func(m map[string]any) {
		m["object_kind"] = "note"
		m["object_attributes"].(map[string]any)["noteable_type"] = "Issue"
	})
	if a := e.send(gitlabfake.Delivery{Event: gitlabfake.EventNote, Payload: issueNote}); a.Status != http.StatusAccepted || !strings.Contains(a.Body, "ignored") {
		t.Fatalf("note on an issue: %d %s", a.Status, a.Body)
	}
	// writ's own report note, as GitLab reports its creation: not stored.
	n := e.gl.AddNote(3, botLogin, reportMarker+"\n## writ")
	if a := e.send(gitlabfake.Delivery{Event: gitlabfake.EventNote, Payload: e.gl.NoteHook(3, n.ID, "create")}); a.Status != http.StatusAccepted || !strings.Contains(a.Body, "report note") {
		t.Fatalf("writ's report note: %d %s", a.Status, a.Body)
	}
	if a := e.send(gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: open}); a.Status != http.StatusConflict {
		t.Fatalf("second replay: %d %s", a.Status, a.Body)
	}
	if r, err := http.Get(e.hook.URL + WebhookPath); err != nil || r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %v %v", r, err)
	}
}

// A project given by its numeric id matches payloads by project.id.
func TestNumericProject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.Project = "42" })
	e.gl.AddMergeRequest(gitlabfake.MergeRequest{IID: 4, Title: "t", Author: "alice.gl", SourceBranch: "x", TargetBranch: "main",
		SHA: strings.Repeat("c", 40)})
	e.deliver(gitlabfake.EventMergeRequest, e.gl.MergeRequestHook(4, "open", "alice.gl"))
}

// The token is compared as SHA-256 digests in constant time.
func TestValidToken(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret")
	for tok, want := range map[string]bool{"s3cret": true, "": false, "s3cre": false, "s3cret ": false, "S3cret": false} {
		if got := ValidToken(secret, tok); got != want {
			t.Errorf("ValidToken(%q) = %v", tok, got)
		}
	}
	if ValidToken(nil, "") {
		t.Error("an empty secret accepts an empty token")
	}
}

// GitLab's rate limit is honoured: Retry-After (seconds or a date), then
// RateLimit-Reset.
func TestRateLimitWait(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		h    http.Header
		want time.Duration
		ok   bool
	}{
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second, true},
		{http.Header{"Retry-After": {now.Add(3 * time.Second).UTC().Format(http.TimeFormat)}}, 3 * time.Second, true},
		{http.Header{"Ratelimit-Reset": {"1800000011"}}, 11 * time.Second, true},
		{http.Header{"Retry-After": {"2"}, "Ratelimit-Reset": {"1800000011"}}, 2 * time.Second, true},
		{http.Header{}, 0, false},
		{http.Header{"Retry-After": {"soon"}}, 0, false},
	} {
		got, ok := rateLimitWait(c.h, now)
		if got != c.want || ok != c.ok {
			t.Errorf("%v: %s %v; want %s %v", c.h, got, ok, c.want, c.ok)
		}
	}
	o := Options{APIBackoff: time.Second, MaxRateLimitWait: 5 * time.Second}
	resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"3600"}}}
	if d := o.backoff(0, 0, 1, resp); d != 5*time.Second {
		t.Fatalf("a long Retry-After waits %s; want the cap", d)
	}
}

// A 429 from GitLab is waited out and the check completes.
func TestRateLimitedAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.gl.RateLimit(2, 1)
	m := e.openMR(5, "alice.gl", "", map[string]string{pbPath("x"): playbookYAML("x", "INC-5", "203.0.113.5", "low", "staging")})
	e.process()
	if st := e.status(m.head); st.State != "failed" || !strings.Contains(st.Description, "awaiting approval") {
		t.Fatalf("status %s (%s)", st.State, st.Description)
	}
	limited := 0
	for _, r := range e.gl.Requests() {
		if r.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 2 {
		t.Fatalf("%d requests were rate limited; want 2", limited)
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := Options{Token: "t", Project: "g/p", Engine: e.rec, Source: e.src, Store: e.st, WebhookSecret: []byte("s")}
	for _, c := range []struct {
		name string
		f    func(o *Options)
		ok   bool
	}{
		{"defaults", func(o *Options) {}, true},
		{"subgroup", func(o *Options) { o.Project = "g/sub/p" }, true},
		{"numeric", func(o *Options) { o.Project = "1234" }, true},
		{"self-managed", func(o *Options) { o.BaseURL = "https://gitlab.example.com/gitlab" }, true},
		{"no namespace", func(o *Options) { o.Project = "p" }, false},
		{"dot-dot", func(o *Options) { o.Project = "g/../p" }, false},
		{"no token", func(o *Options) { o.Token = "" }, false},
		{"no secret", func(o *Options) { o.WebhookSecret = nil }, false},
		{"credentials in URL", func(o *Options) { o.BaseURL = "https://u:p@gitlab.example.com" }, false},
		{"not http", func(o *Options) { o.BaseURL = "ftp://gitlab.example.com" }, false},
		{"status name over lines", func(o *Options) { o.StatusName = "a\nb" }, false},
	} {
		o := base
		c.f(&o)
		if _, err := New(o); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// A GitLab outage longer than one call's attempts fails the delivery for
// now: it stays queued and is processed when it comes due again.
func TestOutageRetriedByTheInbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.gl.Fail(6) // the 6 attempts of the first call
	m := e.openMR(10, "alice.gl", "", map[string]string{pbPath("z"): playbookYAML("z", "INC-10", "203.0.113.10", "low", "staging")})
	if n, err := e.svc.ProcessPending(e.ctx); err != nil || n != 0 {
		t.Fatalf("during the outage: %d processed, %v", n, err)
	}
	if c, _ := e.st.DeliveryCounts(e.ctx, "gitlab"); c[store.DeliveryQueued] != 1 {
		t.Fatalf("the delivery is not queued for a retry: %v", c)
	}
	if _, ok := e.gl.LatestStatus(m.head, DefaultStatusName); ok {
		t.Fatal("a status was set during the outage")
	}
	e.clock.Advance(time.Second) // past the retry delay
	e.process()
	if st := e.status(m.head); st.State == "pending" {
		t.Fatalf("status after the outage: %+v", st)
	}
}
