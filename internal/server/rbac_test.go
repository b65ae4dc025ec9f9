package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
)

// matrix is the specification of who may call what: "public" (no login;
// its authority is stated elsewhere), "any" (any authenticated caller,
// whatever its roles), or the letters of the roles any one of which may:
// v viewer, a analyst, p approver, e executor, A admin.
var matrix = map[string]string{
	"GET /healthz":                             "public",
	"GET /readyz":                              "public",
	"GET /metrics":                             "vapeA",
	"POST /webhooks/github":                    "public",
	"POST /webhooks/gitlab":                    "public",
	"GET /api/v1/openapi.json":                 "public",
	"GET /api/v1/auth/methods":                 "public",
	"POST /api/v1/auth/login":                  "public",
	"POST /api/v1/auth/logout":                 "any",
	"GET /api/v1/auth/whoami":                  "any",
	"POST /api/v1/auth/password":               "any",
	"GET /api/v1/status":                       "vapeA",
	"POST /api/v1/reconcile":                   "eA",
	"GET /api/v1/playbooks":                    "vapeA",
	"GET /api/v1/playbooks/{name}":             "vapeA",
	"POST /api/v1/dry-run":                     "aA",
	"GET /api/v1/executions":                   "vapeA",
	"GET /api/v1/executions/{id}":              "vapeA",
	"POST /api/v1/executions/{id}/run":         "eA",
	"POST /api/v1/executions/{id}/retry":       "eA",
	"POST /api/v1/approvals":                   "public",
	"GET /api/v1/approvals":                    "vapeA",
	"GET /api/v1/holds":                        "vapeA",
	"POST /api/v1/holds/{id}/acknowledge":      "A",
	"GET /api/v1/drift":                        "vapeA",
	"POST /api/v1/drift/check":                 "eA",
	"GET /api/v1/pending":                      "vapeA",
	"GET /api/v1/pending/{id}":                 "vapeA",
	"GET /api/v1/audit/export":                 "A",
	"POST /api/v1/audit/verify":                "A",
	"GET /api/v1/audit/checkpoints/latest":     "A",
	"POST /api/v1/audit/checkpoints":           "A",
	"GET /api/v1/users":                        "A",
	"POST /api/v1/users":                       "A",
	"GET /api/v1/users/{username}":             "A",
	"PATCH /api/v1/users/{username}":           "A",
	"POST /api/v1/users/{username}/password":   "A",
	"DELETE /api/v1/users/{username}/sessions": "A",
	"GET /api/v1/tokens":                       "A",
	"POST /api/v1/tokens":                      "A",
	"DELETE /api/v1/tokens/{id}":               "A",
}

var roleLetters = map[auth.Role]byte{auth.Viewer: 'v', auth.Analyst: 'a', auth.Approver: 'p', auth.Executor: 'e', auth.Admin: 'A'}

// allowed says whether a caller with roles may call a route per matrix.
func allowed(spec string, roles auth.RoleSet) bool {
	switch spec {
	case "public", "any":
		return true
	}
	for _, r := range roles.List() {
		if strings.IndexByte(spec, roleLetters[r]) >= 0 {
			return true
		}
	}
	return false
}

var uniq atomic.Int64

// request makes a request for a route that an allowed caller gets past
// the handler's own checks with (or a plain 4xx of the handler's: never a
// denial by the guard).
func (h *harness) request(pattern string) (method, path string, body any) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.NewReplacer("{name}", "block-test-net", "{id}", "999999", "{username}", "u-norole").Replace(path)
	n := uniq.Add(1)
	switch pattern {
	case "POST /api/v1/auth/login":
		body = map[string]string{"username": "nobody", "password": "not a password"}
	case "POST /api/v1/auth/password":
		body = map[string]string{"current_password": "x", "new_password": "a new long password"}
	case "POST /api/v1/approvals", "POST /webhooks/github", "POST /webhooks/gitlab":
		body = "{}"
	case "POST /api/v1/dry-run":
		body = testPlaybook
	case "POST /api/v1/users":
		body = map[string]any{"username": fmt.Sprintf("made-%d", n), "roles": []string{"viewer"}}
	case "PATCH /api/v1/users/{username}":
		body = map[string]any{"display_name": fmt.Sprintf("name %d", n)}
	case "POST /api/v1/tokens":
		body = map[string]any{"username": "u-viewer", "name": fmt.Sprintf("made-%d", n), "ttl": "1d"}
	}
	return method, path, body
}

// guardDenied tells a refusal by the guard from a handler's own 4xx.
func guardDenied(status int, body []byte) bool {
	var p Problem
	_ = json.Unmarshal(body, &p)
	return (status == http.StatusUnauthorized && p.Code == "unauthenticated") ||
		(status == http.StatusForbidden && (p.Code == "forbidden" || p.Code == "password_change_required"))
}

// refusedCredential is a login's or password change's own refusal, or an
// attempt refused by the per-client limit (audited too): how many logins
// the limit's burst lets through depends on how fast the requests come.
func refusedCredential(status int, body []byte) bool {
	var p Problem
	_ = json.Unmarshal(body, &p)
	return (status == http.StatusUnauthorized || status == http.StatusForbidden) && p.Code == "invalid_credentials" ||
		status == http.StatusTooManyRequests && p.Code == "rate_limited"
}

type caller struct {
	name  string
	cred  string
	roles auth.RoleSet
}

// Every route × every role (API tokens, an account without roles, SSO
// tokens and a login session) and anonymous callers answer as the matrix
// says, and every refusal is audited.
func TestRBACMatrix(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	now := h.clock.Now()
	callers := []caller{{name: "anonymous"}, {name: "no role", cred: h.tokens["norole"]}}
	for _, r := range auth.AllRoles {
		callers = append(callers, caller{name: "token " + string(r), cred: h.tokens[string(r)], roles: auth.Roles(r)})
	}
	callers = append(callers,
		caller{name: "oidc viewer", cred: h.idp.sign(t, jose.RS256, h.idp.rsaKey, "rsa-1", h.idp.claims(now, nil)), roles: auth.Roles(auth.Viewer)},
		caller{name: "oidc admin", cred: h.idp.sign(t, jose.ES256, h.idp.ecKey, "ec-1", h.idp.claims(now, map[string]any{"groups": "soc-admins"})), roles: auth.Roles(auth.Admin)},
		caller{name: "oidc unmapped group", cred: h.idp.sign(t, jose.RS256, h.idp.rsaKey, "rsa-1", h.idp.claims(now, map[string]any{"groups": []string{"finance"}}))},
	)
	// A login session of an analyst (a real password login).
	if _, _, err := h.auth.CreateUser(h.ctx, audit.SystemActor, auth.NewUser{Username: "sam", Roles: auth.Roles(auth.Analyst), Password: "sam's long password"}); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "sam", "password": "sam's long password"})
	var lr LoginResponse
	if err := json.Unmarshal(body, &lr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("login %d %s", resp.StatusCode, body)
	}
	callers = append(callers, caller{name: "session analyst", cred: lr.Token, roles: auth.Roles(auth.Analyst)})

	routes := h.srv.Routes()
	if len(routes) != len(matrix) {
		t.Errorf("%d routes registered, %d in the matrix", len(routes), len(matrix))
	}
	before := h.countEvents(audit.EventAuthDenied)
	denials := 0
	for _, rt := range routes {
		spec, ok := matrix[rt.Pattern]
		if !ok {
			t.Errorf("route %s is not in the matrix", rt.Pattern)
			continue
		}
		for _, c := range callers {
			// Logging out ends the session the rest of the matrix uses:
			// the session's logout is tested last, below.
			if c.name == "session analyst" && rt.Pattern == "POST /api/v1/auth/logout" {
				continue
			}
			method, path, reqBody := h.request(rt.Pattern)
			resp, out := h.do(method, path, c.cred, reqBody)
			wantOK := spec == "public" || (c.cred != "" && allowed(spec, c.roles))
			denied := guardDenied(resp.StatusCode, out)
			switch {
			case wantOK && denied:
				t.Errorf("%s by %s: %d %s; want it allowed", rt.Pattern, c.name, resp.StatusCode, out)
			case !wantOK && !denied:
				t.Errorf("%s by %s: %d %s; want it refused", rt.Pattern, c.name, resp.StatusCode, out)
			case wantOK && resp.StatusCode >= 500:
				t.Errorf("%s by %s: %d %s", rt.Pattern, c.name, resp.StatusCode, out)
			case !wantOK && c.cred == "" && resp.StatusCode != http.StatusUnauthorized:
				t.Errorf("%s anonymous: %d; want 401", rt.Pattern, resp.StatusCode)
			case !wantOK && c.cred != "" && resp.StatusCode != http.StatusForbidden:
				t.Errorf("%s by %s: %d; want 403", rt.Pattern, c.name, resp.StatusCode)
			}
			if refusedCredential(resp.StatusCode, out) {
				denials++ // a wrong password is audited as a refusal too
			}
			if denied {
				denials++
				if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: 401 without a Bearer challenge", rt.Pattern)
				}
			}
		}
	}
	resp, out := h.do("POST", "/api/v1/auth/logout", lr.Token, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("logout %d %s", resp.StatusCode, out)
	}
	if got := h.countEvents(audit.EventAuthDenied) - before; got != denials {
		t.Fatalf("%d denials audited; want %d (every one)", got, denials)
	}
	t.Logf("%d routes × %d callers, %d refusals audited", len(routes), len(callers), denials)
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// handMade signs header.claims with HMAC-SHA256 keyed by key, or leaves
// the signature empty (alg none) when key is nil.
func handMade(header, claims map[string]any, key []byte) string {
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	s := b64url(hb) + "." + b64url(cb)
	if key == nil {
		return s + "."
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return s + "." + b64url(m.Sum(nil))
}

// Every protected route refuses every kind of bad credential with 401 and
// a Bearer challenge, and audits it; public routes ignore them.
func TestBadCredentials(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := h.ctx
	now := h.clock.Now()
	// An expired and a revoked API token, a revoked session, a token of a
	// disabled account.
	_, expired, err := h.auth.CreateToken(ctx, audit.SystemActor, auth.NewToken{Username: "u-admin", Name: "short", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rv, revoked, err := h.auth.CreateToken(ctx, audit.SystemActor, auth.NewToken{Username: "u-admin", Name: "revoked"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.auth.RevokeToken(ctx, audit.SystemActor, rv.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.auth.CreateUser(ctx, audit.SystemActor, auth.NewUser{Username: "root", Roles: auth.Roles(auth.Admin), Password: "root's long password"}); err != nil {
		t.Fatal(err)
	}
	res, err := h.auth.Login(ctx, "root", "root's long password", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.auth.Logout(ctx, res.Principal); err != nil {
		t.Fatal(err)
	}
	off := true
	if _, err := h.auth.UpdateUser(ctx, audit.SystemActor, "u-viewer", auth.UserChange{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Minute)
	now = h.clock.Now()

	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(&h.idp.rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	admins := map[string]any{"groups": []string{"soc-admins"}}
	with := func(m map[string]any) map[string]any {
		out := map[string]any{"groups": []string{"soc-admins"}}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	bad := []struct{ name, header string }{
		{"expired API token", "Bearer " + expired},
		{"revoked API token", "Bearer " + revoked},
		{"revoked session", "Bearer " + res.Token},
		{"disabled account", "Bearer " + h.tokens["viewer"]},
		{"unknown API token", "Bearer " + auth.TokenPrefix + strings.Repeat("A", 43)},
		{"expired SSO token", "Bearer " + h.idp.sign(t, jose.RS256, h.idp.rsaKey, "rsa-1", h.idp.claims(now, with(map[string]any{"exp": now.Add(-time.Second).Unix()})))},
		{"wrong audience", "Bearer " + h.idp.sign(t, jose.RS256, h.idp.rsaKey, "rsa-1", h.idp.claims(now, with(map[string]any{"aud": "grafana"})))},
		{"wrong issuer", "Bearer " + h.idp.sign(t, jose.RS256, h.idp.rsaKey, "rsa-1", h.idp.claims(now, with(map[string]any{"iss": "https://evil.example.com"})))},
		{"alg none", "Bearer " + handMade(map[string]any{"alg": "none", "typ": "JWT"}, h.idp.claims(now, admins), nil)},
		{"HS256 signed with the public key", "Bearer " + handMade(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, h.idp.claims(now, admins), pubPEM)},
		{"unknown key", "Bearer " + h.idp.sign(t, jose.RS256, other, "rsa-9", h.idp.claims(now, admins))},
		{"malformed", "Bearer not-a-token"},
		{"another scheme", "Basic YWRtaW46YWRtaW4="},
		{"empty bearer", "Bearer "},
	}
	before := h.countEvents(audit.EventAuthDenied)
	n := 0
	for _, rt := range h.srv.Routes() {
		for _, b := range bad {
			method, path, body := h.request(rt.Pattern)
			resp, out := h.do(method, path, "", body, "Authorization", b.header)
			if rt.Public != "" {
				if guardDenied(resp.StatusCode, out) {
					t.Errorf("public %s with %s: %d %s", rt.Pattern, b.name, resp.StatusCode, out)
				}
				if rt.Pattern == "POST /api/v1/auth/login" {
					n++ // the wrong password is audited as a refusal too
				}
				continue
			}
			n++
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("%s with %s: %d %q %s; want 401 invalid_token", rt.Pattern, b.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), out)
			}
		}
	}
	if got := h.countEvents(audit.EventAuthDenied) - before; got != n {
		t.Fatalf("%d refusals audited; want %d", got, n)
	}
	// The audit entries say why, never the credential.
	reasons := map[string]bool{}
	for _, e := range h.auditEntries(audit.EventAuthDenied) {
		var p struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(e.Payload, &p)
		reasons[p.Reason] = true
		for _, b := range bad {
			if cred := strings.TrimPrefix(strings.TrimPrefix(b.header, "Bearer "), "Basic "); len(cred) > 10 && strings.Contains(string(e.Payload), cred) {
				t.Fatalf("an audit entry holds the credential of %s", b.name)
			}
		}
	}
	for _, want := range []string{"expired", "revoked", "disabled", "unknown", "invalid_token", "malformed"} {
		if !reasons[want] {
			t.Errorf("no refusal audited with reason %s (have %v)", want, slices.Sorted(mapsKeys(reasons)))
		}
	}
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
