package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

var (
	usernameRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`) })
	tokenNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`) })
)

// FirstAdmin is the username of the account made when there is none.
const FirstAdmin = "admin"

// NewUser describes an account to create.
type NewUser struct {
	Username    string
	DisplayName string
	Roles       RoleSet
	// Password, when set, is the account's password (it must follow the
	// rules). Empty: a one-time random password is made and returned, to
	// be changed at the first login, unless NoPassword.
	Password string
	// NoPassword makes an account that cannot log in: API tokens only
	// (automation).
	NoPassword bool
}

// User is an account as the API shows it (no hash).
type User struct {
	Username           string     `json:"username"`
	DisplayName        string     `json:"display_name,omitempty"`
	Roles              RoleSet    `json:"roles"`
	Disabled           bool       `json:"disabled"`
	HasPassword        bool       `json:"has_password"`
	MustChangePassword bool       `json:"must_change_password"`
	LockedUntil        *time.Time `json:"locked_until,omitempty"`
	FailedLogins       int        `json:"failed_logins"`
	PasswordChangedAt  *time.Time `json:"password_changed_at,omitempty"`
	LastLoginAt        *time.Time `json:"last_login_at,omitempty"`
	CreatedAt          time.Time  `json:"created_at"`
}

// UserView shows a stored account without its hash.
func UserView(u *store.User) User {
	return User{Username: u.Username, DisplayName: u.DisplayName, Roles: rolesOf(u.Roles), Disabled: u.Disabled,
		HasPassword: u.PasswordHash != "", MustChangePassword: u.MustChangePassword, LockedUntil: u.LockedUntil,
		FailedLogins: u.FailedLogins, PasswordChangedAt: u.PasswordChangedAt, LastLoginAt: u.LastLoginAt, CreatedAt: u.CreatedAt}
}

func (v User) auditJSON() map[string]any {
	return map[string]any{"username": v.Username, "display_name": v.DisplayName, "roles": v.Roles.Strings(), "disabled": v.Disabled,
		"has_password": v.HasPassword, "must_change_password": v.MustChangePassword}
}

// CreateUser makes an account, audited as actor. It returns the one-time
// password when it made one (shown once, never stored or logged).
func (a *Authenticator) CreateUser(ctx context.Context, actor audit.Actor, nu NewUser) (*User, string, error) {
	if !usernameRE().MatchString(nu.Username) {
		return nil, "", fmt.Errorf("%w: username %q: letters, digits and . _ @ - (up to 128), starting with a letter or digit", ErrInvalid, nu.Username)
	}
	if err := checkDisplayName(nu.DisplayName); err != nil {
		return nil, "", err
	}
	oneTime := ""
	mustChange := false
	password := nu.Password
	switch {
	case nu.NoPassword && password != "":
		return nil, "", fmt.Errorf("%w: a password or no password, not both", ErrInvalid)
	case nu.NoPassword:
	case password == "":
		var err error
		if oneTime, err = RandomPassword(); err != nil {
			return nil, "", err
		}
		password, mustChange = oneTime, true
	default:
		if err := CheckPasswordRules(nu.Username, password); err != nil {
			return nil, "", err
		}
	}
	hash := ""
	if password != "" {
		var err error
		if hash, err = a.hasher.hash(ctx, password); err != nil {
			return nil, "", err
		}
	}
	var out User
	err := a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		u, err := tx.CreateUser(ctx, store.User{Username: nu.Username, DisplayName: nu.DisplayName, Roles: nu.Roles.Strings(),
			PasswordHash: hash, MustChangePassword: mustChange}, a.opts.Now())
		if err != nil {
			return err
		}
		out = UserView(u)
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: actor, Event: audit.EventUserCreated, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: u.Username},
			After:   audit.MustJSON(out.auditJSON()),
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return &out, oneTime, nil
}

// EnsureFirstAdmin makes the admin account with a one-time password when
// there is no account at all. created is false when accounts exist (or
// another replica made the first one at the same moment).
func (a *Authenticator) EnsureFirstAdmin(ctx context.Context) (username, password string, created bool, err error) {
	n, err := a.opts.Store.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", "", false, err
	}
	_, pw, err := a.CreateUser(ctx, audit.SystemActor, NewUser{Username: FirstAdmin, DisplayName: "first administrator", Roles: Roles(Admin)})
	if errors.Is(err, store.ErrConflict) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	return FirstAdmin, pw, true, nil
}

// checkDisplayName refuses a display name people could be misled by:
// longer than 200 bytes, invalid UTF-8, control characters, or the
// bidirectional controls that reorder how a name (and what follows it in
// a log line or a console page) is shown.
func checkDisplayName(s string) error {
	if len(s) > 200 {
		return fmt.Errorf("%w: a display name is at most 200 bytes", ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: a display name is UTF-8 text", ErrInvalid)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%w: a display name holds no control characters (it holds %U)", ErrInvalid, r)
		}
	}
	return nil
}

// UserChange changes an account; nil fields are kept.
type UserChange struct {
	DisplayName *string
	Roles       *RoleSet
	Disabled    *bool
	// Unlock clears a lockout and the failed login count.
	Unlock bool
}

// UpdateUser changes an account, audited with its before and after. A
// disabled account's sessions are revoked. A change that would leave no
// enabled admin is refused (ErrLastAdmin).
func (a *Authenticator) UpdateUser(ctx context.Context, actor audit.Actor, username string, c UserChange) (*User, error) {
	if c.DisplayName != nil {
		if err := checkDisplayName(*c.DisplayName); err != nil {
			return nil, err
		}
	}
	var out User
	err := a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		before, err := tx.LockUser(ctx, username)
		if err != nil {
			return err
		}
		adminsBefore, err := tx.CountEnabledAdmins(ctx)
		if err != nil {
			return err
		}
		up := store.UserUpdate{DisplayName: c.DisplayName, Disabled: c.Disabled, Unlock: c.Unlock}
		if c.Roles != nil {
			up.Roles = c.Roles.Strings()
		}
		now := a.opts.Now()
		after, err := tx.UpdateUser(ctx, before.ID, up, now)
		if err != nil {
			return err
		}
		adminsAfter, err := tx.CountEnabledAdmins(ctx)
		if err != nil {
			return err
		}
		if adminsBefore > 0 && adminsAfter == 0 {
			return ErrLastAdmin
		}
		revoked := int64(0)
		if after.Disabled && !before.Disabled {
			if revoked, err = tx.RevokeUserSessions(ctx, after.ID, 0, now); err != nil {
				return err
			}
		}
		out = UserView(after)
		event := audit.EventUserUpdated
		switch {
		case after.Disabled && !before.Disabled:
			event = audit.EventUserDisabled
		case !after.Disabled && before.Disabled:
			event = audit.EventUserEnabled
		case c.Unlock && c.DisplayName == nil && c.Roles == nil:
			event = audit.EventUserUnlocked
		}
		bv := UserView(before)
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: actor, Event: event, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: username},
			Before:  audit.MustJSON(bv.auditJSON()), After: audit.MustJSON(out.auditJSON()),
			Payload: audit.MustJSON(map[string]any{"sessions_revoked": revoked, "unlocked": c.Unlock}),
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ResetPassword gives an account a new one-time password (to be changed
// at the next login), clears a lockout and revokes its sessions.
func (a *Authenticator) ResetPassword(ctx context.Context, actor audit.Actor, username string) (string, error) {
	pw, err := RandomPassword()
	if err != nil {
		return "", err
	}
	hash, err := a.hasher.hash(ctx, pw)
	if err != nil {
		return "", err
	}
	err = a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		u, err := tx.LockUser(ctx, username)
		if err != nil {
			return err
		}
		now := a.opts.Now()
		if err := tx.SetPassword(ctx, u.ID, hash, true, now); err != nil {
			return err
		}
		n, err := tx.RevokeUserSessions(ctx, u.ID, 0, now)
		if err != nil {
			return err
		}
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: actor, Event: audit.EventUserPasswordReset, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: username},
			Payload: audit.MustJSON(map[string]any{"sessions_revoked": n}),
		})
		return err
	})
	if err != nil {
		return "", err
	}
	return pw, nil
}

// RevokeSessions revokes every session of an account.
func (a *Authenticator) RevokeSessions(ctx context.Context, actor audit.Actor, username string) (int64, error) {
	var n int64
	err := a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		u, err := tx.UserByName(ctx, username)
		if err != nil {
			return err
		}
		if n, err = tx.RevokeUserSessions(ctx, u.ID, 0, a.opts.Now()); err != nil {
			return err
		}
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: actor, Event: audit.EventSessionRevoked, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: username},
			Payload: audit.MustJSON(map[string]any{"sessions_revoked": n}),
		})
		return err
	})
	return n, err
}

// Users lists the accounts.
func (a *Authenticator) Users(ctx context.Context) ([]User, error) {
	us, err := a.opts.Store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(us))
	for _, u := range us {
		out = append(out, UserView(u))
	}
	return out, nil
}

// GetUser loads one account.
func (a *Authenticator) GetUser(ctx context.Context, username string) (*User, error) {
	u, err := a.opts.Store.UserByName(ctx, username)
	if err != nil {
		return nil, err
	}
	v := UserView(u)
	return &v, nil
}

// NewToken describes an API token to create.
type NewToken struct {
	Username string
	Name     string
	// Roles the token carries: a subset of the account's. Empty: all of
	// the account's roles.
	Roles RoleSet
	// TTL is the token's lifetime. Default 90 days; at most MaxTokenTTL.
	TTL time.Duration
}

// Token is an API token as the API shows it (never its secret).
type Token struct {
	ID         int64      `json:"id"`
	Username   string     `json:"username"`
	Name       string     `json:"name"`
	Roles      RoleSet    `json:"roles"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by,omitempty"`
}

// TokenView shows a stored token.
func TokenView(t *store.APIToken) Token {
	return Token{ID: t.ID, Username: t.Username, Name: t.Name, Roles: rolesOf(t.Roles), ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt,
		LastUsedAt: t.LastUsedAt, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy}
}

// CreateToken makes an API token for an account. It returns the secret,
// shown once: only its sha256 is stored.
func (a *Authenticator) CreateToken(ctx context.Context, actor audit.Actor, nt NewToken) (*Token, string, error) {
	if !tokenNameRE().MatchString(nt.Name) {
		return nil, "", fmt.Errorf("%w: token name %q: letters, digits and . _ - (up to 100), starting with a letter or digit", ErrInvalid, nt.Name)
	}
	ttl := nt.TTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Minute || ttl > a.opts.MaxTokenTTL {
		return nil, "", fmt.Errorf("%w: a token lives between 1m and %s, not %s", ErrInvalid, a.opts.MaxTokenTTL, ttl)
	}
	secret, hash, err := newSecret(TokenPrefix)
	if err != nil {
		return nil, "", err
	}
	var out Token
	err = a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		u, err := tx.LockUser(ctx, nt.Username)
		if err != nil {
			return err
		}
		have := rolesOf(u.Roles)
		roles := nt.Roles
		if roles.Empty() {
			roles = have
		}
		if !roles.Subset(have) {
			return fmt.Errorf("%w: account %s has roles %s; a token cannot carry %s", ErrInvalid, u.Username, have, roles&^have)
		}
		if u.Disabled {
			return fmt.Errorf("%w: account %s is disabled", ErrInvalid, u.Username)
		}
		now := a.opts.Now()
		exp := now.Add(ttl)
		t, err := tx.CreateAPIToken(ctx, store.APIToken{UserID: u.ID, Name: nt.Name, Roles: roles.Strings(), ExpiresAt: &exp, CreatedBy: actor.ID}, hash, now)
		if err != nil {
			return err
		}
		out = TokenView(t)
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: actor, Event: audit.EventTokenCreated, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: u.Username},
			Payload: audit.MustJSON(map[string]any{"token": t.ID, "name": t.Name, "roles": roles.Strings(),
				"expires_at": exp.UTC().Format(time.RFC3339)}),
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return &out, secret, nil
}

// RevokeToken revokes an API token (store.ErrNotFound when there is no
// such live token).
func (a *Authenticator) RevokeToken(ctx context.Context, actor audit.Actor, id int64) (*Token, error) {
	var out Token
	err := a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		t, err := tx.RevokeAPIToken(ctx, id, a.opts.Now())
		if err != nil {
			return err
		}
		out = TokenView(t)
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: actor, Event: audit.EventTokenRevoked, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: t.Username},
			Payload: audit.MustJSON(map[string]any{"token": t.ID, "name": t.Name}),
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Tokens lists API tokens, of one account when username is not empty;
// revoked and expired ones too when all is set.
func (a *Authenticator) Tokens(ctx context.Context, username string, all bool) ([]Token, error) {
	var id int64
	if username != "" {
		u, err := a.opts.Store.UserByName(ctx, username)
		if err != nil {
			return nil, err
		}
		id = u.ID
	}
	ts, err := a.opts.Store.ListAPITokens(ctx, id, all, a.opts.Now())
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, TokenView(t))
	}
	return out, nil
}
