package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jackc/tern/v2/migrate"

	"github.com/writ-sec/writ/migrations"
)

// versionTable records the applied migration version (tern's bookkeeping).
const versionTable = "writ_schema_version"

// MigrationState describes one migration.
type MigrationState struct {
	Version int32
	Name    string
	Applied bool
}

// MigrationStatus is the schema's position against this binary's migrations.
type MigrationStatus struct {
	Current    int32
	Latest     int32
	Migrations []MigrationState
}

// UpToDate reports whether every migration is applied.
func (m MigrationStatus) UpToDate() bool { return m.Current == m.Latest }

func (s *Store) migrator(ctx context.Context, fn func(*migrate.Migrator) error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: acquire connection for migrations: %w", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigratorEx(ctx, conn.Conn(), versionTable, &migrate.MigratorOptions{})
	if err != nil {
		return fmt.Errorf("store: migrator: %w", err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return fmt.Errorf("store: load migrations: %w", err)
	}
	return fn(m)
}

// Migrate applies every pending migration, each in its own transaction,
// under tern's advisory lock (several replicas may start at once). It
// returns the number applied.
func (s *Store) Migrate(ctx context.Context) (int, error) {
	applied := 0
	err := s.migrator(ctx, func(m *migrate.Migrator) error {
		m.OnStart = func(seq int32, name, direction, _ string) {
			s.log.InfoContext(ctx, "applying migration", slog.Int("version", int(seq)), slog.String("name", name), slog.String("direction", direction))
			applied++
		}
		if err := m.Migrate(ctx); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		return nil
	})
	return applied, err
}

// MigrationStatus reports which migrations are applied. It only reads.
func (s *Store) MigrationStatus(ctx context.Context) (MigrationStatus, error) {
	var st MigrationStatus
	names, err := migrate.FindMigrations(migrations.FS)
	if err != nil {
		return st, fmt.Errorf("store: list migrations: %w", err)
	}
	err = s.db.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&st.Current)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: nothing applied yet
		err = nil
	}
	if err != nil {
		return st, fmt.Errorf("store: current schema version: %w", translate(err))
	}
	st.Latest = int32(len(names))
	for i, name := range names {
		v := int32(i + 1)
		st.Migrations = append(st.Migrations, MigrationState{Version: v, Name: name, Applied: v <= st.Current})
	}
	return st, nil
}

// Ready reports nil when the database answers and its schema is current.
func (s *Store) Ready(ctx context.Context) error {
	st, err := s.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	if st.Current > st.Latest {
		return fmt.Errorf("store: database schema version %d is newer than this binary's %d: upgrade writ", st.Current, st.Latest)
	}
	if !st.UpToDate() {
		return fmt.Errorf("%w: at version %d of %d", ErrNotMigrated, st.Current, st.Latest)
	}
	return nil
}
