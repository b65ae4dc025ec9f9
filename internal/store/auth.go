package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is a local account. PasswordHash is an argon2id PHC string (never
// the password); empty when the account has no password (tokens only).
type User struct {
	ID                 int64
	Username           string
	DisplayName        string
	Roles              []string
	PasswordHash       string
	MustChangePassword bool
	Disabled           bool
	FailedLogins       int
	LockedUntil        *time.Time
	PasswordChangedAt  *time.Time
	LastLoginAt        *time.Time
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

const userColumns = `u.id, u.username, u.display_name, u.roles, coalesce(u.password_hash, ''), u.must_change_password,
	u.disabled, u.failed_logins, u.locked_until, u.password_changed_at, u.last_login_at, u.created_at, u.updated_at`

func userDest(u *User) []any {
	return []any{&u.ID, &u.Username, &u.DisplayName, &u.Roles, &u.PasswordHash, &u.MustChangePassword,
		&u.Disabled, &u.FailedLogins, &u.LockedUntil, &u.PasswordChangedAt, &u.LastLoginAt, &u.CreatedAt, &u.UpdatedAt}
}

func scanUser(row pgx.Row) (*User, error) {
	var u User
	if err := row.Scan(userDest(&u)...); err != nil {
		return nil, translate(err)
	}
	if u.Roles == nil {
		u.Roles = []string{}
	}
	return &u, nil
}

// CreateUser adds an account; ErrConflict when the username is taken.
func (s *Store) CreateUser(ctx context.Context, u User, now time.Time) (*User, error) {
	if u.Roles == nil {
		u.Roles = []string{}
	}
	var changed *time.Time
	if u.PasswordHash != "" {
		changed = &now
	}
	out, err := scanUser(s.db.QueryRow(ctx, `
		INSERT INTO users AS u (username, display_name, roles, password_hash, must_change_password, disabled,
			password_changed_at, created_at, updated_at)
		VALUES ($1, $2, $3, nullif($4, ''), $5, $6, $7, $8, $8)
		RETURNING `+userColumns,
		u.Username, u.DisplayName, u.Roles, u.PasswordHash, u.MustChangePassword, u.Disabled, changed, now))
	if err != nil {
		return nil, fmt.Errorf("store: create user %q: %w", u.Username, err)
	}
	return out, nil
}

// UserByName loads an account by username.
func (s *Store) UserByName(ctx context.Context, username string) (*User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.username = $1`, username))
	if err != nil {
		return nil, fmt.Errorf("store: user %q: %w", username, err)
	}
	return u, nil
}

// LockUser loads an account by username and locks its row for the rest of
// the transaction, so concurrent logins count failures one at a time.
func (s *Store) LockUser(ctx context.Context, username string) (*User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.username = $1 FOR UPDATE`, username))
	if err != nil {
		return nil, fmt.Errorf("store: user %q: %w", username, err)
	}
	return u, nil
}

// UserByID loads an account by id.
func (s *Store) UserByID(ctx context.Context, id int64) (*User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("store: user %d: %w", id, err)
	}
	return u, nil
}

// ListUsers lists every account by username.
func (s *Store) ListUsers(ctx context.Context) ([]*User, error) {
	rows, err := s.db.Query(ctx, `SELECT `+userColumns+` FROM users u ORDER BY u.username`)
	if err != nil {
		return nil, fmt.Errorf("store: list users: %w", translate(err))
	}
	defer rows.Close()
	var out []*User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list users: %w", translate(err))
	}
	return out, nil
}

// CountUsers counts accounts.
func (s *Store) CountUsers(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count users: %w", translate(err))
	}
	return n, nil
}

// UserUpdate changes an account; nil fields are kept.
type UserUpdate struct {
	DisplayName *string
	Roles       []string // nil: keep
	Disabled    *bool
	// Unlock clears failed logins and a lockout.
	Unlock bool
}

// UpdateUser applies an update and returns the account as it is now.
func (s *Store) UpdateUser(ctx context.Context, id int64, up UserUpdate, now time.Time) (*User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `
		UPDATE users u SET
			display_name = coalesce($2, u.display_name),
			roles = coalesce($3, u.roles),
			disabled = coalesce($4, u.disabled),
			failed_logins = CASE WHEN $5 THEN 0 ELSE u.failed_logins END,
			locked_until = CASE WHEN $5 THEN NULL ELSE u.locked_until END,
			updated_at = $6
		WHERE u.id = $1
		RETURNING `+userColumns, id, up.DisplayName, up.Roles, up.Disabled, up.Unlock, now))
	if err != nil {
		return nil, fmt.Errorf("store: update user %d: %w", id, err)
	}
	return u, nil
}

// SetPassword stores a new password hash; it clears failed logins and a
// lockout. mustChange makes the next login change it first.
func (s *Store) SetPassword(ctx context.Context, id int64, hash string, mustChange bool, now time.Time) error {
	tag, err := s.db.Exec(ctx, `UPDATE users SET password_hash = $2, must_change_password = $3, password_changed_at = $4,
		failed_logins = 0, locked_until = NULL, updated_at = $4 WHERE id = $1`, id, hash, mustChange, now)
	if err != nil {
		return fmt.Errorf("store: set password of user %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: set password of user %d: %w", id, ErrNotFound)
	}
	return nil
}

// RecordLoginFailure counts a failed login. When the count reaches
// threshold the account is locked until now+lockFor and the count starts
// again. It returns the account as it is now.
func (s *Store) RecordLoginFailure(ctx context.Context, id int64, threshold int, lockFor time.Duration, now time.Time) (*User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `
		UPDATE users u SET
			failed_logins = CASE WHEN u.failed_logins + 1 >= $2 THEN 0 ELSE u.failed_logins + 1 END,
			locked_until = CASE WHEN u.failed_logins + 1 >= $2 THEN $3::timestamptz + $4 * interval '1 microsecond' ELSE u.locked_until END,
			updated_at = $3
		WHERE u.id = $1
		RETURNING `+userColumns, id, threshold, now, lockFor.Microseconds()))
	if err != nil {
		return nil, fmt.Errorf("store: record failed login of user %d: %w", id, err)
	}
	return u, nil
}

// RecordLoginSuccess clears failed logins and notes the login time.
func (s *Store) RecordLoginSuccess(ctx context.Context, id int64, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = $2 WHERE id = $1`, id, now)
	if err != nil {
		return fmt.Errorf("store: record login of user %d: %w", id, translate(err))
	}
	return nil
}

// Session is a login's bearer credential, stored by the sha256 of its
// token.
type Session struct {
	ID         int64
	UserID     int64
	ExpiresAt  time.Time
	RevokedAt  *time.Time
	CreatedAt  time.Time
	LastSeenAt *time.Time
	RemoteAddr string
}

const sessionColumns = `s.id, s.user_id, s.expires_at, s.revoked_at, s.created_at, s.last_seen_at, s.remote_addr`

func sessionDest(x *Session) []any {
	return []any{&x.ID, &x.UserID, &x.ExpiresAt, &x.RevokedAt, &x.CreatedAt, &x.LastSeenAt, &x.RemoteAddr}
}

// CreateSession stores a session by its token hash (32 bytes).
func (s *Store) CreateSession(ctx context.Context, userID int64, tokenHash []byte, expires time.Time, remote string, now time.Time) (*Session, error) {
	var x Session
	err := s.db.QueryRow(ctx, `INSERT INTO sessions AS s (user_id, token_hash, expires_at, remote_addr, created_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+sessionColumns, userID, tokenHash, expires, remote, now).Scan(sessionDest(&x)...)
	if err != nil {
		return nil, fmt.Errorf("store: create session for user %d: %w", userID, translate(err))
	}
	return &x, nil
}

// SessionByHash loads a session and its account by token hash, revoked
// and expired ones included (the caller says why it refuses them).
func (s *Store) SessionByHash(ctx context.Context, tokenHash []byte) (*Session, *User, error) {
	var x Session
	var u User
	dest := append(sessionDest(&x), userDest(&u)...)
	err := s.db.QueryRow(ctx, `SELECT `+sessionColumns+`, `+userColumns+`
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1`, tokenHash).Scan(dest...)
	if err != nil {
		return nil, nil, fmt.Errorf("store: session: %w", translate(err))
	}
	return &x, &u, nil
}

// TouchSession notes a session's use, at most once a minute.
func (s *Store) TouchSession(ctx context.Context, id int64, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE sessions SET last_seen_at = $2
		WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $2::timestamptz - interval '1 minute')`, id, now)
	if err != nil {
		return fmt.Errorf("store: touch session %d: %w", id, translate(err))
	}
	return nil
}

// RevokeSession revokes one session; ErrNotFound when it does not exist
// or was revoked already.
func (s *Store) RevokeSession(ctx context.Context, id int64, now time.Time) error {
	tag, err := s.db.Exec(ctx, `UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, id, now)
	if err != nil {
		return fmt.Errorf("store: revoke session %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: revoke session %d: %w", id, ErrNotFound)
	}
	return nil
}

// RevokeUserSessions revokes every live session of an account but
// exceptID (0: none) and returns how many.
func (s *Store) RevokeUserSessions(ctx context.Context, userID, exceptID int64, now time.Time) (int64, error) {
	tag, err := s.db.Exec(ctx, `UPDATE sessions SET revoked_at = $3
		WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL AND expires_at > $3`, userID, exceptID, now)
	if err != nil {
		return 0, fmt.Errorf("store: revoke sessions of user %d: %w", userID, translate(err))
	}
	return tag.RowsAffected(), nil
}

// ListSessions lists an account's live sessions, newest first.
func (s *Store) ListSessions(ctx context.Context, userID int64, now time.Time) ([]*Session, error) {
	rows, err := s.db.Query(ctx, `SELECT `+sessionColumns+` FROM sessions s
		WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 ORDER BY s.id DESC LIMIT 1000`, userID, now)
	if err != nil {
		return nil, fmt.Errorf("store: list sessions of user %d: %w", userID, translate(err))
	}
	defer rows.Close()
	var out []*Session
	for rows.Next() {
		var x Session
		if err := rows.Scan(sessionDest(&x)...); err != nil {
			return nil, fmt.Errorf("store: list sessions: %w", translate(err))
		}
		out = append(out, &x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list sessions: %w", translate(err))
	}
	return out, nil
}

// APIToken is an automation credential of an account, scoped to roles,
// stored by the sha256 of its secret.
type APIToken struct {
	ID         int64
	UserID     int64
	Username   string
	Name       string
	Roles      []string
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
	CreatedAt  time.Time
	CreatedBy  string
}

const tokenColumns = `t.id, t.user_id, u.username, t.name, t.roles, t.expires_at, t.revoked_at, t.last_used_at, t.created_at, t.created_by`

func tokenDest(t *APIToken) []any {
	return []any{&t.ID, &t.UserID, &t.Username, &t.Name, &t.Roles, &t.ExpiresAt, &t.RevokedAt, &t.LastUsedAt, &t.CreatedAt, &t.CreatedBy}
}

func scanToken(row pgx.Row) (*APIToken, error) {
	var t APIToken
	if err := row.Scan(tokenDest(&t)...); err != nil {
		return nil, translate(err)
	}
	if t.Roles == nil {
		t.Roles = []string{}
	}
	return &t, nil
}

// CreateAPIToken stores a token by its hash; ErrConflict when the account
// has a token of that name.
func (s *Store) CreateAPIToken(ctx context.Context, t APIToken, tokenHash []byte, now time.Time) (*APIToken, error) {
	if t.Roles == nil {
		t.Roles = []string{}
	}
	out, err := scanToken(s.db.QueryRow(ctx, `
		WITH t AS (
			INSERT INTO api_tokens (user_id, name, token_hash, roles, expires_at, created_by, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *)
		SELECT `+tokenColumns+` FROM t JOIN users u ON u.id = t.user_id`,
		t.UserID, t.Name, tokenHash, t.Roles, t.ExpiresAt, t.CreatedBy, now))
	if err != nil {
		return nil, fmt.Errorf("store: create token %q: %w", t.Name, err)
	}
	return out, nil
}

// APITokenByHash loads a token and its account by hash, revoked and
// expired ones included (the caller says why it refuses them).
func (s *Store) APITokenByHash(ctx context.Context, tokenHash []byte) (*APIToken, *User, error) {
	var t APIToken
	var u User
	dest := append(tokenDest(&t), userDest(&u)...)
	err := s.db.QueryRow(ctx, `SELECT `+tokenColumns+`, `+userColumns+`
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1`, tokenHash).Scan(dest...)
	if err != nil {
		return nil, nil, fmt.Errorf("store: token: %w", translate(err))
	}
	return &t, &u, nil
}

// APITokenByID loads a token.
func (s *Store) APITokenByID(ctx context.Context, id int64) (*APIToken, error) {
	t, err := scanToken(s.db.QueryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("store: token %d: %w", id, err)
	}
	return t, nil
}

// TouchAPIToken notes a token's use, at most once a minute.
func (s *Store) TouchAPIToken(ctx context.Context, id int64, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE api_tokens SET last_used_at = $2
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2::timestamptz - interval '1 minute')`, id, now)
	if err != nil {
		return fmt.Errorf("store: touch token %d: %w", id, translate(err))
	}
	return nil
}

// RevokeAPIToken revokes a token; ErrNotFound when it does not exist or
// was revoked already.
func (s *Store) RevokeAPIToken(ctx context.Context, id int64, now time.Time) (*APIToken, error) {
	t, err := scanToken(s.db.QueryRow(ctx, `
		WITH t AS (UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING *)
		SELECT `+tokenColumns+` FROM t JOIN users u ON u.id = t.user_id`, id, now))
	if err != nil {
		return nil, fmt.Errorf("store: revoke token %d: %w", id, err)
	}
	return t, nil
}

// ListAPITokens lists tokens, of one account when userID is not 0, newest
// first; revoked and expired ones only when all is set.
func (s *Store) ListAPITokens(ctx context.Context, userID int64, all bool, now time.Time) ([]*APIToken, error) {
	rows, err := s.db.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens t JOIN users u ON u.id = t.user_id
		WHERE ($1::bigint = 0 OR t.user_id = $1::bigint) AND ($2 OR (t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $3)))
		ORDER BY t.id DESC LIMIT 1000`, userID, all, now)
	if err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", translate(err))
	}
	defer rows.Close()
	var out []*APIToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", translate(err))
	}
	return out, nil
}

// CountEnabledAdmins counts enabled accounts with the admin role.
func (s *Store) CountEnabledAdmins(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM users WHERE NOT disabled AND 'admin' = ANY (roles)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count admins: %w", translate(err))
	}
	return n, nil
}
