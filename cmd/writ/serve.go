package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/server"
)

func init() { register(newServeCmd) }

type serveParams struct {
	listen string
}

func newServeCmd(env *cliEnv, g *globals) *cobra.Command {
	p := serveParams{}
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR]",
		Short: "Run the writ server (database, migrations, HTTP API)",
		Long: `Serve starts the private PostgreSQL cluster in the data directory (or
connects to --database), applies migrations, and serves HTTP:

  GET /healthz   the process is up
  GET /readyz    the database is reachable and migrated (503 otherwise)

It stops gracefully on SIGINT or SIGTERM, and the private cluster with it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runServe(cmd.Context(), g, p, env.stderr); err != nil {
				return exitWith(exitFailure, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&p.listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	return cmd
}

func runServe(ctx context.Context, g *globals, p serveParams, stderr io.Writer) error {
	log := g.logger(stderr)
	srv, err := server.New(server.Options{Listen: p.listen, Logger: log})
	if err != nil {
		return err
	}
	// Bind first: a taken port should fail before PostgreSQL starts.
	if err := srv.Listen(); err != nil {
		return err
	}
	db, err := openDatabase(ctx, g, log)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.store.Migrate(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	log.InfoContext(ctx, "database ready", slog.Int("migrations_applied", n))
	srv.AddCheck("database", func(ctx context.Context) (string, error) {
		return "", db.store.Ready(ctx)
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var dbErr error
	go func() {
		select {
		case <-db.Done():
			dbErr = db.cluster.Err()
			cancel()
		case <-ctx.Done():
		}
	}()
	err = srv.Run(ctx)
	if dbErr != nil {
		return dbErr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}
