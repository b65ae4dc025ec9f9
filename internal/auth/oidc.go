package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"
)

// AllowedAlgorithms are the signature algorithms an SSO token may use:
// asymmetric ones only. "none" and the HMAC family (HS256, ...) are never
// accepted: an HMAC "signed" with the issuer's public key would otherwise
// verify.
var AllowedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Access token types (OIDCOptions.AccessTokenType).
const (
	AccessTokenAny     = "any"
	AccessTokenRFC9068 = "rfc9068"
)

// DefaultAlgorithms are accepted when the configuration names none.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// OIDCOptions configures bearer tokens from an OpenID Connect provider.
type OIDCOptions struct {
	// Issuer is the provider's issuer URL (https). Tokens must carry it as
	// iss. Required.
	Issuer string
	// Audience must be one of a token's aud values (writ's client id).
	// Required.
	Audience string
	// ClientIDs are further aud values a token may carry instead of
	// Audience: the client id `writ login` uses for the device
	// authorization grant, when it differs (its ID tokens name it).
	ClientIDs []string
	// Algorithms accepted; default DefaultAlgorithms. Each must be in
	// AllowedAlgorithms.
	Algorithms []string
	// JWKSURL is where the provider's keys are; default from the issuer's
	// discovery document.
	JWKSURL string
	// UsernameClaim names the caller in the audit log; default "sub". A
	// token without it falls back to sub.
	UsernameClaim string
	// RolesClaim holds the caller's groups: a string or an array of
	// strings, a dotted path for nested claims (realm_access.roles).
	// Required.
	RolesClaim string
	// RoleMap maps a claim value to writ roles. Values not in it grant
	// nothing.
	RoleMap map[string][]Role
	// AccessTokenType says what the provider's access tokens are:
	// AccessTokenAny (default) checks no JOSE typ; AccessTokenRFC9068
	// requires a token naming Audience to be a JWT access token (typ
	// at+jwt, RFC 9068 §2.1 and §4) and accepts ID tokens (any other typ)
	// only for ClientIDs, writ's own login clients, never as access
	// tokens for Audience.
	AccessTokenType string
	// HTTPClient fetches discovery and keys. Default: 10s timeout.
	HTTPClient *http.Client
	// KeyRefreshInterval bounds how often a token with an unknown key id
	// makes writ fetch the keys again (a flood of such tokens costs the
	// provider nothing). Default 10s.
	KeyRefreshInterval time.Duration
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

func (o *OIDCOptions) setDefaults() {
	if len(o.Algorithms) == 0 {
		o.Algorithms = DefaultAlgorithms
	}
	if o.UsernameClaim == "" {
		o.UsernameClaim = "sub"
	}
	if o.AccessTokenType == "" {
		o.AccessTokenType = AccessTokenAny
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.KeyRefreshInterval == 0 {
		o.KeyRefreshInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *OIDCOptions) validate() error {
	if err := checkURL("issuer", o.Issuer); err != nil {
		return err
	}
	if o.JWKSURL != "" {
		if err := checkURL("jwksURL", o.JWKSURL); err != nil {
			return err
		}
	}
	if o.Audience == "" {
		return errors.New("oidc: an audience (writ's client id) is required")
	}
	if slices.Contains(o.ClientIDs, "") {
		return errors.New("oidc: an empty client id")
	}
	if o.RolesClaim == "" {
		return errors.New("oidc: rolesClaim is required: roles come from it")
	}
	switch o.AccessTokenType {
	case AccessTokenAny, AccessTokenRFC9068:
	default:
		return fmt.Errorf("oidc: accessTokenType %q is not %s or %s", o.AccessTokenType, AccessTokenAny, AccessTokenRFC9068)
	}
	if o.AccessTokenType == AccessTokenRFC9068 && slices.Contains(o.ClientIDs, o.Audience) {
		return fmt.Errorf("oidc: with accessTokenType %s, a login client id must differ from the audience %q: its ID tokens would pass as access tokens", AccessTokenRFC9068, o.Audience)
	}
	for _, a := range o.Algorithms {
		if !slices.Contains(AllowedAlgorithms, a) {
			return fmt.Errorf("oidc: algorithm %q is not accepted (only %s: never none or HS*)", a, strings.Join(AllowedAlgorithms, ", "))
		}
	}
	for v, rs := range o.RoleMap {
		for _, r := range rs {
			if _, err := ParseRole(string(r)); err != nil {
				return fmt.Errorf("oidc: roles of %q: %w", v, err)
			}
		}
	}
	return nil
}

func checkURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("oidc: %s %q is not a URL", what, raw)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("oidc: %s %q must be https", what, raw)
	}
	return nil
}

// OIDC verifies bearer tokens of one provider and maps them to principals.
type OIDC struct {
	opts   OIDCOptions
	keyCtx context.Context // carries the rate-limited client for key fetches
	// plain fetches discovery and talks to the token endpoint: the
	// configured client, bodies limited to maxProviderResponse.
	plain *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier

	// The discovery document, shared by Verify (jwks_uri) and WebLogin
	// (the authorization and token endpoints).
	dmu         sync.Mutex
	meta        *providerMeta
	lastAttempt time.Time
	lastErr     error
}

// providerMeta is what writ reads of the provider's discovery document.
type providerMeta struct {
	JWKSURL  string `json:"jwks_uri"`
	AuthURL  string `json:"authorization_endpoint"`
	TokenURL string `json:"token_endpoint"`
	// CodeChallengeMethods and TokenAuthMethods may be absent.
	CodeChallengeMethods []string `json:"code_challenge_methods_supported"`
	TokenAuthMethods     []string `json:"token_endpoint_auth_methods_supported"`
}

// NewOIDC checks the options. Discovery happens on the first token (and
// again after a failure, at most every 10 seconds), so writ starts while
// the provider is unreachable and local logins keep working.
func NewOIDC(opts OIDCOptions) (*OIDC, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	keys := &http.Client{
		Timeout:   opts.HTTPClient.Timeout,
		Transport: &keyTransport{base: transportOf(opts.HTTPClient), limit: rate.NewLimiter(rate.Every(opts.KeyRefreshInterval), 2)},
	}
	plain := &http.Client{
		Timeout:   opts.HTTPClient.Timeout,
		Transport: &keyTransport{base: transportOf(opts.HTTPClient), limit: rate.NewLimiter(rate.Inf, 0)},
	}
	o := &OIDC{opts: opts, keyCtx: oidc.ClientContext(context.Background(), keys), plain: plain}
	if opts.JWKSURL != "" {
		o.verifier = o.newVerifier(opts.JWKSURL)
	}
	return o, nil
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// errKeyFetchLimited: a key fetch was asked for too soon after the last.
var errKeyFetchLimited = errors.New("key refresh rate-limited")

// maxProviderResponse bounds discovery and key documents.
const maxProviderResponse = 1 << 20

// keyTransport rate-limits and size-limits fetches of the provider's keys.
type keyTransport struct {
	base  http.RoundTripper
	limit *rate.Limiter
}

func (t *keyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.limit.Allow() {
		return nil, errKeyFetchLimited
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, maxProviderResponse), Closer: resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}

func (o *OIDC) newVerifier(jwksURL string) *oidc.IDTokenVerifier {
	return oidc.NewVerifier(o.opts.Issuer, oidc.NewRemoteKeySet(o.keyCtx, jwksURL), &oidc.Config{
		ClientID: o.opts.Audience,
		// With more than one client id, Verify checks aud itself.
		SkipClientIDCheck:    len(o.opts.ClientIDs) > 0,
		SupportedSigningAlgs: o.opts.Algorithms,
		Now:                  o.opts.Now,
	})
}

// audienceOK reports whether a token's aud names Audience or one of
// ClientIDs.
func (o *OIDC) audienceOK(aud []string) bool {
	return slices.ContainsFunc(aud, func(a string) bool { return a == o.opts.Audience || slices.Contains(o.opts.ClientIDs, a) })
}

// discoveryRetry is how long a failed discovery is remembered.
const discoveryRetry = 10 * time.Second

func (o *OIDC) getVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.verifier != nil {
		return o.verifier, nil
	}
	meta, err := o.discover(ctx)
	if err != nil {
		return nil, err
	}
	o.verifier = o.newVerifier(meta.JWKSURL)
	return o.verifier, nil
}

// discover reads the provider's discovery document once (and again after
// a failure, at most every discoveryRetry), through the configured client
// with bodies limited to maxProviderResponse.
func (o *OIDC) discover(ctx context.Context) (*providerMeta, error) {
	o.dmu.Lock()
	defer o.dmu.Unlock()
	if o.meta != nil {
		return o.meta, nil
	}
	now := time.Now()
	if !o.lastAttempt.IsZero() && now.Sub(o.lastAttempt) < discoveryRetry {
		return nil, o.lastErr
	}
	o.lastAttempt = now
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.plain), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, o.opts.Issuer)
	if err != nil {
		o.lastErr = fmt.Errorf("oidc: discovery at %s: %w", o.opts.Issuer, err)
		o.opts.Logger.WarnContext(ctx, "OIDC discovery failed", slog.String("issuer", o.opts.Issuer), slog.Any("error", err))
		return nil, o.lastErr
	}
	var meta providerMeta
	if err := p.Claims(&meta); err != nil || meta.JWKSURL == "" {
		o.lastErr = fmt.Errorf("oidc: discovery at %s: no jwks_uri", o.opts.Issuer)
		return nil, o.lastErr
	}
	if err := checkURL("jwks_uri", meta.JWKSURL); err != nil {
		o.lastErr = err
		return nil, err
	}
	o.meta = &meta
	o.opts.Logger.InfoContext(ctx, "OIDC provider discovered", slog.String("issuer", o.opts.Issuer), slog.String("jwks_uri", meta.JWKSURL))
	return o.meta, nil
}

// Verify checks a bearer token: signature by a key of the provider with an
// allowed algorithm, issuer, audience, expiry. Roles come from the roles
// claim through the role map. A token that does not verify is a *Denied.
func (o *OIDC) Verify(ctx context.Context, raw string) (*Principal, error) {
	_, p, err := o.verify(ctx, raw)
	return p, err
}

// verify is Verify, also returning the verified token (WebLogin checks
// its nonce).
func (o *OIDC) verify(ctx context.Context, raw string) (*oidc.IDToken, *Principal, error) {
	v, err := o.getVerifier(ctx)
	if err != nil {
		return nil, nil, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return nil, nil, deny("expired", "SSO token expired at %s", exp.Expiry.UTC().Format(time.RFC3339))
		}
		return nil, nil, deny("invalid_token", "%v", err)
	}
	if !o.audienceOK(tok.Audience) {
		return nil, nil, deny("invalid_token", "oidc: expected audience %q (or one of %q) got %q", o.opts.Audience, o.opts.ClientIDs, tok.Audience)
	}
	if o.opts.AccessTokenType == AccessTokenRFC9068 {
		if err := o.checkTokenType(raw, tok.Audience); err != nil {
			return nil, nil, err
		}
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, nil, deny("invalid_token", "claims: %v", err)
	}
	name, _ := lookupClaim(claims, o.opts.UsernameClaim).(string)
	if name == "" {
		name = tok.Subject
	}
	if name == "" {
		return nil, nil, deny("invalid_token", "the token names no subject")
	}
	if len(name) > maxOIDCName {
		name = name[:maxOIDCName]
	}
	var roles RoleSet
	for _, v := range claimStrings(lookupClaim(claims, o.opts.RolesClaim)) {
		for _, r := range o.opts.RoleMap[v] {
			roles |= r.bit()
		}
	}
	return tok, &Principal{Name: "oidc:" + name, Roles: roles, Method: MethodOIDC, ExpiresAt: tok.Expiry}, nil
}

// checkTokenType enforces RFC 9068 on a verified token: a JWT access
// token (JOSE typ at+jwt or application/at+jwt, compared as media types:
// without case, the application/ prefix optional) must name Audience; any
// other token is an ID token, accepted only when it names one of writ's
// login clients (ClientIDs), so that no ID token passes as an access
// token for the API.
func (o *OIDC) checkTokenType(raw string, aud []string) error {
	jws, err := jose.ParseSigned(raw, algorithmsOf(o.opts.Algorithms))
	if err != nil || len(jws.Signatures) != 1 {
		return deny("invalid_token", "the token's header: %v", err)
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string)
	if isAccessTokenType(typ) {
		if !slices.Contains(aud, o.opts.Audience) {
			return deny("invalid_token", "an access token (typ %q) for %q, not for writ's audience %q", typ, aud, o.opts.Audience)
		}
		return nil
	}
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(o.opts.ClientIDs, a) }) {
		return deny("invalid_token", "the token's typ is %q, not at+jwt: an ID token is not an access token (RFC 9068; auth.oidc.accessTokenType is rfc9068)", typ)
	}
	return nil
}

// isAccessTokenType reports whether a JOSE typ names a JWT access token
// (RFC 9068 §2.1): at+jwt, as a media type.
func isAccessTokenType(typ string) bool {
	t := strings.ToLower(typ)
	return strings.TrimPrefix(t, "application/") == "at+jwt"
}

func algorithmsOf(names []string) []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(names))
	for i, n := range names {
		out[i] = jose.SignatureAlgorithm(n)
	}
	return out
}

// maxOIDCName bounds the name taken from a token (audit actor ids are
// at most 256 bytes).
const maxOIDCName = 200

// lookupClaim follows a dotted path through nested objects. A claim whose
// own name has a dot is found too.
func lookupClaim(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	var cur any = claims
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

func claimStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
