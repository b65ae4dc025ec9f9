package engine

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/server"
	"github.com/writ-sec/writ/internal/store"
)

// Forge is a code host writ follows pull or merge requests on: it
// receives the forge's webhooks (Handler, at WebhookPath), stores them in
// the durable inbox and processes them (Run, on the leader), and says how
// its deliveries stand (Readiness).
type Forge interface {
	Name() string
	WebhookPath() string
	Handler() http.Handler
	Run(ctx context.Context) error
	Readiness(ctx context.Context) (string, error)
}

// newForges builds the forges of writ.yaml's forge sections (github:,
// gitlab:): none without a section. repository is the identity signed
// statements name.
func newForges(ctx context.Context, cfg *config.Config, rec *reconcile.Reconciler, src *gitsrc.Source, st *store.Store,
	log *slog.Logger, getenv func(string) string, version, repository string) ([]Forge, error) {
	var out []Forge
	gh, err := newGitHub(ctx, cfg, rec, src, st, log, getenv, version)
	if err != nil {
		return nil, err
	}
	if gh != nil {
		out = append(out, gh)
	}
	gl, err := newGitLab(ctx, cfg, rec, src, st, log, getenv, version, repository)
	if err != nil {
		return nil, err
	}
	if gl != nil {
		out = append(out, gl)
	}
	return out, nil
}

// mountForges puts each forge's webhook receiver and readiness check on
// the server (every replica accepts webhooks; the leader processes them).
func mountForges(srv *server.Server, forges []Forge) {
	for _, f := range forges {
		srv.Handle("POST "+f.WebhookPath(), f.Handler())
		srv.AddCheck(f.Name(), f.Readiness)
	}
}

// consoleOrigin is the console's public origin, "" when it is disabled:
// forges link its queue of what waits for signatures.
func consoleOrigin(cfg *config.Config) string {
	if c := cfg.Console; c != nil && !c.Disabled {
		return c.Origin
	}
	return ""
}
