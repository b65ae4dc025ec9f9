package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAuthSection(t *testing.T) {
	t.Parallel()
	c, err := Parse("c.yaml", []byte(`apiVersion: writ/v1
kind: ServerConfig
auth:
  sessionTTL: 2h
  lockout: {threshold: 3, duration: 1h}
  loginRateLimit: {perMinute: 20, burst: 2}
  trustedProxies: [10.0.0.0/8, 192.0.2.1]
  maxRequestBytes: 65536
  bodyReadTimeout: 3s
  oidc:
    issuer: https://sso.example.com/realms/secops
    audience: writ
    algorithms: [RS256, EdDSA]
    usernameClaim: preferred_username
    rolesClaim: realm_access.roles
    roles:
      soc-analyst: [analyst, viewer]
      soc-admin: [admin]
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.AuthSettings()
	if s.SessionTTL != 2*time.Hour || s.LockoutThreshold != 3 || s.LockoutDuration != time.Hour || s.LoginPerMinute != 20 ||
		s.LoginBurst != 2 || s.MaxRequestBytes != 65536 || s.BodyReadTimeout != 3*time.Second || len(s.TrustedProxies) != 2 ||
		s.TrustedProxies[1] != netip.MustParsePrefix("192.0.2.1/32") {
		t.Fatalf("settings %+v", s)
	}
	if s.OIDC == nil || s.OIDC.Issuer != "https://sso.example.com/realms/secops" || len(s.OIDC.Roles["soc-analyst"]) != 2 {
		t.Fatalf("oidc %+v", s.OIDC)
	}
	if got := s.OIDC.LoginClientID(); got != "writ" {
		t.Fatalf("the CLI's client id defaults to the audience: %q", got)
	}
	if got := s.OIDC.LoginScopes(); !slices.Equal(got, DefaultCLIScopes) {
		t.Fatalf("default CLI scopes %v", got)
	}
	d := Default().AuthSettings()
	if d.SessionTTL != 8*time.Hour || d.LockoutThreshold != 5 || d.LockoutDuration != 15*time.Minute || d.LoginPerMinute != 10 ||
		d.MaxRequestBytes != 1<<20 || d.BodyReadTimeout != 10*time.Second || d.OIDC != nil {
		t.Fatalf("defaults %+v", d)
	}
}

// writ login's client id and scopes: set, or defaulted; openid is
// always asked for.
func TestOIDCLoginSettings(t *testing.T) {
	t.Parallel()
	c, err := Parse("c.yaml", []byte(`apiVersion: writ/v1
kind: ServerConfig
auth:
  oidc:
    issuer: https://sso.example.com
    audience: writ
    cliClientID: writ-cli
    cliScopes: [groups, email, offline_access]
    rolesClaim: groups
    roles: {g: [viewer]}
`))
	if err != nil {
		t.Fatal(err)
	}
	o := c.AuthSettings().OIDC
	if o.LoginClientID() != "writ-cli" {
		t.Fatalf("client id %q", o.LoginClientID())
	}
	if got := o.LoginScopes(); !slices.Equal(got, []string{"openid", "groups", "email", "offline_access"}) {
		t.Fatalf("scopes %v", got)
	}
	o.CLIScopes = []string{"profile", "openid"}
	if got := o.LoginScopes(); !slices.Equal(got, []string{"profile", "openid"}) {
		t.Fatalf("scopes with openid %v", got)
	}
}

// The console's sign-in: off without consoleRedirectURL; client id and
// scopes set or defaulted; the secret only by reference.
func TestOIDCConsoleSettings(t *testing.T) {
	t.Parallel()
	c, err := Parse("c.yaml", []byte(`apiVersion: writ/v1
kind: ServerConfig
auth:
  oidc:
    issuer: https://sso.example.com
    audience: writ
    rolesClaim: groups
    roles: {g: [viewer]}
    consoleRedirectURL: https://writ.example.com/console/login/callback
    consoleClientID: writ-console
    consoleClientSecretEnv: WRIT_CONSOLE_SECRET
    consoleScopes: [groups, email]
`))
	if err != nil {
		t.Fatal(err)
	}
	o := c.AuthSettings().OIDC
	if !o.ConsoleLogin() || o.ConsoleRedirectURL != "https://writ.example.com/console/login/callback" || o.ConsoleLoginClientID() != "writ-console" {
		t.Fatalf("console %+v", o)
	}
	if got := o.ConsoleLoginScopes(); !slices.Equal(got, []string{"openid", "groups", "email"}) {
		t.Fatalf("scopes %v", got)
	}
	sec, err := o.ConsoleClientSecret(func(k string) string { return map[string]string{"WRIT_CONSOLE_SECRET": "s3cret"}[k] })
	if err != nil || sec.Value() != "s3cret" || fmt.Sprint(sec) != "[redacted]" {
		t.Fatalf("secret %v %v", sec, err)
	}
	if _, err := o.ConsoleClientSecret(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "WRIT_CONSOLE_SECRET") {
		t.Fatalf("unset variable: %v", err)
	}
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.ConsoleClientSecretEnv, o.ConsoleClientSecretFile = "", file
	if sec, err := o.ConsoleClientSecret(nil); err != nil || sec.Value() != "from-file" {
		t.Fatalf("secret file: %v", err)
	}

	// Defaults: the audience, openid profile email, a public client; off
	// without the redirect URL.
	c, err = Parse("c.yaml", []byte(`apiVersion: writ/v1
kind: ServerConfig
auth:
  oidc:
    issuer: https://sso.example.com
    audience: writ
    rolesClaim: groups
    roles: {g: [viewer]}
    consoleRedirectURL: http://localhost:8080/console/login/callback
`))
	if err != nil {
		t.Fatal(err)
	}
	o = c.AuthSettings().OIDC
	if !o.ConsoleLogin() || o.ConsoleLoginClientID() != "writ" || !slices.Equal(o.ConsoleLoginScopes(), DefaultConsoleScopes) {
		t.Fatalf("defaults %+v %v", o, o.ConsoleLoginScopes())
	}
	if sec, err := o.ConsoleClientSecret(nil); err != nil || sec.Value() != "" {
		t.Fatalf("a public client's secret: %v", err)
	}
	o.ConsoleRedirectURL = ""
	if o.ConsoleLogin() {
		t.Fatal("the console's sign-in is on without a redirect URL")
	}
}

func TestBadAuthSections(t *testing.T) {
	t.Parallel()
	head := "apiVersion: writ/v1\nkind: ServerConfig\nauth:\n"
	oidc := "  oidc:\n    issuer: https://sso.example.com\n    audience: writ\n    rolesClaim: groups\n    roles: {g: [viewer]}\n"
	for name, tc := range map[string]struct{ body, want string }{
		"bad ttl":         {"  sessionTTL: forever\n", "c.yaml:4:15: auth.sessionTTL"},
		"short ttl":       {"  sessionTTL: 10s\n", "outside 1m..720h"},
		"long body read":  {"  bodyReadTimeout: 2m\n", "bodyReadTimeout 2m0s is outside 1s..1m"},
		"bad body read":   {"  bodyReadTimeout: soon\n", "auth.bodyReadTimeout"},
		"bad proxy":       {"  trustedProxies: [not-an-ip]\n", "c.yaml:4:20: trustedProxies: \"not-an-ip\""},
		"zero threshold":  {"  lockout: {threshold: 0}\n", "threshold"},
		"alg none":        {oidc + "    algorithms: [none]\n", "algorithms"},
		"HS256":           {oidc + "    algorithms: [HS256]\n", "algorithms"},
		"unknown role":    {"  oidc:\n    issuer: https://sso.example.com\n    audience: writ\n    rolesClaim: groups\n    roles: {g: [root]}\n", "roles"},
		"http issuer":     {"  oidc:\n    issuer: http://sso.example.com\n    audience: writ\n    rolesClaim: groups\n    roles: {}\n", "issuer"},
		"no audience":     {"  oidc:\n    issuer: https://sso.example.com\n    rolesClaim: groups\n    roles: {}\n", "audience"},
		"client secret":   {oidc + "    clientSecret: hunter2\n", "unknown field \"clientSecret\""},
		"unknown setting": {"  sesionTTL: 1h\n", "unknown field \"sesionTTL\""},
		"empty CLI id":    {oidc + "    cliClientID: \"\"\n", "cliClientID"},
		"space in scope":  {oidc + "    cliScopes: [\"openid email\"]\n", "cliScopes"},
		"no CLI scopes":   {oidc + "    cliScopes: []\n", "cliScopes"},

		"console secret literal":          {oidc + "    consoleRedirectURL: https://w.example.com/cb\n    consoleClientSecret: hunter2\n", "unknown field \"consoleClientSecret\""},
		"console http redirect":           {oidc + "    consoleRedirectURL: http://writ.example.com/cb\n", "c.yaml:9:25: consoleRedirectURL \"http://writ.example.com/cb\" must be https"},
		"console localhost lookalike":     {oidc + "    consoleRedirectURL: http://localhost.evil.example/cb\n", "c.yaml:9:25: consoleRedirectURL"},
		"console redirect fragment":       {oidc + "    consoleRedirectURL: https://w.example.com/cb#x\n", "c.yaml:9:25: auth.oidc.consoleRedirectURL"},
		"console redirect user":           {oidc + "    consoleRedirectURL: https://a:b@w.example.com/cb\n", "c.yaml:9:25: consoleRedirectURL \"https://a:b@w.example.com/cb\" must have no user info"},
		"console redirect not a URL":      {oidc + "    consoleRedirectURL: /console/login/callback\n", "c.yaml:9:25: auth.oidc.consoleRedirectURL"},
		"console secret env and file":     {oidc + "    consoleRedirectURL: https://w.example.com/cb\n    consoleClientSecretEnv: S\n    consoleClientSecretFile: /run/s\n", "c.yaml:11:30: give consoleClientSecretEnv or consoleClientSecretFile, not both"},
		"console secret env name":         {oidc + "    consoleRedirectURL: https://w.example.com/cb\n    consoleClientSecretEnv: not-a-name\n", "c.yaml:10:29: auth.oidc.consoleClientSecretEnv"},
		"console secret relative file":    {oidc + "    consoleRedirectURL: https://w.example.com/cb\n    consoleClientSecretFile: secret.txt\n", "c.yaml:10:30: auth.oidc.consoleClientSecretFile"},
		"console id without redirect":     {oidc + "    consoleClientID: writ-console\n", "c.yaml:9:22: auth.oidc.consoleClientID is set but consoleRedirectURL is not"},
		"console secret without redirect": {oidc + "    consoleClientSecretFile: /run/s\n", "c.yaml:9:30: auth.oidc.consoleClientSecretFile is set but consoleRedirectURL is not"},
		"empty console id":                {oidc + "    consoleRedirectURL: https://w.example.com/cb\n    consoleClientID: \"\"\n", "consoleClientID"},
		"space in console scope":          {oidc + "    consoleRedirectURL: https://w.example.com/cb\n    consoleScopes: [\"openid email\"]\n", "consoleScopes"},

		"unknown token type":          {oidc + "    accessTokenType: jwt\n", "accessTokenType"},
		"rfc9068 without a CLI id":    {oidc + "    accessTokenType: rfc9068\n", "c.yaml:9:22: accessTokenType rfc9068 needs cliClientID"},
		"rfc9068 with the CLI as aud": {oidc + "    accessTokenType: rfc9068\n    cliClientID: writ\n", "needs cliClientID"},
		"rfc9068 with the console as aud": {oidc + "    accessTokenType: rfc9068\n    cliClientID: writ-cli\n    consoleRedirectURL: https://w.example.com/cb\n",
			"accessTokenType rfc9068 needs consoleClientID"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("c.yaml", []byte(head+tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

// accessTokenType: any by default; rfc9068 with login clients other than
// the audience.
func TestOIDCAccessTokenType(t *testing.T) {
	t.Parallel()
	c, err := Parse("c.yaml", []byte(`apiVersion: writ/v1
kind: ServerConfig
auth:
  oidc:
    issuer: https://sso.example.com
    audience: writ
    rolesClaim: groups
    roles: {g: [viewer]}
    accessTokenType: rfc9068
    cliClientID: writ-cli
    consoleRedirectURL: https://writ.example.com/login/callback
    consoleClientID: writ-console
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.AuthSettings().OIDC.TokenType(); got != AccessTokenRFC9068 {
		t.Fatalf("token type %q", got)
	}
	if got := (&OIDC{}).TokenType(); got != AccessTokenAny {
		t.Fatalf("default token type %q", got)
	}
}
