package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/auth"
)

// Role sets of the routes (the roles are in docs/design.md, the matrix in
// docs/auth.md, docs/api.md and openapi.json as x-writ-roles).
var (
	// ReadRoles read status, playbooks, executions, approvals, holds and
	// metrics: every role.
	ReadRoles = auth.Roles(auth.Viewer, auth.Analyst, auth.Approver, auth.Executor, auth.Admin)
	// DryRunRoles judge and plan a posted playbook.
	DryRunRoles = auth.Roles(auth.Analyst, auth.Admin)
	// ExecuteRoles start manual executions and ask for a reconcile pass.
	ExecuteRoles = auth.Roles(auth.Executor, auth.Admin)
	// AdminRoles manage accounts and tokens, acknowledge holds, export and
	// verify the audit log and make checkpoints.
	AdminRoles = auth.Roles(auth.Admin)
)

// Route is one endpoint and who may call it.
type Route struct {
	// Pattern is a Go 1.22 mux pattern with a method: "GET /api/v1/x/{id}".
	Pattern string
	Handler http.Handler
	// Public, when not empty, makes the route need no login and says what
	// its authority is instead ("the envelope's signature").
	Public string
	// Roles that may call the route (any one of them). Zero on a route
	// that is not public: any authenticated caller, whatever its roles
	// (whoami, logout, password change).
	Roles auth.RoleSet
	// DuringPasswordChange lets a session that must change its password
	// call the route (only whoami, logout and the change itself).
	DuringPasswordChange bool
	// RateLimited routes check passwords: each client address gets the
	// guard's login rate.
	RateLimited bool
	// MaxBody bounds the request body; 0: the guard's default, -1: the
	// handler bounds and checks it itself (signed bytes the contract's
	// body check must not reshape: the webhook's). Query and path
	// parameters are checked on every route the OpenAPI document has.
	MaxBody int64
	// Browser, when set, makes the route a page of the console: its
	// credential comes from a cookie rather than an Authorization header,
	// requests that change something must carry the form's CSRF token,
	// and refusals are pages. Roles, denial audit and rate limits are the
	// API's.
	Browser Browser
}

// Browser is how the console's routes authenticate (internal/console).
type Browser interface {
	// Credential is the session credential the request carries (a cookie).
	Credential(r *http.Request) (cred string, present bool)
	// CheckRequest refuses a request that changes something (not GET or
	// HEAD) without the session's CSRF token or from another origin: the
	// error is what the caller is told.
	CheckRequest(r *http.Request, cred string) error
	// Deny answers a refusal: status, a code of the API's codes and a
	// message for people.
	Deny(w http.ResponseWriter, r *http.Request, status int, code, message string)
}

// authenticated reports whether the route needs a principal.
func (rt Route) authenticated() bool { return rt.Public == "" }

// Access says who may call a route, for documentation and tests.
type Access struct {
	Pattern              string
	Public               string
	Roles                auth.RoleSet
	DuringPasswordChange bool
	RateLimited          bool
	// Browser: a console page (cookie session, CSRF token).
	Browser bool
}

// declared is the access of routes other packages register with Handle
// (the webhook receiver, metrics). A pattern not listed here gets
// AdminRoles: an undeclared route is never open by accident.
var declared = map[string]Route{
	"POST /webhooks/github": {Public: "the delivery's HMAC-SHA256 signature (X-Hub-Signature-256)", MaxBody: -1},
	"POST /webhooks/gitlab": {Public: "the X-Gitlab-Token secret", MaxBody: -1},
	"GET /metrics":          {Roles: ReadRoles},
}

// Authenticator checks a bearer credential: a *auth.Denied for a refused
// one, another error when it cannot be checked.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (*auth.Principal, error)
}

// Guard is what protected routes need: the authenticator, the auditor of
// denied requests, the login rate limiter and request limits. Routes
// registered before SetGuard answer 503 until it is set.
type Guard struct {
	Auth    Authenticator
	Denials *DenialAuditor
	// Limiter bounds password checks per client (nil: none).
	Limiter *RateLimiter
	// RefusedApprovals bounds the envelopes POST /api/v1/approvals
	// refuses per client: past it, a refused envelope is answered 429 (a
	// valid one is still accepted). Nil: 10 a minute, bursts of 10.
	RefusedApprovals *RateLimiter
	// TrustedProxies name the load balancers whose X-Forwarded-For is
	// believed.
	TrustedProxies []netip.Prefix
	// MaxBody bounds request bodies. Default 1 MiB.
	MaxBody int64
	// BodyReadTimeout bounds reading a request body: a client that does
	// not finish sending it in time is answered 408. Default 10s.
	BodyReadTimeout time.Duration
}

// SetGuard installs the guard; routes read it on every request.
func (s *Server) SetGuard(g Guard) error {
	if g.Auth == nil || g.Denials == nil {
		return errors.New("server: a guard needs an authenticator and a denial auditor")
	}
	if g.MaxBody == 0 {
		g.MaxBody = 1 << 20
	}
	if g.BodyReadTimeout <= 0 {
		g.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if g.RefusedApprovals == nil {
		g.RefusedApprovals = NewRateLimiter(RateLimitOptions{PerMinute: 10, Burst: 10})
	}
	s.guard.Store(&g)
	return nil
}

// Route registers a route.
func (s *Server) Route(rt Route) {
	if rt.Handler == nil {
		panic("server: route " + rt.Pattern + " has no handler")
	}
	if _, _, ok := strings.Cut(rt.Pattern, " "); !ok {
		panic("server: route " + rt.Pattern + " has no method")
	}
	s.mu.Lock()
	s.routes = append(s.routes, rt)
	s.mu.Unlock()
	s.mux.Handle(rt.Pattern, s.protect(rt))
}

// Handle registers a handler for another package (the GitHub webhook
// receiver, metrics). Its access comes from the declared table: public
// with a stated authority, or roles; an undeclared pattern is admin-only.
func (s *Server) Handle(pattern string, h http.Handler) {
	rt, ok := declared[pattern]
	if !ok {
		rt = Route{Roles: AdminRoles}
		s.opts.Logger.Warn("route registered without declared access: admins only", slog.String("route", pattern))
	}
	rt.Pattern, rt.Handler = pattern, h
	s.Route(rt)
}

// Routes lists the registered routes and who may call them, sorted.
func (s *Server) Routes() []Access {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Access, 0, len(s.routes))
	for _, rt := range s.routes {
		out = append(out, Access{Pattern: rt.Pattern, Public: rt.Public, Roles: rt.Roles, DuringPasswordChange: rt.DuringPasswordChange, RateLimited: rt.RateLimited, Browser: rt.Browser != nil})
	}
	slices.SortFunc(out, func(a, b Access) int { return strings.Compare(a.Pattern, b.Pattern) })
	return out
}

// protect wraps a route's handler: body limit, login rate limit,
// authentication, authorization; every 401 and 403 goes to the denial
// auditor.
func (s *Server) protect(rt Route) http.Handler {
	op := contractFor(rt.Pattern)
	// serve checks the request against the contract, then serves it.
	serve := func(w http.ResponseWriter, r *http.Request) {
		if op != nil {
			if ce := op.checkParams(r); ce != nil {
				writeContractError(w, ce)
				return
			}
			if rt.MaxBody >= 0 {
				if err := op.checkBody(r); err != nil {
					writeContractError(w, err)
					return
				}
			}
		}
		rt.Handler.ServeHTTP(w, r)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := infoFrom(r.Context())
		if ri != nil {
			ri.pattern = rt.Pattern
		}
		g := s.guard.Load()
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			timeout := DefaultBodyReadTimeout
			if g != nil {
				timeout = g.BodyReadTimeout
			}
			r.Body = deadlineBody(w, r.Body, timeout)
		}
		if rt.MaxBody >= 0 && r.Body != nil && r.Body != http.NoBody {
			limit := rt.MaxBody
			if limit == 0 {
				limit = 1 << 20
				if g != nil {
					limit = g.MaxBody
				}
			}
			if r.ContentLength > limit {
				writeProblem(w, http.StatusRequestEntityTooLarge, "too_large", "the request body is larger than %d bytes", limit)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		if !rt.authenticated() && !rt.RateLimited {
			serve(w, r)
			return
		}
		if g == nil {
			w.Header().Set("Retry-After", "5")
			writeProblem(w, http.StatusServiceUnavailable, "auth_unavailable", "authentication is not set up yet")
			return
		}
		client := ClientAddr(r, g.TrustedProxies)
		if rt.RateLimited && g.Limiter != nil {
			if ok, wait := g.Limiter.Allow(client); !ok {
				g.Denials.Record(r.Context(), Denial{Status: http.StatusTooManyRequests, Code: "rate_limited", Route: rt.Pattern,
					Remote: client.String(), RequestID: RequestID(r.Context())})
				s.opts.Logger.WarnContext(r.Context(), "login rate limit", slog.String("client", client.String()), slog.String("route", rt.Pattern))
				if rt.Browser != nil {
					w.Header().Set("Retry-After", strconv.Itoa(int(max(1, wait.Round(time.Second)/time.Second))))
					rt.Browser.Deny(w, r, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("too many attempts from %s: try again in %s", client, wait.Round(time.Second)))
					return
				}
				writeRateLimited(w, wait, "too many attempts from %s: try again in %s", client, wait.Round(time.Second))
				return
			}
		}
		if !rt.authenticated() {
			serve(w, r)
			return
		}
		deny := func(status int, p *auth.Principal, code, detail, message string) {
			g.Denials.Record(r.Context(), Denial{Status: status, Principal: p, Code: code, Detail: detail, Route: rt.Pattern,
				Remote: client.String(), RequestID: RequestID(r.Context())})
			if rt.Browser != nil {
				rt.Browser.Deny(w, r, status, code, message)
				return
			}
			if status == http.StatusUnauthorized {
				challenge := `Bearer realm="writ"`
				if code != "no_credentials" {
					challenge += `, error="invalid_token"`
				}
				w.Header().Set("WWW-Authenticate", challenge)
				writeProblem(w, status, "unauthenticated", "%s", message)
				return
			}
			writeProblem(w, status, code, "%s", message)
		}
		cred, present := auth.BearerCredential(r.Header.Get("Authorization"))
		if rt.Browser != nil {
			cred, present = rt.Browser.Credential(r)
		}
		if !present {
			deny(http.StatusUnauthorized, nil, "no_credentials", "", "log in (POST /api/v1/auth/login) or send a bearer token")
			return
		}
		p, err := g.Auth.Authenticate(r.Context(), cred)
		var d *auth.Denied
		switch {
		case errors.As(err, &d):
			deny(http.StatusUnauthorized, nil, d.Code, d.Detail, "the bearer token is not valid: "+publicReason(d.Code))
			return
		case err != nil:
			s.opts.Logger.ErrorContext(r.Context(), "authenticate", slog.Any("error", err))
			w.Header().Set("Retry-After", "5")
			writeProblem(w, http.StatusServiceUnavailable, "auth_unavailable", "the credential could not be checked; try again")
			return
		}
		if ri != nil {
			ri.principal = p
		}
		if rt.Browser != nil {
			if err := rt.Browser.CheckRequest(r, cred); err != nil {
				deny(http.StatusForbidden, p, "csrf", err.Error(), err.Error())
				return
			}
		}
		if p.MustChangePassword && !rt.DuringPasswordChange {
			deny(http.StatusForbidden, p, "password_change_required", "",
				"change your one-time password first (POST /api/v1/auth/password)")
			return
		}
		if !rt.Roles.Empty() && p.Roles.Intersect(rt.Roles).Empty() {
			deny(http.StatusForbidden, p, "forbidden", fmt.Sprintf("needs %s, has %s", rt.Roles, p.Roles),
				fmt.Sprintf("this needs one of the roles %s", rt.Roles))
			return
		}
		serve(w, r)
	})
}

// deadlineBody bounds reading a body: the connection's read deadline is
// set now, and lifted once the body has been read (a deadline passing
// while the handler works would cancel its context).
func deadlineBody(w http.ResponseWriter, body io.ReadCloser, timeout time.Duration) io.ReadCloser {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return body // not a connection (a test recorder)
	}
	return &timedBody{ReadCloser: body, rc: rc}
}

type timedBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		if errors.Is(err, io.EOF) {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

// publicReason is what a client is told about a refused credential: its
// own token's state, never whether an account exists.
func publicReason(code string) string {
	switch code {
	case "expired":
		return "it has expired"
	case "revoked":
		return "it was revoked"
	case "malformed":
		return "it is malformed"
	case "oidc_disabled":
		return "SSO tokens are not accepted by this server"
	}
	return "it is unknown, refused or belongs to a disabled account"
}

// grantingRole is the role a principal acted under on a route: the first
// of the route's roles it has (for audit entries).
func grantingRole(p *auth.Principal, roles auth.RoleSet) string {
	for _, r := range p.Roles.Intersect(roles).List() {
		return string(r)
	}
	return p.Roles.String()
}

// RecordDenial audits a refusal a handler decides itself (a refused
// console login), like the guard's own: with the client's address and the
// request id. It does nothing before the guard is set.
func (s *Server) RecordDenial(r *http.Request, status int, p *auth.Principal, code, detail, route string) {
	g := s.guard.Load()
	if g == nil {
		return
	}
	g.Denials.Record(r.Context(), Denial{Status: status, Principal: p, Code: code, Detail: detail, Route: route,
		Remote: ClientAddr(r, g.TrustedProxies).String(), RequestID: RequestID(r.Context())})
}

// ClientAddress is the request's client address, believing X-Forwarded-For
// only from the guard's trusted proxies.
func (s *Server) ClientAddress(r *http.Request) string {
	g := s.guard.Load()
	if g == nil {
		return ClientAddr(r, nil).String()
	}
	return ClientAddr(r, g.TrustedProxies).String()
}
