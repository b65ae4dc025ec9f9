package main

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// accountsCLI runs writ on one database and data directory with an audit
// key, and can check logins against the same database.
type accountsCLI struct {
	t       *testing.T
	db      string
	dataDir string
	env     map[string]string
	st      *store.Store
	auth    *auth.Authenticator
}

func newAccountsCLI(t *testing.T) *accountsCLI {
	t.Helper()
	c := &accountsCLI{t: t, db: emptyDatabaseURL(t), dataDir: t.TempDir(), env: map[string]string{"USER": "tester"}}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URL: c.db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	c.st = st
	// Before the database is migrated the commands say what to do.
	if _, _, err := audit.EnsureKey(c.dataDir); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := c.run("user", "list"); code != exitFailure || !strings.Contains(errOut, "writ migrate") {
		t.Fatalf("unmigrated database: %d %s", code, errOut)
	}
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	key, _, err := audit.EnsureKey(c.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.NewLog(audit.LogOptions{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if c.auth, err = auth.New(auth.Options{Store: st, Audit: alog}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *accountsCLI) run(args ...string) (int, string, string) {
	c.t.Helper()
	return runCLIEnv(c.t, c.env, append([]string{"--database", c.db, "--data-dir", c.dataDir, "--log-format", "json"}, args...)...)
}

func (c *accountsCLI) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(args...)
	if code != exitOK {
		c.t.Fatalf("writ %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var oneTimeRE = regexp.MustCompile(`one-time password[^:]*: (\S+)\n`)

func (c *accountsCLI) login(user, pw string) (*auth.LoginResult, error) {
	return c.auth.Login(context.Background(), user, pw, "")
}

func TestUserCommands(t *testing.T) {
	t.Parallel()
	c := newAccountsCLI(t)
	code, out, errOut := c.run("user", "add", "alice", "--role", "analyst", "--role", "viewer", "--display-name", "Alice A.")
	if code != exitOK || !strings.Contains(out, "created user alice (viewer,analyst)") {
		t.Fatalf("user add: %d %s %s", code, out, errOut)
	}
	m := oneTimeRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no one-time password in %q", out)
	}
	pw := m[1]
	if strings.Contains(errOut, pw) {
		t.Fatal("the one-time password reached the logs")
	}
	res, err := c.login("alice", pw)
	if err != nil || !res.Principal.MustChangePassword || res.Principal.Roles != auth.Roles(auth.Viewer, auth.Analyst) {
		t.Fatalf("login with the one-time password: %+v %v", res, err)
	}

	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"no role":         {[]string{"user", "add", "bob"}, exitUsage, "--role"},
		"unknown role":    {[]string{"user", "add", "bob", "--role", "root"}, exitUsage, "unknown role"},
		"bad name":        {[]string{"user", "add", "bob smith", "--role", "viewer"}, exitUsage, "username"},
		"taken":           {[]string{"user", "add", "alice", "--role", "viewer"}, exitFailure, "exists already"},
		"both":            {[]string{"user", "add", "bob", "--role", "viewer", "--password", "--no-password"}, exitUsage, "not both"},
		"no password":     {[]string{"user", "add", "bob", "--role", "viewer", "--password"}, exitUsage, "WRIT_USER_PASSWORD"},
		"missing user":    {[]string{"user", "disable", "nobody"}, exitFailure, "not found"},
		"roles w/o roles": {[]string{"user", "roles", "alice"}, exitUsage, "--role"},
	} {
		code, _, errOut := c.run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d %q; want %d and %q", name, code, errOut, tc.code, tc.want)
		}
	}

	// A chosen password, from the environment.
	c.env["WRIT_USER_PASSWORD"] = "carol's long password"
	out = c.ok("user", "add", "carol", "--role", "admin", "--password")
	delete(c.env, "WRIT_USER_PASSWORD")
	if strings.Contains(out, "one-time") {
		t.Fatalf("a one-time password with --password: %s", out)
	}
	if res, err := c.login("carol", "carol's long password"); err != nil || res.Principal.MustChangePassword {
		t.Fatalf("carol: %+v %v", res, err)
	}
	c.env["WRIT_USER_PASSWORD"] = "short"
	if code, _, errOut := c.run("user", "add", "dan", "--role", "viewer", "--password"); code != exitUsage || !strings.Contains(errOut, "12 characters") {
		t.Fatalf("short password: %d %s", code, errOut)
	}
	delete(c.env, "WRIT_USER_PASSWORD")
	c.ok("user", "add", "robot", "--role", "viewer", "--no-password")

	var list struct{ Users []auth.User }
	if err := json.Unmarshal([]byte(c.ok("user", "list", "--format", "json")), &list); err != nil || len(list.Users) != 3 {
		t.Fatalf("user list: %+v %v", list, err)
	}
	text := c.ok("user", "list")
	for _, want := range []string{"alice", "must change password", "robot", "tokens only", "carol"} {
		if !strings.Contains(text, want) {
			t.Errorf("user list lacks %q:\n%s", want, text)
		}
	}

	c.ok("user", "disable", "alice")
	if _, err := c.login("alice", pw); err == nil {
		t.Fatal("a disabled account logged in")
	}
	c.ok("user", "enable", "alice")
	c.ok("user", "roles", "alice", "--role", "approver")
	out = c.ok("user", "reset-password", "alice")
	m = oneTimeRE.FindStringSubmatch(out)
	if m == nil || m[1] == pw {
		t.Fatalf("reset-password: %q", out)
	}
	res, err = c.login("alice", m[1])
	if err != nil || res.Principal.Roles != auth.Roles(auth.Approver) {
		t.Fatalf("after reset: %+v %v", res, err)
	}
	if out := c.ok("user", "revoke-sessions", "alice"); !strings.Contains(out, "revoked 1 session") {
		t.Fatalf("revoke-sessions: %s", out)
	}
	for range 5 {
		_, _ = c.login("alice", "wrong wrong wrong")
	}
	if _, err := c.login("alice", m[1]); err == nil {
		t.Fatal("not locked after 5 failures")
	}
	c.ok("user", "unlock", "alice")
	if _, err := c.login("alice", m[1]); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// The last admin stays.
	if code, _, errOut := c.run("user", "disable", "carol"); code != exitFailure || !strings.Contains(errOut, "no enabled admin") {
		t.Fatalf("disable the last admin: %d %s", code, errOut)
	}
	// Every change is audited as the CLI's user.
	es, err := c.st.AuditEntries(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]int{}
	for _, e := range es {
		if e.ActorID == "cli:tester" {
			events[e.Event]++
		}
	}
	for _, ev := range []string{"user.created", "user.disabled", "user.enabled", "user.updated", "user.password_reset", "session.revoked", "user.unlocked"} {
		if events[ev] == 0 {
			t.Errorf("%s not audited as cli:tester: %v", ev, events)
		}
	}
}

func TestUserCommandsNeedTheAuditKey(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t, "--database", dbtest.URL(t), "--data-dir", t.TempDir(), "user", "add", "x", "--role", "viewer")
	if code != exitUsage || !strings.Contains(errOut, "no audit signing key") {
		t.Fatalf("without a key: %d %s", code, errOut)
	}
}

func TestTokenCommands(t *testing.T) {
	t.Parallel()
	c := newAccountsCLI(t)
	c.ok("user", "add", "ci-bot", "--role", "viewer", "--role", "executor", "--no-password")
	code, out, errOut := c.run("token", "create", "--user", "ci-bot", "--name", "prometheus", "--role", "viewer", "--ttl", "30d")
	if code != exitOK {
		t.Fatalf("token create: %d %s", code, errOut)
	}
	secret := strings.TrimSpace(out)
	if !strings.HasPrefix(secret, auth.TokenPrefix) || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, `"prometheus" of ci-bot: roles viewer`) {
		t.Fatalf("token create printed %q / %q", out, errOut)
	}
	p, err := c.auth.Authenticate(context.Background(), secret)
	if err != nil || p.Name != "ci-bot" || p.Roles != auth.Roles(auth.Viewer) {
		t.Fatalf("the token: %+v %v", p, err)
	}
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"more roles":  {[]string{"token", "create", "--user", "ci-bot", "--name", "x", "--role", "admin"}, exitUsage, "cannot carry admin"},
		"bad ttl":     {[]string{"token", "create", "--user", "ci-bot", "--name", "x", "--ttl", "forever"}, exitUsage, "--ttl"},
		"too long":    {[]string{"token", "create", "--user", "ci-bot", "--name", "x", "--ttl", "500d"}, exitUsage, "longer than"},
		"no name":     {[]string{"token", "create", "--user", "ci-bot"}, exitUsage, "--name"},
		"no account":  {[]string{"token", "create", "--user", "nobody", "--name", "x"}, exitFailure, "not found"},
		"same name":   {[]string{"token", "create", "--user", "ci-bot", "--name", "prometheus"}, exitFailure, "exists already"},
		"revoke text": {[]string{"token", "revoke", "abc"}, exitUsage, "not a token id"},
		"revoke none": {[]string{"token", "revoke", "9999"}, exitFailure, "not found"},
	} {
		code, _, errOut := c.run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d %q; want %d and %q", name, code, errOut, tc.code, tc.want)
		}
	}
	listed := c.ok("token", "list", "--format", "json")
	if strings.Contains(listed, secret) || !strings.Contains(listed, `"prometheus"`) {
		t.Fatalf("token list: %s", listed)
	}
	var list struct{ Tokens []auth.Token }
	_ = json.Unmarshal([]byte(listed), &list)
	if len(list.Tokens) != 1 {
		t.Fatalf("tokens %+v", list)
	}
	if out := c.ok("token", "revoke", itoa(list.Tokens[0].ID)); !strings.Contains(out, "revoked token") {
		t.Fatalf("revoke: %s", out)
	}
	_, err = c.auth.Authenticate(context.Background(), secret)
	var d *auth.Denied
	if !errors.As(err, &d) || d.Code != "revoked" {
		t.Fatalf("revoked token: %v", err)
	}
	if text := c.ok("token", "list", "--all"); !strings.Contains(text, "revoked") {
		t.Fatalf("token list --all: %s", text)
	}
	if text := c.ok("token", "list"); strings.Contains(text, "prometheus") {
		t.Fatalf("a revoked token is listed as live: %s", text)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
