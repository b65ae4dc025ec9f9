package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/writ-sec/writ/internal/pgembed"
	"github.com/writ-sec/writ/internal/store"
)

// database is an open store and, when writ started one, its private cluster.
type database struct {
	store   *store.Store
	cluster *pgembed.Cluster // nil with an external server
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

// openDatabase connects to --database, or starts the private cluster in the
// data directory and connects to it.
func openDatabase(ctx context.Context, g *globals, log *slog.Logger) (*database, error) {
	if g.database != "" {
		st, err := store.Open(ctx, store.Options{URL: g.database, Logger: log})
		if err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "using external PostgreSQL", slog.String("database", store.RedactURL(g.database)))
		return &database{store: st}, nil
	}
	cluster, err := pgembed.Start(ctx, pgembed.Options{
		Dir:       filepath.Join(g.dataDir, "postgres"),
		BinDir:    g.pgBinDir,
		RunAsUser: g.pgUser,
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("start the private PostgreSQL in %s: %w", g.dataDir, err)
	}
	st, err := store.Open(ctx, store.Options{URL: cluster.URL(), Logger: log})
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = cluster.Stop(sctx)
		return nil, err
	}
	return &database{store: st, cluster: cluster}, nil
}
