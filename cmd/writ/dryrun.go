package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/backends"
	"github.com/writ-sec/writ/internal/config"
)

// loadConfig reads --config, or returns the embedded defaults.
func (g *globals) loadConfig() (*config.Config, error) {
	if g.configPath == "" {
		return config.Default(), nil
	}
	c, err := config.Load(g.configPath)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// backendRegistry builds the action backends of --config (see
// buildBackends) with the process's environment for secrets.
func backendRegistry(ctx context.Context, g *globals) (*action.Registry, error) {
	c, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return buildBackends(ctx, g, c, os.Getenv, nil)
}

// planRegistry is backendRegistry for a command that only plans (writ
// plan): backends may read their live state once for every playbook
// (action.Deps.PlanOnly).
func planRegistry(ctx context.Context, g *globals) (*action.Registry, error) {
	c, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return backends.Build(ctx, c, action.Deps{Getenv: os.Getenv, DataDir: g.dataDir, PlanOnly: true})
}

// buildBackends builds the configured backends with internal/action's
// builder: getenv resolves their secrets, log (nil: discarded) receives
// their records. With no backend for block_ip, the embedded default
// applies: a blocklist file per environment in
// DATA_DIR/blocklist/ENVIRONMENT.txt.
func buildBackends(ctx context.Context, g *globals, c *config.Config, getenv func(string) string, log *slog.Logger) (*action.Registry, error) {
	return backends.Build(ctx, c, action.Deps{Getenv: getenv, Log: log, DataDir: g.dataDir})
}
