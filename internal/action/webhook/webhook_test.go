package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/playbook"
)

const testSecret = "whsec-7d1c2f0e9a8b4c3d"

func secret(t *testing.T, v string) config.Secret {
	t.Helper()
	s, err := config.ResolveSecret(func(string) string { return v }, "SECRET", "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func backend(t *testing.T, rc *receiver, ca *testCA, mod func(*Options)) *Backend {
	t.Helper()
	o := Options{
		Name: "webhook:edr", URL: rc.url("/hook"), StatusURL: rc.url("/status"), Secret: secret(t, testSecret),
		CAFile: ca.file, RetryBase: time.Millisecond, MaxRetryWait: 2 * time.Second, Timeout: 5 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func request(op action.Operation, targets ...string) action.Request {
	return action.Request{Playbook: "isolate-fin-ws", Digest: strings.Repeat("c", 64), Action: "isolate_host",
		Environment: "production", Operation: op, Targets: targets, Params: map[string]any{"reason": "ransomware"},
		IdempotencyKey: "writ:isolate-fin-ws:" + strings.Repeat("c", 64) + ":" + string(op)}
}

func planSummary(p *action.Plan) string {
	var s []string
	for _, t := range p.Targets {
		s = append(s, t.Target+"="+t.Result)
	}
	return strings.Join(s, " ")
}

func summary(rs []action.TargetResult) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Target+"="+r.Result)
	}
	return strings.Join(s, " ")
}

// isolate_host end to end: the plan asks the status endpoint, apply
// isolates, a repeat changes nothing, revert sends release_host; every
// request is signed and carries the playbook, targets and idempotency key.
func TestIsolateCycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newCA(t, "edr-ca")
	rc := newReceiver(t, ca, testSecret)
	rc.known["fin-ws-12"], rc.known["fin-ws-13"], rc.isolated["fin-ws-13"] = true, true, true
	b := backend(t, rc, ca, nil)

	plan, err := b.Plan(ctx, request(action.Apply, "fin-ws-12", "fin-ws-13", "ghost"))
	if err != nil || planSummary(plan) != "fin-ws-12=would_isolate fin-ws-13=already_isolated ghost=not_found" {
		t.Fatalf("plan: %s %v", planSummary(plan), err)
	}
	if plan.Targets[2].Detail != "no such host in the EDR" {
		t.Fatalf("detail %q", plan.Targets[2].Detail)
	}
	if rc.isolated["fin-ws-12"] {
		t.Fatal("the plan isolated a host")
	}

	rs, err := b.Apply(ctx, request(action.Apply, "fin-ws-12", "fin-ws-13"))
	if err != nil || summary(rs) != "fin-ws-12=changed fin-ws-13=unchanged" {
		t.Fatalf("apply: %s %v", summary(rs), err)
	}
	plan, _ = b.Plan(ctx, request(action.Apply, "fin-ws-12"))
	if planSummary(plan) != "fin-ws-12=already_isolated" {
		t.Fatalf("plan after apply: %s", planSummary(plan))
	}
	plan, _ = b.Plan(ctx, request(action.Revert, "fin-ws-12", "fin-ws-13"))
	if planSummary(plan) != "fin-ws-12=would_release fin-ws-13=would_release" {
		t.Fatalf("revert plan: %s", planSummary(plan))
	}
	rs, err = b.Revert(ctx, request(action.Revert, "fin-ws-12"))
	if err != nil || summary(rs) != "fin-ws-12=changed" || rc.isolated["fin-ws-12"] {
		t.Fatalf("revert: %s %v", summary(rs), err)
	}
	plan, _ = b.Plan(ctx, request(action.Revert, "fin-ws-12"))
	if planSummary(plan) != "fin-ws-12=not_isolated" {
		t.Fatalf("plan after revert: %s", planSummary(plan))
	}

	var apply, revert *delivery
	for i, d := range rc.log() {
		if !d.Verified {
			t.Errorf("request %d failed the receiver's signature check", i)
		}
		if d.Path == "/status" && (d.Key != "" || d.Body.IdempotencyKey != "") {
			t.Errorf("a status request carries an idempotency key: %+v", d)
		}
		if d.Path == "/hook" && d.Body.Operation == action.Apply {
			apply = &d
		}
		if d.Path == "/hook" && d.Body.Operation == action.Revert {
			revert = &d
		}
	}
	if apply == nil || revert == nil {
		t.Fatal("apply or revert not delivered")
	}
	want := request(action.Apply, "fin-ws-12", "fin-ws-13")
	got := apply.Body
	if got.Playbook != want.Playbook || got.Digest != want.Digest || got.Action != "isolate_host" || got.Command != "isolate_host" ||
		got.Environment != "production" || strings.Join(got.Targets, ",") != "fin-ws-12,fin-ws-13" ||
		got.Params["reason"] != "ransomware" || got.IdempotencyKey != want.Key() || apply.Key != want.Key() {
		t.Fatalf("apply request: %+v (header key %q)", got, apply.Key)
	}
	if _, err := time.Parse(time.RFC3339, got.SentAt); err != nil {
		t.Fatalf("sentAt %q: %v", got.SentAt, err)
	}
	if revert.Body.Command != "release_host" || revert.Key != request(action.Revert).Key() {
		t.Fatalf("revert request: %+v", revert.Body)
	}
	// Go receivers can use Verify; it agrees with the receiver's own check.
	if err := Verify([]byte(testSecret), apply.Signature, apply.Timestamp, apply.Raw, time.Now(), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// A receiver with another secret refuses the request; a refused request is
// not retried and not transient. Verify refuses tampering and replays.
func TestSignature(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "edr-ca")
	rc := newReceiver(t, ca, "another-secret-of-the-receiver")
	rc.known["h1"] = true
	b := backend(t, rc, ca, nil)
	rs, err := b.Apply(context.Background(), request(action.Apply, "h1"))
	if err == nil || errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "HTTP 401 (bad signature)") || summary(rs) != "h1=failed" {
		t.Fatalf("apply with a wrong secret: %s %v", summary(rs), err)
	}
	if n := len(rc.log()); n != 1 || rc.log()[0].Verified {
		t.Fatalf("%d deliveries", n)
	}

	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"playbook":"p"}`)
	ts := "1800000000"
	sig := Sign([]byte(testSecret), ts, body)
	for name, tc := range map[string]struct {
		sig, ts string
		body    []byte
		now     time.Time
		ok      bool
	}{
		"valid":         {sig, ts, body, now, true},
		"tampered body": {sig, ts, []byte(`{"playbook":"q"}`), now, false},
		"other time":    {sig, "1800000001", body, now, false},
		"replayed late": {sig, ts, body, now.Add(6 * time.Minute), false},
		"from future":   {sig, ts, body, now.Add(-6 * time.Minute), false},
		"not a number":  {sig, "yesterday", body, now, false},
		"other secret":  {Sign([]byte("x"), ts, body), ts, body, now, false},
	} {
		if err := Verify([]byte(testSecret), tc.sig, tc.ts, tc.body, tc.now, 5*time.Minute); (err == nil) != tc.ok {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Retries carry the same body and idempotency key, each freshly signed; a
// later call for the same operation (the reconciler retrying) reuses the
// key, and the receiver answers it from its record.
func TestIdempotencyKeyReuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newCA(t, "edr-ca")
	rc := newReceiver(t, ca, testSecret)
	rc.known["h1"] = true
	rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	b := backend(t, rc, ca, nil)
	rs, err := b.Apply(ctx, request(action.Apply, "h1"))
	if err != nil || summary(rs) != "h1=changed" {
		t.Fatalf("apply through two 503s: %s %v", summary(rs), err)
	}
	rs, err = b.Apply(ctx, request(action.Apply, "h1"))
	if err != nil || summary(rs) != "h1=changed" {
		t.Fatalf("a repeated key must get the first answer: %s %v", summary(rs), err)
	}
	log := rc.log()
	if len(log) != 4 {
		t.Fatalf("%d deliveries; want 3 attempts and 1 repeat", len(log))
	}
	for i, d := range log {
		if d.Key != request(action.Apply).Key() || !d.Verified {
			t.Fatalf("delivery %d: key %q verified %v", i, d.Key, d.Verified)
		}
		if i > 0 && i < 3 && !bytes.Equal(d.Raw, log[0].Raw) {
			t.Fatalf("retry %d changed the body", i)
		}
	}
	if len(rc.done) != 1 {
		t.Fatalf("the receiver acted on %d keys", len(rc.done))
	}
}

// A receiver that never answers: every attempt times out (same key), then
// the error is transient for the reconciler.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "edr-ca")
	rc := newReceiver(t, ca, testSecret)
	// The receiver answers only when the test ends: no attempt can get an
	// answer in time.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		<-release
		return true
	}
	b := backend(t, rc, ca, func(o *Options) { o.Timeout = 200 * time.Millisecond; o.Retries = 2 })
	rs, err := b.Apply(context.Background(), request(action.Apply, "h1", "h2"))
	if !errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "timed out after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if summary(rs) != "h1=failed h2=failed" {
		t.Fatalf("results %+v", rs)
	}
	_, err = b.Plan(context.Background(), request(action.Apply, "h1"))
	if !errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "timed out after 3 attempts") {
		t.Fatalf("plan: %v", err)
	}
	// Every attempt that reached the receiver (a handshake can time out
	// first on a loaded machine) carried the operation's one key.
	keys := map[string]int{}
	for _, d := range rc.log() {
		keys[d.Key]++
	}
	applyKey := request(action.Apply).Key()
	for k, n := range keys {
		if (k != applyKey && k != "") || n > 3 {
			t.Fatalf("attempts per key: %v", keys)
		}
	}
	if keys[applyKey] == 0 {
		t.Fatalf("no apply attempt reached the receiver: %v", keys)
	}
}

// Redirects are not followed: the signed request never reaches the other
// URL, and the error says why.
func TestRedirectRefused(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "edr-ca")
	elsewhere := newReceiver(t, ca, testSecret)
	rc := newReceiver(t, ca, testSecret)
	rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		http.Redirect(w, r, elsewhere.url("/hook"), http.StatusTemporaryRedirect)
		return true
	}
	for _, op := range []func(*Backend) error{
		func(b *Backend) error {
			_, err := b.Apply(context.Background(), request(action.Apply, "h1"))
			return err
		},
		func(b *Backend) error {
			_, err := b.Plan(context.Background(), request(action.Apply, "h1"))
			return err
		},
	} {
		err := op(backend(t, rc, ca, nil))
		if err == nil || errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "redirect refused") {
			t.Fatalf("err = %v", err)
		}
	}
	if n := len(elsewhere.log()); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
	if n := len(rc.log()); n != 2 {
		t.Fatalf("%d requests; a redirect is not retried", n)
	}
}

// Responses larger than the limit are refused, on the hook and the status
// endpoint alike.
func TestOversizedResponses(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "edr-ca")
	rc := newReceiver(t, ca, testSecret)
	rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"targets":[],"pad":"` + strings.Repeat("x", 8192) + `"}`))
		return true
	}
	b := backend(t, rc, ca, func(o *Options) { o.MaxResponseBytes = 4096 })
	rs, err := b.Apply(context.Background(), request(action.Apply, "h1"))
	if err == nil || errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "more than 4096 bytes") || summary(rs) != "h1=failed" {
		t.Fatalf("apply: %s %v", summary(rs), err)
	}
	if _, err := b.Plan(context.Background(), request(action.Apply, "h1")); err == nil || !strings.Contains(err.Error(), "more than 4096 bytes") {
		t.Fatalf("plan: %v", err)
	}
}

// TLS with the configured CA works (TestIsolateCycle); a receiver whose
// certificate comes from another CA is refused before anything is sent,
// as is one trusted by the system only; http:// needs an explicit setting.
func TestTLS(t *testing.T) {
	t.Parallel()
	trusted, other := newCA(t, "trusted-ca"), newCA(t, "other-ca")
	rc := newReceiver(t, other, testSecret)
	for name, caFile := range map[string]string{"other CA": trusted.file, "system roots": ""} {
		b := backend(t, rc, trusted, func(o *Options) { o.CAFile = caFile })
		_, err := b.Apply(context.Background(), request(action.Apply, "h1"))
		if err == nil || errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("%s: err = %v", name, err)
		}
	}
	if n := len(rc.log()); n != 0 {
		t.Fatalf("%d requests reached a receiver with an untrusted certificate", n)
	}
	_, err := New(Options{URL: "http://127.0.0.1:9/hook", Secret: secret(t, testSecret)})
	if err == nil || !strings.Contains(err.Error(), "allowInsecureHTTP") {
		t.Fatalf("http without the setting: %v", err)
	}
	if _, err := New(Options{URL: "http://127.0.0.1:9/hook", Secret: secret(t, testSecret), AllowHTTP: true}); err != nil {
		t.Fatalf("http with the setting: %v", err)
	}
}

// 429 with Retry-After is honoured up to MaxRetryWait, and a longer one
// ends the call as transient without waiting.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "edr-ca")
	rc := newReceiver(t, ca, testSecret)
	rc.known["h1"] = true
	rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "1")
		case 3:
			w.Header().Set("Retry-After", "86400")
		default:
			return false
		}
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	}
	b := backend(t, rc, ca, nil)
	if _, err := b.Apply(context.Background(), request(action.Apply, "h1")); err != nil {
		t.Fatal(err)
	}
	_, err := b.Revert(context.Background(), request(action.Revert, "h1"))
	if !errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "Retry-After 24h0m0s exceeds") {
		t.Fatalf("err = %v", err)
	}
	if n := len(rc.log()); n != 3 {
		t.Fatalf("%d requests", n)
	}
}

// A team-defined action: any targets, the revert command from the
// configuration, no status endpoint (the plan says would_send), and a
// receiver answering plain text.
func TestTeamDefinedAction(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "pager-ca")
	rc := newReceiver(t, ca, testSecret)
	rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok"))
		return true
	}
	b := backend(t, rc, ca, func(o *Options) {
		o.StatusURL = ""
		o.Catalog = playbook.Builtin.With(playbook.Catalog{"page_oncall": playbook.TargetAny})
		o.RevertCommands = map[string]string{"page_oncall": "resolve_page"}
	})
	req := func(op action.Operation) action.Request {
		return action.Request{Playbook: "page-sec", Digest: "d", Action: "page_oncall", Environment: "production",
			Operation: op, Targets: []string{"Security team / primary"}}
	}
	plan, err := b.Plan(context.Background(), req(action.Apply))
	if err != nil || planSummary(plan) != "Security team / primary=would_send" || !plan.Changes() {
		t.Fatalf("plan: %s %v", planSummary(plan), err)
	}
	rs, err := b.Apply(context.Background(), req(action.Apply))
	if err != nil || summary(rs) != "Security team / primary=changed" || !strings.Contains(rs[0].Detail, "HTTP 200") {
		t.Fatalf("apply: %+v %v", rs, err)
	}
	if _, err := b.Revert(context.Background(), req(action.Revert)); err != nil {
		t.Fatal(err)
	}
	log := rc.log()
	if len(log) != 2 || log[0].Body.Command != "page_oncall" || log[1].Body.Command != "resolve_page" || log[1].Key != "page-sec@d/revert" {
		t.Fatalf("deliveries: %+v", log)
	}
	if err := b.Validate(req(action.Apply)); err != nil {
		t.Fatalf("a free-text target of a team-defined action: %v", err)
	}
	if err := b.Validate(request(action.Apply, "not a host!")); err == nil {
		t.Fatal("isolate_host accepted a target that is not a host")
	}
}

// Receivers that answer nonsense are not believed.
func TestBadAnswers(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "edr-ca")
	for name, tc := range map[string]struct {
		status int
		ctype  string
		body   string
		plan   bool
		want   string
	}{
		"status lacks a target":  {200, "application/json", `{"targets":[{"target":"h1","state":"applied"}]}`, true, `nothing about target "h2"`},
		"status extra target":    {200, "application/json", `{"targets":[{"target":"h1","state":"applied"},{"target":"h2","state":"applied"},{"target":"h3","state":"applied"}]}`, true, `"h3", which was not asked`},
		"status unknown state":   {200, "application/json", `{"targets":[{"target":"h1","state":"maybe"},{"target":"h2","state":"applied"}]}`, true, `state "maybe"`},
		"status not json":        {200, "text/html", `<html>`, true, "not a status response"},
		"status 404":             {404, "text/plain", "no such endpoint", true, "HTTP 404 (no such endpoint)"},
		"hook 400":               {400, "application/json", `{"error":"unknown host group"}`, false, `HTTP 400 ({"error":"unknown host group"})`},
		"hook unknown result":    {200, "application/json", `{"targets":[{"target":"h1","result":"done"},{"target":"h2","result":"changed"}]}`, false, `result "done"`},
		"hook failed target":     {200, "application/json", `{"targets":[{"target":"h1","result":"failed","detail":"agent offline"},{"target":"h2","result":"changed"}]}`, false, "failed 1 of 2 targets (h1)"},
		"hook silent on target":  {200, "application/json", `{"targets":[{"target":"h2","result":"changed"}]}`, false, "failed 1 of 2 targets (h1)"},
		"hook json not a result": {202, "application/json", `[1,2]`, false, "not a result response"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, ca, testSecret)
			rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
				return true
			}
			b := backend(t, rc, ca, nil)
			var err error
			if tc.plan {
				_, err = b.Plan(context.Background(), request(action.Apply, "h1", "h2"))
			} else {
				_, err = b.Apply(context.Background(), request(action.Apply, "h1", "h2"))
			}
			if err == nil || errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
}

// The secret never reaches logs, plans, results or errors.
func TestSecretNeverLeaks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newCA(t, "edr-ca")
	rc := newReceiver(t, ca, testSecret)
	rc.known["h1"] = true
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := backend(t, rc, ca, func(o *Options) { o.Logger = log })
	log.Info("configured", "backend", b)
	var seen []string
	record := func(v any, err error) {
		j, _ := json.Marshal(v)
		seen = append(seen, string(j))
		if err != nil {
			seen = append(seen, err.Error())
		}
	}
	record(b.Plan(ctx, request(action.Apply, "h1")))
	record(b.Apply(ctx, request(action.Apply, "h1")))
	record(b.Revert(ctx, request(action.Revert, "h1")))
	// A receiver echoing something that looks like the secret back.
	rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		http.Error(w, "denied for key "+testSecret, http.StatusForbidden)
		return true
	}
	record(b.Apply(ctx, request(action.Apply, "h1")))
	rc.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.WriteHeader(http.StatusBadGateway)
		return true
	}
	record(b.Plan(ctx, request(action.Apply, "h1")))
	all := logs.String() + strings.Join(seen, "\n")
	if !strings.Contains(all, "h1") || !strings.Contains(logs.String(), "webhook request") || !strings.Contains(all, "[redacted]") {
		t.Fatalf("the cycle did not run as expected:\n%s", all)
	}
	if strings.Contains(all, testSecret) {
		t.Fatalf("the secret leaked:\n%s", all)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	sec := secret(t, testSecret)
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"no url":       {Options{Secret: sec}, "is not a URL"},
		"ftp":          {Options{URL: "ftp://edr.example/hook", Secret: sec}, "https://"},
		"userinfo":     {Options{URL: "https://u:p@edr.example/hook", Secret: sec}, "must not hold credentials"},
		"http status":  {Options{URL: "https://edr.example/hook", StatusURL: "http://edr.example/status", Secret: sec}, "statusURL"},
		"no secret":    {Options{URL: "https://edr.example/hook"}, "at least 16 bytes"},
		"short secret": {Options{URL: "https://edr.example/hook", Secret: secret(t, "short")}, "got 5"},
		"timeout":      {Options{URL: "https://edr.example/hook", Secret: sec, Timeout: time.Hour}, "timeout"},
		"retries":      {Options{URL: "https://edr.example/hook", Secret: sec, Retries: 11}, "retries"},
		"bad CA":       {Options{URL: "https://edr.example/hook", Secret: sec, CAFile: "/nonexistent"}, "CA file"},
	} {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want %q", name, err, tc.want)
		}
	}
	b, err := New(Options{URL: "https://edr.example/hook", Secret: sec})
	if err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string]action.Request{
		"no targets": {Action: "isolate_host"},
		"twice":      {Action: "isolate_host", Targets: []string{"h1", "h1"}},
		"bad params": {Action: "isolate_host", Targets: []string{"h1"}, Params: map[string]any{"f": func() {}}},
		"big params": {Action: "isolate_host", Targets: []string{"h1"}, Params: map[string]any{"x": strings.Repeat("x", 70<<10)}},
	} {
		if err := b.Validate(req); err == nil {
			t.Errorf("%s validated", name)
		}
	}
}
