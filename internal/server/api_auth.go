package server

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/writ-sec/writ/internal/auth"
)

// recordDenial audits a refused login or password check like a refused
// credential.
func (a *API) recordDenial(r *http.Request, status int, p *auth.Principal, d *auth.Denied, route string) {
	if a.srv == nil {
		return
	}
	g := a.srv.guard.Load()
	if g == nil {
		return
	}
	g.Denials.Record(r.Context(), Denial{Status: status, Principal: p, Code: d.Code, Detail: d.Detail, Route: route,
		Remote: ClientAddr(r, g.TrustedProxies).String(), RequestID: RequestID(r.Context())})
}

// LoginMethods says how to log in to this server (GET
// /api/v1/auth/methods): with a password (local accounts), and with the
// SSO provider when OIDC is configured. `writ login` reads it.
type LoginMethods struct {
	Password bool       `json:"password"`
	OIDC     *OIDCLogin `json:"oidc,omitempty"`
}

// OIDCLogin is how a client gets an SSO token writ accepts: the OAuth 2.0
// device authorization grant (RFC 8628) at the provider Issuer names (its
// discovery document has the endpoints), as the public client ClientID,
// asking for Scopes. The ID token it gets is the bearer token.
type OIDCLogin struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

// loginMethods answers how to log in. Nothing in it is secret: the
// provider's public client id and the scopes.
func (a *API) loginMethods(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, LoginMethods{Password: a.opts.Auth != nil, OIDC: a.opts.OIDCLogin})
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse is a session: its bearer token (shown once), its expiry
// and who it is.
type LoginResponse struct {
	Token     string          `json:"token"`
	ExpiresAt time.Time       `json:"expires_at"`
	Principal *auth.Principal `json:"principal"`
}

// login checks a username and password and opens a session. Every refusal
// answers the same 401, whatever the reason (unknown account, wrong
// password, locked, disabled); the audit log has the reason.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	var req loginRequest
	if err := decodeJSON(r, &req); err != nil {
		a.fail(w, r, "login", err)
		return
	}
	g := a.srv.guard.Load()
	remote := ""
	if g != nil {
		remote = ClientAddr(r, g.TrustedProxies).String()
	}
	res, err := acc.Login(r.Context(), req.Username, req.Password, remote)
	var d *auth.Denied
	if errors.As(err, &d) {
		a.recordDenial(r, http.StatusUnauthorized, nil, d, "POST /api/v1/auth/login")
		writeProblem(w, http.StatusUnauthorized, "invalid_credentials", "wrong username or password, or the account is locked or disabled")
		return
	}
	if err != nil {
		a.fail(w, r, "login", err)
		return
	}
	writeJSON(w, http.StatusOK, LoginResponse{Token: res.Token, ExpiresAt: res.ExpiresAt, Principal: res.Principal})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	if err := acc.Logout(r.Context(), PrincipalFrom(r.Context())); err != nil {
		a.fail(w, r, "logout", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "logged out"})
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, PrincipalFrom(r.Context()))
}

type passwordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// changePassword changes the caller's own password (a login session only);
// the caller's other sessions are revoked.
func (a *API) changePassword(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	var req passwordRequest
	if err := decodeJSON(r, &req); err != nil {
		a.fail(w, r, "change password", err)
		return
	}
	p := PrincipalFrom(r.Context())
	err := acc.ChangePassword(r.Context(), p, req.CurrentPassword, req.NewPassword)
	var d *auth.Denied
	if errors.As(err, &d) {
		a.recordDenial(r, http.StatusForbidden, p, d, "POST /api/v1/auth/password")
		writeProblem(w, http.StatusForbidden, "invalid_credentials", "the current password is wrong")
		return
	}
	if err != nil {
		a.fail(w, r, "change password", err)
		return
	}
	a.log.InfoContext(r.Context(), "password changed", slog.String("user", p.Name))
	writeJSON(w, http.StatusOK, map[string]string{"status": "password changed; your other sessions were revoked"})
}
