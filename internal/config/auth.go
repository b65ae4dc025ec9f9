package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/yamldoc"
)

// Auth configures who may call the API: local logins (sessions, lockout,
// the login rate limit), request limits, and an OpenID Connect provider
// whose bearer tokens are accepted. No secret is needed to verify SSO
// tokens (the provider's public keys are fetched).
type Auth struct {
	// SessionTTL is how long a login's session lasts (default 8h).
	SessionTTL string `yaml:"sessionTTL,omitempty"`
	// Lockout locks an account after Threshold failed logins in a row for
	// Duration (defaults 5 and 15m).
	Lockout Lockout `yaml:"lockout,omitempty"`
	// LoginRateLimit bounds login and password-change attempts per client
	// address (default 10 a minute, bursts of 5).
	LoginRateLimit RateLimit `yaml:"loginRateLimit,omitempty"`
	// TrustedProxies are the load balancers whose X-Forwarded-For names
	// the client (CIDR prefixes). Default none: the peer address is the
	// client.
	TrustedProxies []string `yaml:"trustedProxies,omitempty"`
	// MaxRequestBytes bounds a request body (default 1 MiB; webhooks and
	// approvals have limits of their own).
	MaxRequestBytes int64 `yaml:"maxRequestBytes,omitempty"`
	// BodyReadTimeout bounds sending a request body: past it the request
	// is answered 408 (default 10s).
	BodyReadTimeout string `yaml:"bodyReadTimeout,omitempty"`
	// OIDC accepts bearer tokens of an SSO provider.
	OIDC *OIDC `yaml:"oidc,omitempty"`
}

// Lockout settings.
type Lockout struct {
	Threshold int    `yaml:"threshold,omitempty"`
	Duration  string `yaml:"duration,omitempty"`
}

// RateLimit is a token bucket: PerMinute attempts a minute, Burst at once.
type RateLimit struct {
	PerMinute int `yaml:"perMinute,omitempty"`
	Burst     int `yaml:"burst,omitempty"`
}

// OIDC is an OpenID Connect provider.
type OIDC struct {
	// Issuer URL (https); tokens must name it as iss.
	Issuer string `yaml:"issuer"`
	// Audience: writ's client id, one of a token's aud values.
	Audience string `yaml:"audience"`
	// Algorithms accepted (default RS256, ES256); never none or HS*.
	Algorithms []string `yaml:"algorithms,omitempty"`
	// JWKSURL, when the provider's discovery document should not be used.
	JWKSURL string `yaml:"jwksURL,omitempty"`
	// UsernameClaim names the caller in the audit log (default sub).
	UsernameClaim string `yaml:"usernameClaim,omitempty"`
	// RolesClaim holds the caller's groups (e.g. groups, or
	// realm_access.roles).
	RolesClaim string `yaml:"rolesClaim"`
	// Roles maps a value of the roles claim to writ roles.
	Roles map[string][]string `yaml:"roles"`
	// CAFile verifies the provider's TLS certificate (default: the system
	// roots).
	CAFile string `yaml:"caFile,omitempty"`
	// CLIClientID is the client id `writ login` uses for the OAuth 2.0
	// device authorization grant (RFC 8628), a public client at the
	// provider. The ID tokens it gets name it as aud, and writ accepts
	// them. Default: Audience.
	CLIClientID string `yaml:"cliClientID,omitempty"`
	// CLIScopes are the scopes `writ login` asks for (default
	// DefaultCLIScopes); openid is always asked for.
	CLIScopes []string `yaml:"cliScopes,omitempty"`
	// ConsoleRedirectURL turns the browser console's SSO sign-in on (the
	// authorization-code flow with PKCE): the console's callback as
	// registered at the provider, https (http only on localhost or
	// 127.0.0.1, for development).
	ConsoleRedirectURL string `yaml:"consoleRedirectURL,omitempty"`
	// ConsoleClientID is the console's client id at the provider; its ID
	// tokens name it as aud, and writ accepts them. Default: Audience.
	ConsoleClientID string `yaml:"consoleClientID,omitempty"`
	// ConsoleClientSecretEnv or ConsoleClientSecretFile (one of them, or
	// neither for a public client) give the console client's secret: by
	// reference only, never in the file.
	ConsoleClientSecretEnv  string `yaml:"consoleClientSecretEnv,omitempty"`
	ConsoleClientSecretFile string `yaml:"consoleClientSecretFile,omitempty"`
	// ConsoleScopes are the scopes the console asks for (default
	// DefaultConsoleScopes); openid is always asked for.
	ConsoleScopes []string `yaml:"consoleScopes,omitempty"`
	// AccessTokenType is what the provider's access tokens are: "any"
	// (default: the JOSE typ is not checked) or "rfc9068" (JWT access
	// tokens, typ at+jwt: a token for the audience must be one, and ID
	// tokens are accepted only for cliClientID and consoleClientID, which
	// must then differ from the audience).
	AccessTokenType string `yaml:"accessTokenType,omitempty"`
}

// Access token types (auth.oidc.accessTokenType).
const (
	AccessTokenAny     = "any"
	AccessTokenRFC9068 = "rfc9068"
)

// TokenType is AccessTokenType, defaulted to "any".
func (o *OIDC) TokenType() string {
	if o.AccessTokenType == "" {
		return AccessTokenAny
	}
	return o.AccessTokenType
}

// DefaultConsoleScopes are what the console's sign-in asks for: an ID
// token (openid) naming the caller (profile, email). No refresh token:
// the console signs in again when the ID token expires.
var DefaultConsoleScopes = []string{"openid", "profile", "email"}

// ConsoleLogin reports whether the console's SSO sign-in is configured
// (consoleRedirectURL is set).
func (o *OIDC) ConsoleLogin() bool { return o.ConsoleRedirectURL != "" }

// ConsoleLoginClientID is the console's client id: ConsoleClientID, else
// Audience.
func (o *OIDC) ConsoleLoginClientID() string {
	if o.ConsoleClientID != "" {
		return o.ConsoleClientID
	}
	return o.Audience
}

// ConsoleLoginScopes are the scopes the console asks for: ConsoleScopes
// (with openid first when it is missing), else DefaultConsoleScopes.
func (o *OIDC) ConsoleLoginScopes() []string {
	return scopesOr(o.ConsoleScopes, DefaultConsoleScopes)
}

// ConsoleClientSecret resolves the console client's secret (empty for a
// public client).
func (o *OIDC) ConsoleClientSecret(getenv func(string) string) (Secret, error) {
	s, err := ResolveSecret(getenv, o.ConsoleClientSecretEnv, o.ConsoleClientSecretFile)
	if err != nil {
		return Secret{}, fmt.Errorf("auth.oidc console client secret: %w", err)
	}
	return s, nil
}

func scopesOr(set, def []string) []string {
	if len(set) == 0 {
		return slices.Clone(def)
	}
	if slices.Contains(set, "openid") {
		return slices.Clone(set)
	}
	return append([]string{"openid"}, set...)
}

// DefaultCLIScopes are what `writ login` asks the provider for: an ID
// token (openid) naming the caller (profile, email) and a refresh token
// (offline_access) to renew it. A provider that puts the roles claim in
// ID tokens only when asked needs its scope in cliScopes (e.g. groups).
var DefaultCLIScopes = []string{"openid", "profile", "email", "offline_access"}

// LoginClientID is the client id `writ login` uses: CLIClientID, else
// Audience.
func (o *OIDC) LoginClientID() string {
	if o.CLIClientID != "" {
		return o.CLIClientID
	}
	return o.Audience
}

// LoginScopes are the scopes `writ login` asks for: CLIScopes (with openid
// first when it is missing), else DefaultCLIScopes.
func (o *OIDC) LoginScopes() []string {
	return scopesOr(o.CLIScopes, DefaultCLIScopes)
}

// Auth defaults.
const (
	DefaultSessionTTL       = 8 * time.Hour
	DefaultLockoutThreshold = 5
	DefaultLockoutDuration  = 15 * time.Minute
	DefaultLoginPerMinute   = 10
	DefaultLoginBurst       = 5
	DefaultMaxRequestBytes  = 1 << 20
	DefaultBodyReadTimeout  = 10 * time.Second
)

func init() {
	hints["/auth/sessionTTL"] = "is not a duration such as 8h"
	hints["/auth/lockout/duration"] = "is not a duration such as 15m"
	hints["/auth/oidc/issuer"] = "must be an https URL"
	hints["/auth/oidc/jwksURL"] = "must be an https URL"
	hints["/auth/oidc/caFile"] = "must be an absolute path"
	hints["/auth/oidc/consoleRedirectURL"] = "must be an https URL without a fragment (http only on localhost or 127.0.0.1)"
	hints["/auth/oidc/consoleClientSecretEnv"] = "is not an environment variable name (A-Z, 0-9, _)"
	hints["/auth/oidc/consoleClientSecretFile"] = "must be an absolute path"
}

// checkAuth checks what the schema cannot: durations and prefixes (the
// schema refuses unknown roles and the algorithms none and HS*).
func (c *Config) checkAuth(doc *yamldoc.Doc) diag.Problems {
	a := c.Auth
	if a == nil {
		return nil
	}
	var out diag.Problems
	for ptr, v := range map[string]string{"/auth/sessionTTL": a.SessionTTL, "/auth/lockout/duration": a.Lockout.Duration, "/auth/bodyReadTimeout": a.BodyReadTimeout} {
		if v == "" {
			continue
		}
		if _, err := time.ParseDuration(expandDays(v)); err != nil {
			out = append(out, doc.Errorf(ptr, "invalid-value", "%s: %q is not a duration", yamldoc.FieldName(ptr), v))
		}
	}
	if d := durationOr(a.SessionTTL, DefaultSessionTTL); d < time.Minute || d > 30*24*time.Hour {
		out = append(out, doc.Errorf("/auth/sessionTTL", "invalid-value", "sessionTTL %s is outside 1m..720h", d))
	}
	if d := durationOr(a.Lockout.Duration, DefaultLockoutDuration); d < time.Second || d > 7*24*time.Hour {
		out = append(out, doc.Errorf("/auth/lockout/duration", "invalid-value", "lockout duration %s is outside 1s..168h", d))
	}
	if d := durationOr(a.BodyReadTimeout, DefaultBodyReadTimeout); d < time.Second || d > time.Minute {
		out = append(out, doc.Errorf("/auth/bodyReadTimeout", "invalid-value", "bodyReadTimeout %s is outside 1s..1m", d))
	}
	for i, p := range a.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			out = append(out, doc.Errorf(fmt.Sprintf("/auth/trustedProxies/%d", i), "invalid-value", "trustedProxies: %q is not an address or CIDR prefix", p))
		}
	}
	if a.OIDC != nil {
		out = append(out, checkConsoleLogin(doc, a.OIDC)...)
		out = append(out, checkTokenType(doc, a.OIDC)...)
	}
	return out
}

// checkTokenType: with RFC 9068 access tokens, writ login's and the
// console's ID tokens are told from access tokens by their audience, so
// their client ids must differ from the audience.
func checkTokenType(doc *yamldoc.Doc, o *OIDC) diag.Problems {
	if o.TokenType() != AccessTokenRFC9068 {
		return nil
	}
	var out diag.Problems
	if o.LoginClientID() == o.Audience {
		out = append(out, doc.Errorf("/auth/oidc/accessTokenType", "invalid-value",
			"accessTokenType rfc9068 needs cliClientID, a client id other than the audience %q: writ login's ID tokens would name the audience, and an ID token is not accepted as an access token for it", o.Audience))
	}
	if o.ConsoleLogin() && o.ConsoleLoginClientID() == o.Audience {
		out = append(out, doc.Errorf("/auth/oidc/accessTokenType", "invalid-value",
			"accessTokenType rfc9068 needs consoleClientID, a client id other than the audience %q: the console's ID tokens would name the audience, and an ID token is not accepted as an access token for it", o.Audience))
	}
	return out
}

// checkConsoleLogin checks the console's sign-in settings: a redirect URL
// writ can be reached at, one secret reference, and no console setting
// without the redirect URL that turns the sign-in on.
func checkConsoleLogin(doc *yamldoc.Doc, o *OIDC) diag.Problems {
	var out diag.Problems
	if o.ConsoleRedirectURL != "" {
		if why := redirectURLProblem(o.ConsoleRedirectURL); why != "" {
			out = append(out, doc.Errorf("/auth/oidc/consoleRedirectURL", "invalid-value", "consoleRedirectURL %q %s", o.ConsoleRedirectURL, why))
		}
	} else {
		for _, k := range []struct {
			ptr string
			set bool
		}{
			{"/auth/oidc/consoleClientID", o.ConsoleClientID != ""},
			{"/auth/oidc/consoleClientSecretEnv", o.ConsoleClientSecretEnv != ""},
			{"/auth/oidc/consoleClientSecretFile", o.ConsoleClientSecretFile != ""},
			{"/auth/oidc/consoleScopes", len(o.ConsoleScopes) > 0},
		} {
			if k.set {
				out = append(out, doc.Errorf(k.ptr, "invalid-value", "%s is set but consoleRedirectURL is not: the console's sign-in is off without it", yamldoc.FieldName(k.ptr)))
			}
		}
	}
	if o.ConsoleClientSecretEnv != "" && o.ConsoleClientSecretFile != "" {
		out = append(out, doc.Errorf("/auth/oidc/consoleClientSecretFile", "invalid-value", "give consoleClientSecretEnv or consoleClientSecretFile, not both"))
	}
	return out
}

// redirectURLProblem says what is wrong with a redirect URL, or "": https,
// or http to localhost / 127.0.0.1 / [::1] only; no user info, no
// fragment.
func redirectURLProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return "is not an absolute URL"
	case u.User != nil || strings.Contains(raw, "#"):
		return "must have no user info and no fragment"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && (u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"):
		return ""
	}
	return "must be https (http only on localhost or 127.0.0.1, for development)"
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// AuthSettings are the auth section with defaults applied.
type AuthSettings struct {
	SessionTTL       time.Duration
	LockoutThreshold int
	LockoutDuration  time.Duration
	LoginPerMinute   int
	LoginBurst       int
	TrustedProxies   []netip.Prefix
	MaxRequestBytes  int64
	BodyReadTimeout  time.Duration
	OIDC             *OIDC
}

// AuthSettings applies the defaults to the auth section.
func (c *Config) AuthSettings() AuthSettings {
	s := AuthSettings{SessionTTL: DefaultSessionTTL, LockoutThreshold: DefaultLockoutThreshold, LockoutDuration: DefaultLockoutDuration,
		LoginPerMinute: DefaultLoginPerMinute, LoginBurst: DefaultLoginBurst, MaxRequestBytes: DefaultMaxRequestBytes,
		BodyReadTimeout: DefaultBodyReadTimeout}
	a := c.Auth
	if a == nil {
		return s
	}
	s.SessionTTL = durationOr(a.SessionTTL, DefaultSessionTTL)
	s.LockoutDuration = durationOr(a.Lockout.Duration, DefaultLockoutDuration)
	s.BodyReadTimeout = durationOr(a.BodyReadTimeout, DefaultBodyReadTimeout)
	if a.Lockout.Threshold > 0 {
		s.LockoutThreshold = a.Lockout.Threshold
	}
	if a.LoginRateLimit.PerMinute > 0 {
		s.LoginPerMinute = a.LoginRateLimit.PerMinute
	}
	if a.LoginRateLimit.Burst > 0 {
		s.LoginBurst = a.LoginRateLimit.Burst
	}
	if a.MaxRequestBytes > 0 {
		s.MaxRequestBytes = a.MaxRequestBytes
	}
	for _, p := range a.TrustedProxies {
		if pp, err := parsePrefix(p); err == nil {
			s.TrustedProxies = append(s.TrustedProxies, pp)
		}
	}
	s.OIDC = a.OIDC
	return s
}
