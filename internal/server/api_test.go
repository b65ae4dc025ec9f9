package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/reconcile"
)

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func (h *harness) login(user, password string) (*http.Response, LoginResponse) {
	h.t.Helper()
	resp, body := h.do("POST", "/api/v1/auth/login", "", map[string]string{"username": user, "password": password})
	var lr LoginResponse
	_ = json.Unmarshal(body, &lr)
	return resp, lr
}

// A new account logs in with its one-time password, can do nothing but
// change it, then works; logging out ends the session.
func TestLoginFlow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	admin := h.tokens["admin"]
	resp, body := h.do("POST", "/api/v1/users", admin, map[string]any{"username": "vera", "display_name": "Vera V.", "roles": []string{"viewer"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create user %d %s", resp.StatusCode, body)
	}
	created := decode[UserCreated](t, body)
	if created.OneTimePassword == "" || !created.User.MustChangePassword || created.User.Roles != auth.Roles(auth.Viewer) {
		t.Fatalf("created %+v", created)
	}
	resp, lr := h.login("vera", created.OneTimePassword)
	if resp.StatusCode != 200 || !strings.HasPrefix(lr.Token, auth.SessionPrefix) || !lr.Principal.MustChangePassword {
		t.Fatalf("login %d %+v", resp.StatusCode, lr)
	}
	if resp, body := h.do("GET", "/api/v1/status", lr.Token, nil); resp.StatusCode != 403 || decode[Problem](t, body).Code != "password_change_required" {
		t.Fatalf("status before the password change: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("GET", "/api/v1/auth/whoami", lr.Token, nil); resp.StatusCode != 200 || decode[auth.Principal](t, body).Name != "vera" {
		t.Fatalf("whoami %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("POST", "/api/v1/auth/password", lr.Token, map[string]string{"current_password": created.OneTimePassword, "new_password": "short"}); resp.StatusCode != 422 {
		t.Fatalf("short password: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("POST", "/api/v1/auth/password", lr.Token, map[string]string{"current_password": "wrong wrong wrong", "new_password": "vera's new long password"}); resp.StatusCode != 403 {
		t.Fatalf("wrong current password: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("POST", "/api/v1/auth/password", lr.Token, map[string]string{"current_password": created.OneTimePassword, "new_password": "vera's new long password"}); resp.StatusCode != 200 {
		t.Fatalf("password change: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("GET", "/api/v1/status", lr.Token, nil); resp.StatusCode != 200 {
		t.Fatalf("status after the password change: %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.do("POST", "/api/v1/auth/logout", lr.Token, nil); resp.StatusCode != 200 {
		t.Fatalf("logout %d", resp.StatusCode)
	}
	if resp, _ := h.do("GET", "/api/v1/status", lr.Token, nil); resp.StatusCode != 401 {
		t.Fatalf("after logout %d", resp.StatusCode)
	}
	// Unknown account and wrong password answer alike.
	r1, b1 := h.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "nobody", "password": "whatever it is"})
	r2, b2 := h.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "vera", "password": "whatever it is"})
	if r1.StatusCode != 401 || r2.StatusCode != 401 || !bytes.Equal(b1, b2) {
		t.Fatalf("unknown user %d %s vs wrong password %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
	}
	if resp, body := h.do("POST", "/api/v1/auth/login", "", `{"username":"vera","password":"x","extra":1}`); resp.StatusCode != 400 {
		t.Fatalf("unknown field: %d %s", resp.StatusCode, body)
	}
	if n := h.countEvents("auth.login"); n != 1 {
		t.Fatalf("%d logins audited; want 1", n)
	}
	if n := h.countEvents("user.password_changed"); n != 1 {
		t.Fatalf("%d password changes audited", n)
	}
}

// GET /api/v1/auth/methods says, to anyone, how to log in: a password,
// and the SSO provider's device grant when OIDC is configured; nothing
// else.
func TestLoginMethods(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	resp, body := h.do("GET", "/api/v1/auth/methods", "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("methods %d %s", resp.StatusCode, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"password": true, "oidc": map[string]any{"issuer": h.idp.srv.URL, "client_id": "writ-cli",
		"scopes": []any{"openid", "email", "offline_access"}}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("methods %s; want %v", body, want)
	}
	// Without OIDC and accounts, neither is offered.
	srv, err := New(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	api, err := NewAPIWith(APIOptions{Store: h.st})
	if err != nil {
		t.Fatal(err)
	}
	api.Register(srv)
	if err := srv.SetGuard(Guard{Auth: h.auth, Denials: h.denials}); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	r, err := http.Get(hs.URL + "/api/v1/auth/methods")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var none map[string]any
	if err := json.NewDecoder(r.Body).Decode(&none); err != nil || r.StatusCode != 200 || !reflect.DeepEqual(none, map[string]any{"password": false}) {
		t.Fatalf("no accounts, no OIDC: %d %v %v", r.StatusCode, none, err)
	}
}

// Repeated wrong passwords lock the account: the right one is refused
// until an admin unlocks it (or the lockout ends).
func TestLockoutThroughAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	if _, _, err := h.auth.CreateUser(h.ctx, audit.SystemActor, auth.NewUser{Username: "lee", Roles: auth.Roles(auth.Viewer), Password: "lee's long password"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if resp, _ := h.login("lee", "guess "+strconv.Itoa(i)+" is not it"); resp.StatusCode != 401 {
			t.Fatalf("guess %d: %d", i, resp.StatusCode)
		}
	}
	if resp, _ := h.login("lee", "lee's long password"); resp.StatusCode != 401 {
		t.Fatalf("right password while locked: %d", resp.StatusCode)
	}
	resp, body := h.do("GET", "/api/v1/users/lee", h.tokens["admin"], nil)
	if u := decode[auth.User](t, body); resp.StatusCode != 200 || u.LockedUntil == nil {
		t.Fatalf("user %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("PATCH", "/api/v1/users/lee", h.tokens["admin"], map[string]any{"unlock": true}); resp.StatusCode != 200 {
		t.Fatalf("unlock %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.login("lee", "lee's long password"); resp.StatusCode != 200 {
		t.Fatalf("after unlock: %d", resp.StatusCode)
	}
	if h.countEvents("auth.locked") != 1 || h.countEvents("user.unlocked") != 1 {
		t.Fatal("lockout or unlock not audited")
	}
	// The refusals are audited with their reasons.
	reasons := map[string]int{}
	for _, e := range h.auditEntries(audit.EventAuthDenied) {
		var p struct{ Reason string }
		_ = json.Unmarshal(e.Payload, &p)
		reasons[p.Reason]++
	}
	if reasons["bad_password"] != 3 || reasons["locked"] != 1 {
		t.Fatalf("refusal reasons %v", reasons)
	}
}

// Login attempts are rate-limited per client address; behind a trusted
// proxy the forwarded address counts, otherwise the header is ignored.
func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{perMinute: 3, proxies: []string{"127.0.0.0/8"}})
	try := func(xff string) *http.Response {
		var hdr []string
		if xff != "" {
			hdr = []string{"X-Forwarded-For", xff}
		}
		resp, _ := h.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "x", "password": "y"}, hdr...)
		return resp
	}
	for i := range 3 {
		if resp := try("198.51.100.1"); resp.StatusCode != 401 {
			t.Fatalf("attempt %d: %d", i, resp.StatusCode)
		}
	}
	resp := try("198.51.100.1")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th attempt: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The limited attempt is audited (bounded like anonymous refusals).
	found := false
	for _, e := range h.auditEntries(audit.EventAuthDenied) {
		var p struct {
			Reason string `json:"reason"`
			Status int    `json:"status"`
		}
		_ = json.Unmarshal(e.Payload, &p)
		found = found || (p.Reason == "rate_limited" && p.Status == 429)
	}
	if !found {
		t.Fatal("the rate-limited attempt was not audited")
	}
	// Another client behind the same proxy has its own budget.
	if resp := try("198.51.100.2"); resp.StatusCode != 401 {
		t.Fatalf("another client: %d", resp.StatusCode)
	}
	// A client cannot escape by prepending addresses: the right-most
	// untrusted one counts.
	if resp := try("203.0.113.9, 198.51.100.1"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("spoofed prefix: %d", resp.StatusCode)
	}
	// The password change is limited the same way (per client).
	h2 := newHarness(t, harnessOptions{perMinute: 2})
	codes := []int{}
	for range 3 {
		resp, _ := h2.do("POST", "/api/v1/auth/password", h2.tokens["viewer"], map[string]string{"current_password": "a", "new_password": "b"},
			"X-Forwarded-For", "192.0.2.55")
		codes = append(codes, resp.StatusCode)
	}
	// Without trusted proxies the header is ignored: all from 127.0.0.1.
	if codes[2] != http.StatusTooManyRequests {
		t.Fatalf("password change codes %v; want the 3rd limited", codes)
	}
}

// A flood of anonymous requests is audited within bounds: the first of a
// window one by one, the rest as one summary with counts.
func TestDenialAggregation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{burst: 5})
	for range 50 {
		if resp, _ := h.do("GET", "/api/v1/status", "", nil); resp.StatusCode != 401 {
			t.Fatalf("anonymous: %d", resp.StatusCode)
		}
	}
	for range 3 {
		h.do("GET", "/api/v1/users", "garbage", nil)
	}
	// A refused principal is always audited one by one.
	for range 7 {
		h.do("GET", "/api/v1/users", h.tokens["viewer"], nil)
	}
	if n := h.countEvents(audit.EventAuthDenied); n != 5+7 {
		t.Fatalf("%d individual denials; want 5 anonymous + 7 forbidden", n)
	}
	if n := h.countEvents(audit.EventAuthDeniedSummary); n != 0 {
		t.Fatalf("a summary before the window ended: %d", n)
	}
	h.denials.Flush(h.ctx)
	sums := h.auditEntries(audit.EventAuthDeniedSummary)
	if len(sums) != 1 {
		t.Fatalf("%d summaries; want 1", len(sums))
	}
	var p struct {
		Counted  int            `json:"counted"`
		ByReason map[string]int `json:"by_reason"`
		ByRoute  map[string]int `json:"by_route"`
		ByRemote map[string]int `json:"by_remote"`
	}
	if err := json.Unmarshal(sums[0].Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.Counted != 48 || p.ByReason["no_credentials"] != 45 || p.ByReason["malformed"] != 3 || p.ByRoute["GET /api/v1/status"] != 45 || p.ByRemote["127.0.0.1"] != 48 {
		t.Fatalf("summary %+v", p)
	}
	// The next window starts afresh.
	h.do("GET", "/api/v1/status", "", nil)
	if n := h.countEvents(audit.EventAuthDenied); n != 13 {
		t.Fatalf("after the flush: %d individual denials; want 13", n)
	}
	h.denials.Flush(h.ctx)
	if n := h.countEvents(audit.EventAuthDeniedSummary); n != 1 {
		t.Fatalf("a summary of nothing was written: %d", n)
	}
}

// Every response carries a request id; a caller's plain id is kept and
// appears in the logs of the request, a dangerous one is replaced.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	resp, _ := h.do("GET", "/api/v1/status", h.tokens["viewer"], nil, RequestIDHeader, "req-abc.123")
	if got := resp.Header.Get(RequestIDHeader); got != "req-abc.123" {
		t.Fatalf("request id %q", got)
	}
	resp, _ = h.do("GET", "/api/v1/status", h.tokens["viewer"], nil, RequestIDHeader, `x" level=ERROR msg=forged`)
	if got := resp.Header.Get(RequestIDHeader); got == "" || strings.ContainsAny(got, `" =`) {
		t.Fatalf("unsafe request id kept: %q", got)
	}
	resp, _ = h.do("GET", "/healthz", "", nil)
	if resp.Header.Get(RequestIDHeader) == "" {
		t.Fatal("no request id on /healthz")
	}
	found := false
	sc := bufio.NewScanner(strings.NewReader(h.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %s", sc.Text())
		}
		if rec["msg"] == "request" && rec["request_id"] == "req-abc.123" {
			found = rec["principal"] == "u-viewer" && rec["route"] == "GET /api/v1/status" && rec["status"] == float64(200)
		}
	}
	if !found {
		t.Fatalf("no access log record with the request id:\n%s", h.logs.String())
	}
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	big := strings.Repeat("x", 2<<20)
	for _, tc := range []struct {
		method, path, cred string
		size               int
	}{
		{"POST", "/api/v1/dry-run", h.tokens["analyst"], 1<<20 + 1},
		{"POST", "/api/v1/users", h.tokens["admin"], 65<<10 + 1},
		{"POST", "/api/v1/auth/login", "", 9 << 10},
		{"POST", "/api/v1/approvals", "", 300 << 10},
		{"GET", "/api/v1/status", h.tokens["viewer"], 1<<20 + 1},
	} {
		resp, body := h.do(tc.method, tc.path, tc.cred, big[:tc.size])
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s with %d bytes: %d %s", tc.method, tc.path, tc.size, resp.StatusCode, body)
		}
	}
	// Without a Content-Length the limit holds while reading.
	req, _ := http.NewRequest("POST", h.http.URL+"/api/v1/dry-run", struct{ *strings.Reader }{strings.NewReader(big)})
	req.Header.Set("Authorization", "Bearer "+h.tokens["analyst"])
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked 2 MiB dry-run: %d", resp.StatusCode)
	}
}

func TestUsersAndTokensAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	admin := h.tokens["admin"]
	resp, body := h.do("POST", "/api/v1/users", admin, map[string]any{"username": "ci-bot", "roles": []string{"viewer", "executor"}, "no_password": true})
	if resp.StatusCode != 201 || decode[UserCreated](t, body).OneTimePassword != "" {
		t.Fatalf("create robot %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("POST", "/api/v1/users", admin, map[string]any{"username": "ci-bot", "roles": []string{"viewer"}}); resp.StatusCode != 409 {
		t.Fatalf("duplicate: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("POST", "/api/v1/users", admin, map[string]any{"username": "x", "roles": []string{"root"}}); resp.StatusCode != 400 || decode[Problem](t, body).Pointer != "/roles/0" {
		t.Fatalf("unknown role: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do("POST", "/api/v1/tokens", admin, map[string]any{"username": "ci-bot", "name": "deploy", "roles": []string{"executor"}, "ttl": "30d"})
	if resp.StatusCode != 201 {
		t.Fatalf("create token %d %s", resp.StatusCode, body)
	}
	tc := decode[TokenCreated](t, body)
	if !strings.HasPrefix(tc.Secret, auth.TokenPrefix) || tc.Token.Roles != auth.Roles(auth.Executor) || tc.Token.CreatedBy != "u-admin" ||
		!tc.Token.ExpiresAt.Equal(h.clock.Now().Add(30*24*time.Hour)) {
		t.Fatalf("token %+v", tc.Token)
	}
	if resp, body := h.do("POST", "/api/v1/tokens", admin, map[string]any{"username": "ci-bot", "name": "more", "roles": []string{"admin"}}); resp.StatusCode != 422 {
		t.Fatalf("a token with more roles than its account: %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.do("POST", "/api/v1/reconcile", tc.Secret, nil); resp.StatusCode != 202 {
		t.Fatalf("executor token reconciles: %d", resp.StatusCode)
	}
	if resp, _ := h.do("GET", "/api/v1/users", tc.Secret, nil); resp.StatusCode != 403 {
		t.Fatalf("executor token lists users: %d", resp.StatusCode)
	}
	resp, body = h.do("GET", "/api/v1/tokens?username=ci-bot", admin, nil)
	if list := decode[struct{ Tokens []auth.Token }](t, body); resp.StatusCode != 200 || len(list.Tokens) != 1 || strings.Contains(string(body), tc.Secret) {
		t.Fatalf("list tokens %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.do("DELETE", "/api/v1/tokens/"+strconv.FormatInt(tc.Token.ID, 10), admin, nil); resp.StatusCode != 200 {
		t.Fatalf("revoke %d", resp.StatusCode)
	}
	if resp, _ := h.do("POST", "/api/v1/reconcile", tc.Secret, nil); resp.StatusCode != 401 {
		t.Fatalf("revoked token: %d", resp.StatusCode)
	}
	if resp, _ := h.do("DELETE", "/api/v1/tokens/"+strconv.FormatInt(tc.Token.ID, 10), admin, nil); resp.StatusCode != 404 {
		t.Fatalf("revoke twice: %d", resp.StatusCode)
	}
	// Disable and reset.
	resp, body = h.do("PATCH", "/api/v1/users/u-executor", admin, map[string]any{"disabled": true, "roles": []string{"executor", "viewer"}})
	if u := decode[auth.User](t, body); resp.StatusCode != 200 || !u.Disabled || u.Roles != auth.Roles(auth.Viewer, auth.Executor) {
		t.Fatalf("patch %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.do("GET", "/api/v1/status", h.tokens["executor"], nil); resp.StatusCode != 401 {
		t.Fatalf("token of a disabled account: %d", resp.StatusCode)
	}
	resp, body = h.do("POST", "/api/v1/users/u-viewer/password", admin, nil)
	pw := decode[map[string]string](t, body)["one_time_password"]
	if resp.StatusCode != 200 || pw == "" {
		t.Fatalf("reset %d %s", resp.StatusCode, body)
	}
	if resp, lr := h.login("u-viewer", pw); resp.StatusCode != 200 || !lr.Principal.MustChangePassword {
		t.Fatalf("login with the reset password: %d", resp.StatusCode)
	}
	if resp, body := h.do("DELETE", "/api/v1/users/u-viewer/sessions", admin, nil); resp.StatusCode != 200 || decode[map[string]int](t, body)["revoked"] != 1 {
		t.Fatalf("revoke sessions %d %s", resp.StatusCode, body)
	}
	// The last admin cannot lock everyone out.
	for _, u := range []string{"u-admin"} {
		if resp, body := h.do("PATCH", "/api/v1/users/"+u, admin, map[string]any{"roles": []string{"viewer"}}); resp.StatusCode != 409 {
			t.Fatalf("demote the last admin: %d %s", resp.StatusCode, body)
		}
	}
	resp, body = h.do("GET", "/api/v1/users", admin, nil)
	if resp.StatusCode != 200 || strings.Contains(string(body), "argon2id") {
		t.Fatalf("list users %d (hashes must never be shown)", resp.StatusCode)
	}
	if resp, _ := h.do("GET", "/api/v1/users/nobody", admin, nil); resp.StatusCode != 404 {
		t.Fatalf("missing user %d", resp.StatusCode)
	}
	for _, ev := range []audit.Event{"user.created", "token.created", "token.revoked", "user.disabled", "user.password_reset", "session.revoked"} {
		if h.countEvents(ev) == 0 {
			t.Errorf("%s not audited", ev)
		}
	}
}

func TestEngineEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	analyst, viewer, executor := h.tokens["analyst"], h.tokens["viewer"], h.tokens["executor"]
	resp, body := h.do("POST", "/api/v1/dry-run?path=playbooks/net/new.yaml", analyst, strings.Replace(testPlaybook, "block-test-net", "block-new", 1), "Content-Type", "application/yaml")
	ev := decode[map[string]any](t, body)
	if resp.StatusCode != 200 || ev["path"] != "playbooks/net/new.yaml" || ev["name"] != "block-new" || ev["decision"] == nil || ev["plan"] == nil {
		t.Fatalf("dry-run %d %s", resp.StatusCode, body)
	}
	resp, body = h.do("POST", "/api/v1/dry-run", analyst, "apiVersion: writ/v1\nkind: Playbook\nmetadata: {name: x}\nspec: {action: nope}\n", "Content-Type", "application/yaml")
	if ev := decode[map[string]any](t, body); resp.StatusCode != 200 || ev["outcome"] != "invalid" || ev["problems"] == nil {
		t.Fatalf("invalid playbook %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.do("POST", "/api/v1/dry-run?path=../etc/passwd", analyst, testPlaybook, "Content-Type", "application/yaml"); resp.StatusCode != 400 {
		t.Fatalf("path outside playbooks/: %d", resp.StatusCode)
	}
	if resp, _ := h.do("POST", "/api/v1/dry-run", analyst, ""); resp.StatusCode != 400 {
		t.Fatalf("empty dry-run: %d", resp.StatusCode)
	}
	// Nothing was written by the dry-runs.
	if _, err := h.st.LatestPlaybookVersion(h.ctx, "block-new"); err == nil {
		t.Fatal("a dry-run stored a playbook version")
	}
	resp, body = h.do("GET", "/api/v1/playbooks/block-test-net", viewer, nil)
	if d := decode[PlaybookDetail](t, body); resp.StatusCode != 200 || d.Name != "block-test-net" || len(d.History) == 0 {
		t.Fatalf("playbook %d %s", resp.StatusCode, body)
	}
	resp, body = h.do("GET", "/api/v1/executions?name=block-test-net&limit=5", viewer, nil)
	list := decode[struct{ Executions []ExecutionView }](t, body)
	if resp.StatusCode != 200 || len(list.Executions) == 0 || list.Executions[0].Name != "block-test-net" {
		t.Fatalf("executions %d %s", resp.StatusCode, body)
	}
	id := strconv.FormatInt(list.Executions[0].ID, 10)
	if resp, body := h.do("GET", "/api/v1/executions/"+id, viewer, nil); resp.StatusCode != 200 || decode[ExecutionView](t, body).ID != list.Executions[0].ID {
		t.Fatalf("execution %d %s", resp.StatusCode, body)
	}
	// Not a manual playbook waiting for an executor.
	if resp, body := h.do("POST", "/api/v1/executions/"+id+"/run", executor, nil); resp.StatusCode != 409 {
		t.Fatalf("run a non-manual execution: %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.do("GET", "/api/v1/executions/abc", viewer, nil); resp.StatusCode != 400 {
		t.Fatalf("bad id: %d", resp.StatusCode)
	}
	if resp, _ := h.do("GET", "/api/v1/executions?limit=0", viewer, nil); resp.StatusCode != 400 {
		t.Fatalf("bad limit: %d", resp.StatusCode)
	}
	if resp, body := h.do("POST", "/api/v1/approvals", "", `{"payloadType":"x"}`); resp.StatusCode != 422 || decode[Problem](t, body).Code != "refused" {
		t.Fatalf("unsigned approval: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("GET", "/api/v1/approvals", viewer, nil); resp.StatusCode != 200 || !strings.Contains(string(body), `"approvals": []`) {
		t.Fatalf("approvals %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("GET", "/api/v1/holds", viewer, nil); resp.StatusCode != 200 || !strings.Contains(string(body), `"holds": []`) {
		t.Fatalf("holds %d %s", resp.StatusCode, body)
	}
	if resp, _ := h.do("POST", "/api/v1/holds/12345/acknowledge", h.tokens["admin"], nil); resp.StatusCode != 404 {
		t.Fatalf("acknowledge a missing hold: %d", resp.StatusCode)
	}
}

// The audit endpoints: an export verifies offline with the log's key, the
// server verifies the log, checkpoints are made and read.
func TestAuditEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	admin := h.tokens["admin"]
	if resp, _ := h.do("GET", "/api/v1/audit/checkpoints/latest", admin, nil); resp.StatusCode != 404 {
		t.Fatalf("latest before any: %d", resp.StatusCode)
	}
	resp, body := h.do("POST", "/api/v1/audit/checkpoints", admin, nil)
	if resp.StatusCode != 201 || decode[CheckpointView](t, body).Size == 0 {
		t.Fatalf("checkpoint %d %s", resp.StatusCode, body)
	}
	cp := decode[CheckpointView](t, body)
	resp, body = h.do("GET", "/api/v1/audit/checkpoints/latest", admin, nil)
	if resp.StatusCode != 200 || decode[CheckpointView](t, body).Note != cp.Note {
		t.Fatalf("latest %d %s", resp.StatusCode, body)
	}
	resp, body = h.do("GET", "/api/v1/audit/export", admin, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	pub, _ := audit.NewPublicKey(h.key.Public())
	rep, err := audit.VerifyExport(context.Background(), bytes.NewReader(body), audit.VerifyOptions{Trusted: audit.NewKeySet(pub)})
	if err != nil || rep.Bad != nil || rep.Entries == 0 {
		t.Fatalf("the export does not verify offline: %+v %v", rep, err)
	}
	resp, body = h.do("GET", "/api/v1/audit/export?event=user.created&proofs=true", admin, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("filtered export %d %s", resp.StatusCode, body)
	}
	if rep, err := audit.VerifyExport(context.Background(), bytes.NewReader(body), audit.VerifyOptions{Trusted: audit.NewKeySet(pub)}); err != nil || rep.Bad != nil {
		t.Fatalf("filtered export: %+v %v", rep, err)
	}
	if resp, _ := h.do("GET", "/api/v1/audit/export?since=yesterday", admin, nil); resp.StatusCode != 400 {
		t.Fatalf("bad since: %d", resp.StatusCode)
	}
	resp, body = h.do("POST", "/api/v1/audit/verify", admin, map[string]any{"checkpoints": []string{cp.Note}})
	vr := decode[VerifyReport](t, body)
	if resp.StatusCode != 200 || !vr.OK || vr.Entries == 0 || len(vr.TrustedKeys) != 1 {
		t.Fatalf("verify %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("POST", "/api/v1/audit/verify", admin, map[string]any{"checkpoints": []string{"not a checkpoint"}}); resp.StatusCode != 400 {
		t.Fatalf("verify with a bogus checkpoint: %d %s", resp.StatusCode, body)
	}
	// A checkpoint of a larger tree than the log (a rollback) fails the
	// verification.
	forged := strings.Replace(cp.Note, "\n"+strconv.FormatInt(cp.Size, 10)+"\n", "\n"+strconv.FormatInt(cp.Size+5, 10)+"\n", 1)
	if resp, body := h.do("POST", "/api/v1/audit/verify", admin, map[string]any{"checkpoints": []string{forged}}); resp.StatusCode != 200 || decode[VerifyReport](t, body).OK {
		t.Fatalf("verify with a checkpoint the log does not contain: %d %s", resp.StatusCode, body)
	}
}

// Without an engine, accounts or keys, the routes say so (503) instead of
// failing.
func TestAPIWithoutEngine(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	srv, err := New(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	api, err := NewAPIWith(APIOptions{Store: h.st})
	if err != nil {
		t.Fatal(err)
	}
	api.Register(srv)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	// Before a guard is set, protected routes refuse with 503.
	resp, err := http.Get(hs.URL + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("no guard: %d", resp.StatusCode)
	}
	if err := srv.SetGuard(Guard{Auth: h.auth, Denials: h.denials}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/status", "/api/v1/users"} {
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+h.tokens["admin"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("%s without engine or accounts: %d", path, resp.StatusCode)
		}
	}
	if _, err := NewAPIWith(APIOptions{}); err == nil {
		t.Fatal("an API without a store")
	}
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		remote, xff, want string
	}{
		{"192.0.2.1:5000", "", "192.0.2.1"},
		{"192.0.2.1:5000", "198.51.100.7", "192.0.2.1"},                // untrusted peer: header ignored
		{"10.1.2.3:5000", "198.51.100.7", "198.51.100.7"},              // trusted proxy
		{"10.1.2.3:5000", "203.0.113.1, 198.51.100.7", "198.51.100.7"}, // right-most untrusted
		{"10.1.2.3:5000", "198.51.100.7, 10.9.9.9", "198.51.100.7"},    // proxies chained
		{"10.1.2.3:5000", "garbage", "10.1.2.3"},                       // mangled: the peer
		{"10.1.2.3:5000", "10.4.4.4", "10.1.2.3"},                      // all trusted: the peer
		{"[::1]:5000", "2001:db8::1", "2001:db8::1"},
		{"[::ffff:192.0.2.9]:80", "", "192.0.2.9"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := ClientAddr(r, trusted).String(); got != tc.want {
			t.Errorf("ClientAddr(%s, %q) = %s; want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Unix(1e9, 0)}
	l := NewRateLimiter(RateLimitOptions{PerMinute: 6, Burst: 2, MaxClients: 2, Now: c.Now})
	a, b, x := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.Allow(a); ok != want {
			t.Fatalf("attempt %d: %v", i, ok)
		}
	}
	if ok, wait := l.Allow(a); ok || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("limited: %v, wait %s (one token per 10s)", ok, wait)
	}
	c.Advance(10 * time.Second)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("a token after 10s")
	}
	if ok, _ := l.Allow(b); !ok {
		t.Fatal("another client")
	}
	// Past MaxClients, new clients share the overflow bucket.
	ok1, _ := l.Allow(x)
	ok2, _ := l.Allow(netip.MustParseAddr("192.0.2.4"))
	ok3, _ := l.Allow(netip.MustParseAddr("192.0.2.5"))
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("overflow bucket: %v %v %v; want true true false", ok1, ok2, ok3)
	}
	// Idle buckets are forgotten.
	c.Advance(time.Hour)
	if ok, _ := l.Allow(x); !ok {
		t.Fatal("after an hour")
	}
	if len(l.clients) != 1 {
		t.Fatalf("%d buckets kept after an hour idle", len(l.clients))
	}
}

// BenchmarkAuthenticatedRead is one authenticated read through the whole
// handler chain (request id, access log, guard, handler) against the real
// database: GET /api/v1/playbooks with an API token.
func BenchmarkAuthenticatedRead(b *testing.B) {
	h := newHarness(b, harnessOptions{})
	handler := h.srv.Handler()
	tok := h.tokens["viewer"]
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", "/api/v1/playbooks", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// signApproval makes alice's signed approval of the harness's playbook.
func (h *harness) signApproval(reason string) []byte {
	h.t.Helper()
	s, err := keys.Signer(h.approver)
	if err != nil {
		h.t.Fatal(err)
	}
	now := time.Now().UTC()
	sum := sha256.Sum256([]byte(testPlaybook))
	st := approval.NewStatement([]approval.Subject{{Path: "playbooks/network/block-test-net.yaml", Digest: hex.EncodeToString(sum[:])}},
		approval.Predicate{Decision: approval.Approve, Approver: "alice", Repository: "acme/secops", PolicyDigest: strings.Repeat("b", 64), PlanDigest: strings.Repeat("c", 64),
			Reason: reason, IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour)})
	env, err := approval.Sign(s, st)
	if err != nil {
		h.t.Fatal(err)
	}
	return env
}

// Junk posted to the public approvals route is answered with its reason
// (422) while the client's budget lasts, then 429 with Retry-After; the
// audit log grows by a bounded number of entries (the first few refusals
// one by one, the rest as one summary per window with counts by reason,
// source and client). A valid signed envelope from the same client is
// never limited nor counted, and another client has its own budget.
func TestRefusedApprovalsAreBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{refusalBurst: 3, refusedPerMinute: 5, proxies: []string{"127.0.0.1/32"}, approver: true})
	post := func(client string, body any) (*http.Response, []byte) {
		return h.do("POST", "/api/v1/approvals", "", body, "X-Forwarded-For", client)
	}
	entriesBefore := h.countAll()
	const flood = 200
	for i := range flood {
		resp, body := post("198.51.100.7", `{"payloadType":"x"}`)
		p := decode[Problem](t, body)
		switch {
		case i < 5:
			if resp.StatusCode != http.StatusUnprocessableEntity || p.Code != "refused" || !strings.Contains(p.Error, "malformed") {
				t.Fatalf("junk %d within the budget: %d %s; want 422 refused with the reason", i, resp.StatusCode, body)
			}
		default:
			if resp.StatusCode != http.StatusTooManyRequests || p.Code != "rate_limited" || resp.Header.Get("Retry-After") == "" ||
				!strings.Contains(p.Error, "malformed") {
				t.Fatalf("junk %d over the budget: %d %s (Retry-After %q); want 429 with Retry-After and the reason",
					i, resp.StatusCode, body, resp.Header.Get("Retry-After"))
			}
		}
	}
	// The flood wrote the burst, one by one, and nothing else yet.
	if n := h.countAll() - entriesBefore; n != 3 {
		t.Fatalf("a flood of %d junk envelopes wrote %d audit entries; want 3 (the burst)", flood, n)
	}
	for _, e := range h.auditEntries(audit.EventApprovalRefused) {
		var p struct{ Code, Remote, Source string }
		if err := json.Unmarshal(e.Payload, &p); err != nil || p.Code != "malformed" || p.Remote != "198.51.100.7" || p.Source != "api" {
			t.Fatalf("refusal entry %s: %v", e.Payload, err)
		}
	}

	// A valid envelope from the limited client is accepted, once.
	env := h.signApproval("fine")
	if resp, body := post("198.51.100.7", env); resp.StatusCode != http.StatusCreated || decode[reconcile.Intake](t, body).Approver != "alice" {
		t.Fatalf("a valid envelope from a limited client: %d %s", resp.StatusCode, body)
	}
	if resp, body := post("198.51.100.7", env); resp.StatusCode != http.StatusOK || !decode[reconcile.Intake](t, body).Duplicate {
		t.Fatalf("the same envelope again: %d %s", resp.StatusCode, body)
	}
	if n := h.countEvents("approval.received"); n != 1 {
		t.Fatalf("%d approvals received; want 1", n)
	}
	// Another client has its own budget.
	if resp, body := post("203.0.113.50", `{"payloadType":"x"}`); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("another client: %d %s", resp.StatusCode, body)
	}

	// The window ends: one summary of everything counted.
	h.refusals.Flush(h.ctx)
	sums := h.auditEntries(audit.EventApprovalRefusedSummary)
	if len(sums) != 1 {
		t.Fatalf("%d summaries; want 1", len(sums))
	}
	var s struct {
		Individual int            `json:"audited_individually"`
		Counted    int            `json:"counted"`
		ByReason   map[string]int `json:"by_reason"`
		BySource   map[string]int `json:"by_source"`
		ByClient   map[string]int `json:"by_client"`
	}
	if err := json.Unmarshal(sums[0].Payload, &s); err != nil {
		t.Fatal(err)
	}
	if s.Individual != 3 || s.Counted != flood-3+1 || s.ByReason["malformed"] != flood-3+1 || s.BySource["api"] != flood-3+1 ||
		s.ByClient["198.51.100.7"] != flood-3 || s.ByClient["203.0.113.50"] != 1 {
		t.Fatalf("summary %s", sums[0].Payload)
	}
	if n := h.countEvents(audit.EventApprovalRefused); n != 3 {
		t.Fatalf("%d refusals audited one by one; want 3", n)
	}
	// A minute later the client's budget is back: its refusals have their
	// reason again.
	h.clock.Advance(time.Minute)
	if resp, body := post("198.51.100.7", `{"payloadType":"x"}`); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("a minute later: %d %s", resp.StatusCode, body)
	}
}

// countAll counts every audit entry.
func (h *harness) countAll() int {
	h.t.Helper()
	es, err := h.st.AuditEntries(h.ctx, 0, 100000)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(es)
}
