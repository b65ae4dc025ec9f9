package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

// AuditLog appends audit entries in the caller's transaction.
type AuditLog interface {
	Append(ctx context.Context, tx *store.Store, entries ...audit.Entry) ([]audit.Receipt, error)
}

// Options configures an Authenticator.
type Options struct {
	// Store holds accounts, sessions and tokens. Required.
	Store *store.Store
	// Audit records logins, lockouts and every account change. Required.
	Audit AuditLog
	// OIDC verifies SSO bearer tokens; nil: none accepted.
	OIDC *OIDC
	// SessionTTL is how long a login's session lasts. Default 8h.
	SessionTTL time.Duration
	// LockoutThreshold failed logins in a row lock an account for
	// LockoutDuration. Defaults 5 and 15m.
	LockoutThreshold int
	LockoutDuration  time.Duration
	// Hash is the argon2id cost of new password hashes. Default
	// DefaultHashParams.
	Hash HashParams
	// HashConcurrency bounds simultaneous hashing (each holds
	// Hash.MemoryKiB). Default 4.
	HashConcurrency int
	// MaxTokenTTL bounds an API token's lifetime. Default 1 year.
	MaxTokenTTL time.Duration
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultSessionTTL       = 8 * time.Hour
	DefaultLockoutThreshold = 5
	DefaultLockoutDuration  = 15 * time.Minute
	DefaultTokenTTL         = 90 * 24 * time.Hour
	DefaultMaxTokenTTL      = 366 * 24 * time.Hour
)

func (o *Options) setDefaults() {
	if o.SessionTTL == 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.LockoutThreshold == 0 {
		o.LockoutThreshold = DefaultLockoutThreshold
	}
	if o.LockoutDuration == 0 {
		o.LockoutDuration = DefaultLockoutDuration
	}
	if o.Hash == (HashParams{}) {
		o.Hash = DefaultHashParams
	}
	if o.HashConcurrency == 0 {
		o.HashConcurrency = 4
	}
	if o.MaxTokenTTL == 0 {
		o.MaxTokenTTL = DefaultMaxTokenTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	switch {
	case o.Store == nil:
		return errors.New("auth: a store is required")
	case o.Audit == nil:
		return errors.New("auth: an audit log is required")
	case o.SessionTTL < time.Minute || o.SessionTTL > 30*24*time.Hour:
		return fmt.Errorf("auth: session lifetime %s is outside 1m..720h", o.SessionTTL)
	case o.LockoutThreshold < 1 || o.LockoutThreshold > 1000:
		return fmt.Errorf("auth: lockout threshold %d is outside 1..1000", o.LockoutThreshold)
	case o.LockoutDuration < time.Second || o.LockoutDuration > 7*24*time.Hour:
		return fmt.Errorf("auth: lockout duration %s is outside 1s..168h", o.LockoutDuration)
	case o.HashConcurrency < 1:
		return fmt.Errorf("auth: hash concurrency %d must be positive", o.HashConcurrency)
	case o.MaxTokenTTL < time.Hour:
		return fmt.Errorf("auth: maximum token lifetime %s is below 1h", o.MaxTokenTTL)
	}
	if err := o.Hash.validate(); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

// Authenticator turns credentials into principals and manages accounts,
// sessions and tokens. Every change is written with its audit entry in one
// transaction.
type Authenticator struct {
	opts   Options
	hasher *hasher
}

// New checks the options and makes an Authenticator.
func New(opts Options) (*Authenticator, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	h, err := newHasher(opts.Hash, opts.HashConcurrency)
	if err != nil {
		return nil, err
	}
	return &Authenticator{opts: opts, hasher: h}, nil
}

// SessionTTL is how long a login lasts.
func (a *Authenticator) SessionTTL() time.Duration { return a.opts.SessionTTL }

// OIDCEnabled reports whether SSO tokens are accepted.
func (a *Authenticator) OIDCEnabled() bool { return a.opts.OIDC != nil }

// touchEvery is how stale a last-used time may get before it is written.
const touchEvery = time.Minute

// Authenticate turns a bearer credential into a principal. A refused
// credential is a *Denied (errors.As); other errors are failures to check
// (the database is down) and must not be answered as 401.
func (a *Authenticator) Authenticate(ctx context.Context, cred string) (*Principal, error) {
	switch classify(cred) {
	case credSession:
		return a.session(ctx, cred)
	case credToken:
		return a.token(ctx, cred)
	case credJWT:
		if a.opts.OIDC == nil {
			return nil, deny("oidc_disabled", "an SSO token, but no OIDC provider is configured")
		}
		return a.opts.OIDC.Verify(ctx, cred)
	}
	return nil, deny("malformed", "the bearer credential is neither a writ token nor a JWT")
}

func (a *Authenticator) session(ctx context.Context, cred string) (*Principal, error) {
	s, u, err := a.opts.Store.SessionByHash(ctx, hashSecret(cred))
	if errors.Is(err, store.ErrNotFound) {
		return nil, deny("unknown", "no such session")
	}
	if err != nil {
		return nil, err
	}
	now := a.opts.Now()
	switch {
	case s.RevokedAt != nil:
		return nil, deny("revoked", "session %d of %s was revoked", s.ID, u.Username)
	case !now.Before(s.ExpiresAt):
		return nil, deny("expired", "session %d of %s expired", s.ID, u.Username)
	case u.Disabled:
		return nil, deny("disabled", "account %s is disabled", u.Username)
	}
	if s.LastSeenAt == nil || now.Sub(*s.LastSeenAt) >= touchEvery {
		if err := a.opts.Store.TouchSession(ctx, s.ID, now); err != nil {
			a.opts.Logger.WarnContext(ctx, "note session use", slog.Int64("session", s.ID), slog.Any("error", err))
		}
	}
	return &Principal{Name: u.Username, UserID: u.ID, Roles: rolesOf(u.Roles), Method: MethodSession, SessionID: s.ID,
		MustChangePassword: u.MustChangePassword, ExpiresAt: s.ExpiresAt}, nil
}

func (a *Authenticator) token(ctx context.Context, cred string) (*Principal, error) {
	t, u, err := a.opts.Store.APITokenByHash(ctx, hashSecret(cred))
	if errors.Is(err, store.ErrNotFound) {
		return nil, deny("unknown", "no such API token")
	}
	if err != nil {
		return nil, err
	}
	now := a.opts.Now()
	switch {
	case t.RevokedAt != nil:
		return nil, deny("revoked", "token %d (%s) of %s was revoked", t.ID, t.Name, u.Username)
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return nil, deny("expired", "token %d (%s) of %s expired", t.ID, t.Name, u.Username)
	case u.Disabled:
		return nil, deny("disabled", "account %s is disabled", u.Username)
	}
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) >= touchEvery {
		if err := a.opts.Store.TouchAPIToken(ctx, t.ID, now); err != nil {
			a.opts.Logger.WarnContext(ctx, "note token use", slog.Int64("token", t.ID), slog.Any("error", err))
		}
	}
	p := &Principal{Name: u.Username, UserID: u.ID, Method: MethodToken, TokenID: t.ID, TokenName: t.Name,
		// A token never grants more than its account has now: demoting
		// the account demotes its tokens.
		Roles: rolesOf(t.Roles).Intersect(rolesOf(u.Roles))}
	if t.ExpiresAt != nil {
		p.ExpiresAt = *t.ExpiresAt
	}
	return p, nil
}

// LoginResult is a successful login. Token is the session's bearer secret:
// shown to the caller once, never logged.
type LoginResult struct {
	Token     string
	Principal *Principal
	ExpiresAt time.Time
}

// LogValue leaves the token out.
func (r *LoginResult) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("principal", r.Principal), slog.Time("expires_at", r.ExpiresAt))
}

// maxUsernameBytes bounds a login's username before any query.
const maxUsernameBytes = 128

// Login checks a username and password and opens a session. A refused
// login is a *Denied whose code says why (for the audit log; answer every
// one alike). Failed attempts count toward the lockout; the lockout is
// audited when it happens. remote is the client address, kept with the
// session.
func (a *Authenticator) Login(ctx context.Context, username, password, remote string) (*LoginResult, error) {
	if username == "" || len(username) > maxUsernameBytes || len(password) > MaxPasswordBytes {
		return nil, deny("malformed", "username or password out of bounds")
	}
	u, err := a.opts.Store.UserByName(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		_, _ = a.hasher.verify(ctx, password, "")
		return nil, deny("unknown_user", "no account %q", username)
	}
	if err != nil {
		return nil, err
	}
	now := a.opts.Now()
	switch {
	case u.Disabled:
		_, _ = a.hasher.verify(ctx, password, "")
		return nil, deny("disabled", "account %s is disabled", u.Username)
	case u.LockedUntil != nil && now.Before(*u.LockedUntil):
		_, _ = a.hasher.verify(ctx, password, "")
		return nil, deny("locked", "account %s is locked until %s", u.Username, u.LockedUntil.UTC().Format(time.RFC3339))
	case u.PasswordHash == "":
		_, _ = a.hasher.verify(ctx, password, "")
		return nil, deny("no_password", "account %s has no password (API tokens only)", u.Username)
	}
	ok, err := a.hasher.verify(ctx, password, u.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("check password of %s: %w", u.Username, err)
	}
	if !ok {
		if err := a.recordFailure(ctx, u, now, remote); err != nil {
			return nil, err
		}
		return nil, deny("bad_password", "wrong password for %s", u.Username)
	}
	secret, hash, err := newSecret(SessionPrefix)
	if err != nil {
		return nil, err
	}
	var res *LoginResult
	err = a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		// Re-read under lock: a lockout, a disable or a password change
		// since the check wins.
		cur, err := tx.LockUser(ctx, username)
		if err != nil {
			return err
		}
		switch {
		case cur.Disabled:
			return deny("disabled", "account %s is disabled", u.Username)
		case cur.LockedUntil != nil && now.Before(*cur.LockedUntil):
			return deny("locked", "account %s is locked", u.Username)
		case cur.PasswordHash != u.PasswordHash:
			return deny("bad_password", "the password of %s changed during the login", u.Username)
		}
		if err := tx.RecordLoginSuccess(ctx, cur.ID, now); err != nil {
			return err
		}
		expires := now.Add(a.opts.SessionTTL)
		s, err := tx.CreateSession(ctx, cur.ID, hash, expires, truncate(remote, 64), now)
		if err != nil {
			return err
		}
		p := &Principal{Name: cur.Username, UserID: cur.ID, Roles: rolesOf(cur.Roles), Method: MethodSession, SessionID: s.ID,
			MustChangePassword: cur.MustChangePassword, ExpiresAt: expires}
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: p.Actor(""), Event: audit.EventAuthLogin, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: cur.Username},
			Payload: audit.MustJSON(map[string]any{"method": "password", "session": s.ID, "remote": remote,
				"expires_at": expires.UTC().Format(time.RFC3339), "must_change_password": cur.MustChangePassword}),
		})
		res = &LoginResult{Token: secret, Principal: p, ExpiresAt: expires}
		return err
	})
	if err != nil {
		return nil, err
	}
	a.opts.Logger.InfoContext(ctx, "login", slog.Any("principal", res.Principal), slog.Int64("session", res.Principal.SessionID))
	return res, nil
}

// recordFailure counts a wrong password; reaching the threshold locks the
// account, audited in the same transaction.
func (a *Authenticator) recordFailure(ctx context.Context, u *store.User, now time.Time, remote string) error {
	return a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		after, err := tx.RecordLoginFailure(ctx, u.ID, a.opts.LockoutThreshold, a.opts.LockoutDuration, now)
		if err != nil {
			return err
		}
		if after.LockedUntil == nil || !now.Before(*after.LockedUntil) || (u.LockedUntil != nil && after.LockedUntil.Equal(*u.LockedUntil)) {
			return nil
		}
		a.opts.Logger.WarnContext(ctx, "account locked after failed logins", slog.String("user", u.Username),
			slog.Int("threshold", a.opts.LockoutThreshold), slog.Time("until", *after.LockedUntil))
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: audit.EventAuthLocked, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: u.Username},
			Payload: audit.MustJSON(map[string]any{"failed_logins": a.opts.LockoutThreshold, "remote": remote,
				"locked_until": after.LockedUntil.UTC().Format(time.RFC3339)}),
		})
		return err
	})
}

// Logout revokes the principal's session.
func (a *Authenticator) Logout(ctx context.Context, p *Principal) error {
	if p.Method != MethodSession {
		return ErrNotSession
	}
	return a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		if err := tx.RevokeSession(ctx, p.SessionID, a.opts.Now()); err != nil {
			return err
		}
		_, err := a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: p.Actor(""), Event: audit.EventAuthLogout, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: p.Name},
			Payload: audit.MustJSON(map[string]any{"session": p.SessionID}),
		})
		return err
	})
}

// ChangePassword changes the principal's own password: current must be
// right (a wrong one counts toward the lockout), next must follow the
// rules. The principal's other sessions are revoked.
func (a *Authenticator) ChangePassword(ctx context.Context, p *Principal, current, next string) error {
	if p.Method != MethodSession {
		return ErrNotSession
	}
	u, err := a.opts.Store.UserByID(ctx, p.UserID)
	if err != nil {
		return err
	}
	if err := CheckPasswordRules(u.Username, next); err != nil {
		return err
	}
	if current == next {
		return fmt.Errorf("%w: the new password must differ from the current one", ErrInvalid)
	}
	ok, err := a.hasher.verify(ctx, current, u.PasswordHash)
	if err != nil {
		return fmt.Errorf("check password of %s: %w", u.Username, err)
	}
	now := a.opts.Now()
	if !ok {
		if err := a.recordFailure(ctx, u, now, ""); err != nil {
			return err
		}
		return deny("bad_password", "wrong current password for %s", u.Username)
	}
	hash, err := a.hasher.hash(ctx, next)
	if err != nil {
		return err
	}
	return a.opts.Store.Tx(ctx, func(tx *store.Store) error {
		if err := tx.SetPassword(ctx, u.ID, hash, false, now); err != nil {
			return err
		}
		n, err := tx.RevokeUserSessions(ctx, u.ID, p.SessionID, now)
		if err != nil {
			return err
		}
		_, err = a.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: p.Actor(""), Event: audit.EventUserPasswordChanged, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectUser, Name: u.Username},
			Payload: audit.MustJSON(map[string]any{"other_sessions_revoked": n}),
		})
		return err
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
