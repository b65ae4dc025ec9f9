package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func init() { register(newMigrateCmd) }

func newMigrateCmd(env *cliEnv, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate [up|status]",
		Short: "Apply database migrations (up, the default) or show their status",
		Long: `Migrate brings the database schema up to date with this binary (up), or
lists the migrations and whether each is applied (status). writ serve also
migrates on start. Several replicas may migrate at once: a lock serializes
them.

Exit status: 0 done (status: up to date), 1 failure (status: pending
migrations), 2 usage error.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"up", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			action := "up"
			if len(args) == 1 {
				action = args[0]
			}
			if action != "up" && action != "status" {
				return usageError("migrate: unknown action %q (up or status)", action)
			}
			code, err := runMigrate(cmd.Context(), g, action, env.stdout, env.stderr)
			if code != exitOK || err != nil {
				return exitWith(code, err)
			}
			return nil
		},
	}
	return cmd
}

func runMigrate(ctx context.Context, g *globals, action string, stdout, stderr io.Writer) (int, error) {
	log := g.logger(stderr)
	db, err := openDatabase(ctx, g, log)
	if err != nil {
		return exitFailure, err
	}
	defer db.Close()
	if action == "up" {
		n, err := db.store.Migrate(ctx)
		if err != nil {
			return exitFailure, err
		}
		st, err := db.store.MigrationStatus(ctx)
		if err != nil {
			return exitFailure, err
		}
		fmt.Fprintf(stdout, "applied %d migrations; schema at version %d of %d\n", n, st.Current, st.Latest)
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
