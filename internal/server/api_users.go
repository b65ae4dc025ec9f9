package server

import (
	"net/http"
	"time"

	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/playbook"
)

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	users, err := acc.Users(r.Context())
	if err != nil {
		a.fail(w, r, "list users", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	u, err := acc.GetUser(r.Context(), r.PathValue("username"))
	if err != nil {
		a.fail(w, r, "user "+r.PathValue("username"), err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

type createUserRequest struct {
	Username    string   `json:"username"`
	DisplayName string   `json:"display_name"`
	Roles       []string `json:"roles"`
	// NoPassword makes an account for API tokens only (automation).
	NoPassword bool `json:"no_password"`
}

// UserCreated is a new account and, unless it has no password, its
// one-time password (shown once, to be changed at the first login).
type UserCreated struct {
	User            *auth.User `json:"user"`
	OneTimePassword string     `json:"one_time_password,omitempty"`
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	var req createUserRequest
	if err := decodeJSON(r, &req); err != nil {
		a.fail(w, r, "create user", err)
		return
	}
	roles, err := auth.ParseRoles(req.Roles)
	if err != nil {
		a.fail(w, r, "create user", err)
		return
	}
	u, pw, err := acc.CreateUser(r.Context(), actor(r, AdminRoles), auth.NewUser{Username: req.Username, DisplayName: req.DisplayName,
		Roles: roles, NoPassword: req.NoPassword})
	if err != nil {
		a.fail(w, r, "create user "+req.Username, err)
		return
	}
	writeJSON(w, http.StatusCreated, UserCreated{User: u, OneTimePassword: pw})
}

type updateUserRequest struct {
	DisplayName *string   `json:"display_name"`
	Roles       *[]string `json:"roles"`
	Disabled    *bool     `json:"disabled"`
	Unlock      bool      `json:"unlock"`
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	var req updateUserRequest
	if err := decodeJSON(r, &req); err != nil {
		a.fail(w, r, "update user", err)
		return
	}
	c := auth.UserChange{DisplayName: req.DisplayName, Disabled: req.Disabled, Unlock: req.Unlock}
	if req.Roles != nil {
		roles, err := auth.ParseRoles(*req.Roles)
		if err != nil {
			a.fail(w, r, "update user", err)
			return
		}
		c.Roles = &roles
	}
	u, err := acc.UpdateUser(r.Context(), actor(r, AdminRoles), r.PathValue("username"), c)
	if err != nil {
		a.fail(w, r, "user "+r.PathValue("username"), err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// resetPassword gives an account a new one-time password (shown once) and
// revokes its sessions.
func (a *API) resetPassword(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	pw, err := acc.ResetPassword(r.Context(), actor(r, AdminRoles), r.PathValue("username"))
	if err != nil {
		a.fail(w, r, "user "+r.PathValue("username"), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"one_time_password": pw})
}

func (a *API) revokeSessions(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	n, err := acc.RevokeSessions(r.Context(), actor(r, AdminRoles), r.PathValue("username"))
	if err != nil {
		a.fail(w, r, "user "+r.PathValue("username"), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"revoked": n})
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	q := r.URL.Query()
	ts, err := acc.Tokens(r.Context(), q.Get("username"), q.Get("all") == "true")
	if err != nil {
		a.fail(w, r, "list tokens", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": ts})
}

type createTokenRequest struct {
	Username string   `json:"username"`
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	// TTL is the token's lifetime: 30d, 12h (default 90d).
	TTL string `json:"ttl"`
}

// TokenCreated is a new API token and its secret (shown once: only its
// hash is stored).
type TokenCreated struct {
	Token  *auth.Token `json:"token"`
	Secret string      `json:"secret"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	var req createTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		a.fail(w, r, "create token", err)
		return
	}
	roles, err := auth.ParseRoles(req.Roles)
	if err != nil {
		a.fail(w, r, "create token", err)
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = playbook.ParseDuration(req.TTL); err != nil {
			a.fail(w, r, "create token", badRequest("ttl: %v", err))
			return
		}
	}
	t, secret, err := acc.CreateToken(r.Context(), actor(r, AdminRoles), auth.NewToken{Username: req.Username, Name: req.Name, Roles: roles, TTL: ttl})
	if err != nil {
		a.fail(w, r, "create token "+req.Name, err)
		return
	}
	writeJSON(w, http.StatusCreated, TokenCreated{Token: t, Secret: secret})
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	acc := a.accounts(w)
	if acc == nil {
		return
	}
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, r, "revoke token", err)
		return
	}
	t, err := acc.RevokeToken(r.Context(), actor(r, AdminRoles), id)
	if err != nil {
		a.fail(w, r, "token", err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}
