package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/engine"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/server"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

// ssoProvider is an OpenID provider on loopback (TLS, its certificate
// given to writ as auth.oidc.caFile).
type ssoProvider struct {
	srv    *httptest.Server
	key    *ecdsa.PrivateKey
	caFile string
	// cliClientID, when set, is auth.oidc.cliClientID.
	cliClientID string
}

func newSSOProvider(t *testing.T) *ssoProvider {
	t.Helper()
	p := &ssoProvider{}
	var err error
	if p.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/keys",
			"authorization_endpoint": p.srv.URL + "/authorize", "token_endpoint": p.srv.URL + "/token"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *ssoProvider) token(t *testing.T, groups ...string) string {
	t.Helper()
	return p.tokenFor(t, "writ", groups...)
}

// tokenFor is an ID token naming aud.
func (p *ssoProvider) tokenFor(t *testing.T, aud string, groups ...string) string {
	t.Helper()
	return p.typedToken(t, "JWT", aud, groups...)
}

// typedToken is a token naming aud with the JOSE typ (at+jwt: an RFC
// 9068 access token).
func (p *ssoProvider) typedToken(t *testing.T, typ, aud string, groups ...string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b, _ := json.Marshal(map[string]any{"iss": p.srv.URL, "aud": aud, "sub": "u-77", "email": "sso@example.com",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "groups": groups})
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := obj.CompactSerialize()
	return out
}

// apiRig is the API as writ serve mounts it, on loopback, with a
// reconciler on a real repository, JSON logs in a buffer and the audit
// key in a data directory the CLI shares.
type apiRig struct {
	t       *testing.T
	base    string
	dbURL   string
	dataDir string
	st      *store.Store
	logs    *syncBuffer
	stderr  *syncBuffer
	stop    func()
}

func newAPIRig(t *testing.T, sso *ssoProvider) *apiRig {
	t.Helper()
	r := &apiRig{t: t, dbURL: dbtest.URL(t), dataDir: t.TempDir(), logs: &syncBuffer{}, stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(server.RequestIDHandler(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	st, err := store.Open(ctx, store.Options{URL: r.dbURL, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	key, _, err := audit.EnsureKey(r.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.NewLog(audit.LogOptions{Store: st, Key: key, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	seed, err := policies.Files(false)
	for p, c := range seed {
		files[p] = c
	}
	if err != nil {
		t.Fatal(err)
	}
	repo := gittest.New(t, files)
	src, err := gitsrc.Open(ctx, gitsrc.Options{URL: repo.Bare})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	reg := action.NewRegistry()
	reg.RegisterFactory("block_ip", func(environment string) (action.Backend, error) {
		return blocklist.New(blocklist.Options{Path: filepath.Join(dir, environment+".txt")})
	})
	rec, err := reconcile.New(reconcile.Options{Source: src, Store: st, Audit: alog, Backends: reg, DefaultPolicies: policies.FS, Logger: log, Repository: "acme/secops"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	yaml := "apiVersion: writ/v1\nkind: ServerConfig\nauth:\n  sessionTTL: 1h\n  lockout: {threshold: 3, duration: 5m}\n  loginRateLimit: {perMinute: 600, burst: 100}\n"
	if sso != nil {
		yaml += fmt.Sprintf("  oidc:\n    issuer: %s\n    audience: writ\n    usernameClaim: email\n    rolesClaim: groups\n    caFile: %s\n    roles:\n      soc: [viewer, analyst]\n",
			sso.srv.URL, sso.caFile)
		if sso.cliClientID != "" {
			yaml += "    cliClientID: " + sso.cliClientID + "\n"
		}
	}
	cfg, err := config.Parse("writ.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: alog, Sinks: []audit.Sink{audit.DirSink{Dir: filepath.Join(dir, "cp")}}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	env := &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: r.stderr, getenv: func(string) string { return "" }}
	mounted, err := engine.MountAPI(ctx, engine.APIParams{Config: cfg, Engine: rec, Store: st, Audit: alog, Checkpointer: cp, Server: srv, Logger: log,
		Getenv: env.getenv, Stderr: env.stderr})
	if err != nil {
		t.Fatal(err)
	}
	run := mounted.Run
	done := make(chan struct{}, 2)
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() { _ = run(ctx); done <- struct{}{} }()
	r.base = "http://" + srv.Addr()
	r.stop = func() {
		cancel()
		<-done
		<-done
		st.Close()
	}
	t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
	})
	return r
}

func (r *apiRig) call(method, path, cred string, body any) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.base+path, rd)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

var firstAdminRE = regexp.MustCompile(`administrator "admin".*\n.*\n\n\s+(\S+)\n`)

// A full run of the API as writ serve sets it up — the first admin, logins,
// password changes, accounts, tokens (by API and by CLI), SSO tokens,
// refused credentials, the audit endpoints — then every log line, every
// CLI's output besides the secret it was asked for, and every audit entry
// is searched for every password, token and key: none appears. The first
// admin's password appears once, in the banner on stderr.
func TestAPIRunLogsNoSecrets(t *testing.T) {
	sso := newSSOProvider(t)
	r := newAPIRig(t, sso)
	m := firstAdminRE.FindStringSubmatch(r.stderr.String())
	if m == nil {
		t.Fatalf("no first admin banner on stderr:\n%s", r.stderr.String())
	}
	secrets := map[string]string{"first admin password": m[1]}
	code, body := r.call("POST", "/api/v1/auth/login", "", map[string]string{"username": "admin", "password": m[1]})
	if code != 200 {
		t.Fatalf("first admin login: %d %v", code, body)
	}
	adminSession := body["token"].(string)
	secrets["admin session"] = adminSession
	if code, _ := r.call("GET", "/api/v1/users", adminSession, nil); code != 403 {
		t.Fatalf("before changing the one-time password: %d", code)
	}
	secrets["admin password"] = "the admin's chosen password"
	if code, body := r.call("POST", "/api/v1/auth/password", adminSession, map[string]string{"current_password": m[1], "new_password": secrets["admin password"]}); code != 200 {
		t.Fatalf("password change %d %v", code, body)
	}
	code, body = r.call("POST", "/api/v1/users", adminSession, map[string]any{"username": "ana", "roles": []string{"analyst", "viewer"}})
	if code != 201 {
		t.Fatalf("create ana %d %v", code, body)
	}
	secrets["ana one-time"] = body["one_time_password"].(string)
	code, body = r.call("POST", "/api/v1/auth/login", "", map[string]string{"username": "ana", "password": secrets["ana one-time"]})
	if code != 200 {
		t.Fatalf("ana login %d %v", code, body)
	}
	anaSession := body["token"].(string)
	secrets["ana session"] = anaSession
	secrets["ana password"] = "ana's own long password"
	r.call("POST", "/api/v1/auth/password", anaSession, map[string]string{"current_password": "a wrong guess here", "new_password": secrets["ana password"]})
	if code, body := r.call("POST", "/api/v1/auth/password", anaSession, map[string]string{"current_password": secrets["ana one-time"], "new_password": secrets["ana password"]}); code != 200 {
		t.Fatalf("ana password change %d %v", code, body)
	}
	if code, _ := r.call("POST", "/api/v1/dry-run", anaSession, nil); code != 400 {
		t.Fatalf("ana dry-run without a body: %d", code)
	}
	code, body = r.call("POST", "/api/v1/users", adminSession, map[string]any{"username": "bot", "roles": []string{"viewer", "executor"}, "no_password": true})
	if code != 201 {
		t.Fatalf("create bot %d %v", code, body)
	}
	code, body = r.call("POST", "/api/v1/tokens", adminSession, map[string]any{"username": "bot", "name": "ci", "roles": []string{"executor"}})
	if code != 201 {
		t.Fatalf("create token %d %v", code, body)
	}
	botToken := body["secret"].(string)
	secrets["bot token"] = botToken
	if code, _ := r.call("POST", "/api/v1/reconcile", botToken, nil); code != 202 {
		t.Fatalf("bot reconcile %d", code)
	}
	if code, _ := r.call("GET", "/api/v1/users", botToken, nil); code != 403 {
		t.Fatalf("bot lists users %d", code)
	}
	jwt := sso.token(t, "soc")
	secrets["SSO token"] = jwt
	secrets["SSO token signature"] = jwt[strings.LastIndex(jwt, ".")+1:]
	code, body = r.call("GET", "/api/v1/auth/whoami", jwt, nil)
	if code != 200 || body["name"] != "oidc:sso@example.com" || body["method"] != "oidc" {
		t.Fatalf("SSO whoami %d %v", code, body)
	}
	if code, _ := r.call("GET", "/api/v1/status", jwt, nil); code != 200 {
		t.Fatalf("SSO viewer status %d", code)
	}
	if code, _ := r.call("GET", "/api/v1/users", jwt, nil); code != 403 {
		t.Fatalf("SSO viewer users %d", code)
	}
	// Refusals of all kinds.
	for i := range 4 {
		r.call("POST", "/api/v1/auth/login", "", map[string]string{"username": "ana", "password": fmt.Sprintf("guess %d of a password", i)})
	}
	r.call("GET", "/api/v1/status", botToken[:len(botToken)-2]+"xx", nil)
	r.call("GET", "/api/v1/status", "", nil)
	if code, _ := r.call("POST", "/api/v1/auth/logout", anaSession, nil); code != 200 {
		t.Fatalf("logout %d", code)
	}
	if code, _ := r.call("GET", "/api/v1/status", anaSession, nil); code != 401 {
		t.Fatalf("after logout %d", code)
	}
	if code, body := r.call("POST", "/api/v1/audit/verify", adminSession, nil); code != 200 || body["ok"] != true {
		t.Fatalf("verify %d %v", code, body)
	}
	if code, _ := r.call("POST", "/api/v1/audit/checkpoints", adminSession, nil); code != 201 {
		t.Fatalf("checkpoint %d", code)
	}
	// The CLI on the same database and key, logging JSON.
	cliEnvMap := map[string]string{"USER": "ops", "WRIT_USER_PASSWORD": "cli user's long password"}
	secrets["CLI password"] = cliEnvMap["WRIT_USER_PASSWORD"]
	cli := func(args ...string) (string, string) {
		code, out, errOut := runCLIEnv(t, cliEnvMap, append([]string{"--database", r.dbURL, "--data-dir", r.dataDir, "--log-format", "json", "--log-level", "debug"}, args...)...)
		if code != exitOK {
			t.Fatalf("writ %s: %d %s", strings.Join(args, " "), code, errOut)
		}
		return out, errOut
	}
	var cliLogs strings.Builder
	_, e := cli("user", "add", "cli-user", "--role", "viewer", "--password")
	cliLogs.WriteString(e)
	out, e := cli("user", "reset-password", "ana")
	cliLogs.WriteString(e)
	secrets["ana reset password"] = oneTimeRE.FindStringSubmatch(out)[1]
	out, e = cli("token", "create", "--user", "bot", "--name", "cli-made")
	cliLogs.WriteString(e)
	secrets["CLI token"] = strings.TrimSpace(out)
	_, e = cli("token", "list", "--all")
	cliLogs.WriteString(e)
	keyPEM, err := os.ReadFile(filepath.Join(r.dataDir, "audit", "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	secrets["audit private key"] = string(block.Bytes)
	secrets["audit private key PEM line"] = strings.Split(string(keyPEM), "\n")[1]

	r.stop()
	r.stop = nil
	logs := r.logs.String()
	// Every server log line is JSON; requests carry their id.
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	requests := 0
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %q", sc.Text())
		}
		if rec["msg"] == "request" {
			requests++
			if id, _ := rec["request_id"].(string); id == "" {
				t.Fatalf("a request logged without its id: %s", sc.Text())
			}
		}
	}
	if requests < 20 {
		t.Fatalf("%d requests logged", requests)
	}
	st, err := store.Open(context.Background(), store.Options{URL: r.dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := st.AuditEntries(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var auditText strings.Builder
	events := map[string]int{}
	for _, e := range entries {
		events[e.Event]++
		auditText.Write(e.Entry)
		auditText.WriteByte('\n')
	}
	if events["auth.locked"] != 1 || events["auth.denied"] < 8 || events["user.password_reset"] != 1 {
		t.Fatalf("audit events %v", events)
	}
	where := map[string]string{"the server's logs": logs, "the CLI's logs": cliLogs.String(), "the audit log": auditText.String()}
	for what, text := range where {
		for name, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the %s", what, name)
			}
		}
	}
	banner := r.stderr.String()
	if strings.Count(banner, m[1]) != 1 {
		t.Errorf("the first admin's password is on stderr %d times; want once", strings.Count(banner, m[1]))
	}
	for name, secret := range secrets {
		if name != "first admin password" && strings.Contains(banner, secret) {
			t.Errorf("stderr holds the %s", name)
		}
	}
	t.Logf("%d log lines, %d audit entries, %d secrets searched for", strings.Count(logs, "\n"), len(entries), len(secrets))
}

// A second start finds the admin made and prints no password again.
func TestSetupAPIFirstAdminOnce(t *testing.T) {
	r := newAPIRig(t, nil)
	if !firstAdminRE.MatchString(r.stderr.String()) {
		t.Fatalf("no banner:\n%s", r.stderr.String())
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URL: r.dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, _, err := audit.EnsureKey(r.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	alog, _ := audit.NewLog(audit.LogOptions{Store: st, Key: key})
	srv, _ := server.New(server.Options{Listen: "127.0.0.1:0"})
	var stderr bytes.Buffer
	env := &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr, getenv: func(string) string { return "" }}
	cfg, _ := config.Parse("writ.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\n"))
	if _, err := engine.MountAPI(ctx, engine.APIParams{Config: cfg, Store: st, Audit: alog, Server: srv, Getenv: env.getenv, Stderr: env.stderr}); err != nil {
		t.Fatal(err)
	}
	if stderr.Len() != 0 {
		t.Fatalf("a second start printed: %s", stderr.String())
	}
	users, err := st.ListUsers(ctx)
	if err != nil || len(users) != 1 {
		t.Fatalf("users %v %v", users, err)
	}
	// A bad OIDC section is an error at start, not at the first token.
	bad, err := config.Parse("writ.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\nauth:\n  oidc:\n    issuer: https://sso.example.com\n    audience: writ\n    rolesClaim: groups\n    roles: {}\n    caFile: /nonexistent/ca.pem\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv2, _ := server.New(server.Options{Listen: "127.0.0.1:0"})
	if _, err := engine.MountAPI(ctx, engine.APIParams{Config: bad, Store: st, Audit: alog, Server: srv2, Getenv: env.getenv, Stderr: env.stderr}); err == nil || !strings.Contains(err.Error(), "caFile") {
		t.Fatalf("missing CA file: %v", err)
	}
}

// With auth.oidc.consoleRedirectURL, writ serve builds the console's SSO
// sign-in on the provider of SSO tokens, through the same CA file, with
// the secret from its reference; the ID tokens naming the console's
// client id are accepted as bearer tokens. Without it there is none.
func TestSetupConsoleSignIn(t *testing.T) {
	ctx := context.Background()
	sso := newSSOProvider(t)
	oidcYAML := fmt.Sprintf("apiVersion: writ/v1\nkind: ServerConfig\nauth:\n  oidc:\n    issuer: %s\n    audience: writ\n    rolesClaim: groups\n    caFile: %s\n    roles: {soc: [viewer]}\n",
		sso.srv.URL, sso.caFile)
	console := oidcYAML + "    consoleRedirectURL: https://writ.example.com/console/login/callback\n    consoleClientID: writ-console\n    consoleClientSecretEnv: WRIT_CONSOLE_SECRET\n"
	cfg, err := config.Parse("writ.yaml", []byte(console))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	o := cfg.AuthSettings().OIDC
	v, err := engine.NewOIDC(o, log)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(ctx, sso.tokenFor(t, "writ-console", "soc")); err != nil || p.Name != "oidc:u-77" {
		t.Fatalf("a token of the console: %+v %v", p, err)
	}
	if _, err := v.Verify(ctx, sso.tokenFor(t, "grafana", "soc")); err == nil {
		t.Fatal("a token of another client was accepted")
	}
	getenv := func(k string) string { return map[string]string{"WRIT_CONSOLE_SECRET": "console-s3cret"}[k] }
	w, err := engine.NewWebLogin(o, v, getenv)
	if err != nil {
		t.Fatal(err)
	}
	// Discovery through the CA file (the provider's certificate is in no
	// system pool).
	start, err := w.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(start.URL)
	if !strings.HasPrefix(start.URL, sso.srv.URL+"/authorize?") || u.Query().Get("client_id") != "writ-console" ||
		u.Query().Get("redirect_uri") != "https://writ.example.com/console/login/callback" || u.Query().Get("scope") != "openid profile email" ||
		strings.Contains(start.URL, "console-s3cret") {
		t.Fatalf("authorization URL %s", start.URL)
	}
	if _, err := engine.NewWebLogin(o, v, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "WRIT_CONSOLE_SECRET") {
		t.Fatalf("an unset secret: %v", err)
	}

	// Through engine.MountAPI, as writ serve does.
	st, err := store.Open(ctx, store.Options{URL: dbtest.URL(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, _, err := audit.EnsureKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.NewLog(audit.LogOptions{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	setup := func(yaml string, getenv func(string) string) (*engine.API, error) {
		t.Helper()
		cfg, err := config.Parse("writ.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Options{Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return engine.MountAPI(ctx, engine.APIParams{Config: cfg, Store: st, Audit: alog, Server: srv, Logger: log, Getenv: getenv, Stderr: io.Discard})
	}
	a, err := setup(console, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if a.WebLogin == nil || a.WebLogin.ClientID() != "writ-console" || a.Run == nil {
		t.Fatalf("setup %+v", a)
	}
	if a, err := setup(oidcYAML, getenv); err != nil || a.WebLogin != nil {
		t.Fatalf("without consoleRedirectURL: %+v %v", a, err)
	}
	if _, err := setup(console, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "WRIT_CONSOLE_SECRET") {
		t.Fatalf("an unset secret at start: %v", err)
	}
}

// auth.oidc.accessTokenType rfc9068 reaches the verifier writ serve
// builds: an ID token for the audience is refused, an RFC 9068 access
// token and writ login's ID token are accepted.
func TestNewOIDCAccessTokenType(t *testing.T) {
	ctx := context.Background()
	sso := newSSOProvider(t)
	cfg, err := config.Parse("writ.yaml", []byte(fmt.Sprintf("apiVersion: writ/v1\nkind: ServerConfig\nauth:\n  oidc:\n    issuer: %s\n    audience: writ\n"+
		"    rolesClaim: groups\n    caFile: %s\n    roles: {soc: [viewer]}\n    accessTokenType: rfc9068\n    cliClientID: writ-cli\n", sso.srv.URL, sso.caFile)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := engine.NewOIDC(cfg.AuthSettings().OIDC, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, sso.tokenFor(t, "writ", "soc")); err == nil || !strings.Contains(err.Error(), "not at+jwt") {
		t.Fatalf("an ID token for the audience: %v", err)
	}
	for name, tok := range map[string]string{"access token": sso.typedToken(t, "at+jwt", "writ", "soc"), "writ login's ID token": sso.tokenFor(t, "writ-cli", "soc")} {
		if p, err := v.Verify(ctx, tok); err != nil || p.Name != "oidc:u-77" {
			t.Errorf("%s: %+v %v", name, p, err)
		}
	}
}
