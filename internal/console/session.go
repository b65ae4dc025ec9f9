package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/writ-sec/writ/internal/auth"
)

// Cookies. The session cookie holds the session's bearer secret (a local
// login's session, or the SSO provider's ID token): HttpOnly, SameSite
// Strict, Secure and __Host- prefixed when the console is served over
// TLS. The login cookie is the sign-in form's CSRF token (double submit),
// the SSO cookie the authorization request in flight (state, nonce, PKCE
// verifier), SameSite Lax because the provider sends the browser back.
const (
	sessionCookie       = "writ_session"
	secureSessionCookie = "__Host-writ_session"
	loginCookie         = "writ_login"
	ssoCookie           = "writ_sso"
	csrfField           = "csrf"
	csrfHeader          = "X-CSRF-Token"
)

// isSecure: the browser reaches the console over TLS.
func (c *Console) isSecure(r *http.Request) bool {
	return r.TLS != nil || c.rp.secure
}

func (c *Console) sessionCookieName(r *http.Request) string {
	if c.isSecure(r) {
		return secureSessionCookie
	}
	return sessionCookie
}

// Credential is the session credential of a request (server.Browser). An
// API token is never a console session.
func (c *Console) Credential(r *http.Request) (string, bool) {
	ck, err := r.Cookie(c.sessionCookieName(r))
	if err != nil || ck.Value == "" {
		return "", false
	}
	if strings.HasPrefix(ck.Value, auth.TokenPrefix) {
		return "", true
	}
	return ck.Value, true
}

// csrfToken is a session's CSRF token: an HMAC of a constant under the
// session's secret. Only the holder of the cookie (which scripts cannot
// read) and the server can compute it, and it changes with every session.
func csrfToken(cred string) string {
	m := hmac.New(sha256.New, []byte(cred))
	m.Write([]byte("writ console csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var (
	errCrossOrigin = errors.New("this request came from another site; reload the page and try again")
	errNoCSRF      = errors.New("this form has expired or did not come from this console (CSRF token missing or wrong); reload the page and try again")
)

// CheckRequest refuses a request that changes something without the
// session's CSRF token (form field csrf, or header X-CSRF-Token for the
// console's script) or that a browser says comes from another origin
// (server.Browser).
func (c *Console) CheckRequest(r *http.Request, cred string) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	if err := c.sameOrigin(r); err != nil {
		return err
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(csrfToken(cred))) != 1 {
		return errNoCSRF
	}
	return nil
}

// sameOrigin refuses a request a browser marks as cross-site or whose
// Origin is not the console's.
func (c *Console) sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errCrossOrigin
	}
	if o := r.Header.Get("Origin"); o != "" && o != c.originOf(r) {
		return errCrossOrigin
	}
	return nil
}

// originOf is the origin this request should come from: the configured
// one, else the request's own.
func (c *Console) originOf(r *http.Request) string {
	if c.rp.origin != "" {
		return c.rp.origin
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (c *Console) setSession(w http.ResponseWriter, r *http.Request, cred string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: c.sessionCookieName(r), Value: cred, Path: "/", Expires: expires,
		HttpOnly: true, Secure: c.isSecure(r), SameSite: http.SameSiteStrictMode})
}

func (c *Console) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: c.sessionCookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.isSecure(r), SameSite: http.SameSiteStrictMode})
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// loginPage shows the sign-in form (and the SSO button when configured).
// Its CSRF token is a fresh random value also set as a cookie: the form
// must send both alike.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, "", "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, username, problem string) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", MaxAge: 3600,
		HttpOnly: true, Secure: c.isSecure(r), SameSite: http.SameSiteStrictMode})
	next := localPath(r.FormValue("next"))
	c.render(w, r, status, "login.html", "Sign in", map[string]any{
		"LoginCSRF": tok, "Next": next, "Username": username, "Problem": problem, "SSO": c.opts.WebLogin != nil,
	})
}

// maxFormText bounds a text field of a form.
const maxFormText = 1024

// formText reads a form field: valid UTF-8, no control characters but
// tab and newline (when multiline), at most limit bytes.
func formText(r *http.Request, name string, limit int, multiline bool) (string, error) {
	v := r.PostFormValue(name)
	if len(v) > limit {
		return "", fmt.Errorf("%s is longer than %d bytes", name, limit)
	}
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("%s is not valid UTF-8", name)
	}
	for _, ch := range v {
		if ch < 0x20 && !(multiline && (ch == '\n' || ch == '\r' || ch == '\t')) || ch == 0x7f {
			return "", fmt.Errorf("%s holds a control character", name)
		}
	}
	return v, nil
}

// loginPost checks a username and password, exactly as POST
// /api/v1/auth/login does, and sets the session cookie. Every refusal
// reads alike; the audit log has the reason.
func (c *Console) loginPost(w http.ResponseWriter, r *http.Request) {
	if err := c.sameOrigin(r); err != nil {
		c.srv.RecordDenial(r, http.StatusForbidden, nil, "csrf", err.Error(), "POST /login")
		c.errorPage(w, r, http.StatusForbidden, err.Error())
		return
	}
	ck, err := r.Cookie(loginCookie)
	form := r.PostFormValue(csrfField)
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(form)) != 1 {
		c.srv.RecordDenial(r, http.StatusForbidden, nil, "csrf", "sign-in form without its CSRF token", "POST /login")
		c.showLogin(w, r, http.StatusForbidden, "", "The sign-in form had expired; try again.")
		return
	}
	username, err := formText(r, "username", 128, false)
	if err != nil {
		c.showLogin(w, r, http.StatusBadRequest, "", "Username: "+err.Error()+".")
		return
	}
	password := r.PostFormValue("password")
	if len(password) > maxFormText || username == "" || password == "" {
		c.showLogin(w, r, http.StatusBadRequest, username, "Enter your username and password.")
		return
	}
	res, err := c.opts.Auth.Login(r.Context(), username, password, c.srv.ClientAddress(r))
	var d *auth.Denied
	if errors.As(err, &d) {
		c.srv.RecordDenial(r, http.StatusUnauthorized, nil, d.Code, d.Detail, "POST /login")
		c.showLogin(w, r, http.StatusUnauthorized, username, "Wrong username or password, or the account is locked or disabled.")
		return
	}
	if err != nil {
		c.fail(w, r, "sign in", err)
		return
	}
	c.setSession(w, r, res.Token, res.ExpiresAt)
	next := localPath(r.PostFormValue("next"))
	if res.Principal.MustChangePassword {
		next = "/password"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logoutPost ends the session: a local login's session is revoked; an SSO
// session's cookie is dropped (the provider's token expires on its own).
func (c *Console) logoutPost(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p != nil && p.Method == auth.MethodSession {
		if err := c.opts.Auth.Logout(r.Context(), p); err != nil {
			c.fail(w, r, "sign out", err)
			return
		}
	}
	c.clearSession(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (c *Console) passwordPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "password.html", "Change password", map[string]any{})
}

// passwordPost changes the caller's password (a local login only), as
// POST /api/v1/auth/password does: the other sessions are revoked.
func (c *Console) passwordPost(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	show := func(status int, problem string) {
		c.render(w, r, status, "password.html", "Change password", map[string]any{"Problem": problem})
	}
	if p.Method != auth.MethodSession {
		show(http.StatusBadRequest, "Only a local account's password can be changed here.")
		return
	}
	current, next, again := r.PostFormValue("current"), r.PostFormValue("new"), r.PostFormValue("again")
	switch {
	case len(current) > maxFormText || len(next) > maxFormText:
		show(http.StatusBadRequest, fmt.Sprintf("A password is at most %d bytes.", maxFormText))
		return
	case next != again:
		show(http.StatusBadRequest, "The new password and its repetition differ.")
		return
	}
	err := c.opts.Auth.ChangePassword(r.Context(), p, current, next)
	var d *auth.Denied
	if errors.As(err, &d) {
		c.srv.RecordDenial(r, http.StatusForbidden, p, d.Code, d.Detail, "POST /password")
		show(http.StatusForbidden, "The current password is wrong.")
		return
	}
	if errors.Is(err, auth.ErrInvalid) {
		show(http.StatusBadRequest, strings.TrimPrefix(err.Error(), auth.ErrInvalid.Error()+": "))
		return
	}
	if err != nil {
		c.fail(w, r, "change password", err)
		return
	}
	c.log.InfoContext(r.Context(), "password changed in the console", slog.String("user", p.Name))
	http.Redirect(w, r, "/?changed=1", http.StatusSeeOther)
}

// queryValue reads a query parameter: valid UTF-8 without control
// characters, at most limit bytes.
func queryValue(q url.Values, name string, limit int) (string, error) {
	v := strings.TrimSpace(q.Get(name))
	if len(v) > limit {
		return "", fmt.Errorf("%s is longer than %d bytes", name, limit)
	}
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("%s is not valid UTF-8", name)
	}
	for _, ch := range v {
		if ch < 0x20 || ch == 0x7f {
			return "", fmt.Errorf("%s holds a control character", name)
		}
	}
	return v, nil
}
