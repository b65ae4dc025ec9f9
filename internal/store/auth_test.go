package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

const testHash = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

	if n, err := st.CountUsers(ctx); err != nil || n != 0 {
		t.Fatalf("CountUsers on a new database = %d, %v", n, err)
	}
	u, err := st.CreateUser(ctx, store.User{Username: "alice", Roles: []string{"analyst"}, PasswordHash: testHash, MustChangePassword: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == 0 || u.PasswordChangedAt == nil || !u.PasswordChangedAt.Equal(now) || !u.MustChangePassword || u.Disabled {
		t.Fatalf("created %+v", u)
	}
	if _, err := st.CreateUser(ctx, store.User{Username: "alice"}, now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate username: %v; want ErrConflict", err)
	}
	for name, bad := range map[string]store.User{
		"unknown role":    {Username: "bob", Roles: []string{"root"}},
		"bad username":    {Username: "bob smith"},
		"not argon2id":    {Username: "bob", PasswordHash: "plaintext"},
		"leading hyphen":  {Username: "-bob"},
		"too long a name": {Username: string(make([]byte, 200))},
	} {
		if _, err := st.CreateUser(ctx, bad, now); err == nil {
			t.Errorf("%s: created %+v", name, bad)
		}
	}
	noPw, err := st.CreateUser(ctx, store.User{Username: "robot", Roles: []string{"viewer"}}, now)
	if err != nil || noPw.PasswordHash != "" || noPw.PasswordChangedAt != nil {
		t.Fatalf("user without password: %+v %v", noPw, err)
	}

	got, err := st.UserByName(ctx, "alice")
	if err != nil || got.ID != u.ID || !slices.Equal(got.Roles, []string{"analyst"}) || got.PasswordHash != testHash {
		t.Fatalf("UserByName = %+v, %v", got, err)
	}
	if _, err := st.UserByName(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing user: %v", err)
	}
	list, err := st.ListUsers(ctx)
	if err != nil || len(list) != 2 || list[0].Username != "alice" || list[1].Username != "robot" {
		t.Fatalf("ListUsers = %v, %v", list, err)
	}

	off := true
	name := "Alice A."
	up, err := st.UpdateUser(ctx, u.ID, store.UserUpdate{Roles: []string{"analyst", "approver"}, Disabled: &off, DisplayName: &name}, now.Add(time.Minute))
	if err != nil || !up.Disabled || up.DisplayName != name || len(up.Roles) != 2 || !up.UpdatedAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("UpdateUser = %+v, %v", up, err)
	}
	// Nil fields keep their values.
	up, err = st.UpdateUser(ctx, u.ID, store.UserUpdate{}, now)
	if err != nil || !up.Disabled || up.DisplayName != name || len(up.Roles) != 2 {
		t.Fatalf("empty update changed %+v, %v", up, err)
	}
	if _, err := st.UpdateUser(ctx, 9999, store.UserUpdate{}, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update missing user: %v", err)
	}
	if err := st.SetPassword(ctx, u.ID, testHash, false, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = st.UserByID(ctx, u.ID)
	if got.MustChangePassword || !got.PasswordChangedAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("after SetPassword %+v", got)
	}
	if err := st.SetPassword(ctx, 9999, testHash, false, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetPassword of a missing user: %v", err)
	}
}

func TestLoginFailuresLockAndReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	u, err := st.CreateUser(ctx, store.User{Username: "alice", PasswordHash: testHash}, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		got, err := st.RecordLoginFailure(ctx, u.ID, 3, 15*time.Minute, now)
		if err != nil || got.FailedLogins != i || got.LockedUntil != nil {
			t.Fatalf("failure %d: %+v, %v", i, got, err)
		}
	}
	got, err := st.RecordLoginFailure(ctx, u.ID, 3, 15*time.Minute, now)
	if err != nil || got.LockedUntil == nil || !got.LockedUntil.Equal(now.Add(15*time.Minute)) || got.FailedLogins != 0 {
		t.Fatalf("third failure should lock until +15m: %+v, %v", got, err)
	}
	got, _ = st.UpdateUser(ctx, u.ID, store.UserUpdate{Unlock: true}, now)
	if got.LockedUntil != nil || got.FailedLogins != 0 {
		t.Fatalf("unlock left %+v", got)
	}
	if err := st.RecordLoginSuccess(ctx, u.ID, now); err != nil {
		t.Fatal(err)
	}
	got, _ = st.UserByID(ctx, u.ID)
	if got.LastLoginAt == nil || !got.LastLoginAt.Equal(now) {
		t.Fatalf("last login %+v", got.LastLoginAt)
	}
}

func TestSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	u, err := st.CreateUser(ctx, store.User{Username: "alice", Roles: []string{"viewer"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := st.CreateSession(ctx, u.ID, hashOf("one"), now.Add(8*time.Hour), "192.0.2.1", now)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := st.CreateSession(ctx, u.ID, hashOf("two"), now.Add(8*time.Hour), "", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSession(ctx, u.ID, hashOf("one"), now.Add(time.Hour), "", now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same hash twice: %v", err)
	}
	if _, err := st.CreateSession(ctx, u.ID, []byte("short"), now.Add(time.Hour), "", now); err == nil {
		t.Fatal("a hash that is not 32 bytes was stored")
	}
	got, gu, err := st.SessionByHash(ctx, hashOf("one"))
	if err != nil || got.ID != s1.ID || gu.Username != "alice" || got.RemoteAddr != "192.0.2.1" || !got.ExpiresAt.Equal(now.Add(8*time.Hour)) {
		t.Fatalf("SessionByHash = %+v %+v %v", got, gu, err)
	}
	if _, _, err := st.SessionByHash(ctx, hashOf("three")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if err := st.TouchSession(ctx, s1.ID, now.Add(time.Minute*2)); err != nil {
		t.Fatal(err)
	}
	// Within a minute of the last touch nothing is written.
	if err := st.TouchSession(ctx, s1.ID, now.Add(time.Minute*2+30*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, _, _ = st.SessionByHash(ctx, hashOf("one"))
	if got.LastSeenAt == nil || !got.LastSeenAt.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("last seen %v", got.LastSeenAt)
	}
	if err := st.RevokeSession(ctx, s1.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeSession(ctx, s1.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	live, err := st.ListSessions(ctx, u.ID, now)
	if err != nil || len(live) != 1 || live[0].ID != s2.ID {
		t.Fatalf("live sessions %v %v", live, err)
	}
	n, err := st.RevokeUserSessions(ctx, u.ID, 0, now)
	if err != nil || n != 1 {
		t.Fatalf("RevokeUserSessions = %d, %v", n, err)
	}
	got, _, _ = st.SessionByHash(ctx, hashOf("two"))
	if got.RevokedAt == nil {
		t.Fatal("session two not revoked")
	}
}

func TestAPITokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	u, err := st.CreateUser(ctx, store.User{Username: "ci", Roles: []string{"viewer", "executor"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	exp := now.Add(24 * time.Hour)
	tok, err := st.CreateAPIToken(ctx, store.APIToken{UserID: u.ID, Name: "deploy", Roles: []string{"executor"}, ExpiresAt: &exp, CreatedBy: "admin"}, hashOf("t1"), now)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Username != "ci" || tok.CreatedBy != "admin" || !slices.Equal(tok.Roles, []string{"executor"}) || !tok.ExpiresAt.Equal(exp) {
		t.Fatalf("created %+v", tok)
	}
	if _, err := st.CreateAPIToken(ctx, store.APIToken{UserID: u.ID, Name: "deploy"}, hashOf("t2"), now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same name twice: %v", err)
	}
	if _, err := st.CreateAPIToken(ctx, store.APIToken{UserID: u.ID, Name: "bad name!"}, hashOf("t3"), now); err == nil {
		t.Fatal("a token name with spaces was stored")
	}
	if _, err := st.CreateAPIToken(ctx, store.APIToken{UserID: u.ID, Name: "scan", Roles: []string{"superuser"}}, hashOf("t4"), now); err == nil {
		t.Fatal("an unknown role was stored")
	}
	other, err := st.CreateAPIToken(ctx, store.APIToken{UserID: u.ID, Name: "scrape", Roles: []string{"viewer"}}, hashOf("t5"), now)
	if err != nil {
		t.Fatal(err)
	}
	got, gu, err := st.APITokenByHash(ctx, hashOf("t1"))
	if err != nil || got.ID != tok.ID || gu.Username != "ci" || !slices.Equal(gu.Roles, []string{"viewer", "executor"}) {
		t.Fatalf("APITokenByHash = %+v %+v %v", got, gu, err)
	}
	if err := st.TouchAPIToken(ctx, tok.ID, now); err != nil {
		t.Fatal(err)
	}
	got, _ = st.APITokenByID(ctx, tok.ID)
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(now) {
		t.Fatalf("last used %v", got.LastUsedAt)
	}
	rev, err := st.RevokeAPIToken(ctx, tok.ID, now)
	if err != nil || rev.RevokedAt == nil || rev.Name != "deploy" {
		t.Fatalf("revoke %+v %v", rev, err)
	}
	if _, err := st.RevokeAPIToken(ctx, tok.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	short, err := st.CreateAPIToken(ctx, store.APIToken{UserID: u.ID, Name: "short", Roles: []string{"viewer"}, ExpiresAt: &exp}, hashOf("t6"), now)
	if err != nil {
		t.Fatal(err)
	}
	live, err := st.ListAPITokens(ctx, u.ID, false, now)
	if err != nil || len(live) != 2 || live[0].ID != short.ID || live[1].ID != other.ID {
		t.Fatalf("live tokens %v %v", live, err)
	}
	all, err := st.ListAPITokens(ctx, 0, true, now)
	if err != nil || len(all) != 3 {
		t.Fatalf("all tokens %v %v", all, err)
	}
	// Past its expiry a token is no longer listed as live.
	live, _ = st.ListAPITokens(ctx, 0, false, exp.Add(time.Second))
	if len(live) != 1 || live[0].ID != other.ID {
		t.Fatalf("live after expiry: %v", live)
	}
}

// Migration 014 makes usernames unique whatever their case; accounts made
// before it that differ only by case stop it, named, and nothing changes
// until they are renamed.
func TestMigrationUsernamesCaseInsensitive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn, m := migrator(t)
	if err := m.MigrateTo(ctx, 14); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"admin", "ADMIN", "Admin", "bob", "carol", "Carol"} {
		if _, err := conn.Exec(ctx, `INSERT INTO users (username, roles) VALUES ($1, '{viewer}')`, u); err != nil {
			t.Fatal(err)
		}
	}
	err := m.MigrateTo(ctx, 15)
	if err == nil || !strings.Contains(err.Error(), "usernames that differ only by case: ADMIN, Admin, admin; Carol, carol") {
		t.Fatalf("migration over clashing usernames: %v", err)
	}
	if _, err := conn.Exec(ctx, `UPDATE users SET username = username || '-' || id WHERE username IN ('ADMIN', 'Admin', 'Carol')`); err != nil {
		t.Fatal(err)
	}
	if err := m.MigrateTo(ctx, 15); err != nil {
		t.Fatalf("after the renames: %v", err)
	}
	st, err := store.Open(ctx, store.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, u := range []string{"BOB", "Bob", "ADMIN"} {
		if _, err := st.CreateUser(ctx, store.User{Username: u, Roles: []string{"viewer"}}, time.Now()); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("create %s beside an account of the same name in another case: %v", u, err)
		}
	}
	if _, err := st.CreateUser(ctx, store.User{Username: "dave", Roles: []string{"viewer"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := m.MigrateTo(ctx, 14); err != nil {
		t.Fatalf("down: %v", err)
	}
}
