// Package store is writ's PostgreSQL layer: the connection pool, the
// embedded migrations and every query the engine makes. SQL lives here and in
// migrations/, nowhere else; callers get domain errors (ErrNotFound,
// ErrConflict), never pgx's.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Domain errors. Compare with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrNotMigrated means the schema is older than this binary expects.
	ErrNotMigrated = errors.New("database schema is not up to date (run writ migrate)")
)

// DBTX is what queries run on: the pool or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

// Options configures the connection pool.
type Options struct {
	// URL is a PostgreSQL connection URL or keyword/value string.
	URL string
	// MaxConns caps the pool. Default 16.
	MaxConns int32
	// ConnectTimeout bounds establishing one connection. Default 10s.
	ConnectTimeout time.Duration
	// StatementTimeout is set on every connection. Default 30s.
	StatementTimeout time.Duration
	// Logger receives pool events. Default: discard.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.MaxConns == 0 {
		o.MaxConns = 16
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.StatementTimeout == 0 {
		o.StatementTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	if strings.TrimSpace(o.URL) == "" {
		return errors.New("store: database URL is required")
	}
	if o.MaxConns < 1 {
		return fmt.Errorf("store: max connections %d must be positive", o.MaxConns)
	}
	return nil
}

// Store runs writ's queries. A Store returned by Tx runs them inside that
// transaction.
type Store struct {
	pool *pgxpool.Pool
	db   DBTX
	log  *slog.Logger
	// fence, when not 0, is the leader epoch every transaction checks.
	fence int64
}

// Open connects to the database. It does not migrate; call Migrate.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("store: parse database URL %s: %w", RedactURL(opts.URL), redactErr(err, opts.URL))
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(opts.StatementTimeout.Milliseconds())
	cfg.ConnConfig.RuntimeParams["application_name"] = "writ"
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect to %s: %w", RedactURL(opts.URL), redactErr(err, opts.URL))
	}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect to %s: %w", RedactURL(opts.URL), redactErr(err, opts.URL))
	}
	return &Store{pool: pool, db: pool, log: opts.Logger}, nil
}

// FromPool wraps an existing pool (tests, tools).
func FromPool(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, db: pool, log: slog.New(slog.DiscardHandler)}
}

// Close releases the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool is the underlying pool, for packages that need a dedicated
// connection (advisory locks, LISTEN).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// DB is what this Store's queries run on: the pool, or the transaction of a
// Store handed out by Tx.
func (s *Store) DB() DBTX { return s.db }

// InTx reports whether the Store runs inside a transaction.
func (s *Store) InTx() bool { _, ok := s.db.(pgx.Tx); return ok }

// Tx runs fn in a transaction and commits when fn returns nil. fn's Store
// runs every query in the transaction; nested calls reuse it.
func (s *Store) Tx(ctx context.Context, fn func(tx *Store) error) error {
	if s.InTx() {
		return fn(s)
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return fmt.Errorf("store: begin: %w", translate(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	inner := &Store{pool: s.pool, db: tx, log: s.log, fence: s.fence}
	if err := inner.checkFence(ctx); err != nil {
		return err
	}
	if err := fn(inner); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: commit: %w", translate(err))
	}
	return nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", translate(err))
	}
	return nil
}

// translate maps driver errors to the package's domain errors, keeping the
// original in the chain for messages.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
		case "23514", "23502", "23503", "22P02", "23P01": // check, not null, fk, invalid text, exclusion
			return fmt.Errorf("store: invalid value (%s): %s", pgErr.ConstraintName, pgErr.Message)
		}
	}
	return err
}

// RedactURL strips the password from a database URL for messages and logs.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		// keyword/value form: drop password=...
		fields := strings.Fields(raw)
		for i, f := range fields {
			if strings.HasPrefix(strings.ToLower(f), "password=") {
				fields[i] = "password=xxxxx"
			}
		}
		return strings.Join(fields, " ")
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactErr removes the password of raw from err's message, should the
// driver have echoed it.
func redactErr(err error, raw string) error {
	pw := ""
	if u, perr := url.Parse(raw); perr == nil {
		pw, _ = u.User.Password()
		if pw == "" {
			pw = u.Query().Get("password")
		}
	}
	for _, f := range strings.Fields(raw) {
		if strings.HasPrefix(strings.ToLower(f), "password=") {
			pw = f[len("password="):]
		}
	}
	if pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
}
