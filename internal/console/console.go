// Package console is writ's web console: what a SOC team reads and signs
// in a browser, served by `writ serve` at / on the API's listener. Pages
// are rendered on the server with html/template from files embedded in
// the binary; a little plain JavaScript (static/console.js, no external
// source) runs the passkey ceremonies. The console has the API's roles
// and denial audit (its routes go through the server's guard), a session
// cookie instead of a bearer header, a CSRF token on every form and a
// strict Content-Security-Policy. It holds no key that can approve: an
// approval made here is a WebAuthn assertion by the approver's own
// passkey over the statement's DSSE PAE, verified like any other
// signature (docs/console.md, docs/approvals.md).
//
// One file per concern: routes and the browser guard (this file), pages
// and their rendering (render.go), sign-in and sessions (session.go), the
// containment page (containment.go), the pending queue and signing
// (pending.go), passkey registration (passkey.go), playbooks and
// executions (playbooks.go) and the audit log (audit.go).
package console

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/server"
	"github.com/writ-sec/writ/internal/store"
)

// Options configures the console.
type Options struct {
	// Store answers reads. Required.
	Store *store.Store
	// Auth logs people in. Required.
	Auth *auth.Authenticator
	// Engine is the reconciler; nil: the pending pages say it is not
	// running.
	Engine server.Engine
	// WebLogin signs in with the SSO provider (authorization code with
	// PKCE); nil: only local passwords.
	WebLogin *auth.WebLogin
	// Origin is the console's public origin (scheme://host[:port]) as a
	// browser sees it: the origin requests must come from, and the
	// WebAuthn origin whose host is the relying party id. Empty: the
	// request's own origin is accepted, and passkeys work only when the
	// console is reached as localhost.
	Origin string
	// TrustedKeys and Checkpoints let the audit page verify the log and
	// show the latest checkpoint; nil: it says so.
	TrustedKeys *audit.KeySet
	// Audit records who exported the audit log (an audit.export entry a
	// download); nil: exports are not recorded.
	Audit *audit.Log
	// Checkpointer makes checkpoints on demand; nil: no button.
	Checkpointer server.Checkpointer
	// Environments are the configured environments (the containment
	// page's filter offers them).
	Environments []string
	// Now is the clock (tests); default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Console serves the pages.
type Console struct {
	opts  Options
	log   *slog.Logger
	pages map[string]*template.Template
	srv   *server.Server
	rp    relyingParty
}

// New makes the console.
func New(opts Options) (*Console, error) {
	if opts.Store == nil || opts.Auth == nil {
		return nil, errors.New("console: needs a store and an authenticator")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rp, err := newRelyingParty(opts.Origin)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	return &Console{opts: opts, log: opts.Logger, pages: pages, rp: rp}, nil
}

// Roles of the console's pages: the API's (docs/console.md has the
// matrix).
var (
	readRoles   = server.ReadRoles
	signRoles   = auth.Roles(auth.Analyst, auth.Approver, auth.Admin)
	adminRoles  = server.AdminRoles
	anyoneRoles = auth.RoleSet(0)
)

// Register mounts the console on a server.
func (c *Console) Register(s *server.Server) {
	c.srv = s
	for _, rt := range c.routes() {
		rt.Browser = c
		s.Route(rt)
	}
}

func (c *Console) routes() []server.Route {
	h := func(f http.HandlerFunc) http.Handler { return c.secure(f) }
	return []server.Route{
		{Pattern: "GET /static/{file}", Public: "none needed: the console's stylesheet and script", Handler: h(serveStatic)},
		{Pattern: "GET /login", Public: "none needed: the sign-in form", Handler: h(c.loginPage)},
		{Pattern: "POST /login", Public: "the password it checks (rate-limited per client, accounts lock)", RateLimited: true, MaxBody: 8 << 10, Handler: h(c.loginPost)},
		{Pattern: "GET /login/sso", Public: "none needed: sends the browser to the SSO provider", RateLimited: true, Handler: h(c.ssoStart)},
		{Pattern: "GET /login/callback", Public: "the provider's authorization code, bound to this browser by state, nonce and PKCE", RateLimited: true, Handler: h(c.ssoCallback)},
		{Pattern: "POST /logout", Roles: anyoneRoles, DuringPasswordChange: true, MaxBody: 8 << 10, Handler: h(c.logoutPost)},
		{Pattern: "GET /password", Roles: anyoneRoles, DuringPasswordChange: true, Handler: h(c.passwordPage)},
		{Pattern: "POST /password", Roles: anyoneRoles, DuringPasswordChange: true, RateLimited: true, MaxBody: 8 << 10, Handler: h(c.passwordPost)},

		{Pattern: "GET /{$}", Roles: readRoles, Handler: h(c.containmentPage)},
		{Pattern: "GET /pending", Roles: readRoles, Handler: h(c.pendingPage)},
		{Pattern: "GET /pending/{id}", Roles: readRoles, Handler: h(c.pendingItemPage)},
		{Pattern: "POST /pending/{id}/statement", Roles: signRoles, MaxBody: 16 << 10, Handler: h(c.pendingStatement)},
		{Pattern: "POST /pending/{id}/sign", Roles: signRoles, MaxBody: 64 << 10, Handler: h(c.pendingSign)},
		{Pattern: "GET /passkey", Roles: signRoles, Handler: h(c.passkeyPage)},
		{Pattern: "POST /passkey/options", Roles: signRoles, MaxBody: 8 << 10, Handler: h(c.passkeyOptions)},
		{Pattern: "POST /passkey/register", Roles: signRoles, MaxBody: 64 << 10, Handler: h(c.passkeyRegister)},

		{Pattern: "GET /playbooks", Roles: readRoles, Handler: h(c.playbooksPage)},
		{Pattern: "GET /playbooks/{name}", Roles: readRoles, Handler: h(c.playbookPage)},
		{Pattern: "GET /executions/{id}", Roles: readRoles, Handler: h(c.executionPage)},
		{Pattern: "GET /audit", Roles: adminRoles, Handler: h(c.auditPage)},
		{Pattern: "GET /audit/export", Roles: adminRoles, Handler: h(c.auditExport)},
	}
}

// contentSecurityPolicy allows the console's own script and stylesheet
// and nothing else: no inline script, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure sets the headers every console response carries.
func (c *Console) secure(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w)
		next(w, r)
	})
}

func setSecurityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // no-referrer would make browsers send "Origin: null" on our own forms
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
}

// Deny answers a refusal of the guard (server.Browser): a page for people,
// JSON for the console's script; an expired or missing session sends a
// page load to the sign-in form.
func (c *Console) Deny(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	setSecurityHeaders(w)
	if status == http.StatusUnauthorized {
		c.clearSession(w, r)
	}
	if wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": message, "code": code})
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		switch {
		case status == http.StatusUnauthorized:
			http.Redirect(w, r, "/login?next="+url.QueryEscape(localPath(r.URL.RequestURI())), http.StatusSeeOther)
			return
		case code == "password_change_required":
			http.Redirect(w, r, "/password", http.StatusSeeOther)
			return
		}
	}
	if status == http.StatusUnauthorized {
		message = "Your session has ended (" + message + "). Sign in again."
	}
	c.errorPage(w, r, status, message)
}

// wantsJSON: the console's script asks for JSON.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json") || r.Header.Get("Content-Type") == "application/json"
}

// localPath keeps a path on this site: anything else becomes "/".
func localPath(p string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") {
		return "/"
	}
	// A browser drops tabs and line breaks from a URL and reads a
	// backslash as a slash, so "/\t/evil.example" or "/\\evil.example"
	// would lead off the site: no control character, no backslash.
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return p
}

// principal is the caller of a protected page.
func principal(r *http.Request) *auth.Principal { return server.PrincipalFrom(r.Context()) }

// ctx bounds a page's work.
func pageContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 30*time.Second)
}
