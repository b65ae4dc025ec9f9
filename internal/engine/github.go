package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/forge/github"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// maxAppKeyBytes bounds a GitHub App private key file.
const maxAppKeyBytes = 64 << 10

// newGitHub builds the GitHub integration from the github section of
// writ.yaml: the API client (a token, or a GitHub App installation; an
// Enterprise Server through baseURL) and the webhook receiver. Nil when
// the configuration has no github section.
func newGitHub(ctx context.Context, cfg *config.Config, rec *reconcile.Reconciler, src *gitsrc.Source, st *store.Store,
	log *slog.Logger, getenv func(string) string, version string) (*github.Service, error) {
	g := cfg.GitHub
	if g == nil {
		return nil, nil
	}
	secret, err := config.ResolveSecret(getenv, g.WebhookSecretEnv, g.WebhookSecretFile)
	if err != nil {
		return nil, fmt.Errorf("github webhook secret: %w", err)
	}
	if secret.Value() == "" {
		return nil, errors.New("github webhook secret: set webhookSecretEnv or webhookSecretFile")
	}
	co, err := githubClientOptions(g, getenv, version)
	if err != nil {
		return nil, err
	}
	client, err := github.NewClient(co)
	if err != nil {
		return nil, err
	}
	svc, err := github.New(github.Options{
		Repository: g.Repository, Client: client, Engine: rec, Source: src, Store: st,
		WebhookSecret: []byte(secret.Value()), CheckName: g.CheckName, DetailsURL: g.DetailsURL, ConsoleOrigin: consoleOrigin(cfg), // action_required checks link its pending page
		RefreshInterval: cfg.GitHubRefreshInterval(), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "GitHub integration ready", slog.String("repository", g.Repository), slog.Any("api", co),
		slog.String("webhook", github.WebhookPath))
	return svc, nil
}

// githubClientOptions reads the github section's credentials.
func githubClientOptions(g *config.GitHub, getenv func(string) string, version string) (github.ClientOptions, error) {
	co := github.ClientOptions{BaseURL: g.BaseURL, UserAgent: "writ/" + version}
	if g.App != nil {
		key, err := config.ReadFile(g.App.PrivateKeyFile, maxAppKeyBytes)
		if err != nil {
			return co, fmt.Errorf("github app private key: %w", err)
		}
		co.AppID, co.InstallationID, co.PrivateKey = g.App.AppID, g.App.InstallationID, key
		return co, nil
	}
	tok, err := config.ResolveSecret(getenv, g.TokenEnv, g.TokenFile)
	if err != nil {
		return co, fmt.Errorf("github token: %w", err)
	}
	co.Token = tok.Value()
	return co, nil
}

// repositoryTokens is how writ fetches an HTTPS repository on GitHub when
// no repository password is configured: with the github section's token, or
// with installation tokens of its App (they expire hourly and are renewed).
func repositoryTokens(cfg *config.Config, repoURL string, getenv func(string) string, version string) (func(ctx context.Context) (string, error), error) {
	g := cfg.GitHub
	if g == nil || !strings.HasPrefix(repoURL, "https://") || cfg.Repository.PasswordEnv != "" || cfg.Repository.PasswordFile != "" {
		return nil, nil
	}
	co, err := githubClientOptions(g, getenv, version)
	if err != nil {
		return nil, err
	}
	if co.Token != "" {
		tok := co.Token
		return func(context.Context) (string, error) { return tok, nil }, nil
	}
	return github.InstallationTokens(co)
}
