package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/action/nftables"
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

var envNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// backendRegistry builds the action backends from the configuration. With
// no backend for block_ip, the embedded default applies: a blocklist file
// per environment in DATA_DIR/blocklist/ENVIRONMENT.txt.
func backendRegistry(g *globals) (*action.Registry, error) {
	c, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return buildRegistry(c, g.dataDir, os.Getenv, nil)
}

// backendDeps is what backend constructors may use beyond their own
// settings: the whole configuration (team-defined actions), the
// environment (secrets) and the logger.
type backendDeps struct {
	cfg    *config.Config
	getenv func(string) string
	log    *slog.Logger
}

// wrapBackend, when set, wraps every configured backend. It is nil in the
// writ binary; the crash test sets it (in the test binary acting as writ)
// to slow Apply down, so that kills land in the middle of executions.
var wrapBackend func(action.Backend) action.Backend

func buildRegistry(c *config.Config, dataDir string, getenv func(string) string, log *slog.Logger) (*action.Registry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	deps := backendDeps{cfg: c, getenv: getenv, log: log}
	reg := action.NewRegistry()
	hasBlock := false
	for _, bc := range c.Backends {
		b, err := newBackend(bc, deps)
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		if wrapBackend != nil {
			b = wrapBackend(b)
		}
		envs := bc.Environments
		if len(envs) == 0 {
			envs = []string{"*"}
		}
		for _, a := range bc.Actions {
			hasBlock = hasBlock || a == "block_ip"
			for _, e := range envs {
				reg.Register(a, e, b)
			}
		}
	}
	if !hasBlock {
		dir := filepath.Join(dataDir, "blocklist")
		reg.RegisterFactory("block_ip", func(env string) (action.Backend, error) {
			if !envNameRE.MatchString(env) {
				return nil, fmt.Errorf("environment %q is not a name", env)
			}
			return blocklist.New(blocklist.Options{Path: filepath.Join(dir, env+".txt"), Name: "blocklist:" + env})
		})
	}
	return reg, nil
}

func newBackend(bc config.Backend, deps backendDeps) (action.Backend, error) {
	switch bc.Type {
	case "blocklist":
		return blocklist.New(blocklist.Options{
			Path: bc.Blocklist.Path, Format: blocklist.Format(bc.Blocklist.Format),
			SetName: bc.Blocklist.SetName, Journal: bc.Blocklist.Journal, Name: "blocklist:" + bc.Name,
		})
	case "nftables":
		o := nftables.Options{Name: "nftables:" + bc.Name}
		for k, v := range bc.Settings {
			s, ok := v.(string)
			switch {
			case k == "table" && ok:
				o.Table = s
			case k == "netns" && ok:
				o.NetNS = s
			default:
				return nil, fmt.Errorf("unknown nftables setting %q (table, netns)", k)
			}
		}
		return nftables.New(o)
	case "scim":
		return newSCIMBackend(bc, deps)
	case "webhook":
		return newWebhookBackend(bc, deps)
	}
	return nil, fmt.Errorf("backend type %s is not available in this build", bc.Type)
}
