package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/forge/gitlab"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// newGitLab builds the GitLab integration from the gitlab section of
// writ.yaml: the API client (a project or group access token; a
// self-managed instance through baseURL) and the webhook receiver. Nil
// when the configuration has no gitlab section.
func newGitLab(ctx context.Context, cfg *config.Config, rec *reconcile.Reconciler, src *gitsrc.Source, st *store.Store,
	log *slog.Logger, getenv func(string) string, version, repository string) (*gitlab.Service, error) {
	g := cfg.GitLab
	if g == nil {
		return nil, nil
	}
	secret, err := config.ResolveSecret(getenv, g.WebhookSecretEnv, g.WebhookSecretFile)
	if err != nil {
		return nil, fmt.Errorf("gitlab webhook secret: %w", err)
	}
	if secret.Value() == "" {
		return nil, errors.New("gitlab webhook secret: set webhookSecretEnv or webhookSecretFile")
	}
	token, err := config.ResolveSecret(getenv, g.TokenEnv, g.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("gitlab token: %w", err)
	}
	if token.Value() == "" {
		return nil, errors.New("gitlab token: set tokenEnv or tokenFile")
	}
	svc, err := gitlab.New(gitlab.Options{
		BaseURL: g.BaseURL, Token: token.Value(), Project: g.Project, Repository: repository,
		Engine: rec, Source: src, Store: st, WebhookSecret: []byte(secret.Value()),
		StatusName: g.StatusName, DetailsURL: g.DetailsURL, ConsoleOrigin: consoleOrigin(cfg),
		RefreshInterval: cfg.GitLabRefreshInterval(), UserAgent: "writ/" + version, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	base := g.BaseURL
	if base == "" {
		base = "https://gitlab.com"
	}
	log.InfoContext(ctx, "GitLab integration ready", slog.String("project", g.Project), slog.String("base_url", base),
		slog.String("webhook", svc.WebhookPath()))
	return svc, nil
}
