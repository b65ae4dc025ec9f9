package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/engine"
)

func init() { register(newServeCmd) }

type serveParams struct {
	listen       string
	repo         string
	branch       string
	pollInterval time.Duration
}

func newServeCmd(env *cliEnv, g *globals) *cobra.Command {
	p := serveParams{}
	cmd := &cobra.Command{
		Use:   "serve [--repo PATH|URL] [--listen ADDR]",
		Short: "Run the writ server: follow the repository, judge, execute, audit, serve the API",
		Long: `Serve starts the private PostgreSQL cluster in the data directory (or
connects to --database), applies migrations, and runs:

  - the reconciler: follows the branch of --repo (a local repository, read in
    place, or a remote URL, cloned into the data directory), judges every
    merged playbook with the trusted base's policies and approvers, executes
    what is allowed or approved exactly once, reverts deleted and expired
    playbooks;
  - the audit log (signing key in DATA_DIR/audit/ unless configured) with
    periodic signed checkpoints in DATA_DIR/audit/checkpoints and the
    refs/writ/checkpoints ref of a local repository, sent in the background
    to the witnesses of audit.witnesses, whose cosignatures are stored;
  - the HTTP API (every route needs a bearer token and a role, except the
    probes, the OpenAPI document, approvals and webhooks, whose signature is
    their authority; reference: docs/api.md, GET /api/v1/openapi.json):
      GET  /healthz, /readyz          probes (public)
      GET  /metrics                   Prometheus metrics
      POST /api/v1/auth/login         a session (accounts: writ user; SSO: auth.oidc)
      GET  /api/v1/status             the reconciler's position, holds, leadership
      GET  /api/v1/playbooks[/NAME]   playbooks: history, decision, approvals, executions
      POST /api/v1/dry-run            decision and plan of a posted playbook
      GET  /api/v1/executions[/ID]    executions with per-target results
      POST /api/v1/executions/ID/run  start an approved execution: manual playbook
      POST /api/v1/approvals          a signed approval (DSSE envelope)
      POST /api/v1/holds/ID/acknowledge  move past a hold (admin)
      GET  /api/v1/audit/export       the audit log (admin)
      POST /webhooks/github           GitHub deliveries (HMAC), when configured
      POST /webhooks/gitlab           GitLab deliveries (secret token), when configured
  - the web console at / on the same listener (docs/console.md): what is
    contained now, what waits for signatures, playbooks, executions, the
    audit log; approvers sign with a passkey. Set console.origin in
    --config to the origin browsers reach it at (passkeys are bound to it);
    console.disabled turns it off.

On its first start writ makes the account "admin" and prints its one-time
password once on stderr.
Without --repo (or repository.url in --config) only the database and the
health endpoints run. It stops gracefully on SIGINT or SIGTERM.`,
		Example: `  writ serve --repo /srv/content            # a local repository, read in place
  writ serve --config /etc/writ/writ.yaml   # repository, backends, environments from a file`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runServe(cmd.Context(), g, p, env); err != nil {
				return exitWith(exitFailure, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&p.listen, "listen", "", "HTTP listen address (default: listen in --config, else "+config.DefaultListen+")")
	cmd.Flags().StringVar(&p.repo, "repo", "", "content repository: a local path or a remote URL (overrides repository.url)")
	cmd.Flags().StringVar(&p.branch, "branch", "", "branch to follow (default: repository.branch, else main)")
	cmd.Flags().DurationVar(&p.pollInterval, "poll-interval", 0, "how often to fetch the repository (default: repository.pollInterval, else 30s)")
	return cmd
}

func runServe(ctx context.Context, g *globals, p serveParams, env *cliEnv) error {
	log := g.logger(env.stderr)
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	return engine.Run(ctx, engine.Options{
		Config: cfg, DataDir: g.dataDir, Repository: p.repo, Branch: p.branch, PollInterval: p.pollInterval, Listen: p.listen,
		Getenv: env.getenv, Stderr: env.stderr, Version: versionString(), Logger: log,
		Backends: func(ctx context.Context, cfg *config.Config, log *slog.Logger) (*action.Registry, error) {
			return buildBackends(ctx, g, cfg, env.getenv, log)
		},
		OpenDatabase: func(ctx context.Context) (*engine.Database, error) {
			db, err := openDatabaseWith(ctx, g, log, false)
			if err != nil {
				return nil, err
			}
			n, err := db.Migrate(ctx)
			if err != nil {
				db.Close()
				return nil, fmt.Errorf("migrate: %w", err)
			}
			log.InfoContext(ctx, "database ready", slog.Int("migrations_applied", n))
			risks, err := db.warnAuditBypass(ctx, "", env.stderr)
			if err != nil {
				db.Close()
				return nil, err
			}
			return &engine.Database{Store: db.store, Supervise: db.supervise, AuditBypassRisks: risks, Close: db.Close}, nil
		},
	})
}
