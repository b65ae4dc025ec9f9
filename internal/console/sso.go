package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/writ-sec/writ/internal/auth"
)

// ssoFlow is the authorization request in flight, kept in the browser
// (HttpOnly cookie, SameSite Lax: the provider sends the browser back
// with a top-level navigation from its own site) for ten minutes.
type ssoFlow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x"`
}

const ssoFlowTTL = 10 * time.Minute

// ssoStart sends the browser to the provider: authorization code with
// PKCE (S256), a fresh state and nonce.
func (c *Console) ssoStart(w http.ResponseWriter, r *http.Request) {
	if c.opts.WebLogin == nil {
		c.errorPage(w, r, http.StatusNotFound, "SSO sign-in is not configured on this server (auth.oidc.consoleRedirectURL).")
		return
	}
	start, err := c.opts.WebLogin.Start(r.Context())
	if err != nil {
		c.fail(w, r, "reach the SSO provider", err)
		return
	}
	flow, _ := json.Marshal(ssoFlow{State: start.State, Nonce: start.Nonce, Verifier: start.Verifier, Next: localPath(r.URL.Query().Get("next"))})
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: base64.RawURLEncoding.EncodeToString(flow), Path: "/login/callback",
		MaxAge: int(ssoFlowTTL / time.Second), HttpOnly: true, Secure: c.isSecure(r), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, start.URL, http.StatusSeeOther)
}

// ssoCallback finishes the sign-in: the state must be this browser's,
// the code is exchanged with the PKCE verifier, and the ID token must
// carry the nonce; the ID token becomes the session credential (the API
// accepts it as a bearer token too, until it expires).
func (c *Console) ssoCallback(w http.ResponseWriter, r *http.Request) {
	if c.opts.WebLogin == nil {
		c.errorPage(w, r, http.StatusNotFound, "SSO sign-in is not configured on this server.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: "/login/callback", MaxAge: -1, HttpOnly: true,
		Secure: c.isSecure(r), SameSite: http.SameSiteLaxMode})
	var flow ssoFlow
	if ck, err := r.Cookie(ssoCookie); err == nil {
		if raw, err := base64.RawURLEncoding.DecodeString(ck.Value); err == nil {
			_ = json.Unmarshal(raw, &flow)
		}
	}
	refuse := func(d *auth.Denied) {
		c.srv.RecordDenial(r, http.StatusUnauthorized, nil, d.Code, d.Detail, "GET /login/callback")
		c.errorPage(w, r, http.StatusUnauthorized, "The SSO sign-in did not complete: "+d.Error()+". Sign in again.")
	}
	code, err := c.opts.WebLogin.CallbackCode(r.URL.Query(), flow.State)
	var d *auth.Denied
	if errors.As(err, &d) {
		refuse(d)
		return
	}
	if err != nil {
		c.fail(w, r, "read the SSO provider's answer", err)
		return
	}
	idToken, p, err := c.opts.WebLogin.Finish(r.Context(), code, flow.Verifier, flow.Nonce)
	if errors.As(err, &d) {
		refuse(d)
		return
	}
	if err != nil {
		c.fail(w, r, "finish the SSO sign-in", err)
		return
	}
	expires := p.ExpiresAt
	if expires.IsZero() {
		expires = c.opts.Now().Add(time.Hour)
	}
	c.setSession(w, r, idToken, expires)
	// The session cookie is SameSite Strict: a browser does not send it on
	// this navigation, which began at the provider's site. A page of our
	// own moves on, as a same-site navigation.
	c.render(w, r, http.StatusOK, "signed_in.html", "Signed in", map[string]any{"Next": localPath(flow.Next), "Name": p.Name})
}
