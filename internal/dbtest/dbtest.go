// Package dbtest gives tests a real PostgreSQL database: one private cluster
// per test binary (started by Run from TestMain), and a fresh, migrated
// database per test, cloned from a template so it costs milliseconds.
//
// Tests connect as store.ServiceRole, the role writ runs as in production:
// no superuser, SELECT and INSERT only on the audit tables (the template is
// migrated by the owner, then store.GrantService runs on it, and clones keep
// its grants). A test that plays the attacker or the operator connects as
// the owner with OwnerURL.
//
// With DATABASE_URL set, that server is used instead of a private cluster;
// its role needs CREATEDB, and tests run as that role (the service role
// would need a password there).
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/writ-sec/writ/internal/pgembed"
	"github.com/writ-sec/writ/internal/store"
)

// templateName is per process: several test binaries may share one server.
var templateName = fmt.Sprintf("writ_test_template_%d", os.Getpid())

var (
	mu       sync.Mutex
	adminURL string // a URL of the maintenance database on the server
	baseURL  string // the server URL without database
	cluster  *pgembed.Cluster
	tmpDir   string
	tmplErr  error
	tmplOnce sync.Once
	started  bool
	// serviceOK is set when the service role exists on the server.
	serviceOK bool
)

// Run starts the private cluster (unless DATABASE_URL is set), runs the
// tests, and stops the cluster. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }
func Run(m *testing.M) int {
	if err := start(); err != nil {
		fmt.Fprintln(os.Stderr, "dbtest:", err)
		return 2
	}
	code := m.Run()
	stop()
	return code
}

func start() error {
	mu.Lock()
	defer mu.Unlock()
	if started {
		return nil
	}
	started = true
	if u := os.Getenv("DATABASE_URL"); u != "" {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme == "" {
			return fmt.Errorf("DATABASE_URL must be a postgres:// URL")
		}
		baseURL = u
		adminURL = u
		return nil
	}
	d, err := os.MkdirTemp("", "writ-pgtest-")
	if err != nil {
		return err
	}
	// PostgreSQL may run as another user (when tests run as root): let it
	// pass through, but not list.
	if err := os.Chmod(d, 0o711); err != nil {
		return err
	}
	tmpDir = d
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgembed.Start(ctx, pgembed.Options{
		Dir:       filepath.Join(d, "pg"),
		Ephemeral: true,
		Database:  "writ",
	})
	if err != nil {
		_ = os.RemoveAll(d)
		return err
	}
	cluster = c
	baseURL = c.DatabaseURL("postgres")
	adminURL = baseURL
	ensureServiceRole()
	if !serviceOK {
		return fmt.Errorf("create the service role %s on the test cluster", store.ServiceRole)
	}
	return nil
}

func ensureServiceRole() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Options{URL: adminURL, MaxConns: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbtest: service role:", err)
		return
	}
	defer st.Close()
	if err := st.EnsureServiceRole(ctx, store.ServiceRole); err != nil {
		fmt.Fprintln(os.Stderr, "dbtest: tests run as the owner:", err)
		return
	}
	serviceOK = true
}

// asRole returns u with its user replaced (no password: the test cluster
// trusts local connections).
func asRole(u, role string) string {
	pu, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	pu.User = url.User(role)
	return pu.String()
}

// OwnerURL is the URL of the same database as u, for the role that owns
// writ's tables: what an operator, or an attacker holding the owner's
// credentials, connects as.
func OwnerURL(u string) string {
	mu.Lock()
	base := baseURL
	mu.Unlock()
	bu, err := url.Parse(base)
	if err != nil {
		panic(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	pu.User = bu.User
	return pu.String()
}

func stop() {
	mu.Lock()
	defer mu.Unlock()
	if adminURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if conn, err := pgx.Connect(ctx, adminURL); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+templateName+" WITH (FORCE)")
			conn.Close(ctx)
		}
		cancel()
	}
	if cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = cluster.Stop(ctx)
		cancel()
		cluster = nil
	}
	if tmpDir != "" {
		_ = os.RemoveAll(tmpDir)
		tmpDir = ""
	}
}

// withDatabase returns base with its database replaced.
func withDatabase(base, db string) string {
	u, err := url.Parse(base)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + db
	return u.String()
}

func ensureTemplate(ctx context.Context) error {
	tmplOnce.Do(func() {
		tmplErr = func() error {
			conn, err := pgx.Connect(ctx, adminURL)
			if err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			defer conn.Close(context.Background())
			// A template left by a crashed run with the same pid is stale.
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+templateName+" WITH (FORCE)"); err != nil {
				return fmt.Errorf("drop old template: %w", err)
			}
			if _, err := conn.Exec(ctx, "CREATE DATABASE "+templateName); err != nil {
				return fmt.Errorf("create template: %w", err)
			}
			st, err := store.Open(ctx, store.Options{URL: withDatabase(baseURL, templateName), MaxConns: 2})
			if err != nil {
				return err
			}
			defer st.Close()
			if _, err := st.Migrate(ctx); err != nil {
				return err
			}
			if serviceOK {
				return st.GrantService(ctx, store.ServiceRole)
			}
			return nil
		}()
	})
	return tmplErr
}

// Started reports whether Run prepared a database server for this binary.
func Started() bool {
	mu.Lock()
	defer mu.Unlock()
	return adminURL != ""
}

// URL creates a fresh, migrated database for the test, dropped when the
// test ends, and returns its URL for the service role.
func URL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, true)
}

// EmptyURL creates a fresh database with no schema at all, for migration
// tests.
func EmptyURL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, false)
}

func newDatabase(t testing.TB, migrated bool) string {
	t.Helper()
	if !Started() {
		t.Fatal("dbtest: no database server: call dbtest.Run from TestMain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if migrated {
		if err := ensureTemplate(ctx); err != nil {
			t.Fatalf("dbtest: template: %v", err)
		}
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "writ_test_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("dbtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	q := "CREATE DATABASE " + name
	if migrated {
		q += " TEMPLATE " + templateName + " STRATEGY FILE_COPY"
	}
	// Two clones of one template at the same moment collide; retry briefly.
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, q)
		if err == nil || attempt > 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dbtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Logf("dbtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("dbtest: drop %s: %v", name, err)
		}
	})
	u := withDatabase(baseURL, name)
	if migrated && serviceOK {
		u = asRole(u, store.ServiceRole)
	}
	return u
}

// Pool opens a pool on a fresh migrated database, closed when the test
// ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), URL(t))
	if err != nil {
		t.Fatalf("dbtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Store opens a store on a fresh migrated database, closed when the test
// ends.
func Store(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{URL: URL(t)})
	if err != nil {
		t.Fatalf("dbtest: store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// Cluster is the private cluster, or nil when DATABASE_URL is in use.
func Cluster() *pgembed.Cluster {
	mu.Lock()
	defer mu.Unlock()
	return cluster
}
