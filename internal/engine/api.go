package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/console"
	"github.com/writ-sec/writ/internal/server"
	"github.com/writ-sec/writ/internal/store"
)

// APIParams is what MountAPI mounts the API for.
type APIParams struct {
	Config *config.Config
	// Engine may be nil (no repository: its routes answer 503).
	Engine server.Engine
	Store  *store.Store
	Audit  *audit.Log
	// Checkpointer may be nil (this replica does not make checkpoints on
	// demand).
	Checkpointer server.Checkpointer
	Server       *server.Server
	Logger       *slog.Logger
	// Getenv resolves secret references; Stderr receives the first
	// admin's one-time password.
	Getenv func(string) string
	Stderr io.Writer
}

// API is what MountAPI built.
type API struct {
	// Run flushes the audit of refused requests; run it on every replica
	// until ctx ends.
	Run func(context.Context) error
	// WebLogin is the browser console's SSO sign-in (authorization code
	// with PKCE); nil unless auth.oidc.consoleRedirectURL is set.
	WebLogin *auth.WebLogin
}

// MountAPI builds authentication from the auth section of writ.yaml
// (local accounts with lockout and sessions, API tokens, an OIDC provider),
// makes the first admin account when there is none (its one-time password
// printed once, to Stderr, never logged), installs the guard every
// protected route goes through, and mounts the REST API and the console.
func MountAPI(ctx context.Context, p APIParams) (*API, error) {
	cfg, engine, log, srv, alog, cp := p.Config, p.Engine, p.Logger, p.Server, p.Audit, p.Checkpointer
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := cfg.AuthSettings()
	var (
		oidcV *auth.OIDC
		web   *auth.WebLogin
		err   error
	)
	if o := s.OIDC; o != nil {
		if oidcV, err = NewOIDC(o, log); err != nil {
			return nil, err
		}
		if o.ConsoleLogin() {
			if web, err = NewWebLogin(o, oidcV, p.Getenv); err != nil {
				return nil, err
			}
		}
	}
	a, err := auth.New(auth.Options{Store: p.Store, Audit: alog, OIDC: oidcV, SessionTTL: s.SessionTTL,
		LockoutThreshold: s.LockoutThreshold, LockoutDuration: s.LockoutDuration, Logger: log})
	if err != nil {
		return nil, err
	}
	name, password, created, err := a.EnsureFirstAdmin(ctx)
	if err != nil {
		return nil, fmt.Errorf("first admin account: %w", err)
	}
	if created {
		printFirstAdmin(p.Stderr, name, password, srv.Addr())
		log.InfoContext(ctx, "made the first admin account; its one-time password was printed to stderr", slog.String("user", name))
	}
	denials, err := server.NewDenialAuditor(server.DenialOptions{Log: alog, Store: p.Store, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := srv.SetGuard(server.Guard{Auth: a, Denials: denials, TrustedProxies: s.TrustedProxies, MaxBody: s.MaxRequestBytes, BodyReadTimeout: s.BodyReadTimeout,
		Limiter: server.NewRateLimiter(server.RateLimitOptions{PerMinute: s.LoginPerMinute, Burst: s.LoginBurst})}); err != nil {
		return nil, err
	}
	trusted, err := trustedAuditKeys(cfg, alog)
	if err != nil {
		return nil, err
	}
	var oidcLogin *server.OIDCLogin
	if o := s.OIDC; o != nil {
		oidcLogin = &server.OIDCLogin{Issuer: o.Issuer, ClientID: o.LoginClientID(), Scopes: o.LoginScopes()}
	}
	drift, _ := engine.(server.Drift)
	api, err := server.NewAPIWith(server.APIOptions{Store: p.Store, Engine: engine, Drift: drift, Auth: a, TrustedKeys: trusted, Checkpointer: cp,
		OIDCLogin: oidcLogin, Audit: alog, Logger: log})
	if err != nil {
		return nil, err
	}
	api.Register(srv)
	if err := setupConsole(cfg, engine, p.Store, a, web, trusted, alog, cp, srv, log); err != nil {
		return nil, err
	}
	issuer := ""
	if s.OIDC != nil {
		issuer = s.OIDC.Issuer
	}
	log.InfoContext(ctx, "API ready", slog.Duration("session_ttl", s.SessionTTL), slog.Int("lockout_threshold", s.LockoutThreshold),
		slog.Int("login_per_minute", s.LoginPerMinute), slog.String("oidc_issuer", issuer), slog.Bool("console_sso", web != nil),
		slog.Int("trusted_audit_keys", trusted.Len()))
	return &API{Run: denials.Run, WebLogin: web}, nil
}

// printFirstAdmin shows the first admin's one-time password, once. It goes
// to stderr as plain text, not through the logger, so log shipping never
// carries it.
func printFirstAdmin(w io.Writer, name, password, addr string) {
	if w == nil {
		w = os.Stderr
	}
	fmt.Fprintf(w, `
writ: there was no account, so writ made the administrator %q.
      Its one-time password is shown this once (it is stored only as an argon2id hash):

          %s

      Log in and change it (POST http://%s/api/v1/auth/login, then POST /api/v1/auth/password),
      then make accounts for your team (writ user add, or POST /api/v1/users).

`, name, password, addr)
}

// trustedAuditKeys verify the audit log for POST /api/v1/audit/verify:
// the key signing now, and those of audit.trustedKeysDir.
func trustedAuditKeys(cfg *config.Config, alog *audit.Log) (*audit.KeySet, error) {
	pub, err := audit.NewPublicKey(alog.Key().Public())
	if err != nil {
		return nil, err
	}
	ks := audit.NewKeySet(pub)
	if dir := cfg.Audit.TrustedKeysDir; dir != "" {
		more, err := audit.LoadKeySet(dir)
		if err != nil {
			return nil, fmt.Errorf("audit.trustedKeysDir: %w", err)
		}
		for _, k := range more.Keys() {
			ks.Add(k)
		}
	}
	return ks, nil
}

// NewOIDC builds the verifier of SSO bearer tokens.
func NewOIDC(o *config.OIDC, log *slog.Logger) (*auth.OIDC, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("auth.oidc.caFile: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("auth.oidc.caFile holds no PEM certificate")
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		client.Transport = tr
	}
	roleMap := map[string][]auth.Role{}
	for group, names := range o.Roles {
		for _, n := range names {
			r, err := auth.ParseRole(n)
			if err != nil {
				return nil, fmt.Errorf("auth.oidc.roles[%s]: %w", group, err)
			}
			roleMap[group] = append(roleMap[group], r)
		}
	}
	var clientIDs []string
	if id := o.LoginClientID(); id != o.Audience {
		// writ login's ID tokens name its client id as aud.
		clientIDs = []string{id}
	}
	if id := o.ConsoleLoginClientID(); o.ConsoleLogin() && id != o.Audience && !slices.Contains(clientIDs, id) {
		// So do the console's, kept as its session credential.
		clientIDs = append(clientIDs, id)
	}
	v, err := auth.NewOIDC(auth.OIDCOptions{Issuer: o.Issuer, Audience: o.Audience, ClientIDs: clientIDs, Algorithms: o.Algorithms, JWKSURL: o.JWKSURL,
		UsernameClaim: o.UsernameClaim, RolesClaim: o.RolesClaim, RoleMap: roleMap, AccessTokenType: o.TokenType(), HTTPClient: client, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("auth.oidc: %w", err)
	}
	return v, nil
}

// NewWebLogin builds the console's SSO sign-in on the verifier of SSO
// tokens (same provider, HTTP client and CA), its client secret resolved
// from its reference.
func NewWebLogin(o *config.OIDC, v *auth.OIDC, getenv func(string) string) (*auth.WebLogin, error) {
	secret, err := o.ConsoleClientSecret(getenv)
	if err != nil {
		return nil, err
	}
	w, err := v.NewWebLogin(auth.WebLoginOptions{ClientID: o.ConsoleLoginClientID(), ClientSecret: secret.Value(),
		RedirectURL: o.ConsoleRedirectURL, Scopes: o.ConsoleLoginScopes()})
	if err != nil {
		return nil, fmt.Errorf("auth.oidc console sign-in: %w", err)
	}
	return w, nil
}

// setupConsole mounts the web console at / (unless console.disabled):
// the API's store, authenticator, engine and audit keys, the origin
// browsers reach it at.
func setupConsole(cfg *config.Config, engine server.Engine, st *store.Store, a *auth.Authenticator, web *auth.WebLogin, trusted *audit.KeySet, alog *audit.Log, cp server.Checkpointer,
	srv *server.Server, log *slog.Logger) error {
	origin := ""
	if c := cfg.Console; c != nil {
		if c.Disabled {
			log.Info("console disabled (console.disabled)")
			return nil
		}
		origin = c.Origin
	}
	envs := cfg.Environments
	if len(envs) == 0 {
		envs = config.DefaultEnvironments()
	}
	con, err := console.New(console.Options{Store: st, Auth: a, Engine: engine, WebLogin: web, Origin: origin, TrustedKeys: trusted, Audit: alog,
		Checkpointer: cp, Environments: slices.Sorted(maps.Keys(envs)), Logger: log})
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	con.Register(srv)
	return nil
}
