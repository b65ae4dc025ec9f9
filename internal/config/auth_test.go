package config

import (
	"net/netip"
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
		s.LoginBurst != 2 || s.MaxRequestBytes != 65536 || len(s.TrustedProxies) != 2 ||
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
		d.MaxRequestBytes != 1<<20 || d.OIDC != nil {
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

func TestBadAuthSections(t *testing.T) {
	t.Parallel()
	head := "apiVersion: writ/v1\nkind: ServerConfig\nauth:\n"
	oidc := "  oidc:\n    issuer: https://sso.example.com\n    audience: writ\n    rolesClaim: groups\n    roles: {g: [viewer]}\n"
	for name, tc := range map[string]struct{ body, want string }{
		"bad ttl":         {"  sessionTTL: forever\n", "c.yaml:4:15: auth.sessionTTL"},
		"short ttl":       {"  sessionTTL: 10s\n", "outside 1m..720h"},
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
