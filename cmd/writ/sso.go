package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/writ-sec/writ/internal/server"
)

// SSO login: the OAuth 2.0 device authorization grant (RFC 8628) with the
// provider writ serve names (GET /api/v1/auth/methods), whose endpoints
// come from its discovery document. The ID token is writ's bearer token;
// it is verified here (signature by a key of the provider, issuer,
// audience, expiry) before it is kept, and renewed with the refresh token
// when it expires.

// maxDeviceWait bounds the wait for the user when the provider says
// nothing of the code's lifetime.
const maxDeviceWait = 15 * time.Minute

// ssoProviderOf discovers the provider and returns it with a context
// whose HTTP client is the command's (bodies limited to 1 MiB).
func ssoProviderOf(ctx context.Context, env *cliEnv, issuer string) (context.Context, *oidc.Provider, error) {
	if err := checkHTTPS("the SSO issuer", issuer); err != nil {
		return nil, nil, err
	}
	base := env.client()
	c := *base
	c.Transport = limitedTransport{base: transportOrDefault(base)}
	pctx := oidc.ClientContext(ctx, &c)
	dctx, cancel := context.WithTimeout(pctx, 30*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("discover the SSO provider %s: %s", redactServerURL(issuer), flattenText(err.Error(), 500))
	}
	return pctx, p, nil
}

// ssoLogin gets an ID token through the device authorization grant: it
// prints where to go and the code to enter, polls the token endpoint as
// the provider asks (its interval, slower after slow_down), verifies the
// ID token and returns the session to keep (user and roles still to be
// asked of the server).
func ssoLogin(ctx context.Context, env *cliEnv, srv string, m *server.OIDCLogin) (*session, error) {
	if m.ClientID == "" {
		return nil, fmt.Errorf("the server names no client id for SSO login")
	}
	pctx, p, err := ssoProviderOf(ctx, env, m.Issuer)
	if err != nil {
		return nil, err
	}
	ep := p.Endpoint()
	if ep.DeviceAuthURL == "" {
		return nil, fmt.Errorf("the SSO provider %s offers no device authorization endpoint (RFC 8628) in its discovery document: its administrator must enable the device grant for client %q", m.Issuer, m.ClientID)
	}
	for what, u := range map[string]string{"device_authorization_endpoint": ep.DeviceAuthURL, "token_endpoint": ep.TokenURL} {
		if err := checkHTTPS("the SSO provider's "+what, u); err != nil {
			return nil, err
		}
	}
	cfg := oauth2.Config{ClientID: m.ClientID, Scopes: m.Scopes,
		// A public client: its id in the form, no secret.
		Endpoint: oauth2.Endpoint{DeviceAuthURL: ep.DeviceAuthURL, TokenURL: ep.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	da, err := cfg.DeviceAuth(pctx)
	if err != nil {
		return nil, fmt.Errorf("start the SSO login at %s: %s", redactServerURL(ep.DeviceAuthURL), oauthError(err))
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return nil, fmt.Errorf("the SSO provider's device authorization answer lacks device_code, user_code or verification_uri")
	}
	fmt.Fprintf(env.stderr, "To log in to %s, open\n\n    %s\n\nin a browser and enter the code\n\n    %s\n\n",
		redactServerURL(srv), flattenText(da.VerificationURI, 500), flattenText(da.UserCode, 100))
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(env.stderr, "(or open %s)\n", flattenText(da.VerificationURIComplete, 600))
	}
	wctx := pctx
	if da.Expiry.IsZero() {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(pctx, maxDeviceWait)
		defer cancel()
		fmt.Fprintln(env.stderr, "Waiting for you to approve…")
	} else {
		fmt.Fprintf(env.stderr, "Waiting for you to approve (the code expires at %s)…\n", da.Expiry.Local().Format(time.TimeOnly))
	}
	tok, err := cfg.DeviceAccessToken(wctx, da)
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re) && re.ErrorCode == "access_denied":
			return nil, errors.New("the SSO login was denied at the provider")
		case errors.As(err, &re) && re.ErrorCode == "expired_token",
			errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return nil, errors.New("the code expired before the login was approved: run writ login again")
		case ctx.Err() != nil:
			return nil, fmt.Errorf("SSO login: %w", ctx.Err())
		}
		return nil, fmt.Errorf("SSO login at %s: %s", redactServerURL(ep.TokenURL), oauthError(err))
	}
	s, err := ssoSession(pctx, p, m.ClientID, tok)
	if err != nil {
		return nil, err
	}
	s.Server, s.Issuer, s.Scopes = srv, m.Issuer, m.Scopes
	return s, nil
}

// ssoSession verifies the ID token of a token response (signature,
// issuer, audience, expiry) and makes the session of it.
func ssoSession(ctx context.Context, p *oidc.Provider, clientID string, tok *oauth2.Token) (*session, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, errors.New("the SSO provider answered without an ID token (is openid among the scopes of writ's client?)")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("the SSO provider's ID token does not verify: %w", err)
	}
	return &session{Method: methodSSO, Token: raw, ExpiresAt: idt.Expiry, ClientID: clientID, Subject: idt.Subject,
		RefreshToken: tok.RefreshToken}, nil
}

// refreshSSO renews an SSO session's ID token with its refresh token (the
// provider may hand out a new refresh token too). The renewed token must
// verify and name the same subject.
func refreshSSO(ctx context.Context, env *cliEnv, s *session) (*session, error) {
	pctx, p, err := ssoProviderOf(ctx, env, s.Issuer)
	if err != nil {
		return nil, err
	}
	tokenURL := p.Endpoint().TokenURL
	if err := checkHTTPS("the SSO provider's token_endpoint", tokenURL); err != nil {
		return nil, err
	}
	cfg := oauth2.Config{ClientID: s.ClientID, Scopes: s.Scopes, Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	rctx, cancel := context.WithTimeout(pctx, 30*time.Second)
	defer cancel()
	tok, err := cfg.TokenSource(rctx, &oauth2.Token{RefreshToken: s.RefreshToken}).Token()
	if err != nil {
		return nil, fmt.Errorf("the SSO provider did not renew it: %s", oauthError(err))
	}
	fresh, err := ssoSession(pctx, p, s.ClientID, tok)
	if err != nil {
		return nil, err
	}
	if fresh.Subject != s.Subject {
		return nil, errors.New("the renewed ID token names another subject")
	}
	renewed := *s
	renewed.Token, renewed.ExpiresAt = fresh.Token, fresh.ExpiresAt
	if fresh.RefreshToken != "" {
		renewed.RefreshToken = fresh.RefreshToken
	}
	return &renewed, nil
}

// oauthError says what went wrong at the provider without its answer's
// body (which might echo what was sent).
func oauthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := re.ErrorCode
		if msg == "" && re.Response != nil {
			msg = re.Response.Status
		}
		if re.ErrorDescription != "" {
			msg += ": " + flattenText(re.ErrorDescription, 300)
		}
		return msg
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Sprintf("%s %s: %v", ue.Op, redactServerURL(ue.URL), ue.Err)
	}
	return err.Error()
}

// checkHTTPS refuses a provider URL that is not https: device codes and
// tokens travel there.
func checkHTTPS(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%s %q is not an https URL", what, redactServerURL(raw))
	}
	return nil
}

func transportOrDefault(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// limitedTransport bounds the bodies of the provider's answers (1 MiB).
type limitedTransport struct{ base http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, 1<<20), Closer: resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}
