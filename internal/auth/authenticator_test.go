package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	a     *Authenticator
	st    *store.Store
	clock *testClock
	logs  *syncBuffer
}

var admin = audit.Actor{ID: "root-admin", Role: "admin"}

func newFixture(t testing.TB, mod func(*Options)) *fixture {
	t.Helper()
	st := dbtest.Store(t)
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := audit.NewSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.NewLog(audit.LogOptions{Store: st, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, clock: &testClock{now: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}, logs: &syncBuffer{}}
	opts := Options{Store: st, Audit: alog, Hash: cheap, Now: f.clock.Now, LockoutThreshold: 3, LockoutDuration: 10 * time.Minute,
		Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&opts)
	}
	f.a, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) user(t *testing.T, name, password string, roles ...Role) {
	t.Helper()
	if _, _, err := f.a.CreateUser(context.Background(), admin, NewUser{Username: name, Password: password, Roles: Roles(roles...)}); err != nil {
		t.Fatal(err)
	}
}

// events lists the audit log's event names in order.
func (f *fixture) events(t *testing.T) []string {
	t.Helper()
	es, err := f.st.AuditEntries(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Event)
	}
	return out
}

func deniedCode(err error) string {
	var d *Denied
	if errors.As(err, &d) {
		return d.Code
	}
	return ""
}

func TestLoginSessionLogout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	f.user(t, "alice", "alice's long password", Analyst, Viewer)

	res, err := f.a.Login(ctx, "alice", "alice's long password", "192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Token, SessionPrefix) || !res.ExpiresAt.Equal(f.clock.Now().Add(8*time.Hour)) {
		t.Fatalf("login result %+v", res)
	}
	p, err := f.a.Authenticate(ctx, res.Token)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "alice" || p.Method != MethodSession || p.Roles != Roles(Viewer, Analyst) || p.SessionID == 0 {
		t.Fatalf("principal %+v", p)
	}
	if err := f.a.Logout(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(ctx, res.Token); deniedCode(err) != "revoked" {
		t.Fatalf("after logout: %v; want revoked", err)
	}
	if err := f.a.Logout(ctx, p); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second logout: %v", err)
	}

	// A session ends after its lifetime.
	res, _ = f.a.Login(ctx, "alice", "alice's long password", "")
	f.clock.Advance(8*time.Hour - time.Second)
	if _, err := f.a.Authenticate(ctx, res.Token); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.a.Authenticate(ctx, res.Token); deniedCode(err) != "expired" {
		t.Fatalf("at expiry: %v; want expired", err)
	}
	// Unknown and malformed credentials.
	s, _, _ := newSecret(SessionPrefix)
	if _, err := f.a.Authenticate(ctx, s); deniedCode(err) != "unknown" {
		t.Fatalf("unknown session: %v", err)
	}
	if _, err := f.a.Authenticate(ctx, "hunter2"); deniedCode(err) != "malformed" {
		t.Fatalf("malformed: %v", err)
	}
	if _, err := f.a.Authenticate(ctx, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"); deniedCode(err) != "oidc_disabled" {
		t.Fatalf("JWT without OIDC: %v", err)
	}
	want := []string{"user.created", "auth.login", "auth.logout", "auth.login"}
	if got := f.events(t); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("audit events %v; want %v", got, want)
	}
}

func TestLoginRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	f.user(t, "alice", "alice's long password", Viewer)
	if _, _, err := f.a.CreateUser(ctx, admin, NewUser{Username: "robot", Roles: Roles(Viewer), NoPassword: true}); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ user, pw, code string }{
		"unknown user": {"mallory", "alice's long password", "unknown_user"},
		"wrong":        {"alice", "alice's long passwore", "bad_password"},
		"no password":  {"robot", "anything at all here", "no_password"},
		"empty user":   {"", "x", "malformed"},
		"huge":         {"alice", strings.Repeat("p", MaxPasswordBytes+1), "malformed"},
	} {
		if _, err := f.a.Login(ctx, tc.user, tc.pw, ""); deniedCode(err) != tc.code {
			t.Errorf("%s: %v; want %s", name, err, tc.code)
		}
	}
}

func TestLockout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	f.user(t, "alice", "alice's long password", Viewer)
	for i := range 3 {
		if _, err := f.a.Login(ctx, "alice", "guess number "+string(rune('a'+i)), "198.51.100.9"); deniedCode(err) != "bad_password" {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	// Locked: the right password does not open it either.
	if _, err := f.a.Login(ctx, "alice", "alice's long password", ""); deniedCode(err) != "locked" {
		t.Fatalf("right password while locked: %v; want locked", err)
	}
	u, _ := f.a.GetUser(ctx, "alice")
	if u.LockedUntil == nil || !u.LockedUntil.Equal(f.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("locked until %v", u.LockedUntil)
	}
	f.clock.Advance(10 * time.Minute)
	res, err := f.a.Login(ctx, "alice", "alice's long password", "")
	if err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	if u, _ := f.a.GetUser(ctx, "alice"); u.FailedLogins != 0 || u.LastLoginAt == nil {
		t.Fatalf("after a login: %+v", u)
	}
	// An admin unlocks early.
	for range 3 {
		_, _ = f.a.Login(ctx, "alice", "wrong wrong wrong", "")
	}
	if _, err := f.a.Login(ctx, "alice", "alice's long password", ""); deniedCode(err) != "locked" {
		t.Fatalf("second lockout: %v", err)
	}
	if _, err := f.a.UpdateUser(ctx, admin, "alice", UserChange{Unlock: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Login(ctx, "alice", "alice's long password", ""); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// The lockout did not end the session opened before it.
	if _, err := f.a.Authenticate(ctx, res.Token); err != nil {
		t.Fatalf("earlier session: %v", err)
	}
	got := strings.Join(f.events(t), " ")
	if strings.Count(got, "auth.locked") != 2 || !strings.Contains(got, "user.unlocked") {
		t.Fatalf("audit events %s", got)
	}
}

// Concurrent wrong passwords are each counted: the lock cannot be raced.
func TestLockoutConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, func(o *Options) { o.LockoutThreshold = 5 })
	f.user(t, "alice", "alice's long password", Viewer)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { _, _ = f.a.Login(ctx, "alice", "wrong password here", "") })
	}
	wg.Wait()
	if _, err := f.a.Login(ctx, "alice", "alice's long password", ""); deniedCode(err) != "locked" {
		t.Fatalf("after 5 concurrent failures: %v; want locked", err)
	}
}

func TestDisableRevokesAndRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	f.user(t, "root", "the admin's password", Admin)
	f.user(t, "alice", "alice's long password", Viewer, Executor)
	res, _ := f.a.Login(ctx, "alice", "alice's long password", "")
	_, tok, err := f.a.CreateToken(ctx, admin, NewToken{Username: "alice", Name: "ci", Roles: Roles(Executor)})
	if err != nil {
		t.Fatal(err)
	}
	off := true
	if _, err := f.a.UpdateUser(ctx, admin, "alice", UserChange{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(ctx, res.Token); deniedCode(err) != "revoked" {
		t.Fatalf("session of a disabled account: %v; want revoked", err)
	}
	if _, err := f.a.Authenticate(ctx, tok); deniedCode(err) != "disabled" {
		t.Fatalf("token of a disabled account: %v; want disabled", err)
	}
	if _, err := f.a.Login(ctx, "alice", "alice's long password", ""); deniedCode(err) != "disabled" {
		t.Fatalf("login of a disabled account: %v", err)
	}
	on := false
	if _, err := f.a.UpdateUser(ctx, admin, "alice", UserChange{Disabled: &on}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(ctx, tok); err != nil {
		t.Fatalf("token after enabling again: %v", err)
	}
	// The last enabled admin can be neither disabled nor demoted.
	if _, err := f.a.UpdateUser(ctx, admin, "root", UserChange{Disabled: &off}); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("disable the last admin: %v", err)
	}
	viewer := Roles(Viewer)
	if _, err := f.a.UpdateUser(ctx, admin, "root", UserChange{Roles: &viewer}); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("demote the last admin: %v", err)
	}
	if u, _ := f.a.GetUser(ctx, "root"); u.Disabled || !u.Roles.Has(Admin) {
		t.Fatalf("a refused change was kept: %+v", u)
	}
	if _, err := f.a.UpdateUser(ctx, admin, "nobody", UserChange{Disabled: &off}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing user: %v", err)
	}
	got := strings.Join(f.events(t), " ")
	for _, e := range []string{"user.disabled", "user.enabled", "token.created"} {
		if !strings.Contains(got, e) {
			t.Fatalf("audit events %s lack %s", got, e)
		}
	}
}

func TestAPITokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	f.user(t, "root", "the admin's password", Admin)
	if _, _, err := f.a.CreateUser(ctx, admin, NewUser{Username: "ci", Roles: Roles(Viewer, Executor), NoPassword: true}); err != nil {
		t.Fatal(err)
	}
	view, tok, err := f.a.CreateToken(ctx, admin, NewToken{Username: "ci", Name: "deploy", Roles: Roles(Executor), TTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || view.Roles != Roles(Executor) || !view.ExpiresAt.Equal(f.clock.Now().Add(48*time.Hour)) || view.CreatedBy != "root-admin" {
		t.Fatalf("token %+v", view)
	}
	p, err := f.a.Authenticate(ctx, tok)
	if err != nil || p.Name != "ci" || p.Method != MethodToken || p.Roles != Roles(Executor) || p.TokenName != "deploy" {
		t.Fatalf("principal %+v, %v", p, err)
	}
	for name, nt := range map[string]NewToken{
		"more roles than the account": {Username: "ci", Name: "x", Roles: Roles(Admin)},
		"bad name":                    {Username: "ci", Name: "a b", Roles: Roles(Viewer)},
		"too long":                    {Username: "ci", Name: "y", TTL: 400 * 24 * time.Hour},
	} {
		if _, _, err := f.a.CreateToken(ctx, admin, nt); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v; want ErrInvalid", name, err)
		}
	}
	if _, _, err := f.a.CreateToken(ctx, admin, NewToken{Username: "ci", Name: "deploy"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same name twice: %v", err)
	}
	// Demoting the account demotes its tokens.
	viewer := Roles(Viewer)
	if _, err := f.a.UpdateUser(ctx, admin, "ci", UserChange{Roles: &viewer}); err != nil {
		t.Fatal(err)
	}
	if p, err := f.a.Authenticate(ctx, tok); err != nil || !p.Roles.Empty() {
		t.Fatalf("after demotion: %+v, %v", p, err)
	}
	if _, err := f.a.RevokeToken(ctx, admin, view.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(ctx, tok); deniedCode(err) != "revoked" {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := f.a.RevokeToken(ctx, admin, view.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	// Expiry.
	_, tok2, err := f.a.CreateToken(ctx, admin, NewToken{Username: "ci", Name: "short", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if _, err := f.a.Authenticate(ctx, tok2); deniedCode(err) != "expired" {
		t.Fatalf("expired token: %v", err)
	}
	list, err := f.a.Tokens(ctx, "ci", true)
	if err != nil || len(list) != 2 {
		t.Fatalf("tokens %v %v", list, err)
	}
	if live, _ := f.a.Tokens(ctx, "", false); len(live) != 0 {
		t.Fatalf("live tokens %v", live)
	}
}

func TestChangePasswordAndReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	_, oneTime, err := f.a.CreateUser(ctx, admin, NewUser{Username: "bob", Roles: Roles(Approver)})
	if err != nil || oneTime == "" {
		t.Fatalf("one-time password %q, %v", oneTime, err)
	}
	first, err := f.a.Login(ctx, "bob", oneTime, "")
	if err != nil || !first.Principal.MustChangePassword {
		t.Fatalf("first login %+v %v", first, err)
	}
	second, _ := f.a.Login(ctx, "bob", oneTime, "")
	p := first.Principal
	if err := f.a.ChangePassword(ctx, p, oneTime, "short"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short new password: %v", err)
	}
	if err := f.a.ChangePassword(ctx, p, "not the password", "bob's new long password"); deniedCode(err) != "bad_password" {
		t.Fatalf("wrong current password: %v", err)
	}
	if err := f.a.ChangePassword(ctx, p, oneTime, "bob's new long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(ctx, first.Token); err != nil {
		t.Fatalf("the session that changed the password: %v", err)
	}
	if _, err := f.a.Authenticate(ctx, second.Token); deniedCode(err) != "revoked" {
		t.Fatalf("the other session: %v; want revoked", err)
	}
	if _, err := f.a.Login(ctx, "bob", oneTime, ""); deniedCode(err) != "bad_password" {
		t.Fatalf("old password: %v", err)
	}
	res, err := f.a.Login(ctx, "bob", "bob's new long password", "")
	if err != nil || res.Principal.MustChangePassword {
		t.Fatalf("new password: %+v %v", res, err)
	}
	// Only a login session changes a password.
	if err := f.a.ChangePassword(ctx, &Principal{Method: MethodToken, UserID: res.Principal.UserID}, "x", "y"); !errors.Is(err, ErrNotSession) {
		t.Fatalf("token principal: %v", err)
	}
	pw, err := f.a.ResetPassword(ctx, admin, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(ctx, res.Token); deniedCode(err) != "revoked" {
		t.Fatalf("session after reset: %v", err)
	}
	res, err = f.a.Login(ctx, "bob", pw, "")
	if err != nil || !res.Principal.MustChangePassword {
		t.Fatalf("login with the reset password: %+v %v", res, err)
	}
	// No password or token appears in the logs or the audit log.
	entries, _ := f.st.AuditEntries(ctx, 0, 1000)
	var all strings.Builder
	all.WriteString(f.logs.String())
	for _, e := range entries {
		all.Write(e.Entry)
	}
	for _, secret := range []string{oneTime, pw, "bob's new long password", first.Token, second.Token, res.Token} {
		if strings.Contains(all.String(), secret) {
			t.Fatalf("a secret appears in the logs or the audit log")
		}
	}
}

func TestFirstAdmin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	name, pw, created, err := f.a.EnsureFirstAdmin(ctx)
	if err != nil || !created || name != FirstAdmin || pw == "" {
		t.Fatalf("first admin %q %v %v", name, created, err)
	}
	if _, pw2, created, err := f.a.EnsureFirstAdmin(ctx); err != nil || created || pw2 != "" {
		t.Fatalf("second call created=%v pw=%q %v", created, pw2, err)
	}
	res, err := f.a.Login(ctx, FirstAdmin, pw, "")
	if err != nil || !res.Principal.Roles.Has(Admin) || !res.Principal.MustChangePassword {
		t.Fatalf("first admin login %+v %v", res, err)
	}
	// Concurrent replicas make one admin between them.
	g := newFixture(t, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	made := 0
	for range 4 {
		wg.Go(func() {
			_, _, c, err := g.a.EnsureFirstAdmin(ctx)
			if err != nil {
				t.Error(err)
			}
			if c {
				mu.Lock()
				made++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if made != 1 {
		t.Fatalf("%d replicas made the first admin", made)
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	st := dbtest.Store(t)
	k, _ := keys.Generate(keys.Ed25519)
	sk, _ := audit.NewSigningKey(k)
	alog, _ := audit.NewLog(audit.LogOptions{Store: st, Key: sk})
	for name, o := range map[string]Options{
		"no store":       {Audit: alog},
		"no audit":       {Store: st},
		"session 10s":    {Store: st, Audit: alog, SessionTTL: 10 * time.Second},
		"threshold -1":   {Store: st, Audit: alog, LockoutThreshold: -1},
		"lockout 1ms":    {Store: st, Audit: alog, LockoutDuration: time.Millisecond},
		"huge memory":    {Store: st, Audit: alog, Hash: HashParams{Time: 1, MemoryKiB: 1 << 30, Threads: 1}},
		"max token 1min": {Store: st, Audit: alog, MaxTokenTTL: time.Minute},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
