// Package auth is who may call writ's API: local accounts (argon2id
// passwords, lockout, sessions), API tokens for automation (random, stored
// hashed, scoped to roles, expiring, revocable) and OIDC bearer tokens from
// a team's SSO (issuer, audience, allowed algorithms, roles mapped from a
// claim). Each way in yields a Principal: a name for the audit log and the
// roles of the approvers file (docs/design.md, docs/auth.md). Secrets (passwords, tokens) are never stored, logged
// or printed: the database holds argon2id hashes and sha256 digests.
//
// One file per concern: roles and principals (this file), passwords
// (password.go), bearer secrets (secret.go), logins and authentication
// (authenticator.go), account and token administration (accounts.go),
// OIDC (oidc.go) and the console's OIDC sign-in (oidcweb.go).
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/audit"
)

// Role is one of the roles of the approvers file (docs/design.md).
type Role string

// The roles.
const (
	Viewer   Role = "viewer"
	Analyst  Role = "analyst"
	Approver Role = "approver"
	Executor Role = "executor"
	Admin    Role = "admin"
)

// AllRoles lists the roles in order.
var AllRoles = []Role{Viewer, Analyst, Approver, Executor, Admin}

func (r Role) bit() RoleSet {
	for i, x := range AllRoles {
		if x == r {
			return 1 << i
		}
	}
	return 0
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if r.bit() == 0 {
		return "", fmt.Errorf("%w: unknown role %q (viewer, analyst, approver, executor, admin)", ErrInvalid, s)
	}
	return r, nil
}

// RoleSet is a set of roles.
type RoleSet uint8

// Roles makes a set.
func Roles(rs ...Role) RoleSet {
	var s RoleSet
	for _, r := range rs {
		s |= r.bit()
	}
	return s
}

// ParseRoles reads role names into a set.
func ParseRoles(names []string) (RoleSet, error) {
	var s RoleSet
	for _, n := range names {
		r, err := ParseRole(strings.TrimSpace(n))
		if err != nil {
			return 0, err
		}
		s |= r.bit()
	}
	return s, nil
}

// rolesOf reads stored role names, ignoring unknown ones (the database
// refuses them anyway).
func rolesOf(names []string) RoleSet {
	var s RoleSet
	for _, n := range names {
		s |= Role(n).bit()
	}
	return s
}

// Has reports whether r is in the set.
func (s RoleSet) Has(r Role) bool { return s&r.bit() != 0 }

// Intersect is the roles in both sets.
func (s RoleSet) Intersect(o RoleSet) RoleSet { return s & o }

// Empty reports whether the set has no role.
func (s RoleSet) Empty() bool { return s == 0 }

// Subset reports whether every role of s is in o.
func (s RoleSet) Subset(o RoleSet) bool { return s&^o == 0 }

// List is the roles in order.
func (s RoleSet) List() []Role {
	out := []Role{}
	for _, r := range AllRoles {
		if s.Has(r) {
			out = append(out, r)
		}
	}
	return out
}

// Strings is the role names in order.
func (s RoleSet) Strings() []string {
	out := []string{}
	for _, r := range s.List() {
		out = append(out, string(r))
	}
	return out
}

// String is the role names joined by commas ("none" for the empty set).
func (s RoleSet) String() string {
	if s == 0 {
		return "none"
	}
	return strings.Join(s.Strings(), ",")
}

// MarshalJSON writes the role names as an array.
func (s RoleSet) MarshalJSON() ([]byte, error) { return json.Marshal(s.Strings()) }

// UnmarshalJSON reads an array of role names.
func (s *RoleSet) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	rs, err := ParseRoles(names)
	if err != nil {
		return err
	}
	*s = rs
	return nil
}

// Method is how a principal authenticated.
type Method string

// Methods.
const (
	MethodSession Method = "session" // a session from a password login
	MethodToken   Method = "token"   // an API token
	MethodOIDC    Method = "oidc"    // a bearer token from the SSO
)

// Principal is an authenticated caller.
type Principal struct {
	// Name identifies the caller in the audit log: the username of a local
	// account, or "oidc:" and the configured claim of an SSO token.
	Name string `json:"name"`
	// UserID is the local account (0 for OIDC).
	UserID int64   `json:"-"`
	Roles  RoleSet `json:"roles"`
	Method Method  `json:"method"`
	// SessionID is the session of a login; TokenID and TokenName the API
	// token used.
	SessionID int64  `json:"session_id,omitempty"`
	TokenID   int64  `json:"token_id,omitempty"`
	TokenName string `json:"token_name,omitempty"`
	// MustChangePassword: the session may only change the password (and
	// log out) until it does.
	MustChangePassword bool `json:"must_change_password,omitempty"`
	// ExpiresAt is when the credential stops working (zero: never).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Actor is the principal as the audit log records it, acting under role
// (the role that granted the action; "" for the principal's roles).
func (p *Principal) Actor(role string) audit.Actor {
	if role == "" {
		role = p.Roles.String()
	}
	return audit.Actor{ID: p.Name, Role: role}
}

// LogValue names the principal without anything secret.
func (p *Principal) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", p.Name), slog.String("method", string(p.Method)), slog.String("roles", p.Roles.String()))
}

// Errors. Compare with errors.Is.
var (
	// ErrNoCredentials: the request carries no credential.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalid: an argument breaks a rule (a role name, a password too
	// short, a token name); the message says which.
	ErrInvalid = errors.New("invalid")
	// ErrLastAdmin: the change would leave no enabled admin.
	ErrLastAdmin = errors.New("the change would leave no enabled admin account")
	// ErrNotSession: the operation needs a login session (logout,
	// password change), not an API or SSO token.
	ErrNotSession = errors.New("this needs a login session")
)

// Denied is a refused credential. Code is for the audit log and metrics;
// callers answer every Denied the same way (401), so a client learns
// nothing about which accounts exist.
type Denied struct {
	// Code: malformed, unknown, expired, revoked, disabled, locked,
	// bad_password, no_password, unknown_user, oidc_disabled, or
	// invalid_token (an SSO token that does not verify); for the console
	// sign-in also provider_error, state_mismatch, code_exchange_failed,
	// no_id_token and nonce_mismatch (oidcweb.go).
	Code string
	// Detail says more, for the audit log (never a secret).
	Detail string
}

func (d *Denied) Error() string {
	if d.Detail == "" {
		return "credential refused: " + d.Code
	}
	return "credential refused: " + d.Code + ": " + d.Detail
}

func deny(code, format string, args ...any) *Denied {
	return &Denied{Code: code, Detail: fmt.Sprintf(format, args...)}
}
