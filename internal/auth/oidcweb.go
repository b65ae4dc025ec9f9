package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Console sign-in: the OAuth 2.0 authorization-code flow with PKCE (S256,
// RFC 7636), state and nonce (OpenID Connect Core 3.1), for a browser.
// Start gives the provider's authorization URL and the values the caller
// keeps for the callback (state, nonce, verifier: per sign-in, never
// shared); CallbackCode reads the redirect back (the provider's error, or
// the code when state matches); Finish exchanges the code with the
// verifier and verifies the ID token like a bearer token, and its nonce.
// The ID token is the console's session credential: Authenticate accepts
// it like any SSO bearer token.

// Denied codes of the console sign-in, besides those of Verify
// (invalid_token, expired) for the ID token itself.
const (
	// DeniedProviderError: the provider redirected back with an error
	// (access_denied, login_required, ...).
	DeniedProviderError = "provider_error"
	// DeniedStateMismatch: the callback's state is not the one Start made
	// (a forged or replayed callback).
	DeniedStateMismatch = "state_mismatch"
	// DeniedCodeExchange: the token endpoint refused the code (a wrong
	// verifier, a used or expired code, wrong client credentials).
	DeniedCodeExchange = "code_exchange_failed"
	// DeniedNoIDToken: the token response has no id_token (openid was not
	// granted).
	DeniedNoIDToken = "no_id_token"
	// DeniedNonceMismatch: the ID token's nonce is not the one Start made.
	DeniedNonceMismatch = "nonce_mismatch"
)

// DefaultWebScopes are asked for when WebLoginOptions names none.
var DefaultWebScopes = []string{oidc.ScopeOpenID, "profile", "email"}

// WebLoginOptions: the console's client at the provider.
type WebLoginOptions struct {
	// ClientID; default the OIDC Audience. Tokens naming it as aud must
	// be accepted by the OIDC verifier (Audience or one of ClientIDs).
	ClientID string
	// ClientSecret, for a confidential client; empty for a public one
	// (PKCE only). Never logged or printed.
	ClientSecret string
	// RedirectURL is the console's callback, registered at the provider:
	// https, or http on localhost / 127.0.0.1 / [::1] for development.
	RedirectURL string
	// Scopes asked for (default DefaultWebScopes); openid is always.
	Scopes []string
}

// String leaves the secret out.
func (o WebLoginOptions) String() string {
	return fmt.Sprintf("WebLoginOptions{ClientID:%q ClientSecret:%s RedirectURL:%q Scopes:%q}", o.ClientID, redacted(o.ClientSecret), o.RedirectURL, o.Scopes)
}

// GoString leaves the secret out.
func (o WebLoginOptions) GoString() string { return o.String() }

// LogValue leaves the secret out.
func (o WebLoginOptions) LogValue() slog.Value {
	return slog.GroupValue(slog.String("client_id", o.ClientID), slog.String("client_secret", redacted(o.ClientSecret)),
		slog.String("redirect_url", o.RedirectURL), slog.Any("scopes", o.Scopes))
}

func redacted(s string) string {
	if s == "" {
		return `""`
	}
	return "[redacted]"
}

// WebLogin signs a browser in with the authorization-code flow. It is safe
// for concurrent use; it keeps no per-sign-in state (the caller keeps
// WebLoginStart's values, e.g. in an encrypted, short-lived cookie).
type WebLogin struct {
	o        *OIDC
	clientID string
	secret   string
	redirect string
	scopes   []string
}

// String leaves the secret out.
func (w WebLogin) String() string {
	return fmt.Sprintf("WebLogin{issuer:%q client_id:%q redirect:%q}", w.o.opts.Issuer, w.clientID, w.redirect)
}

// GoString leaves the secret out.
func (w WebLogin) GoString() string { return w.String() }

// LogValue leaves the secret out.
func (w WebLogin) LogValue() slog.Value { return slog.StringValue(w.String()) }

// ClientID is the console's client id.
func (w *WebLogin) ClientID() string { return w.clientID }

// RedirectURL is the console's callback.
func (w *WebLogin) RedirectURL() string { return w.redirect }

// NewWebLogin checks the options. The provider is discovered on the first
// Start or Finish (the same discovery, HTTP client, CA and limits Verify
// uses), so writ starts while it is unreachable.
func (o *OIDC) NewWebLogin(opts WebLoginOptions) (*WebLogin, error) {
	id := opts.ClientID
	if id == "" {
		id = o.opts.Audience
	}
	if !printable(id) {
		return nil, fmt.Errorf("oidc console login: client id %q is empty or not printable ASCII", id)
	}
	if !o.audienceOK([]string{id}) {
		// Authenticate must accept the ID tokens the console keeps.
		return nil, fmt.Errorf("oidc console login: client id %q is not an accepted audience (the audience %q or one of the client ids %q)",
			id, o.opts.Audience, o.opts.ClientIDs)
	}
	if err := checkRedirectURL(opts.RedirectURL); err != nil {
		return nil, err
	}
	scopes := opts.Scopes
	if len(scopes) == 0 {
		scopes = DefaultWebScopes
	}
	for _, s := range scopes {
		if !printable(s) || strings.ContainsAny(s, `"\`) {
			return nil, fmt.Errorf("oidc console login: scope %q is not a scope token", s)
		}
	}
	if !slices.Contains(scopes, oidc.ScopeOpenID) {
		scopes = append([]string{oidc.ScopeOpenID}, scopes...)
	}
	return &WebLogin{o: o, clientID: id, secret: opts.ClientSecret, redirect: opts.RedirectURL, scopes: slices.Clone(scopes)}, nil
}

// printable: non-empty visible ASCII, no space.
func printable(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || !unicode.IsPrint(r) })
}

// checkRedirectURL: https, or plain http only to the loopback names (a
// developer's console).
func checkRedirectURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return fmt.Errorf("oidc console login: redirect URL %q is not an absolute URL", raw)
	}
	if u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("oidc console login: redirect URL %q must have no user info and no fragment", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "localhost" || h == "127.0.0.1" || h == "::1" {
			return nil
		}
	}
	return fmt.Errorf("oidc console login: redirect URL %q must be https (http only on localhost or 127.0.0.1)", raw)
}

// WebLoginStart is one sign-in's beginning: send the browser to URL; keep
// State, Nonce and Verifier (secret, for this sign-in only) for the
// callback.
type WebLoginStart struct{ URL, State, Nonce, Verifier string }

// String leaves the nonce and verifier out.
func (s WebLoginStart) String() string { return "WebLoginStart{URL:[redacted]}" }

// GoString leaves the nonce and verifier out.
func (s WebLoginStart) GoString() string { return s.String() }

// endpoints discovers the provider's authorization and token endpoints
// (https) and how the client authenticates at the token endpoint.
func (w *WebLogin) endpoints(ctx context.Context) (*providerMeta, oauth2.Endpoint, error) {
	meta, err := w.o.discover(ctx)
	if err != nil {
		return nil, oauth2.Endpoint{}, err
	}
	if err := checkURL("authorization_endpoint", meta.AuthURL); err != nil {
		return nil, oauth2.Endpoint{}, err
	}
	if err := checkURL("token_endpoint", meta.TokenURL); err != nil {
		return nil, oauth2.Endpoint{}, err
	}
	style := oauth2.AuthStyleInParams // a public client: its id in the form
	if w.secret != "" {
		// client_secret_basic is the default (RFC 8414); post only when
		// the provider offers post and not basic.
		style = oauth2.AuthStyleInHeader
		if len(meta.TokenAuthMethods) > 0 && !slices.Contains(meta.TokenAuthMethods, "client_secret_basic") &&
			slices.Contains(meta.TokenAuthMethods, "client_secret_post") {
			style = oauth2.AuthStyleInParams
		}
	}
	return meta, oauth2.Endpoint{AuthURL: meta.AuthURL, TokenURL: meta.TokenURL, AuthStyle: style}, nil
}

func (w *WebLogin) config(ep oauth2.Endpoint) *oauth2.Config {
	return &oauth2.Config{ClientID: w.clientID, ClientSecret: w.secret, RedirectURL: w.redirect, Scopes: w.scopes, Endpoint: ep}
}

// Start makes a fresh state, nonce and PKCE verifier (crypto/rand, 256
// bits each) and the provider's authorization URL with the S256 code
// challenge, state and nonce. An error is the provider's discovery failing
// (not a *Denied).
func (w *WebLogin) Start(ctx context.Context) (*WebLoginStart, error) {
	meta, ep, err := w.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	if m := meta.CodeChallengeMethods; len(m) > 0 && !slices.Contains(m, "S256") {
		return nil, fmt.Errorf("oidc console login: the provider %s does not support PKCE with S256 (code_challenge_methods_supported: %q)", w.o.opts.Issuer, m)
	}
	s := &WebLoginStart{State: randomValue(), Nonce: randomValue(), Verifier: randomValue()}
	s.URL = w.config(ep).AuthCodeURL(s.State, oauth2.S256ChallengeOption(s.Verifier), oidc.Nonce(s.Nonce))
	return s, nil
}

// randomValue is 256 bits from crypto/rand, base64url (43 characters: a
// valid PKCE verifier).
func randomValue() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// maxProviderText bounds the provider's words kept in a denial's detail.
const maxProviderText = 200

// providerText makes the provider's error text safe for a log line:
// printable, one line, bounded.
func providerText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxProviderText {
		s = s[:maxProviderText] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// CallbackCode reads the query of the provider's redirect to RedirectURL:
// the code, when the state is the one Start made. The provider's error
// (error=access_denied, ...) is a *Denied with code DeniedProviderError; a
// state other than wantState is DeniedStateMismatch; no code is
// "malformed".
func (w *WebLogin) CallbackCode(query url.Values, wantState string) (string, error) {
	if e := query.Get("error"); e != "" {
		detail := providerText(e)
		if d := query.Get("error_description"); d != "" {
			detail += ": " + providerText(d)
		}
		return "", deny(DeniedProviderError, "the provider refused the sign-in: %s", detail)
	}
	got := query.Get("state")
	if wantState == "" || subtle.ConstantTimeCompare([]byte(got), []byte(wantState)) != 1 {
		return "", deny(DeniedStateMismatch, "the callback's state is not the sign-in's")
	}
	code := query.Get("code")
	if code == "" {
		return "", deny("malformed", "the callback has no code")
	}
	return code, nil
}

// Finish exchanges the code with the verifier at the token endpoint, takes
// the id_token of the answer and verifies it as Verify does a bearer token
// (signature with an allowed algorithm, issuer, audience, expiry, roles),
// and also that it was issued to this client (its aud names ClientID; azp,
// when present, is ClientID) and that its nonce is the sign-in's. It
// returns the raw ID token (the console's session credential) and the
// principal. Refusals are *Denied (DeniedCodeExchange, DeniedNoIDToken,
// DeniedNonceMismatch, and invalid_token or expired for the token); an
// unreachable provider is another error.
func (w *WebLogin) Finish(ctx context.Context, code, verifier, nonce string) (string, *Principal, error) {
	if code == "" || verifier == "" || nonce == "" {
		return "", nil, deny("malformed", "a code, the verifier and the nonce are needed")
	}
	_, ep, err := w.endpoints(ctx)
	if err != nil {
		return "", nil, err
	}
	tok, err := w.config(ep).Exchange(context.WithValue(ctx, oauth2.HTTPClient, w.o.plain), code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// The provider's error words only: the body is not kept.
			detail := providerText(re.ErrorCode)
			if re.ErrorCode == "" && re.Response != nil {
				detail = "HTTP " + re.Response.Status
			}
			if re.ErrorDescription != "" {
				detail += ": " + providerText(re.ErrorDescription)
			}
			return "", nil, deny(DeniedCodeExchange, "the token endpoint refused the code: %s", detail)
		}
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		return "", nil, fmt.Errorf("oidc console login: code exchange at %s: %w", ep.TokenURL, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", nil, deny(DeniedNoIDToken, "the token response has no id_token (was the openid scope granted?)")
	}
	idt, p, err := w.o.verify(ctx, raw)
	if err != nil {
		return "", nil, err
	}
	if !slices.Contains(idt.Audience, w.clientID) {
		return "", nil, deny("invalid_token", "the ID token was not issued to the console: aud %q lacks %q", idt.Audience, w.clientID)
	}
	var extra struct {
		AZP string `json:"azp"`
	}
	if err := idt.Claims(&extra); err != nil {
		return "", nil, deny("invalid_token", "claims: %v", err)
	}
	if extra.AZP != "" && extra.AZP != w.clientID {
		return "", nil, deny("invalid_token", "the ID token's azp %q is not the console's client id %q", providerText(extra.AZP), w.clientID)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return "", nil, deny(DeniedNonceMismatch, "the ID token's nonce is not the sign-in's")
	}
	return raw, p, nil
}
