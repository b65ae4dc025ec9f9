package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/writ-sec/writ/internal/server"
)

// deviceProvider is an OpenID provider on loopback (TLS) that speaks the
// wire formats writ login relies on: the discovery document, a JWKS, the
// device authorization endpoint (RFC 8628 §3.1-3.2) and the token
// endpoint's device_code grant with its errors authorization_pending,
// slow_down, access_denied and expired_token (§3.4-3.5), and the
// refresh_token grant (RFC 6749 §6, rotating refresh tokens). It holds the
// client to the interval it asks for: a poll sooner is answered slow_down
// and counted. ID tokens are ES256, signed with go-jose.
type deviceProvider struct {
	t        *testing.T
	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	caFile   string
	clientID string
	// noDevice leaves device_authorization_endpoint out of discovery.
	noDevice bool

	mu sync.Mutex
	// script answers the polls of the next device authorization, in turn
	// (then authorization_pending): authorization_pending, slow_down,
	// access_denied, expired_token, or ok (the tokens).
	script        []string
	grants        map[string]*deviceGrant // by device code
	refreshTokens map[string]bool         // valid ones
	refuseRefresh bool
	// onRefresh runs (once, p.mu held) when a refresh grant arrives.
	onRefresh func()
	// What it saw and made.
	deviceRequests []url.Values
	polls          int
	early          int // polls sooner than the interval asked
	slowDowns      int // slow_down answers the script asked for
	refreshes      int
	deviceCodes    []string
	userCodes      []string
	idTokens       []string
}

type deviceGrant struct {
	script   []string
	interval time.Duration
	last     time.Time
	scope    string
}

// intervalSlack forgives a poll that arrives this much before its interval
// is up (scheduling and network jitter on a busy machine); a client that
// ignores slow_down still polls 5 s early.
const intervalSlack = 500 * time.Millisecond

func newDeviceProvider(t *testing.T, clientID string) *deviceProvider {
	t.Helper()
	p := &deviceProvider{t: t, clientID: clientID, grants: map[string]*deviceGrant{}, refreshTokens: map[string]bool{}}
	var err error
	if p.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		doc := map[string]any{
			"issuer": p.srv.URL, "authorization_endpoint": p.srv.URL + "/authorize", "token_endpoint": p.srv.URL + "/token",
			"jwks_uri": p.srv.URL + "/keys", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
			"grant_types_supported":                 []string{"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"},
		}
		p.mu.Lock()
		if !p.noDevice {
			doc["device_authorization_endpoint"] = p.srv.URL + "/device"
		}
		p.mu.Unlock()
		writeTestJSON(w, http.StatusOK, doc)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("POST /device", p.deviceAuthorization)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sso is the provider as newAPIRig configures writ serve with it.
func (p *deviceProvider) sso() *ssoProvider {
	s := &ssoProvider{srv: p.srv, key: p.key, caFile: p.caFile}
	if p.clientID != "writ" {
		s.cliClientID = p.clientID
	}
	return s
}

func (p *deviceProvider) setScript(answers ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.script = answers
}

func writeTestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthErr(w http.ResponseWriter, status int, code string) {
	writeTestJSON(w, status, map[string]string{"error": code})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// userCode is eight letters without vowels, as RFC 8628 §6.1 suggests.
func userCode() string {
	const letters = "BCDFGHJKLMNPQRSTVWXZ"
	var b strings.Builder
	for i := range 8 {
		if i == 4 {
			b.WriteByte('-')
		}
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(letters))))
		b.WriteByte(letters[n.Int64()])
	}
	return b.String()
}

// client checks a public client's request: a form with its client_id and
// no secret.
func (p *deviceProvider) client(w http.ResponseWriter, r *http.Request) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		oauthErr(w, http.StatusBadRequest, "invalid_request")
		return false
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request")
		return false
	}
	if _, _, basic := r.BasicAuth(); basic || r.PostForm.Get("client_id") != p.clientID || r.PostForm.Has("client_secret") {
		oauthErr(w, http.StatusUnauthorized, "invalid_client")
		return false
	}
	return true
}

// deviceAuthorization is RFC 8628 §3.1-3.2.
func (p *deviceProvider) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	if !p.client(w, r) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deviceRequests = append(p.deviceRequests, r.PostForm)
	dc, uc := randomHex(32), userCode()
	p.deviceCodes = append(p.deviceCodes, dc)
	p.userCodes = append(p.userCodes, uc)
	p.grants[dc] = &deviceGrant{script: p.script, interval: time.Second, last: time.Now(), scope: r.PostForm.Get("scope")}
	p.script = nil
	writeTestJSON(w, http.StatusOK, map[string]any{
		"device_code": dc, "user_code": uc,
		"verification_uri":          p.srv.URL + "/activate",
		"verification_uri_complete": p.srv.URL + "/activate?user_code=" + uc,
		"expires_in":                600, "interval": 1,
	})
}

// token is the token endpoint: the device_code grant (RFC 8628 §3.4-3.5)
// and the refresh_token grant.
func (p *deviceProvider) token(w http.ResponseWriter, r *http.Request) {
	if !p.client(w, r) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.PostForm.Get("grant_type") {
	case "urn:ietf:params:oauth:grant-type:device_code":
		dc := r.PostForm.Get("device_code")
		g := p.grants[dc]
		if g == nil {
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		p.polls++
		now := time.Now()
		if now.Sub(g.last) < g.interval-intervalSlack {
			p.early++
			g.interval += 5 * time.Second
			g.last = now
			oauthErr(w, http.StatusBadRequest, "slow_down")
			return
		}
		g.last = now
		next := "authorization_pending"
		if len(g.script) > 0 {
			next, g.script = g.script[0], g.script[1:]
		}
		switch next {
		case "ok":
			delete(p.grants, dc)
			p.issue(w, g.scope)
		case "slow_down":
			p.slowDowns++
			g.interval += 5 * time.Second
			oauthErr(w, http.StatusBadRequest, next)
		case "access_denied", "expired_token":
			delete(p.grants, dc)
			oauthErr(w, http.StatusBadRequest, next)
		default:
			oauthErr(w, http.StatusBadRequest, "authorization_pending")
		}
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		if p.onRefresh != nil {
			p.onRefresh()
			p.onRefresh = nil
		}
		if p.refuseRefresh || !p.refreshTokens[rt] {
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		delete(p.refreshTokens, rt)
		p.refreshes++
		p.issue(w, "openid")
	default:
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type")
	}
}

// issue answers a token request with an access token, an ID token for
// the client and a new refresh token. Called with p.mu held.
func (p *deviceProvider) issue(w http.ResponseWriter, scope string) {
	idt, rt := p.mint()
	if idt == "" {
		return
	}
	writeTestJSON(w, http.StatusOK, map[string]any{"access_token": "at-" + randomHex(24), "token_type": "Bearer", "expires_in": 3600,
		"id_token": idt, "refresh_token": rt, "scope": scope})
}

// mint makes an ID token and a refresh token. Called with p.mu held.
func (p *deviceProvider) mint() (idToken, refreshToken string) {
	now := time.Now()
	claims := map[string]any{"iss": p.srv.URL, "aud": p.clientID, "sub": "u-77", "email": "sso@example.com", "groups": []string{"soc"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": randomHex(8)}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		p.t.Error(err)
		return "", ""
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		p.t.Error(err)
		return "", ""
	}
	idt, _ := obj.CompactSerialize()
	rt := "rt-" + randomHex(24)
	p.refreshTokens[rt] = true
	p.idTokens = append(p.idTokens, idt)
	return idt, rt
}

// secrets are every device code, ID token and refresh token it made.
func (p *deviceProvider) secrets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Concat(p.deviceCodes, p.idTokens)
	for rt := range p.refreshTokens {
		out = append(out, rt)
	}
	return out
}

// cliRig runs writ as a user whose configuration directory is its own.
type cliRig struct {
	t      *testing.T
	config string // XDG_CONFIG_HOME
	client *http.Client
}

func newCLIRig(t *testing.T, client *http.Client) *cliRig {
	return &cliRig{t: t, config: filepath.Join(t.TempDir(), "config"), client: client}
}

func (c *cliRig) run(env map[string]string, args ...string) (int, string, string) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &cliEnv{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, httpClient: c.client,
		getenv: func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			if k == "XDG_CONFIG_HOME" {
				return c.config
			}
			return ""
		}})
	return code, stdout.String(), stderr.String()
}

// ok runs writ and fails the test unless it succeeds.
func (c *cliRig) ok(env map[string]string, args ...string) (string, string) {
	c.t.Helper()
	code, out, errOut := c.run(env, args...)
	if code != exitOK {
		c.t.Fatalf("writ %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out, errOut
}

func (c *cliRig) sessionFile() string { return filepath.Join(c.config, "writ", "session.json") }

func (c *cliRig) session() *session {
	c.t.Helper()
	data, err := os.ReadFile(c.sessionFile())
	if err != nil {
		c.t.Fatal(err)
	}
	var s session
	if err := json.Unmarshal(data, &s); err != nil {
		c.t.Fatal(err)
	}
	return &s
}

// expireSession moves the session's expiry to the past, as time would.
func (c *cliRig) expireSession() {
	c.t.Helper()
	s := c.session()
	s.ExpiresAt = time.Now().Add(-time.Minute)
	data, _ := json.Marshal(s)
	if err := os.WriteFile(c.sessionFile(), data, 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// checkModes: the directory 0700, the file 0600, no temporary file left.
func (c *cliRig) checkModes() {
	c.t.Helper()
	dir := filepath.Dir(c.sessionFile())
	for path, want := range map[string]fs.FileMode{dir: 0o700 | fs.ModeDir, c.sessionFile(): 0o600} {
		fi, err := os.Lstat(path)
		if err != nil {
			c.t.Fatal(err)
		}
		if fi.Mode() != want {
			c.t.Errorf("%s has mode %s; want %s", path, fi.Mode(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		c.t.Errorf("%d files in %s; want session.json alone", len(entries), dir)
	}
}

func noSecrets(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("a secret (%.8s…) was printed:\n%s", s, text)
		}
	}
}

// Password login against writ serve's API: a one-time password must be
// changed (refused without a new one, and nothing kept), then the session
// is kept 0600 in a 0700 directory and every command uses it; logging in
// again ends the old session; an expired session says so; logout ends it
// on the server and is idempotent.
func TestLoginWithPassword(t *testing.T) {
	t.Parallel()
	r := newAPIRig(t, nil)
	m := firstAdminRE.FindStringSubmatch(r.stderr.String())
	if m == nil {
		t.Fatalf("no first admin banner:\n%s", r.stderr.String())
	}
	oneTime, chosen := m[1], "the admin's own long password"
	c := newCLIRig(t, nil)

	code, out, errOut := c.run(map[string]string{"WRIT_PASSWORD": oneTime}, "login", "--server", r.base, "--user", "admin")
	if code != exitFailure || !strings.Contains(errOut, "admin must change the one-time password first") || !strings.Contains(errOut, "WRIT_NEW_PASSWORD") {
		t.Fatalf("one-time password without a new one: %d %q %q", code, out, errOut)
	}
	if _, err := os.Lstat(c.sessionFile()); !os.IsNotExist(err) {
		t.Fatalf("a session was kept: %v", err)
	}
	code, _, errOut = c.run(map[string]string{"WRIT_PASSWORD": "a wrong password, surely"}, "login", "--server", r.base, "--user", "admin")
	if code != exitFailure || !strings.Contains(errOut, "login refused: wrong username or password") {
		t.Fatalf("wrong password: %d %q", code, errOut)
	}

	out, errOut = c.ok(map[string]string{"WRIT_PASSWORD": oneTime, "WRIT_NEW_PASSWORD": chosen}, "login", "--server", r.base, "--user", "admin")
	if !strings.HasPrefix(out, "logged in to "+r.base+" as admin (roles: admin; until ") || !strings.Contains(errOut, "password changed") {
		t.Fatalf("login: %q %q", out, errOut)
	}
	c.checkModes()
	s := c.session()
	if s.Method != methodPassword || s.Server != r.base || s.User != "admin" || !slices.Equal(s.Roles, []string{"admin"}) ||
		!strings.HasPrefix(s.Token, "writ_s_") || !s.ExpiresAt.After(time.Now()) {
		t.Fatalf("session %+v", s)
	}
	noSecrets(t, out+errOut, oneTime, chosen, s.Token)
	out, _ = c.ok(nil, "whoami")
	if !strings.HasPrefix(out, "admin on "+r.base+" (roles: admin; session, until ") {
		t.Fatalf("whoami: %q", out)
	}

	// Again, without --server: the session's server; the old session ends.
	first := s.Token
	c.ok(map[string]string{"WRIT_PASSWORD": chosen}, "login", "--user", "admin")
	s = c.session()
	if s.Token == first {
		t.Fatal("the session was not replaced")
	}
	if code, _ := r.call("GET", "/api/v1/auth/whoami", first, nil); code != http.StatusUnauthorized {
		t.Fatalf("the replaced session still works: %d", code)
	}

	// An expired session is not sent: the command says to log in.
	valid := s.ExpiresAt
	c.expireSession()
	code, _, errOut = c.run(nil, "whoami")
	if code != exitFailure || !strings.Contains(errOut, "session expired: run writ login") {
		t.Fatalf("expired: %d %q", code, errOut)
	}
	s.ExpiresAt = valid
	data, _ := json.Marshal(s)
	if err := os.WriteFile(c.sessionFile(), data, 0o600); err != nil {
		t.Fatal(err)
	}

	// Logout with another server ends nothing.
	_, errOut = c.ok(nil, "logout", "--server", "http://writ.invalid:8080")
	if !strings.Contains(errOut, "no session with http://writ.invalid:8080") {
		t.Fatalf("logout of another server: %q", errOut)
	}
	out, _ = c.ok(nil, "logout", "--server", r.base+"/")
	if !strings.Contains(out, "logged out of "+r.base+" (admin)") {
		t.Fatalf("logout: %q", out)
	}
	if code, _ := r.call("GET", "/api/v1/auth/whoami", s.Token, nil); code != http.StatusUnauthorized {
		t.Fatalf("the session still works after logout: %d", code)
	}
	if _, err := os.Lstat(c.sessionFile()); !os.IsNotExist(err) {
		t.Fatalf("session file after logout: %v", err)
	}
	if _, errOut := c.ok(nil, "logout"); !strings.Contains(errOut, "not logged in; nothing to do") {
		t.Fatalf("second logout: %q", errOut)
	}
	if code, _, errOut := c.run(nil, "whoami"); code != exitUsage || !strings.Contains(errOut, "writ login") {
		t.Fatalf("whoami logged out: %d %q", code, errOut)
	}
}

// SSO login through the device authorization grant: writ shows where to
// go and the code (never the device code), polls, verifies the ID token
// (issued to the CLI's own client id, which writ serve accepts), keeps it
// with the refresh token; the server knows the caller through the CLI; an
// expired token is renewed with the refresh token (rotated) and saved,
// and when the provider refuses, the session has expired. Logout forgets
// it.
func TestLoginWithSSO(t *testing.T) {
	t.Parallel()
	p := newDeviceProvider(t, "writ-cli")
	r := newAPIRig(t, p.sso())
	c := newCLIRig(t, p.srv.Client())

	p.setScript("authorization_pending", "ok")
	out, errOut := c.ok(nil, "login", "--server", r.base, "--sso")
	if !strings.HasPrefix(out, "logged in to "+r.base+" as oidc:sso@example.com (roles: viewer, analyst; until ") || !strings.Contains(out, "renewed as needed") {
		t.Fatalf("login: %q", out)
	}
	p.mu.Lock()
	uc, req, polls := p.userCodes[0], p.deviceRequests[0], p.polls
	p.mu.Unlock()
	for _, want := range []string{"\n    " + uc + "\n", "\n    " + p.srv.URL + "/activate\n", p.srv.URL + "/activate?user_code=" + uc} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not show %q:\n%s", want, errOut)
		}
	}
	if req.Get("client_id") != "writ-cli" || req.Get("scope") != "openid profile email offline_access" || polls != 2 {
		t.Fatalf("device authorization %v, %d polls", req, polls)
	}
	noSecrets(t, out+errOut, p.secrets()...)
	c.checkModes()
	s := c.session()
	p.mu.Lock()
	first := p.idTokens[0]
	p.mu.Unlock()
	if s.Method != methodSSO || s.Server != r.base || s.Issuer != p.srv.URL || s.ClientID != "writ-cli" || s.Subject != "u-77" ||
		s.Token != first || s.RefreshToken == "" || !s.ExpiresAt.After(time.Now()) || s.User != "oidc:sso@example.com" {
		t.Fatalf("session %+v", s)
	}

	out, _ = c.ok(nil, "whoami")
	if !strings.HasPrefix(out, "oidc:sso@example.com on "+r.base+" (roles: viewer, analyst; oidc, until ") {
		t.Fatalf("whoami: %q", out)
	}

	// Expired: renewed with the refresh token, which rotates, and saved.
	c.expireSession()
	out, errOut = c.ok(nil, "whoami")
	if !strings.HasPrefix(out, "oidc:sso@example.com on ") {
		t.Fatalf("whoami after expiry: %q", out)
	}
	noSecrets(t, out+errOut, p.secrets()...)
	renewed := c.session()
	p.mu.Lock()
	refreshes, last := p.refreshes, p.idTokens[len(p.idTokens)-1]
	p.mu.Unlock()
	if refreshes != 1 || renewed.Token != last || renewed.Token == s.Token || renewed.RefreshToken == s.RefreshToken ||
		!renewed.ExpiresAt.After(time.Now()) {
		t.Fatalf("%d refreshes; renewed session %+v", refreshes, renewed)
	}
	c.checkModes()
	c.ok(nil, "whoami")
	p.mu.Lock()
	refreshes = p.refreshes
	p.mu.Unlock()
	if refreshes != 1 {
		t.Fatal("a valid token was renewed")
	}

	// Another writ renewed it first, and the provider refuses the refresh
	// token it rotated: the session that writ saved is used.
	c.expireSession()
	expired := c.session()
	var other string
	p.mu.Lock()
	p.refuseRefresh = true
	p.onRefresh = func() {
		idt, rt := p.mint()
		other = idt
		s := *expired
		s.Token, s.RefreshToken, s.ExpiresAt = idt, rt, time.Now().Add(time.Hour)
		data, _ := json.Marshal(&s)
		if err := os.WriteFile(c.sessionFile()+".tmp", data, 0o600); err != nil {
			t.Error(err)
		}
		if err := os.Rename(c.sessionFile()+".tmp", c.sessionFile()); err != nil {
			t.Error(err)
		}
	}
	p.mu.Unlock()
	c.ok(nil, "whoami")
	p.mu.Lock()
	if other == "" || c.session().Token != other {
		t.Fatal("the session another writ renewed was not used")
	}
	p.mu.Unlock()

	// The provider refuses to renew it: the session has expired.
	c.expireSession()
	code, _, errOut := c.run(nil, "whoami")
	if code != exitFailure || !strings.Contains(errOut, "session expired: run writ login") || !strings.Contains(errOut, "invalid_grant") {
		t.Fatalf("refused renewal: %d %q", code, errOut)
	}
	noSecrets(t, errOut, p.secrets()...)

	out, _ = c.ok(nil, "logout")
	if !strings.Contains(out, "logged out of "+r.base+" (oidc:sso@example.com): the SSO token is forgotten") {
		t.Fatalf("logout: %q", out)
	}
	if _, err := os.Lstat(c.sessionFile()); !os.IsNotExist(err) {
		t.Fatalf("session file after logout: %v", err)
	}
}

// fakeWrit is a stand-in writ server that records who sent what: it hands
// out a session for ops's password, knows that session and any SSO token,
// takes approvals, and redirects /elsewhere/… to redirectTo.
type fakeWrit struct {
	srv        *httptest.Server
	methods    server.LoginMethods
	redirectTo string

	mu    sync.Mutex
	token string
	seen  []seenRequest
}

type seenRequest struct{ method, path, auth string }

const opsPassword = "ops's long password"

func newFakeWrit(t *testing.T, methods server.LoginMethods) *fakeWrit {
	f := &fakeWrit{methods: methods}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeWrit) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	auth := r.Header.Get("Authorization")
	f.seen = append(f.seen, seenRequest{r.Method, r.URL.Path, auth})
	if rest, ok := strings.CutPrefix(r.URL.Path, "/elsewhere/"); ok {
		http.Redirect(w, r, f.redirectTo+"/"+rest, http.StatusTemporaryRedirect)
		return
	}
	path := r.URL.Path
	switch {
	case strings.HasSuffix(path, "/api/v1/auth/methods"):
		writeTestJSON(w, http.StatusOK, f.methods)
	case strings.HasSuffix(path, "/api/v1/auth/login"):
		var req map[string]string
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req["username"] != "ops" || req["password"] != opsPassword {
			writeTestJSON(w, http.StatusUnauthorized, map[string]string{"error": "wrong username or password", "code": "invalid_credentials"})
			return
		}
		f.token = "writ_s_" + randomHex(16)
		writeTestJSON(w, http.StatusOK, map[string]any{"token": f.token, "expires_at": time.Now().Add(time.Hour),
			"principal": map[string]any{"name": "ops", "roles": []string{"viewer"}, "method": "session"}})
	case strings.HasSuffix(path, "/api/v1/auth/whoami"):
		switch {
		case f.token != "" && auth == "Bearer "+f.token:
			writeTestJSON(w, http.StatusOK, map[string]any{"name": "ops", "roles": []string{"viewer"}, "method": "session"})
		case strings.HasPrefix(auth, "Bearer ey"):
			writeTestJSON(w, http.StatusOK, map[string]any{"name": "oidc:sso@example.com", "roles": []string{"viewer"}, "method": "oidc"})
		case auth == "Bearer an-api-token":
			writeTestJSON(w, http.StatusOK, map[string]any{"name": "ci", "roles": []string{"viewer"}, "method": "token"})
		default:
			writeTestJSON(w, http.StatusUnauthorized, map[string]string{"error": "authentication required", "code": "unauthenticated"})
		}
	case strings.HasSuffix(path, "/api/v1/auth/logout"):
		writeTestJSON(w, http.StatusOK, map[string]string{"status": "logged out"})
	case strings.HasSuffix(path, "/api/v1/approvals"):
		writeTestJSON(w, http.StatusCreated, map[string]any{"id": 1})
	default:
		writeTestJSON(w, http.StatusNotFound, map[string]string{"error": "not found", "code": "not_found"})
	}
}

// requests returns what it saw since the last call.
func (f *fakeWrit) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.seen
	f.seen = nil
	return out
}

// The session's token goes to the session's origin (scheme, host, port)
// and nowhere else: not to --server or WRIT_SERVER naming another, not to
// the same port under another host name, not through a redirect to
// another origin. WRIT_TOKEN, when set, is sent wherever the command
// goes. writ approve without --server posts to the session's server.
func TestSessionTokenStaysWithItsServer(t *testing.T) {
	t.Parallel()
	a := newFakeWrit(t, server.LoginMethods{Password: true})
	b := newFakeWrit(t, server.LoginMethods{Password: true})
	a.redirectTo = b.srv.URL
	c := newCLIRig(t, nil)
	c.ok(map[string]string{"WRIT_PASSWORD": opsPassword}, "login", "--server", a.srv.URL, "--user", "ops")
	bearer := "Bearer " + c.session().Token
	a.requests()

	c.ok(nil, "whoami")
	if got := a.requests(); len(got) != 1 || got[0].auth != bearer {
		t.Fatalf("the session's server got %+v", got)
	}
	c.ok(nil, "whoami", "--server", a.srv.URL+"/under/a/prefix/")
	if got := a.requests(); len(got) != 1 || got[0].path != "/under/a/prefix/api/v1/auth/whoami" || got[0].auth != bearer {
		t.Fatalf("the session's origin under a prefix got %+v", got)
	}
	for name, env := range map[string]map[string]string{
		"--server":    {"--server": b.srv.URL},
		"WRIT_SERVER": {"WRIT_SERVER": b.srv.URL},
	} {
		args := []string{"whoami"}
		if v, ok := env["--server"]; ok {
			args = append(args, "--server", v)
		}
		if code, _, errOut := c.run(env, args...); code != exitFailure || !strings.Contains(errOut, "does not know you") {
			t.Errorf("%s: %d %q", name, code, errOut)
		}
		if got := b.requests(); len(got) != 1 || got[0].auth != "" {
			t.Errorf("%s: another server got %+v", name, got)
		}
	}
	sameHostOtherName := strings.Replace(a.srv.URL, "127.0.0.1", "localhost", 1)
	c.run(nil, "whoami", "--server", sameHostOtherName)
	if got := a.requests(); len(got) != 1 || got[0].auth != "" {
		t.Fatalf("the same port under another host name got %+v", got)
	}
	code, _, errOut := c.run(nil, "whoami", "--server", a.srv.URL+"/elsewhere/")
	if code != exitFailure || !strings.Contains(errOut, "redirected to another origin") {
		t.Fatalf("redirect: %d %q", code, errOut)
	}
	if got := b.requests(); len(got) != 0 {
		t.Fatalf("a redirect took the token to another server: %+v", got)
	}
	a.requests()
	if out, _ := c.ok(map[string]string{"WRIT_TOKEN": "an-api-token"}, "whoami", "--server", b.srv.URL); !strings.HasPrefix(out, "ci on ") {
		t.Fatalf("WRIT_TOKEN: %q", out)
	}
	if got := b.requests(); len(got) != 1 || got[0].auth != "Bearer an-api-token" {
		t.Fatalf("WRIT_TOKEN sent as %+v", got)
	}

	// writ approve: to the session's server without --server; with --out
	// to the file alone; with --server to that server, without the token.
	repo := newApprovalRepo(t, "bob:approver")
	approve := []string{"--data-dir", repo.dataDir, "approve", "--key", repo.keys["bob"], "--approver", "bob", "--plan-digest", strings.Repeat("a", 64)}
	c.ok(nil, append(approve, repo.path(testPlaybookPath))...)
	if got := a.requests(); len(got) != 1 || got[0].method != "POST" || got[0].path != "/api/v1/approvals" || got[0].auth != bearer {
		t.Fatalf("approve without --server: %+v", got)
	}
	c.ok(nil, append(approve, "--out", filepath.Join(t.TempDir(), "bob.json"), repo.path(testPlaybookPath))...)
	if got := a.requests(); len(got) != 0 {
		t.Fatalf("approve --out also posted: %+v", got)
	}
	c.ok(nil, append(approve, "--server", b.srv.URL, repo.path(testPlaybookPath))...)
	if got := b.requests(); len(got) != 1 || got[0].path != "/api/v1/approvals" || got[0].auth != "" {
		t.Fatalf("approve --server another: %+v", got)
	}
}

// The session file must be a regular file of this user that nobody else
// may read or write: anything else is refused with how to fix it, and
// logout removes it without using it. A session directory others may
// enter is closed (0700); login replaces a refused file.
func TestSessionFileSafety(t *testing.T) {
	t.Parallel()
	a := newFakeWrit(t, server.LoginMethods{Password: true})
	c := newCLIRig(t, nil)
	dir := filepath.Dir(c.sessionFile())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	login := func() {
		t.Helper()
		c.ok(map[string]string{"WRIT_PASSWORD": opsPassword}, "login", "--server", a.srv.URL, "--user", "ops")
	}
	login()
	c.checkModes()
	file := c.sessionFile()
	token := c.session().Token

	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"whoami"}, {"whoami", "--server", a.srv.URL}} {
		code, _, errOut := c.run(nil, args...)
		if code != exitFailure || !strings.Contains(errOut, "others may read or write it (mode 0644)") || !strings.Contains(errOut, "chmod 600 "+file) {
			t.Fatalf("%v with a 0644 session: %d %q", args, code, errOut)
		}
	}
	// WRIT_TOKEN does not need the session.
	c.ok(map[string]string{"WRIT_TOKEN": "an-api-token"}, "whoami", "--server", a.srv.URL)
	if err := os.Chmod(file, 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok(nil, "whoami")

	// A symbolic link, even to a good file, is not followed.
	if err := os.Rename(file, file+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file+".real", file); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := c.run(nil, "whoami"); code != exitFailure || !strings.Contains(errOut, "symbolic link") {
		t.Fatalf("symlink: %d %q", code, errOut)
	}
	a.requests()
	_, errOut := c.ok(nil, "logout")
	if !strings.Contains(errOut, "removed "+file+" without using it") {
		t.Fatalf("logout of a refused file: %q", errOut)
	}
	if _, err := os.Lstat(file); !os.IsNotExist(err) {
		t.Fatalf("the link is still there: %v", err)
	}
	if err := os.Remove(file + ".real"); err != nil {
		t.Fatalf("logout removed what the link pointed to: %v", err)
	}
	if got := a.requests(); len(got) != 0 {
		t.Fatalf("logout used a refused session: %+v", got)
	}

	// A damaged file; a FIFO.
	if err := os.WriteFile(file, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := c.run(nil, "whoami"); code != exitFailure || !strings.Contains(errOut, "run writ logout, then writ login") {
		t.Fatalf("damaged: %d %q", code, errOut)
	}
	os.Remove(file)
	if err := mkfifo(file); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := c.run(nil, "whoami"); code != exitFailure || !strings.Contains(errOut, "not a regular file") {
		t.Fatalf("FIFO: %d %q", code, errOut)
	}
	os.Remove(file)

	// Login replaces a refused file with a good one.
	if err := os.WriteFile(file, []byte("{}"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	login()
	c.checkModes()
	if c.session().Token == token {
		t.Fatal("the same token twice")
	}
}

// SSO login against a server that offers only SSO starts without --sso;
// the provider's slow_down makes writ poll more slowly (never sooner than
// asked); a denial, an expired code and a provider without the device
// grant are said plainly.
func TestSSODeviceGrantAnswers(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		script   []string
		noDevice bool
		want     string // in stderr; "" for success
	}{
		"slow_down":      {script: []string{"authorization_pending", "slow_down", "ok"}},
		"access_denied":  {script: []string{"access_denied"}, want: "the SSO login was denied at the provider"},
		"expired_token":  {script: []string{"expired_token"}, want: "the code expired before the login was approved: run writ login again"},
		"no device flow": {noDevice: true, want: "offers no device authorization endpoint (RFC 8628)"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := newDeviceProvider(t, "writ")
			p.mu.Lock()
			p.noDevice = tc.noDevice
			p.mu.Unlock()
			f := newFakeWrit(t, server.LoginMethods{OIDC: &server.OIDCLogin{Issuer: p.srv.URL, ClientID: "writ", Scopes: []string{"openid", "groups"}}})
			c := newCLIRig(t, p.srv.Client())
			p.setScript(tc.script...)
			code, out, errOut := c.run(nil, "login", "--server", f.srv.URL)
			if !strings.Contains(errOut, "offers SSO login only") {
				t.Errorf("stderr %q", errOut)
			}
			noSecrets(t, out+errOut, p.secrets()...)
			p.mu.Lock()
			defer p.mu.Unlock()
			if tc.want != "" {
				if code != exitFailure || !strings.Contains(errOut, tc.want) {
					t.Fatalf("%d %q; want %q", code, errOut, tc.want)
				}
				if _, err := os.Lstat(c.sessionFile()); !os.IsNotExist(err) {
					t.Fatalf("a session was kept: %v", err)
				}
				return
			}
			if code != exitOK || !strings.Contains(out, "as oidc:sso@example.com") {
				t.Fatalf("%d %q %q", code, out, errOut)
			}
			if p.polls != 3 || p.slowDowns != 1 || p.early != 0 {
				t.Fatalf("%d polls, %d slow_down asked, %d polls sooner than the interval", p.polls, p.slowDowns, p.early)
			}
			if got := p.deviceRequests[0].Get("scope"); got != "openid groups" {
				t.Fatalf("scope %q", got)
			}
		})
	}
}

func TestLoginUsage(t *testing.T) {
	t.Parallel()
	pw := newFakeWrit(t, server.LoginMethods{Password: true})
	c := newCLIRig(t, nil)
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		"no server":        {args: []string{"login"}, code: exitUsage, want: "which server? pass --server URL"},
		"not a URL":        {args: []string{"login", "--server", "writ.example.com"}, code: exitUsage, want: "is not an http(s) URL"},
		"--sso and --user": {args: []string{"login", "--server", pw.srv.URL, "--sso", "--user", "x"}, code: exitUsage, want: "--user is for a password login"},
		"no SSO offered":   {args: []string{"login", "--server", pw.srv.URL, "--sso"}, code: exitFailure, want: "offers no SSO login"},
		"no username":      {args: []string{"login", "--server", pw.srv.URL}, code: exitFailure, want: "no terminal to ask on (or pass --user)"},
		"no password":      {args: []string{"login", "--server", pw.srv.URL, "--user", "ops"}, code: exitFailure, want: "set WRIT_PASSWORD or run on a terminal"},
		"no password flag": {args: []string{"login", "--server", pw.srv.URL, "--password", "x"}, code: exitUsage, want: "unknown flag: --password"},
		"whoami, nowhere":  {args: []string{"whoami"}, code: exitUsage, want: "pass --server URL, set WRIT_SERVER, or writ login"},
		"user in the URL":  {args: []string{"login", "--server", "http://ops:pw@127.0.0.1:1"}, code: exitUsage, want: "without a user name or password"},
	} {
		code, _, errOut := c.run(tc.env, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: %d %q; want %d and %q", name, code, errOut, tc.code, tc.want)
		}
	}
	// Logged in elsewhere, WRIT_TOKEN set: login says which is sent.
	_, errOut := c.ok(map[string]string{"WRIT_PASSWORD": opsPassword, "WRIT_TOKEN": "x"}, "login", "--server", pw.srv.URL, "--user", "ops")
	if !strings.Contains(errOut, "WRIT_TOKEN is set") {
		t.Fatalf("WRIT_TOKEN note: %q", errOut)
	}
}

func TestSameOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://writ.example.com", "https://writ.example.com/", true},
		{"https://writ.example.com", "https://WRIT.example.com:443/api", true},
		{"http://127.0.0.1:8080/writ/", "http://127.0.0.1:8080", true},
		{"http://[::1]:8080", "http://[::1]:8080/x", true},
		{"http://writ.example.com", "http://writ.example.com:80", true},
		{"https://writ.example.com", "http://writ.example.com", false},
		{"https://writ.example.com", "https://writ.example.com:8443", false},
		{"https://writ.example.com", "https://writ.example.com.evil.example", false},
		{"https://writ.example.com", "https://sub.writ.example.com", false},
		{"http://127.0.0.1:8080", "http://localhost:8080", false},
		{"https://user@writ.example.com", "https://writ.example.com", true},
		{"https://writ.example.com", "ftp://writ.example.com", false},
		{"https://writ.example.com", "writ.example.com", false},
		{"", "", false},
	} {
		if got := sameOrigin(tc.a, tc.b); got != tc.same {
			t.Errorf("sameOrigin(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }
