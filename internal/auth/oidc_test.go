package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// idp is an OpenID provider on loopback: discovery and a JWKS, and the
// private keys to sign tokens with.
type idp struct {
	srv       *httptest.Server
	rsaKey    *rsa.PrivateKey
	ecKey     *ecdsa.PrivateKey
	jwksHits  atomic.Int64
	discovery atomic.Int64
	// The authorization-code flow (oidcweb_test.go).
	flow codeFlow
}

func newIdP(t testing.TB) *idp {
	t.Helper()
	p := &idp{}
	var err error
	if p.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if p.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discovery.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/keys", "authorization_endpoint": p.srv.URL + "/authorize",
			"token_endpoint": p.srv.URL + "/token", "id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"code_challenge_methods_supported": []string{"S256"}, "token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &p.rsaKey.PublicKey, KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
			{Key: &p.ecKey.PublicKey, KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
		}})
	})
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) sign(t testing.TB, alg jose.SignatureAlgorithm, key crypto.Signer, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *idp) claims(now time.Time, mod map[string]any) map[string]any {
	c := map[string]any{
		"iss": p.srv.URL, "aud": "writ", "sub": "u-123", "preferred_username": "carol@example.com",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Add(-time.Minute).Unix(),
		"groups": []string{"soc-analyst", "everyone"},
	}
	for k, v := range mod {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// handMade signs header.payload with HMAC-SHA256 keyed by key (or no
// signature for alg none).
func handMade(header, claims map[string]any, key []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	signing := b64url(h) + "." + b64url(c)
	if key == nil {
		return signing + "."
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return signing + "." + b64url(m.Sum(nil))
}

func newTestOIDC(t testing.TB, p *idp, clock *testClock, mod func(*OIDCOptions)) *OIDC {
	t.Helper()
	o := OIDCOptions{Issuer: p.srv.URL, Audience: "writ", UsernameClaim: "preferred_username", RolesClaim: "groups",
		RoleMap: map[string][]Role{"soc-analyst": {Analyst, Viewer}, "soc-admin": {Admin}}, Now: clock.Now,
		KeyRefreshInterval: time.Hour, HTTPClient: p.srv.Client()}
	if mod != nil {
		mod(&o)
	}
	v, err := NewOIDC(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Every way a bearer token can be wrong is refused; a good one maps to
// roles.
func TestOIDCTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newIdP(t)
	clock := &testClock{now: time.Now().Truncate(time.Second)}
	v := newTestOIDC(t, p, clock, nil)
	now := clock.Now()

	good := p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, nil))
	pr, err := v.Verify(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Name != "oidc:carol@example.com" || pr.Roles != Roles(Viewer, Analyst) || pr.Method != MethodOIDC {
		t.Fatalf("principal %+v", pr)
	}
	if es := p.sign(t, jose.ES256, p.ecKey, "ec-1", p.claims(now, map[string]any{"groups": "soc-admin"})); true {
		if pr, err := v.Verify(ctx, es); err != nil || pr.Roles != Roles(Admin) {
			t.Fatalf("ES256 token with a string claim: %+v %v", pr, err)
		}
	}
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(&p.rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)

	for name, tok := range map[string]string{
		"expired":                               p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"exp": now.Add(-time.Second).Unix()})),
		"no expiry":                             p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"exp": nil})),
		"wrong audience":                        p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"aud": "grafana"})),
		"wrong issuer":                          p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"iss": "https://evil.example.com"})),
		"alg none":                              handMade(map[string]any{"alg": "none", "typ": "JWT"}, p.claims(now, nil), nil),
		"HS256 keyed with the public key (PEM)": handMade(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, p.claims(now, nil), pubPEM),
		"HS256 keyed with the public key (DER)": handMade(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, p.claims(now, nil), pubDER),
		"unknown key":                           p.sign(t, jose.RS256, otherKey, "rsa-2", p.claims(now, nil)),
		"unknown key posing as a known kid":     p.sign(t, jose.RS256, otherKey, "rsa-1", p.claims(now, nil)),
		"not yet valid":                         p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"nbf": now.Add(time.Hour).Unix()})),
		"ES384 not allowed":                     p.sign(t, jose.ES384, p384, "ec-384", p.claims(now, nil)),
		"tampered payload": func() string {
			parts := strings.Split(good, ".")
			c, _ := json.Marshal(p.claims(now, map[string]any{"groups": []string{"soc-admin"}}))
			return parts[0] + "." + b64url(c) + "." + parts[2]
		}(),
	} {
		pr, err := v.Verify(ctx, tok)
		if deniedCode(err) == "" || pr != nil {
			t.Errorf("%s: %+v, %v; want a *Denied", name, pr, err)
		}
	}
	if pr, err := v.Verify(ctx, p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"exp": now.Add(-time.Second).Unix()}))); deniedCode(err) != "expired" {
		t.Fatalf("expired: %+v %v", pr, err)
	}
	// A token without mapped groups authenticates with no role.
	pr, err = v.Verify(ctx, p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"groups": []string{"finance"}})))
	if err != nil || !pr.Roles.Empty() {
		t.Fatalf("unmapped groups: %+v %v", pr, err)
	}
	// Without the username claim, sub names the caller.
	pr, err = v.Verify(ctx, p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"preferred_username": nil})))
	if err != nil || pr.Name != "oidc:u-123" {
		t.Fatalf("fallback to sub: %+v %v", pr, err)
	}
	if p.discovery.Load() != 1 {
		t.Fatalf("%d discoveries; want 1", p.discovery.Load())
	}
}

// Tokens with unknown key ids make writ fetch the keys again at most at
// the refresh rate: a flood costs the provider nothing.
func TestOIDCKeyRefreshIsRateLimited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newIdP(t)
	clock := &testClock{now: time.Now().Truncate(time.Second)}
	v := newTestOIDC(t, p, clock, func(o *OIDCOptions) { o.JWKSURL = p.srv.URL + "/keys" })
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for i := range 50 {
		tok := p.sign(t, jose.RS256, other, "unknown-"+string(rune('a'+i%26)), p.claims(clock.Now(), nil))
		if _, err := v.Verify(ctx, tok); deniedCode(err) != "invalid_token" {
			t.Fatalf("unknown key %d: %v", i, err)
		}
	}
	if n := p.jwksHits.Load(); n > 2 {
		t.Fatalf("%d key fetches for 50 tokens of unknown keys; want at most 2 (the burst)", n)
	}
	// Good tokens still verify from the cached keys.
	if _, err := v.Verify(ctx, p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(clock.Now(), nil))); err != nil {
		t.Fatal(err)
	}
	if p.discovery.Load() != 0 {
		t.Fatal("discovery ran although jwksURL was given")
	}
}

func TestOIDCNestedRolesClaim(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	clock := &testClock{now: time.Now().Truncate(time.Second)}
	v := newTestOIDC(t, p, clock, func(o *OIDCOptions) { o.RolesClaim = "realm_access.roles" })
	tok := p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(clock.Now(), map[string]any{"realm_access": map[string]any{"roles": []string{"soc-admin"}}}))
	pr, err := v.Verify(context.Background(), tok)
	if err != nil || pr.Roles != Roles(Admin) {
		t.Fatalf("nested claim: %+v %v", pr, err)
	}
}

// The ID tokens writ login gets name the CLI's client id as aud: they are
// accepted when it is configured, and only then; other audiences never.
func TestOIDCClientIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newIdP(t)
	clock := &testClock{now: time.Now().Truncate(time.Second)}
	now := clock.Now()
	cli := p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"aud": "writ-cli"}))
	both := p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"aud": []string{"grafana", "writ-cli"}}))
	writ := p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, nil))
	other := p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"aud": "grafana"}))
	expired := p.sign(t, jose.RS256, p.rsaKey, "rsa-1", p.claims(now, map[string]any{"aud": "writ-cli", "exp": now.Add(-time.Second).Unix()}))

	without := newTestOIDC(t, p, clock, nil)
	if _, err := without.Verify(ctx, cli); deniedCode(err) != "invalid_token" {
		t.Fatalf("the CLI's audience without cliClientID: %v", err)
	}
	with := newTestOIDC(t, p, clock, func(o *OIDCOptions) { o.ClientIDs = []string{"writ-cli"} })
	for name, tok := range map[string]string{"the CLI's": cli, "one of several": both, "writ's": writ} {
		if pr, err := with.Verify(ctx, tok); err != nil || pr.Name != "oidc:carol@example.com" {
			t.Errorf("%s audience: %+v %v", name, pr, err)
		}
	}
	if _, err := with.Verify(ctx, other); deniedCode(err) != "invalid_token" {
		t.Fatalf("another audience: %v", err)
	}
	if _, err := with.Verify(ctx, expired); deniedCode(err) != "expired" {
		t.Fatalf("an expired token of the CLI: %v", err)
	}
}

func TestOIDCDiscoveryFailureIsRetried(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Now()}
	v, err := NewOIDC(OIDCOptions{Issuer: "https://127.0.0.1:1", Audience: "writ", RolesClaim: "groups", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
	if err == nil || deniedCode(err) != "" || !strings.Contains(err.Error(), "discovery") {
		t.Fatalf("unreachable provider: %v; want a discovery error (not a denial)", err)
	}
}

func TestOIDCOptionsValidate(t *testing.T) {
	t.Parallel()
	base := func() OIDCOptions {
		return OIDCOptions{Issuer: "https://sso.example.com", Audience: "writ", RolesClaim: "groups"}
	}
	for name, mod := range map[string]func(*OIDCOptions){
		"http issuer": func(o *OIDCOptions) { o.Issuer = "http://sso.example.com" },
		"no audience": func(o *OIDCOptions) { o.Audience = "" },
		"no roles":    func(o *OIDCOptions) { o.RolesClaim = "" },
		"alg none":    func(o *OIDCOptions) { o.Algorithms = []string{"none"} },
		"HS256":       func(o *OIDCOptions) { o.Algorithms = []string{"RS256", "HS256"} },
		"bad role":    func(o *OIDCOptions) { o.RoleMap = map[string][]Role{"g": {"root"}} },
		"bad jwks":    func(o *OIDCOptions) { o.JWKSURL = "ftp://x" },
		"empty id":    func(o *OIDCOptions) { o.ClientIDs = []string{""} },
	} {
		o := base()
		mod(&o)
		if _, err := NewOIDC(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewOIDC(base()); err != nil {
		t.Fatal(err)
	}
}

// signTyp signs claims with the provider's RSA key and JOSE typ (none
// when empty).
func (p *idp) signTyp(t testing.TB, typ string, claims map[string]any) string {
	t.Helper()
	so := &jose.SignerOptions{}
	if typ != "" {
		so = so.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: p.rsaKey, KeyID: "rsa-1"}}, so)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// With accessTokenType rfc9068, a token for writ's audience must be a JWT
// access token (typ at+jwt, RFC 9068): an ID token (typ JWT, or none)
// presented as one is refused; ID tokens of writ's own login clients
// still work. By default (any), typ is not looked at. Real tokens signed
// by the test provider, verified through its discovery and JWKS over TLS.
func TestOIDCAccessTokenType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newIdP(t)
	clock := &testClock{now: time.Now().Truncate(time.Second)}
	now := clock.Now()
	tok := func(typ string, aud any) string { return p.signTyp(t, typ, p.claims(now, map[string]any{"aud": aud})) }

	anyType := newTestOIDC(t, p, clock, func(o *OIDCOptions) { o.ClientIDs = []string{"writ-cli"} })
	strict := newTestOIDC(t, p, clock, func(o *OIDCOptions) {
		o.ClientIDs = []string{"writ-cli"}
		o.AccessTokenType = AccessTokenRFC9068
	})
	for _, tc := range []struct {
		name         string
		token        string
		strictAccept bool
	}{
		{"access token", tok("at+jwt", "writ"), true},
		{"access token, media type", tok("application/at+jwt", "writ"), true},
		{"access token, upper case", tok("AT+JWT", []string{"writ", "grafana"}), true},
		{"ID token for the audience", tok("JWT", "writ"), false},
		{"token without typ for the audience", tok("", "writ"), false},
		{"another typ", tok("dpop+jwt", "writ"), false},
		{"writ login's ID token", tok("JWT", "writ-cli"), true},
		{"writ login's ID token without typ", tok("", "writ-cli"), true},
		{"ID token for the audience and writ login", tok("JWT", []string{"writ", "writ-cli"}), true},
		{"access token for writ login's client", tok("at+jwt", "writ-cli"), false},
	} {
		if pr, err := anyType.Verify(ctx, tc.token); err != nil || pr.Name != "oidc:carol@example.com" {
			t.Errorf("%s, accessTokenType any: %+v %v", tc.name, pr, err)
		}
		pr, err := strict.Verify(ctx, tc.token)
		switch {
		case tc.strictAccept && (err != nil || pr.Name != "oidc:carol@example.com"):
			t.Errorf("%s, rfc9068: refused: %v", tc.name, err)
		case !tc.strictAccept && deniedCode(err) != "invalid_token":
			t.Errorf("%s, rfc9068: %+v %v; want invalid_token", tc.name, pr, err)
		}
	}
	if _, err := strict.Verify(ctx, tok("JWT", "writ")); err == nil || !strings.Contains(err.Error(), `typ is "JWT", not at+jwt`) {
		t.Errorf("refusal says why: %v", err)
	}
}

func TestOIDCAccessTokenTypeOptions(t *testing.T) {
	t.Parallel()
	base := OIDCOptions{Issuer: "https://sso.example.com", Audience: "writ", RolesClaim: "groups"}
	for _, tc := range []struct {
		mod  func(o *OIDCOptions)
		want string
	}{
		{func(o *OIDCOptions) {}, ""},
		{func(o *OIDCOptions) { o.AccessTokenType = AccessTokenRFC9068; o.ClientIDs = []string{"writ-cli"} }, ""},
		{func(o *OIDCOptions) { o.AccessTokenType = "jwt" }, `accessTokenType "jwt" is not any or rfc9068`},
		{func(o *OIDCOptions) { o.AccessTokenType = AccessTokenRFC9068; o.ClientIDs = []string{"writ"} }, "must differ from the audience"},
	} {
		o := base
		tc.mod(&o)
		_, err := NewOIDC(o)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v; want %q", o, err, tc.want)
		}
	}
}
