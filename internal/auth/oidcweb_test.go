package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// codeFlow is the fake provider's authorization-code flow: one registered
// client, codes bound to its PKCE challenge, redirect URI and nonce.
type codeFlow struct {
	mu       sync.Mutex
	clientID string
	secret   string // empty: a public client
	redirect string
	codes    map[string]grant
	// denyWith makes /authorize redirect back with this error.
	denyWith string
	// mod changes the ID token's claims; mint signs them (default RS256
	// with the provider's key); noIDToken leaves it out.
	mod       map[string]any
	mint      func(claims map[string]any) string
	noIDToken bool
	// What /token saw and why it refused.
	refusals  []string
	basicAuth bool
}

type grant struct{ clientID, redirect, challenge, nonce string }

func (f *codeFlow) register(clientID, secret, redirect string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clientID, f.secret, f.redirect, f.codes = clientID, secret, redirect, map[string]grant{}
}

func (f *codeFlow) set(fn func(f *codeFlow)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *codeFlow) lastRefusal() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.refusals) == 0 {
		return ""
	}
	return f.refusals[len(f.refusals)-1]
}

// authorize is the provider's authorization endpoint, the user already
// signed in: it checks the client, redirect URI, scope and PKCE, and
// redirects back with a code (or an error) and the state.
func (p *idp) authorize(w http.ResponseWriter, r *http.Request) {
	f := &p.flow
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	if q.Get("client_id") != f.clientID || q.Get("redirect_uri") != f.redirect {
		// Never redirect to an unregistered URI.
		http.Error(w, "unknown client or redirect_uri", http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(f.redirect)
	answer := back.Query()
	answer.Set("state", q.Get("state"))
	fail := func(code, desc string) {
		answer.Set("error", code)
		answer.Set("error_description", desc)
		back.RawQuery = answer.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only code")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		fail("invalid_scope", "openid is needed")
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		fail("invalid_request", "PKCE with S256 is required")
		return
	case f.denyWith != "":
		fail(f.denyWith, "The user declined.\nTry again")
		return
	}
	code := randomValue()
	f.codes[code] = grant{clientID: f.clientID, redirect: f.redirect, challenge: q.Get("code_challenge"), nonce: q.Get("nonce")}
	answer.Set("code", code)
	back.RawQuery = answer.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// token is the provider's token endpoint: client authentication (basic or
// in the form), the code once, its redirect URI, and the verifier against
// the challenge.
func (p *idp) token(w http.ResponseWriter, r *http.Request) {
	f := &p.flow
	f.mu.Lock()
	defer f.mu.Unlock()
	refuse := func(status int, code, why string) {
		f.refusals = append(f.refusals, why)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": why})
	}
	if err := r.ParseForm(); err != nil {
		refuse(400, "invalid_request", "form: "+err.Error())
		return
	}
	id, secret, basic := r.BasicAuth()
	f.basicAuth = basic
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		refuse(400, "unsupported_grant_type", "grant_type")
		return
	}
	if id != f.clientID || secret != f.secret {
		refuse(401, "invalid_client", "client authentication")
		return
	}
	code := r.PostForm.Get("code")
	g, ok := f.codes[code]
	delete(f.codes, code) // once, even when refused
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !ok:
		refuse(400, "invalid_grant", "unknown or used code")
		return
	case g.clientID != id:
		refuse(400, "invalid_grant", "code of another client")
		return
	case r.PostForm.Get("redirect_uri") != g.redirect:
		refuse(400, "invalid_grant", "redirect_uri differs")
		return
	case b64url(sum[:]) != g.challenge:
		refuse(400, "invalid_grant", "code_verifier does not match the code_challenge")
		return
	}
	claims := p.claims(time.Now(), map[string]any{"aud": id, "nonce": g.nonce})
	for k, v := range f.mod {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	answer := map[string]any{"access_token": "at-" + randomValue(), "token_type": "Bearer", "expires_in": 3600}
	if !f.noIDToken {
		if f.mint != nil {
			answer["id_token"] = f.mint(claims)
		} else {
			tok, err := signJWT(jose.RS256, p.rsaKey, "rsa-1", claims)
			if err != nil {
				refuse(500, "server_error", err.Error())
				return
			}
			answer["id_token"] = tok
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

func signJWT(alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

const consoleCallback = "https://writ.example.com/console/login/callback"

// browse follows the authorization URL like a browser whose user is
// signed in at the provider: it returns the query of the redirect to the
// console's callback.
func browse(t *testing.T, p *idp, authURL string) url.Values {
	t.Helper()
	c := *p.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %s", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != consoleCallback {
		t.Fatalf("redirected to %s", got)
	}
	return loc.Query()
}

// webRig is a provider with the console registered (confidential client
// "writ-console"), the verifier accepting its tokens and the WebLogin.
type webRig struct {
	p     *idp
	clock *testClock
	v     *OIDC
	w     *WebLogin
}

func newWebRig(t *testing.T) *webRig {
	t.Helper()
	p := newIdP(t)
	clock := &testClock{now: time.Now().Truncate(time.Second)}
	v := newTestOIDC(t, p, clock, func(o *OIDCOptions) { o.ClientIDs = []string{"writ-console"} })
	w, err := v.NewWebLogin(WebLoginOptions{ClientID: "writ-console", ClientSecret: "console-s3cret", RedirectURL: consoleCallback})
	if err != nil {
		t.Fatal(err)
	}
	p.flow.register("writ-console", "console-s3cret", consoleCallback)
	return &webRig{p: p, clock: clock, v: v, w: w}
}

// signIn starts a sign-in, follows it at the provider and returns the
// start and the code of the callback.
func (r *webRig) signIn(t *testing.T) (*WebLoginStart, string) {
	t.Helper()
	s, err := r.w.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, err := r.w.CallbackCode(browse(t, r.p, s.URL), s.State)
	if err != nil {
		t.Fatal(err)
	}
	return s, code
}

// The whole flow, for real: Start's URL carries the S256 challenge, state
// and nonce; the provider redirects back with the code; Finish exchanges
// it with the verifier (the provider checks the challenge, the client's
// secret and the redirect URI) and verifies the ID token like a bearer
// token, which Verify then accepts as the console's session credential.
func TestWebLoginSuccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newWebRig(t)
	s, err := r.w.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s.URL)
	if err != nil || !strings.HasPrefix(s.URL, r.p.srv.URL+"/authorize?") {
		t.Fatalf("authorization URL %s", s.URL)
	}
	q := u.Query()
	sum := sha256.Sum256([]byte(s.Verifier))
	for k, want := range map[string]string{"response_type": "code", "client_id": "writ-console", "redirect_uri": consoleCallback,
		"scope": "openid profile email", "state": s.State, "nonce": s.Nonce, "code_challenge": b64url(sum[:]), "code_challenge_method": "S256"} {
		if q.Get(k) != want {
			t.Errorf("%s=%q; want %q", k, q.Get(k), want)
		}
	}
	if q.Has("code_verifier") || strings.Contains(s.URL, s.Verifier) {
		t.Fatal("the verifier is in the authorization URL")
	}
	if len(s.Verifier) != 43 || len(s.State) != 43 || len(s.Nonce) != 43 || s.State == s.Nonce || s.Nonce == s.Verifier {
		t.Fatalf("start values %q %q %q", s.State, s.Nonce, s.Verifier)
	}
	if s2, _ := r.w.Start(ctx); s2.State == s.State || s2.Nonce == s.Nonce || s2.Verifier == s.Verifier {
		t.Fatal("two sign-ins share a value")
	}
	back := browse(t, r.p, s.URL)
	if back.Get("state") != s.State {
		t.Fatalf("callback state %q", back.Get("state"))
	}
	code, err := r.w.CallbackCode(back, s.State)
	if err != nil {
		t.Fatal(err)
	}
	raw, pr, err := r.w.Finish(ctx, code, s.Verifier, s.Nonce)
	if err != nil {
		t.Fatalf("finish: %v (provider: %s)", err, r.p.flow.lastRefusal())
	}
	if pr.Name != "oidc:carol@example.com" || pr.Roles != Roles(Viewer, Analyst) || pr.Method != MethodOIDC || pr.ExpiresAt.IsZero() {
		t.Fatalf("principal %+v", pr)
	}
	if !r.p.flow.basicAuth {
		t.Fatal("the confidential client's secret was not sent with basic authentication (the provider offers it)")
	}
	// The ID token is the console's session credential: a bearer token.
	if again, err := r.v.Verify(ctx, raw); err != nil || again.Name != pr.Name || again.Roles != pr.Roles {
		t.Fatalf("the ID token as a bearer token: %+v %v", again, err)
	}
	// A code works once.
	if _, _, err := r.w.Finish(ctx, code, s.Verifier, s.Nonce); deniedCode(err) != DeniedCodeExchange ||
		r.p.flow.lastRefusal() != "unknown or used code" {
		t.Fatalf("a used code: %v (provider: %s)", err, r.p.flow.lastRefusal())
	}
	// Verify and the sign-in share one discovery.
	if n := r.p.discovery.Load(); n != 1 {
		t.Fatalf("%d discoveries; want 1", n)
	}
}

// Every way the flow can go wrong is a *Denied with its code.
func TestWebLoginRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newWebRig(t)
	now := r.clock.Now()
	t.Run("wrong verifier", func(t *testing.T) {
		s, code := r.signIn(t)
		v2, _ := r.w.Start(ctx)
		if _, _, err := r.w.Finish(ctx, code, v2.Verifier, s.Nonce); deniedCode(err) != DeniedCodeExchange ||
			!strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("%v", err)
		}
		if why := r.p.flow.lastRefusal(); !strings.Contains(why, "code_verifier") {
			t.Fatalf("the provider refused for %q; want the verifier", why)
		}
	})
	t.Run("nonce mismatch", func(t *testing.T) {
		s, code := r.signIn(t)
		other, _ := r.w.Start(ctx)
		if raw, pr, err := r.w.Finish(ctx, code, s.Verifier, other.Nonce); deniedCode(err) != DeniedNonceMismatch || raw != "" || pr != nil {
			t.Fatalf("%q %+v %v", raw, pr, err)
		}
	})
	t.Run("provider puts another nonce", func(t *testing.T) {
		r.p.flow.set(func(f *codeFlow) { f.mod = map[string]any{"nonce": "replayed"} })
		defer r.p.flow.set(func(f *codeFlow) { f.mod = nil })
		s, code := r.signIn(t)
		if _, _, err := r.w.Finish(ctx, code, s.Verifier, s.Nonce); deniedCode(err) != DeniedNonceMismatch {
			t.Fatalf("%v", err)
		}
	})
	for name, tc := range map[string]struct {
		mod  map[string]any
		mint func(map[string]any) string
		want string
	}{
		"other audience":               {mod: map[string]any{"aud": "grafana"}, want: "invalid_token"},
		"the API's audience, not ours": {mod: map[string]any{"aud": "writ"}, want: "invalid_token"},
		"another authorized party":     {mod: map[string]any{"aud": []string{"writ-console", "grafana"}, "azp": "grafana"}, want: "invalid_token"},
		"expired":                      {mod: map[string]any{"exp": now.Add(-time.Second).Unix()}, want: "expired"},
		"other issuer":                 {mod: map[string]any{"iss": "https://evil.example.com"}, want: "invalid_token"},
		"no nonce":                     {mod: map[string]any{"nonce": nil}, want: DeniedNonceMismatch},
		"alg none": {mint: func(c map[string]any) string {
			return handMade(map[string]any{"alg": "none", "typ": "JWT"}, c, nil)
		}, want: "invalid_token"},
		"HS256 keyed with the client secret": {mint: func(c map[string]any) string {
			return handMade(map[string]any{"alg": "HS256", "typ": "JWT"}, c, []byte("console-s3cret"))
		}, want: "invalid_token"},
		"HS256 keyed with the public key": {mint: func(c map[string]any) string {
			return handMade(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, c, r.p.rsaKey.PublicKey.N.Bytes())
		}, want: "invalid_token"},
	} {
		t.Run(name, func(t *testing.T) {
			r.p.flow.set(func(f *codeFlow) { f.mod, f.mint = tc.mod, tc.mint })
			defer r.p.flow.set(func(f *codeFlow) { f.mod, f.mint = nil, nil })
			s, code := r.signIn(t)
			if raw, pr, err := r.w.Finish(ctx, code, s.Verifier, s.Nonce); deniedCode(err) != tc.want || raw != "" || pr != nil {
				t.Fatalf("%q %+v %v; want %s", raw, pr, err, tc.want)
			}
		})
	}
	t.Run("no id_token", func(t *testing.T) {
		r.p.flow.set(func(f *codeFlow) { f.noIDToken = true })
		defer r.p.flow.set(func(f *codeFlow) { f.noIDToken = false })
		s, code := r.signIn(t)
		if _, _, err := r.w.Finish(ctx, code, s.Verifier, s.Nonce); deniedCode(err) != DeniedNoIDToken {
			t.Fatalf("%v", err)
		}
	})
	t.Run("access denied at the provider", func(t *testing.T) {
		r.p.flow.set(func(f *codeFlow) { f.denyWith = "access_denied" })
		defer r.p.flow.set(func(f *codeFlow) { f.denyWith = "" })
		s, err := r.w.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		back := browse(t, r.p, s.URL)
		code, err := r.w.CallbackCode(back, s.State)
		if deniedCode(err) != DeniedProviderError || code != "" || !strings.Contains(err.Error(), "access_denied: The user declined. Try again") {
			t.Fatalf("%q %v", code, err)
		}
	})
	t.Run("forged callback", func(t *testing.T) {
		s, err := r.w.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		back := browse(t, r.p, s.URL)
		other, _ := r.w.Start(ctx)
		for name, q := range map[string]url.Values{
			"another sign-in's state": back,
			"no state":                {"code": {back.Get("code")}},
		} {
			if _, err := r.w.CallbackCode(q, other.State); deniedCode(err) != DeniedStateMismatch {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := r.w.CallbackCode(back, ""); deniedCode(err) != DeniedStateMismatch {
			t.Errorf("no state kept: %v", err)
		}
		if _, err := r.w.CallbackCode(url.Values{"state": {s.State}}, s.State); deniedCode(err) != "malformed" {
			t.Errorf("no code: %v", err)
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		w, err := r.v.NewWebLogin(WebLoginOptions{ClientID: "writ-console", ClientSecret: "guess", RedirectURL: consoleCallback})
		if err != nil {
			t.Fatal(err)
		}
		s, err := w.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		code, err := w.CallbackCode(browse(t, r.p, s.URL), s.State)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = w.Finish(ctx, code, s.Verifier, s.Nonce)
		if deniedCode(err) != DeniedCodeExchange || !strings.Contains(err.Error(), "invalid_client") || strings.Contains(err.Error(), "guess") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("empty arguments", func(t *testing.T) {
		if _, _, err := r.w.Finish(ctx, "", "v", "n"); deniedCode(err) != "malformed" {
			t.Fatalf("%v", err)
		}
	})
}

// A public client (no secret) signs in with PKCE alone: its id in the form.
func TestWebLoginPublicClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newIdP(t)
	clock := &testClock{now: time.Now().Truncate(time.Second)}
	v := newTestOIDC(t, p, clock, nil)
	// Default client id: the audience.
	w, err := v.NewWebLogin(WebLoginOptions{RedirectURL: consoleCallback, Scopes: []string{"groups"}})
	if err != nil {
		t.Fatal(err)
	}
	p.flow.register("writ", "", consoleCallback)
	s, err := w.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(s.URL)
	if got := u.Query().Get("scope"); got != "openid groups" {
		t.Fatalf("scope %q", got)
	}
	code, err := w.CallbackCode(browse(t, p, s.URL), s.State)
	if err != nil {
		t.Fatal(err)
	}
	_, pr, err := w.Finish(ctx, code, s.Verifier, s.Nonce)
	if err != nil || pr.Name != "oidc:carol@example.com" {
		t.Fatalf("%+v %v (provider: %s)", pr, err, p.flow.lastRefusal())
	}
	if p.flow.basicAuth {
		t.Fatal("a public client used basic authentication")
	}
}

func TestWebLoginOptions(t *testing.T) {
	t.Parallel()
	v, err := NewOIDC(OIDCOptions{Issuer: "https://sso.example.com", Audience: "writ", ClientIDs: []string{"writ-console"}, RolesClaim: "groups"})
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]WebLoginOptions{
		"a client id writ does not accept": {ClientID: "grafana", RedirectURL: consoleCallback},
		"no redirect URL":                  {},
		"http redirect URL":                {RedirectURL: "http://writ.example.com/cb"},
		"http, localhost lookalike":        {RedirectURL: "http://localhost.evil.example/cb"},
		"relative redirect URL":            {RedirectURL: "/console/login/callback"},
		"redirect URL with a fragment":     {RedirectURL: consoleCallback + "#x"},
		"redirect URL with user info":      {RedirectURL: "https://a:b@writ.example.com/cb"},
		"space in a scope":                 {RedirectURL: consoleCallback, Scopes: []string{"openid email"}},
		"client id with a space":           {ClientID: "writ console", RedirectURL: consoleCallback},
	} {
		if _, err := v.NewWebLogin(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, u := range []string{"http://localhost:8080/console/login/callback", "http://127.0.0.1/cb", "http://[::1]:9000/cb", consoleCallback} {
		if _, err := v.NewWebLogin(WebLoginOptions{RedirectURL: u}); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	o := WebLoginOptions{ClientID: "writ-console", ClientSecret: "hunter2-secret", RedirectURL: consoleCallback}
	w, err := v.NewWebLogin(o)
	if err != nil {
		t.Fatal(err)
	}
	if w.ClientID() != "writ-console" || w.RedirectURL() != consoleCallback || !slices.Equal(w.scopes, DefaultWebScopes) {
		t.Fatalf("%v %v", w, w.scopes)
	}
	// The secret is never printed or logged.
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", slog.Any("opts", o), slog.Any("login", w))
	out := fmt.Sprintf("%v %+v %#v %s %v %+v %#v %#v", o, o, o, w, w, *w, *w, w) + buf.String()
	if strings.Contains(out, "hunter2") {
		t.Fatalf("the secret is printed: %s", out)
	}
	st := WebLoginStart{URL: "u", State: "s", Nonce: "nonce-value", Verifier: "verifier-value"}
	if out := fmt.Sprintf("%v %+v %#v", st, &st, st); strings.Contains(out, "verifier-value") || strings.Contains(out, "nonce-value") {
		t.Fatalf("the verifier is printed: %s", out)
	}
}

// An unreachable provider is an error, not a refusal: the console answers
// 502/503, not "wrong credentials".
func TestWebLoginProviderDown(t *testing.T) {
	t.Parallel()
	v, err := NewOIDC(OIDCOptions{Issuer: "https://127.0.0.1:1", Audience: "writ", RolesClaim: "groups"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := v.NewWebLogin(WebLoginOptions{RedirectURL: consoleCallback})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Start(context.Background()); err == nil || deniedCode(err) != "" || !strings.Contains(err.Error(), "discovery") {
		t.Fatalf("%v", err)
	}
	if _, _, err := w.Finish(context.Background(), "c", "v", "n"); err == nil || deniedCode(err) != "" {
		t.Fatalf("%v", err)
	}
}
