package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/pgembed"
	"github.com/writ-sec/writ/internal/retry"
	"github.com/writ-sec/writ/internal/store"
)

// database is an open store and, when writ started one, its private cluster.
//
// In the private cluster the store runs as store.ServiceRole: not a
// superuser, owner of nothing, with SELECT and INSERT only on the audit
// tables. Migrations run as the cluster's bootstrap role, which owns the
// tables, on a connection opened for them and closed after (docs/audit.md,
// "Hardening the database").
type database struct {
	store   *store.Store
	cluster *pgembed.Cluster // nil with an external server
	log     *slog.Logger
}

// Close closes the pool and stops the private cluster.
func (d *database) Close() {
	d.store.Close()
	if d.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = d.cluster.Stop(ctx)
	}
}

// Done is closed when the private cluster exits; never for an external
// server.
func (d *database) Done() <-chan struct{} {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.Done()
}

// openDatabase connects to --database, or to the private cluster in the
// data directory as the service role: the one writ serve runs when it runs
// (through its socket; the server keeps running after), else one started
// for the command.
func openDatabase(ctx context.Context, g *globals, log *slog.Logger) (*database, error) {
	return openDatabaseWith(ctx, g, log, true)
}

// openDatabaseWith is openDatabase; attach says whether a private cluster
// already running may be used (writ serve starts its own, and waits for a
// stale one to exit).
func openDatabaseWith(ctx context.Context, g *globals, log *slog.Logger, attach bool) (*database, error) {
	if g.database != "" {
		st, err := store.Open(ctx, store.Options{URL: g.database, Logger: log})
		if err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "using external PostgreSQL", slog.String("database", store.RedactURL(g.database)))
		return &database{store: st, log: log}, nil
	}
	cluster, err := pgembed.Start(ctx, pgembed.Options{
		Dir:           filepath.Join(g.dataDir, "postgres"),
		BinDir:        g.pgBinDir,
		RunAsUser:     g.pgUser,
		Logger:        log,
		AttachRunning: attach,
	})
	if err != nil {
		return nil, fmt.Errorf("start the private PostgreSQL in %s: %w", g.dataDir, err)
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = cluster.Stop(sctx)
	}
	// The service role's grants are set again on every start, so a grant
	// added by hand does not outlive a restart.
	if err := asOwner(ctx, cluster, log, func(owner *store.Store) error {
		if err := owner.EnsureServiceRole(ctx, store.ServiceRole); err != nil {
			return err
		}
		return owner.GrantService(ctx, store.ServiceRole)
	}); err != nil {
		stop()
		return nil, err
	}
	st, err := store.Open(ctx, store.Options{URL: cluster.URLAs(store.ServiceRole), Logger: log})
	if err != nil {
		stop()
		return nil, err
	}
	return &database{store: st, cluster: cluster, log: log}, nil
}

// asOwner runs fn on a short-lived connection as the private cluster's
// bootstrap role, the owner of writ's tables.
func asOwner(ctx context.Context, cluster *pgembed.Cluster, log *slog.Logger, fn func(*store.Store) error) error {
	owner, err := store.Open(ctx, store.Options{URL: cluster.URL(), MaxConns: 2, Logger: log})
	if err != nil {
		return fmt.Errorf("connect to the private PostgreSQL as its owner: %w", err)
	}
	defer owner.Close()
	return fn(owner)
}

// supervise restarts the private cluster when it exits unexpectedly (a
// crash, an OOM kill, someone's pg_ctl stop), with growing pauses (jittered,
// 1 s to 30 s) while it fails to start, until ctx ends. The pool reconnects
// by itself through the same socket; /readyz says not ready meanwhile.
// Without a private cluster (or attached to another's) it returns at once.
func (d *database) supervise(ctx context.Context) {
	if d.cluster == nil || d.cluster.Attached() {
		return
	}
	b := retry.Backoff{Initial: time.Second, Max: 30 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.cluster.Done():
		}
		err := d.cluster.Err()
		if err == nil || ctx.Err() != nil {
			return // stopped on purpose
		}
		d.log.ErrorContext(ctx, "the private PostgreSQL exited; restarting it", slog.Any("error", err))
		for attempt := 0; ; attempt++ {
			if !b.Sleep(ctx, attempt) {
				return
			}
			if err := d.cluster.Restart(ctx); err != nil {
				d.log.ErrorContext(ctx, "restarting the private PostgreSQL", slog.Int("attempt", attempt+1), slog.Any("error", err))
				continue
			}
			d.log.WarnContext(ctx, "the private PostgreSQL runs again", slog.Int("pid", d.cluster.Pid()), slog.Int("attempts", attempt+1))
			break
		}
	}
}

// Migrate brings the schema up to date. In the private cluster it migrates
// as the owner and grants the service role its privileges on the new
// tables. On an external server it migrates with the configured role only
// when something is pending, so a service role without DDL rights starts
// on a schema its owner migrated.
func (d *database) Migrate(ctx context.Context) (int, error) {
	if d.cluster != nil {
		var n int
		err := asOwner(ctx, d.cluster, d.log, func(owner *store.Store) error {
			var err error
			if n, err = owner.Migrate(ctx); err != nil {
				return err
			}
			return owner.GrantService(ctx, store.ServiceRole)
		})
		return n, err
	}
	st, err := d.store.MigrationStatus(ctx)
	if err == nil && st.UpToDate() {
		return 0, nil
	}
	n, err := d.store.Migrate(ctx)
	if err != nil {
		return n, fmt.Errorf("%w (migrate with the role that owns writ's tables: writ migrate --database OWNER_URL --grant-to SERVICE_ROLE; see docs/audit.md)", err)
	}
	return n, nil
}

// warnAuditBypass checks whether role (the connected role when empty) can
// get past the audit tables' append-only triggers and, when it can, says
// so loudly: an ERROR log line and a banner on w. It returns the risks
// found.
func (d *database) warnAuditBypass(ctx context.Context, role string, w io.Writer) ([]store.RoleRisk, error) {
	risks, err := d.store.AuditBypassRisks(ctx, role)
	if err != nil || len(risks) == 0 {
		return risks, err
	}
	who := role
	if who == "" {
		who = "the role writ connects as"
	}
	lines := make([]string, len(risks))
	for i, r := range risks {
		lines[i] = r.String()
	}
	d.log.ErrorContext(ctx, "the database role can bypass the audit log's append-only protection; run writ with a role that holds only the grants docs/audit.md lists",
		slog.String("role", who), slog.Any("risks", lines))
	if w != nil {
		fmt.Fprintf(w, "WARNING: %s can change or delete audit entries despite the append-only triggers:\n", who)
		for _, l := range lines {
			fmt.Fprintf(w, "  - %s\n", l)
		}
		fmt.Fprintln(w, "  Run writ serve as a role with only the grants in docs/audit.md (\"Hardening the database\"):")
		fmt.Fprintln(w, "  writ migrate --database OWNER_URL --grant-to SERVICE_ROLE sets them.")
	}
	return risks, nil
}

// riskSummary is one line for /readyz details and metrics.
func riskSummary(risks []store.RoleRisk) string {
	parts := make([]string, len(risks))
	for i, r := range risks {
		parts[i] = r.String()
	}
	return strings.Join(parts, "; ")
}
