package engine

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/forge/github"
	"github.com/writ-sec/writ/internal/forge/github/githubfake"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/server"
	"github.com/writ-sec/writ/internal/store"
)

func TestSetupGitHubWithoutSection(t *testing.T) {
	t.Parallel()
	forges, err := newForges(context.Background(), config.Default(), nil, nil, nil, slog.New(slog.DiscardHandler), func(string) string { return "" }, "test", "acme/secops")
	if len(forges) != 0 || err != nil {
		t.Fatalf("no github section: %v %v", forges, err)
	}
}

func TestGitHubConfigChecks(t *testing.T) {
	t.Parallel()
	base := "apiVersion: writ/v1\nkind: ServerConfig\ngithub:\n  repository: acme/secops\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"ok with token", base + "  webhookSecretEnv: HOOK\n  tokenEnv: TOK\n", ""},
		{"ok with app", base + "  webhookSecretFile: /etc/writ/hook\n  app: {appId: 1, installationId: 2, privateKeyFile: /etc/writ/app.pem}\n", ""},
		{"no secret", base + "  tokenEnv: TOK\n", "webhookSecretEnv or webhookSecretFile"},
		{"no credentials", base + "  webhookSecretEnv: HOOK\n", "tokenEnv, tokenFile or app"},
		{"token and app", base + "  webhookSecretEnv: HOOK\n  tokenEnv: TOK\n  app: {appId: 1, installationId: 2, privateKeyFile: /k}\n", "not both"},
		{"bad repository", "apiVersion: writ/v1\nkind: ServerConfig\ngithub:\n  repository: nope\n  webhookSecretEnv: HOOK\n  tokenEnv: TOK\n", "writ.yaml:4:15"},
		{"inline secret", base + "  webhookSecret: hunter2\n  tokenEnv: TOK\n", "webhookSecret"},
	}
	for _, c := range cases {
		_, err := config.Parse("writ.yaml", []byte(c.yaml))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v; want %q", c.name, err, c.want)
		}
	}
}

// With a github section, writ serve mounts the webhook receiver and a
// readiness check, and refuses to start without its secrets.
func TestSetupGitHub(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := githubfake.New(t, "acme", "secops")
	fake.AddToken("tok", "writ-bot")
	cfg, err := config.Parse("writ.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\ngithub:\n  repository: acme/secops\n  baseURL: "+
		fake.URL()+"\n  webhookSecretEnv: HOOK_SECRET\n  tokenEnv: GH_TOKEN\n"))
	if err != nil {
		t.Fatal(err)
	}
	rec, src, st := newForgeRig(t, "acme/secops")
	srv, err := server.New(server.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if _, err := newForges(ctx, cfg, rec, src, st, log, func(k string) string { return map[string]string{"GH_TOKEN": "tok"}[k] }, "test", "acme/secops"); err == nil ||
		!strings.Contains(err.Error(), "HOOK_SECRET") {
		t.Fatalf("without the webhook secret: %v", err)
	}
	env := map[string]string{"GH_TOKEN": "tok", "HOOK_SECRET": "s3cret"}
	forges, err := newForges(ctx, cfg, rec, src, st, log, func(k string) string { return env[k] }, "test", "acme/secops")
	if err != nil || len(forges) != 1 || forges[0].Name() != "github" || forges[0].WebhookPath() != github.WebhookPath {
		t.Fatalf("setup: %v %v", forges, err)
	}
	mountForges(srv, forges)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	a, err := githubfake.Deliver(ctx, nil, hs.URL+github.WebhookPath, []byte("s3cret"), githubfake.Delivery{Event: "ping", Payload: []byte(`{"zen":"x"}`)})
	if err != nil || a.Status != http.StatusOK {
		t.Fatalf("ping: %d %v", a.Status, err)
	}
	a, _ = githubfake.Deliver(ctx, nil, hs.URL+github.WebhookPath, []byte("wrong"), githubfake.Delivery{Event: "ping", Payload: []byte(`{"zen":"x"}`)})
	if a.Status != http.StatusUnauthorized {
		t.Fatalf("a wrongly signed ping: %d", a.Status)
	}
	resp, err := http.Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := make([]byte, 4096)
	n, _ := resp.Body.Read(body)
	if !strings.Contains(string(body[:n]), "webhook deliveries: 0 queued") {
		t.Fatalf("readyz lacks the github check: %s", body[:n])
	}

	// An app key that cannot be read is a clear error.
	appCfg := *cfg
	gh := *cfg.GitHub
	gh.TokenEnv, gh.App = "", &config.GitHubApp{AppID: 1, InstallationID: 2, PrivateKeyFile: filepath.Join(t.TempDir(), "missing.pem")}
	appCfg.GitHub = &gh
	if _, err := newForges(ctx, &appCfg, rec, src, st, log, func(k string) string { return env[k] }, "test", "acme/secops"); err == nil ||
		!strings.Contains(err.Error(), "github app private key") {
		t.Fatalf("missing app key: %v", err)
	}
}

// newForgeRig is what a forge is built on in writ serve: a reconciler
// following a real git repository, on a fresh database, with an audit log.
func newForgeRig(t *testing.T, repository string) (*reconcile.Reconciler, *gitsrc.Source, *store.Store) {
	t.Helper()
	repo := gittest.New(t, nil)
	src, err := gitsrc.Open(context.Background(), gitsrc.Options{URL: repo.Bare})
	if err != nil {
		t.Fatal(err)
	}
	st := dbtest.Store(t)
	key, _ := keys.Generate(keys.Ed25519)
	sk, _ := audit.NewSigningKey(key)
	alog, err := audit.NewLog(audit.LogOptions{Store: st, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := reconcile.New(reconcile.Options{Source: src, Store: st, Audit: alog, Backends: action.NewRegistry(), Repository: repository})
	if err != nil {
		t.Fatal(err)
	}
	return rec, src, st
}
