package console

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/server"
)

// provider is a small OpenID provider for the console's SSO sign-in: the
// authorization-code flow with PKCE (S256) as a real one runs it, over TLS.
type provider struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	mu  sync.Mutex
	// grants by code: the challenge and nonce the authorization request
	// carried.
	grants map[string][2]string
}

func newProvider(t *testing.T) *provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &provider{key: key, grants: map[string][2]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "authorization_endpoint": p.srv.URL + "/authorize",
			"token_endpoint": p.srv.URL + "/token", "jwks_uri": p.srv.URL + "/jwks", "code_challenge_methods_supported": []string{"S256"},
			"id_token_signing_alg_values_supported": []string{"RS256"}, "response_types_supported": []string{"code"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("client_id") != "writ-console" || q.Get("nonce") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := randomToken()
		p.mu.Lock()
		p.grants[code] = [2]string{q.Get("code_challenge"), q.Get("nonce")}
		p.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		g, ok := p.grants[r.PostFormValue("code")]
		delete(p.grants, r.PostFormValue("code"))
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != g[0] {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: p.key, KeyID: "k1"}}, nil)
		now := time.Now()
		claims, _ := json.Marshal(map[string]any{"iss": p.srv.URL, "aud": "writ-console", "sub": "carol", "preferred_username": "carol",
			"groups": []string{"soc-approvers"}, "nonce": g[1], "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		jws, _ := signer.Sign(claims)
		idToken, _ := jws.CompactSerialize()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "a", "token_type": "Bearer", "expires_in": 3600, "id_token": idToken})
	})
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// SSO sign-in end to end: the console sends the browser to the provider,
// the provider sends it back with a code, the console exchanges it with
// the PKCE verifier, checks the nonce and keeps the ID token as the
// session, whose roles come from the groups claim. A callback with
// another state, or without the browser's sign-in cookie, is refused.
func TestConsoleSSO(t *testing.T) {
	p := newProvider(t)
	log := slog.New(slog.DiscardHandler)
	st := dbtest.Store(t)
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := audit.NewSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.NewLog(audit.LogOptions{Store: st, Key: sk, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	oidc, err := auth.NewOIDC(auth.OIDCOptions{Issuer: p.srv.URL, Audience: "writ", ClientIDs: []string{"writ-console"},
		UsernameClaim: "preferred_username", RolesClaim: "groups", RoleMap: map[string][]auth.Role{"soc-approvers": {auth.Approver}},
		HTTPClient: p.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{Store: st, Audit: alog, OIDC: oidc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	denials, err := server.NewDenialAuditor(server.DenialOptions{Log: alog, Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetGuard(server.Guard{Auth: a, Denials: denials}); err != nil {
		t.Fatal(err)
	}
	site := httptest.NewUnstartedServer(srv.Handler())
	base := "http://" + site.Listener.Addr().String()
	web, err := oidc.NewWebLogin(auth.WebLoginOptions{ClientID: "writ-console", RedirectURL: base + "/login/callback"})
	if err != nil {
		t.Fatal(err)
	}
	con, err := New(Options{Store: st, Auth: a, WebLogin: web, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	con.Register(srv)
	site.Start()
	t.Cleanup(site.Close)

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Transport: p.srv.Client().Transport}
	get := func(u string) (*http.Response, string) {
		t.Helper()
		resp, err := browser.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if _, body := get(base + "/login"); !strings.Contains(body, "Sign in with SSO") {
		t.Fatalf("the sign-in form offers no SSO:\n%s", body)
	}
	resp, body := get(base + "/login/sso?next=" + url.QueryEscape("/playbooks"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in as oidc:carol") || !strings.Contains(body, `href="/playbooks"`) {
		t.Fatalf("the SSO sign-in: %d\n%s", resp.StatusCode, body)
	}
	var session *http.Cookie
	siteURL, _ := url.Parse(base)
	for _, c := range jar.Cookies(siteURL) {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil || strings.Count(session.Value, ".") != 2 {
		t.Fatalf("the session cookie is not the ID token: %+v", session)
	}
	resp, body = get(base + "/playbooks")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "oidc:carol") {
		t.Fatalf("a page with the SSO session: %d\n%s", resp.StatusCode, body)
	}
	// The audit log is for admins: carol's groups make her an approver.
	if resp, _ := get(base + "/audit"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("an approver's /audit: %d", resp.StatusCode)
	}

	// A callback with another state is refused; so is one without the
	// browser's sign-in cookie (a code sent to someone else's browser).
	fresh := func() *http.Client {
		j, _ := cookiejar.New(nil)
		return &http.Client{Jar: j, Transport: p.srv.Client().Transport,
			CheckRedirect: func(r *http.Request, via []*http.Request) error {
				if strings.Contains(r.URL.Path, "/login/callback") {
					return http.ErrUseLastResponse
				}
				return nil
			}}
	}
	c := fresh()
	resp, err = c.Get(base + "/login/sso")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || callback.Query().Get("code") == "" {
		t.Fatalf("no callback: %v %s", err, resp.Header.Get("Location"))
	}
	forged := *callback
	q := forged.Query()
	q.Set("state", "another")
	forged.RawQuery = q.Encode()
	for name, try := range map[string]struct {
		client *http.Client
		url    string
	}{"another state": {c, forged.String()}, "another browser": {fresh(), callback.String()}} {
		resp, err := try.client.Get(try.url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "did not complete") {
			t.Errorf("%s: %d\n%s", name, resp.StatusCode, b)
		}
	}
}
