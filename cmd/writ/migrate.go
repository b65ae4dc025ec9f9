package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/store"
)

func init() { register(newMigrateCmd) }

func newMigrateCmd(env *cliEnv, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate [up|status] [--grant-to ROLE]",
		Short: "Apply database migrations (up, the default) or show their status",
		Long: `Migrate brings the database schema up to date with this binary (up), or
lists the migrations and whether each is applied (status). writ serve also
migrates on start. Several replicas may migrate at once: a lock serializes
them.

In the private cluster (no --database) migrations run as the cluster's
owner and writ runs as the role writ_service, which may only read and insert
in the audit tables. With an external database, migrate as the role that
owns writ's tables and name the role writ serve runs as with --grant-to:
it gets exactly the grants docs/audit.md lists (everything it held on
writ's tables before is revoked), and migrate warns when that role could
still get past the audit log's append-only triggers (a superuser, the
tables' owner, or UPDATE/DELETE/TRUNCATE on an audit table).

Exit status: 0 done (status: up to date), 1 failure (status: pending
migrations), 2 usage error.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"up", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			grantTo, _ := cmd.Flags().GetString("grant-to")
			action := "up"
			if len(args) == 1 {
				action = args[0]
			}
			if action != "up" && action != "status" {
				return usageError("migrate: unknown action %q (up or status)", action)
			}
			if grantTo != "" && action != "up" {
				return usageError("migrate: --grant-to goes with up")
			}
			if grantTo != "" && g.database == "" {
				return usageError("migrate: --grant-to is for an external --database; the private cluster's service role is %s", store.ServiceRole)
			}
			code, err := runMigrate(cmd.Context(), g, action, grantTo, env.stdout, env.stderr)
			if code != exitOK || err != nil {
				return exitWith(code, err)
			}
			return nil
		},
	}
	cmd.Flags().String("grant-to", "", "after migrating, give this role exactly writ's service grants (external database)")
	return cmd
}

func runMigrate(ctx context.Context, g *globals, action, grantTo string, stdout, stderr io.Writer) (int, error) {
	log := g.logger(stderr)
	db, err := openDatabase(ctx, g, log)
	if err != nil {
		return exitFailure, err
	}
	defer db.Close()
	if action == "up" {
		var n int
		if db.cluster != nil {
			n, err = db.Migrate(ctx)
		} else {
			n, err = db.store.Migrate(ctx)
		}
		if err != nil {
			return exitFailure, err
		}
		st, err := db.store.MigrationStatus(ctx)
		if err != nil {
			return exitFailure, err
		}
		fmt.Fprintf(stdout, "applied %d migrations; schema at version %d of %d\n", n, st.Current, st.Latest)
		role := grantTo
		switch {
		case db.cluster != nil:
			role = store.ServiceRole
		case grantTo != "":
			if err := db.store.GrantService(ctx, grantTo); err != nil {
				return exitFailure, err
			}
		default:
			fmt.Fprintln(stdout, "note: run writ serve as a role other than the one that migrated (it owns the audit tables); --grant-to ROLE gives that role exactly writ's grants")
			return exitOK, nil
		}
		risks, err := db.warnAuditBypass(ctx, role, stderr)
		if err != nil {
			return exitFailure, err
		}
		if len(risks) == 0 {
			fmt.Fprintf(stdout, "service role %s: SELECT, INSERT on the audit tables, no way past their triggers\n", role)
		}
		return exitOK, nil
	}
	st, err := db.store.MigrationStatus(ctx)
	if err != nil {
		return exitFailure, err
	}
	for _, m := range st.Migrations {
		state := "pending"
		if m.Applied {
			state = "applied"
		}
		fmt.Fprintf(stdout, "%03d  %-8s %s\n", m.Version, state, m.Name)
	}
	if !st.UpToDate() {
		fmt.Fprintf(stdout, "schema at version %d of %d: run writ migrate\n", st.Current, st.Latest)
		return exitFailure, nil
	}
	fmt.Fprintf(stdout, "schema up to date (version %d)\n", st.Current)
	return exitOK, nil
}
