package scim

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
)

func secret(t *testing.T, v string) config.Secret {
	t.Helper()
	s, err := config.ResolveSecret(func(string) string { return v }, "SECRET", "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// backend makes a backend for the provider with short retry waits.
func backend(t *testing.T, p *provider, mod func(*Options)) *Backend {
	t.Helper()
	o := Options{
		Name: "scim:test", BaseURL: p.baseURL(), Token: secret(t, testToken), CAFile: p.caFile,
		RetryBase: time.Millisecond, MaxRetryWait: 2 * time.Second, Timeout: 5 * time.Second,
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
	return action.Request{Playbook: "suspend-phished", Digest: strings.Repeat("b", 64), Action: "suspend_user",
		Environment: "production", Operation: op, Targets: targets}
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

// The whole cycle against the provider: plan reads live state, apply
// PATCHes active to false once, a second apply changes nothing, revert
// restores the account.
func TestSuspendCycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	alice := p.dir.add("alice@example.com", true, nil)
	bob := p.dir.add("bob", false, nil)
	b := backend(t, p, nil)

	plan, err := b.Plan(ctx, request(action.Apply, "Alice@Example.com", "bob", "carol"))
	if err != nil {
		t.Fatal(err)
	}
	if got := planSummary(plan); got != "Alice@Example.com=would_suspend bob=already_suspended carol=not_found" {
		t.Fatalf("plan: %s", got)
	}
	if plan.Targets[0].Detail != "id "+alice || !strings.Contains(plan.Targets[2].Detail, `userName "carol"`) {
		t.Fatalf("plan details: %+v", plan.Targets)
	}
	if p.count(http.MethodPatch, "") != 0 {
		t.Fatal("plan changed something")
	}

	rs, err := b.Apply(ctx, request(action.Apply, "alice@example.com", "bob"))
	if err != nil || summary(rs) != "alice@example.com=changed bob=unchanged" {
		t.Fatalf("apply: %s %v", summary(rs), err)
	}
	if active, _ := p.dir.active(alice); active {
		t.Fatal("alice is still active after apply")
	}
	if active, _ := p.dir.active(bob); active {
		t.Fatal("bob was reactivated")
	}
	rs, err = b.Apply(ctx, request(action.Apply, "alice@example.com", "bob"))
	if err != nil || summary(rs) != "alice@example.com=unchanged bob=unchanged" {
		t.Fatalf("second apply: %s %v", summary(rs), err)
	}
	if n := p.count(http.MethodPatch, "/v2/Users/"); n != 1 {
		t.Fatalf("%d PATCH requests for one suspension", n)
	}

	plan, err = b.Plan(ctx, request(action.Revert, "alice@example.com", "carol"))
	if err != nil || planSummary(plan) != "alice@example.com=would_unsuspend carol=not_found" {
		t.Fatalf("revert plan: %s %v", planSummary(plan), err)
	}
	rs, err = b.Revert(ctx, request(action.Revert, "alice@example.com"))
	if err != nil || summary(rs) != "alice@example.com=changed" {
		t.Fatalf("revert: %s %v", summary(rs), err)
	}
	if active, _ := p.dir.active(alice); !active {
		t.Fatal("alice is not active after revert")
	}
	plan, _ = b.Plan(ctx, request(action.Revert, "alice@example.com"))
	if planSummary(plan) != "alice@example.com=not_suspended" {
		t.Fatalf("plan after revert: %s", planSummary(plan))
	}
}

// The provider answering PATCH with 204 No Content is a success too.
func TestPatchNoContent(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	p.dir.noContent = true
	id := p.dir.add("dana", true, nil)
	rs, err := backend(t, p, nil).Apply(context.Background(), request(action.Apply, "dana"))
	if err != nil || summary(rs) != "dana=changed" {
		t.Fatalf("apply: %s %v", summary(rs), err)
	}
	if active, _ := p.dir.active(id); active {
		t.Fatal("still active")
	}
}

func TestMatchAttributes(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	emails := func(vs ...string) map[string]any {
		var list []any
		for _, v := range vs {
			list = append(list, map[string]any{"value": v, "type": "work"})
		}
		return map[string]any{"emails": list}
	}
	erin := p.dir.add("erin", true, emails("erin@corp.example", "e@home.example"))
	p.dir.add("frank", true, map[string]any{"externalId": "EMP-0042"})
	p.dir.add("gus1", true, emails("shared@corp.example"))
	p.dir.add("gus2", true, emails("shared@corp.example"))
	for _, tc := range []struct {
		match   Match
		targets []string
		want    string
	}{
		{MatchEmail, []string{"erin@corp.example", "nobody@corp.example", "shared@corp.example"},
			"erin@corp.example=would_suspend nobody@corp.example=not_found shared@corp.example=ambiguous"},
		{MatchExternalID, []string{"EMP-0042", "EMP-0043"}, "EMP-0042=would_suspend EMP-0043=not_found"},
		{MatchID, []string{erin, "no-such-id"}, erin + "=would_suspend no-such-id=not_found"},
	} {
		t.Run(string(tc.match), func(t *testing.T) {
			b := backend(t, p, func(o *Options) { o.Match = tc.match })
			plan, err := b.Plan(context.Background(), request(action.Apply, tc.targets...))
			if err != nil || planSummary(plan) != tc.want {
				t.Fatalf("plan: %s %v; want %s", planSummary(plan), err, tc.want)
			}
		})
	}
	// An ambiguous target is never acted on.
	b := backend(t, p, func(o *Options) { o.Match = MatchEmail })
	rs, err := b.Apply(context.Background(), request(action.Apply, "shared@corp.example"))
	if err == nil || errors.Is(err, action.ErrTransient) || summary(rs) != "shared@corp.example=failed" || !strings.Contains(rs[0].Detail, "2 SCIM users match") {
		t.Fatalf("ambiguous apply: %s %v", summary(rs), err)
	}
	if p.count(http.MethodPatch, "") != 0 {
		t.Fatal("an ambiguous target was patched")
	}
}

// 404: a missing account fails apply (not transient) and is unchanged on
// revert; an account deleted between the lookup and the PATCH likewise.
func TestNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	b := backend(t, p, nil)
	rs, err := b.Apply(ctx, request(action.Apply, "ghost"))
	if err == nil || errors.Is(err, action.ErrTransient) || summary(rs) != "ghost=failed" || !strings.HasPrefix(rs[0].Detail, "not found:") {
		t.Fatalf("apply of a missing user: %s %v", summary(rs), err)
	}
	rs, err = b.Revert(ctx, request(action.Revert, "ghost"))
	if err != nil || summary(rs) != "ghost=unchanged" {
		t.Fatalf("revert of a missing user: %s %v", summary(rs), err)
	}

	id := p.dir.add("henry", true, nil)
	p.dir.onPatch = func(d *directory, pid string) int {
		delete(d.users, pid) // deleted by an admin at this very moment
		return 0
	}
	rs, err = b.Apply(ctx, request(action.Apply, "henry"))
	if err == nil || errors.Is(err, action.ErrTransient) || summary(rs) != "henry=failed" || !strings.Contains(rs[0].Detail, id) {
		t.Fatalf("apply racing a deletion: %s %v", summary(rs), err)
	}
	p.dir.onPatch = nil
	ivy := p.dir.add("ivy", false, nil)
	p.dir.onPatch = func(d *directory, pid string) int { delete(d.users, pid); return 0 }
	rs, err = b.Revert(ctx, request(action.Revert, "ivy"))
	if err != nil || summary(rs) != "ivy=unchanged" || !strings.Contains(rs[0].Detail, ivy) {
		t.Fatalf("revert racing a deletion: %s %v", summary(rs), err)
	}
}

// 409 on PATCH: the account is read again; if another client made the same
// change, the target is unchanged; if not, it fails as transient.
func TestConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	b := backend(t, p, nil)
	jack := p.dir.add("jack", true, nil)
	p.dir.onPatch = func(d *directory, id string) int {
		d.users[id]["active"] = false // someone else suspended jack
		return http.StatusConflict
	}
	rs, err := b.Apply(ctx, request(action.Apply, "jack"))
	if err != nil || summary(rs) != "jack=unchanged" || !strings.Contains(rs[0].Detail, "409") {
		t.Fatalf("conflict with the same change: %s %v", summary(rs), err)
	}
	if active, _ := p.dir.active(jack); active {
		t.Fatal("jack active")
	}

	p.dir.add("kate", true, nil)
	p.dir.onPatch = func(*directory, string) int { return http.StatusConflict }
	rs, err = b.Apply(ctx, request(action.Apply, "kate"))
	if !errors.Is(err, action.ErrTransient) || summary(rs) != "kate=failed" || !strings.Contains(rs[0].Detail, "conflict") {
		t.Fatalf("persistent conflict: %s %v", summary(rs), err)
	}
	if n := p.count(http.MethodPatch, ""); n != 3 {
		t.Fatalf("%d PATCH requests; want 1 for jack and 2 for kate", n)
	}
}

// 429 with Retry-After is honoured up to MaxRetryWait; beyond it, or when
// retries run out, the error is transient. 5xx are retried with backoff.
func TestRateLimitsAndServerErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	p.dir.add("lena", true, nil)
	b := backend(t, p, nil)

	p.inject(fault{method: http.MethodGet, path: "/v2/Users", status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "1"}, times: 1})
	plan, err := b.Plan(ctx, request(action.Apply, "lena"))
	if err != nil || planSummary(plan) != "lena=would_suspend" {
		t.Fatalf("plan after one 429: %s %v", planSummary(plan), err)
	}
	if n := p.count(http.MethodGet, "/v2/Users"); n != 2 {
		t.Fatalf("%d GETs; want the 429 and its retry", n)
	}

	p.inject(fault{method: http.MethodGet, status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "3600"}, times: 1})
	before := p.count(http.MethodGet, "")
	_, err = b.Plan(ctx, request(action.Apply, "lena"))
	if !errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "Retry-After 1h0m0s") {
		t.Fatalf("a Retry-After beyond the bound: %v", err)
	}
	if n := p.count(http.MethodGet, "") - before; n != 1 {
		t.Fatalf("%d GETs; a long Retry-After must not be waited out", n)
	}

	p.inject(fault{method: http.MethodPatch, status: http.StatusServiceUnavailable, body: `{"detail":"maintenance"}`, times: 2})
	rs, err := b.Apply(ctx, request(action.Apply, "lena"))
	if err != nil || summary(rs) != "lena=changed" {
		t.Fatalf("apply through two 503s: %s %v", summary(rs), err)
	}
	if n := p.count(http.MethodPatch, ""); n != 3 {
		t.Fatalf("%d PATCHes; want 2 failed and 1 accepted", n)
	}

	p.dir.add("mia", true, nil)
	p.dir.add("ned", true, nil)
	p.inject(fault{status: http.StatusBadGateway, times: -1})
	before = p.count(http.MethodGet, "")
	rs, err = b.Apply(ctx, request(action.Apply, "mia", "ned"))
	if !errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "HTTP 502 after 4 attempts") {
		t.Fatalf("apply against a failing provider: %v", err)
	}
	if summary(rs) != "mia=failed ned=failed" || !strings.HasPrefix(rs[1].Detail, "not attempted") {
		t.Fatalf("results: %+v", rs)
	}
	if n := p.count(http.MethodGet, "") - before; n != 4 {
		t.Fatalf("%d GETs; want 1 + 3 retries, and nothing for the second target", n)
	}
}

// A provider that does not answer in time: each attempt times out, and
// the error is transient.
func TestTimeout(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	p.inject(fault{hang: true, times: -1})
	b := backend(t, p, func(o *Options) { o.Timeout = 50 * time.Millisecond; o.Retries = 1 })
	_, err := b.Plan(context.Background(), request(action.Apply, "olga"))
	if !errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "timed out after 2 attempts") {
		t.Fatalf("err = %v", err)
	}
}

// Redirects are refused (they would carry the token elsewhere), oversized
// responses are refused, and an unknown CA fails the TLS handshake.
func TestTransportSafety(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	p.dir.add("paul", true, nil)

	p.inject(fault{status: http.StatusFound, header: map[string]string{"Location": "https://elsewhere.example/steal"}, times: 1})
	_, err := backend(t, p, nil).Plan(ctx, request(action.Apply, "paul"))
	if err == nil || errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "redirect refused") {
		t.Fatalf("redirect: %v", err)
	}

	p.inject(fault{status: http.StatusOK, body: `{"Resources":[` + strings.Repeat(" ", 4096) + `]}`, times: 1})
	_, err = backend(t, p, func(o *Options) { o.MaxResponseBytes = 1024 }).Plan(ctx, request(action.Apply, "paul"))
	if err == nil || !strings.Contains(err.Error(), "more than 1024 bytes") {
		t.Fatalf("oversized response: %v", err)
	}

	_, err = backend(t, p, func(o *Options) { o.CAFile = "" }).Plan(ctx, request(action.Apply, "paul"))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unknown CA: %v", err)
	}
}

// A provider ignoring the filter must not make writ act on other users.
func TestIgnoredFilterIsRefused(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	p.inject(fault{method: http.MethodGet, status: http.StatusOK, times: -1,
		body: `{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":1,"Resources":[{"id":"x1","userName":"someone-else","active":true}]}`})
	rs, err := backend(t, p, nil).Apply(context.Background(), request(action.Apply, "quinn"))
	if err == nil || !strings.Contains(err.Error(), "do not match") || summary(rs) != "quinn=failed" {
		t.Fatalf("apply: %s %v", summary(rs), err)
	}
	if p.count(http.MethodPatch, "") != 0 {
		t.Fatal("patched a user the filter did not name")
	}
}

// OAuth 2.0 client credentials: a token is fetched once and reused; a
// revoked token is replaced once on 401; bad credentials fail without the
// secret in the error.
func TestOAuthClientCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	p.clientID, p.clientSecret = "writ", "client-s3cr3t-9b2e"
	p.dir.add("rita", true, nil)
	oauth := func(sec string) func(*Options) {
		return func(o *Options) {
			o.Token = config.Secret{}
			o.OAuth = &OAuth{ClientID: "writ", ClientSecret: secret(t, sec), TokenURL: p.srv.URL + "/oauth/token", Scopes: []string{"scim.write"}}
		}
	}
	b := backend(t, p, oauth("client-s3cr3t-9b2e"))
	for range 3 {
		if _, err := b.Plan(ctx, request(action.Apply, "rita")); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.count(http.MethodPost, "/oauth/token"); n != 1 {
		t.Fatalf("%d token requests for 3 plans; the token is cached", n)
	}
	p.revokeIssued()
	rs, err := b.Apply(ctx, request(action.Apply, "rita"))
	if err != nil || summary(rs) != "rita=changed" {
		t.Fatalf("apply after revocation: %s %v", summary(rs), err)
	}
	if n := p.count(http.MethodPost, "/oauth/token"); n != 2 {
		t.Fatalf("%d token requests; want a new token after the 401", n)
	}

	bad := backend(t, p, oauth("wrong-s3cr3t-0000"))
	_, err = bad.Plan(ctx, request(action.Apply, "rita"))
	if err == nil || errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "HTTP 401 (invalid_client)") {
		t.Fatalf("bad credentials: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-s3cr3t") {
		t.Fatalf("the client secret is in the error: %v", err)
	}
}

// A bearer token the provider refuses: 401 is not retried and not
// transient.
func TestBadBearerToken(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	b := backend(t, p, func(o *Options) { o.Token = secret(t, "not-the-token") })
	_, err := b.Plan(context.Background(), request(action.Apply, "sam"))
	if err == nil || errors.Is(err, action.ErrTransient) || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("err = %v", err)
	}
	if n := p.count(http.MethodGet, ""); n != 1 {
		t.Fatalf("%d requests; a refused token is not retried", n)
	}
}

// Secrets never reach logs, errors, plans or results, over a full cycle
// and its failures.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	p.clientID, p.clientSecret = "writ", "client-s3cr3t-9b2e"
	p.dir.add("tom", true, nil)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var seen []string
	record := func(v any, err error) {
		b, _ := json.Marshal(v)
		seen = append(seen, string(b))
		if err != nil {
			seen = append(seen, err.Error())
		}
	}
	for _, o := range []func(*Options){
		func(o *Options) { o.Logger = log },
		func(o *Options) {
			o.Logger, o.Token = log, config.Secret{}
			o.OAuth = &OAuth{ClientID: "writ", ClientSecret: secret(t, "client-s3cr3t-9b2e"), TokenURL: p.srv.URL + "/oauth/token"}
		},
		func(o *Options) {
			o.Logger, o.Token = log, config.Secret{}
			o.OAuth = &OAuth{ClientID: "writ", ClientSecret: secret(t, "client-s3cr3t-wrong"), TokenURL: p.srv.URL + "/oauth/token"}
		},
	} {
		b := backend(t, p, o)
		log.Info("backend", "backend", b)
		plan, err := b.Plan(ctx, request(action.Apply, "tom", "nobody"))
		record(plan, err)
		rs, err := b.Apply(ctx, request(action.Apply, "tom", "nobody"))
		record(rs, err)
		rs, err = b.Revert(ctx, request(action.Revert, "tom"))
		record(rs, err)
		p.inject(fault{status: http.StatusInternalServerError, times: -1})
		rs, err = b.Apply(ctx, request(action.Apply, "tom"))
		record(rs, err)
		p.mu.Lock()
		p.faults = nil
		p.mu.Unlock()
	}
	all := logs.String() + strings.Join(seen, "\n")
	if !strings.Contains(all, "tom") || !strings.Contains(logs.String(), "scim request") {
		t.Fatalf("the cycle did not run: %s", all)
	}
	for _, s := range []string{testToken, "client-s3cr3t", "issued-token-"} {
		if strings.Contains(all, s) {
			t.Fatalf("%q leaked:\n%s", s, all)
		}
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	tok := secret(t, "t0ken-value")
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"no url":        {Options{Token: tok}, "is not a URL"},
		"http":          {Options{BaseURL: "http://idp.example/scim/v2", Token: tok}, "allowInsecureHTTP"},
		"ftp":           {Options{BaseURL: "ftp://idp.example/scim", Token: tok}, "https://"},
		"userinfo":      {Options{BaseURL: "https://u:pw@idp.example/scim/v2", Token: tok}, "must not hold credentials"},
		"query":         {Options{BaseURL: "https://idp.example/scim/v2?x=1", Token: tok}, "query"},
		"no auth":       {Options{BaseURL: "https://idp.example/scim/v2"}, "are required"},
		"both auth":     {Options{BaseURL: "https://idp.example/scim/v2", Token: tok, OAuth: &OAuth{}}, "not both"},
		"oauth no id":   {Options{BaseURL: "https://idp.example/scim/v2", OAuth: &OAuth{ClientSecret: tok, TokenURL: "https://idp.example/token"}}, "clientId"},
		"oauth no url":  {Options{BaseURL: "https://idp.example/scim/v2", OAuth: &OAuth{ClientID: "w", ClientSecret: tok}}, "oauth.tokenURL"},
		"bad match":     {Options{BaseURL: "https://idp.example/scim/v2", Token: tok, Match: "phone"}, "match"},
		"many retries":  {Options{BaseURL: "https://idp.example/scim/v2", Token: tok, Retries: 50}, "retries"},
		"missing CA":    {Options{BaseURL: "https://idp.example/scim/v2", Token: tok, CAFile: "/nonexistent/ca.pem"}, "CA file"},
		"tiny response": {Options{BaseURL: "https://idp.example/scim/v2", Token: tok, MaxResponseBytes: 10}, "maxResponseBytes"},
	} {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want %q", name, err, tc.want)
		}
	}
	b, err := New(Options{BaseURL: "http://127.0.0.1:1/scim/v2", AllowHTTP: true, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []action.Request{request(action.Apply), request(action.Apply, "bad target!"), {Targets: []string{"ok"}, Params: map[string]any{"x": 1}}} {
		if err := b.Validate(req); err == nil {
			t.Errorf("%+v validated", req)
		}
	}
	if err := b.Validate(request(action.Apply, "uma@example.com")); err != nil {
		t.Fatal(err)
	}
}
