package main

// The database role writ runs as cannot get past the audit log's
// append-only protection: in the private cluster it is writ_service (no
// superuser, owner of nothing), and with an external database writ migrate
// and writ serve say loudly when the role given can. The SQL below is the
// attacker's, so it lives with the test rather than in internal/store.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/pgembed"
	"github.com/writ-sec/writ/internal/store"
)

// TestPrivateClusterServiceRole writes audit entries through the CLI with
// the private cluster, then tries, as the role writ ran as, every way a
// superuser covers their tracks. Each must be refused by PostgreSQL's
// privilege checks (SQLSTATE 42501), not only by a trigger. The owner, on
// the same cluster, can do them: the test would notice a service role that
// had quietly become the owner again.
func TestPrivateClusterServiceRole(t *testing.T) {
	dataDir := traversableTempDir(t)
	if _, _, err := audit.EnsureKey(dataDir); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"USER": "alice"}
	code, out, errOut := runCLIEnv(t, env, "--data-dir", dataDir, "--log-level", "warn", "migrate")
	if code != exitOK {
		t.Fatalf("writ migrate: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "service role writ_service: SELECT, INSERT on the audit tables, no way past their triggers") {
		t.Errorf("writ migrate does not report the service role:\n%s", out)
	}
	if strings.Contains(errOut, "WARNING") {
		t.Errorf("writ migrate warns about the private cluster's own role:\n%s", errOut)
	}
	for i := range 3 {
		code, out, errOut = runCLIEnv(t, env, "--data-dir", dataDir, "--log-level", "warn",
			"audit", "append", "--event", "incident.note", "--subject", fmt.Sprintf("INC-%d", i), "--payload", `{"note":"seen on fin-ws-12"}`)
		if code != exitOK {
			t.Fatalf("writ audit append: exit %d\n%s%s", code, out, errOut)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, err := pgembed.Start(ctx, pgembed.Options{Dir: filepath.Join(dataDir, "postgres")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		_ = cluster.Stop(sctx)
	})
	svc, err := pgx.Connect(ctx, cluster.URLAs(store.ServiceRole))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(context.Background())
	var super bool
	if err := svc.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		t.Fatal(err)
	}
	if super {
		t.Fatal("writ_service is a superuser")
	}
	var n int
	if err := svc.QueryRow(ctx, `SELECT count(*) FROM audit_entries`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("the service role reads %d entries (%v), want 3", n, err)
	}

	attacks := []string{
		`SET session_replication_role = replica`,
		`ALTER TABLE audit_entries DISABLE TRIGGER ALL`,
		`ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only`,
		`DROP TRIGGER audit_entries_append_only ON audit_entries`,
		`DELETE FROM audit_entries WHERE seq = 1`,
		`UPDATE audit_entries SET actor_id = 'mallory' WHERE seq = 1`,
		`TRUNCATE audit_entries, audit_heads, audit_tree_nodes`,
		`DELETE FROM audit_heads`,
		`UPDATE audit_checkpoints SET size = 0`,
		`DELETE FROM audit_keys`,
		`INSERT INTO audit_log (origin) VALUES ('forged')`,
		`DROP TABLE audit_entries`,
		`ALTER TABLE audit_entries RENAME TO audit_entries_old`,
		`CREATE TABLE audit_shadow (seq bigint)`,
		`ALTER ROLE writ_service SUPERUSER`,
		`UPDATE writ_schema_version SET version = 0`,
	}
	for _, q := range attacks {
		t.Run(q, func(t *testing.T) {
			_, err := svc.Exec(ctx, q)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("the service role ran %q: %v", q, err)
			}
			if pgErr.Code != "42501" { // insufficient_privilege
				t.Fatalf("%q refused with %s %s, want 42501 (insufficient_privilege)", q, pgErr.Code, pgErr.Message)
			}
		})
	}
	// A grant to itself is not an error (PostgreSQL warns "no privileges
	// were granted"), so look at what it holds after.
	if _, err := svc.Exec(ctx, `GRANT DELETE ON audit_entries TO writ_service`); err != nil {
		t.Logf("GRANT: %v", err)
	}
	var granted bool
	if err := svc.QueryRow(ctx, `SELECT has_table_privilege('audit_entries', 'DELETE')`).Scan(&granted); err != nil || granted {
		t.Fatalf("the service role granted itself DELETE on audit_entries (%v)", err)
	}
	if err := svc.QueryRow(ctx, `SELECT count(*) FROM audit_entries`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("after the attacks the log holds %d entries (%v), want 3", n, err)
	}

	// The owner can: the checks above are what stands between the
	// service's credentials and the log.
	owner, err := pgx.Connect(ctx, cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(context.Background())
	if _, err := owner.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatalf("the owner cannot set session_replication_role: %v", err)
	}

	// A grant added by hand does not outlive a restart of writ.
	if _, err := owner.Exec(ctx, `GRANT DELETE, TRUNCATE ON audit_entries TO writ_service`); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
	_ = cluster.Stop(sctx)
	scancel()
	code, out, errOut = runCLIEnv(t, env, "--data-dir", dataDir, "--log-level", "warn", "migrate")
	if code != exitOK || !strings.Contains(out, "no way past their triggers") {
		t.Fatalf("writ migrate after a hand-made grant: exit %d\n%s%s", code, out, errOut)
	}
	cluster2, err := pgembed.Start(ctx, pgembed.Options{Dir: filepath.Join(dataDir, "postgres")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		_ = cluster2.Stop(sctx)
	})
	svc2, err := pgx.Connect(ctx, cluster2.URLAs(store.ServiceRole))
	if err != nil {
		t.Fatal(err)
	}
	defer svc2.Close(context.Background())
	var canDelete bool
	if err := svc2.QueryRow(ctx, `SELECT has_table_privilege('audit_entries', 'DELETE') OR has_table_privilege('audit_entries', 'TRUNCATE')`).Scan(&canDelete); err != nil {
		t.Fatal(err)
	}
	if canDelete {
		t.Fatal("the hand-made DELETE/TRUNCATE grant survived writ's start")
	}
}

// TestExternalDatabaseRoleWarnings: with an external database, writ
// migrate --grant-to gives a fresh role exactly the service grants and says
// so; given a role that can bypass the triggers (a superuser, or one
// granted UPDATE on an audit table after), it warns loudly, naming the way.
func TestExternalDatabaseRoleWarnings(t *testing.T) {
	ctx := context.Background()
	ownerURL := dbtest.OwnerURL(dbtest.URL(t))
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	role := fmt.Sprintf("writ_svc_%d", time.Now().UnixNano()%1_000_000_000)
	if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), ownerURL)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = c.Exec(context.Background(), "DROP ROLE "+role)
	})
	dataDir := t.TempDir()
	if _, _, err := audit.EnsureKey(dataDir); err != nil {
		t.Fatal(err)
	}
	migrate := func(args ...string) (int, string, string) {
		return runCLI(t, append([]string{"--database", ownerURL, "--data-dir", dataDir, "--log-level", "warn", "migrate"}, args...)...)
	}

	code, out, errOut := migrate("up", "--grant-to", role)
	if code != exitOK || !strings.Contains(out, "service role "+role+": SELECT, INSERT on the audit tables, no way past their triggers") || strings.Contains(errOut, "WARNING") {
		t.Fatalf("migrate --grant-to %s: exit %d\n%s%s", role, code, out, errOut)
	}

	// writ runs as that role: it reads and appends, and cannot delete.
	u, _ := url.Parse(ownerURL)
	u.User = url.User(role)
	svcURL := u.String()
	code, out, errOut = runCLIEnv(t, map[string]string{"USER": "alice"}, "--database", svcURL, "--data-dir", dataDir, "--log-level", "warn",
		"audit", "append", "--event", "incident.note", "--subject", "INC-1", "--payload", `{"note":"as the service role"}`)
	if code != exitOK {
		t.Fatalf("audit append as %s: exit %d\n%s%s", role, code, out, errOut)
	}
	svc, err := pgx.Connect(ctx, svcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(ctx)
	var pgErr *pgconn.PgError
	if _, err := svc.Exec(ctx, `DELETE FROM audit_entries`); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("the granted role deletes audit entries: %v", err)
	}

	// A grant added later is named.
	if _, err := conn.Exec(ctx, "GRANT UPDATE ON audit_heads TO "+role); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Options{URL: ownerURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	risks, err := st.AuditBypassRisks(ctx, role)
	if err != nil || len(risks) != 1 || risks[0].Table != "audit_heads" || !strings.Contains(risks[0].Reason, "UPDATE") {
		t.Fatalf("risks of %s after GRANT UPDATE ON audit_heads = %v, %v", role, risks, err)
	}
	// Migrating again resets the role's grants to exactly the service's.
	if code, out, errOut = migrate("up", "--grant-to", role); code != exitOK || strings.Contains(errOut, "WARNING") {
		t.Fatalf("migrate --grant-to again: exit %d\n%s%s", code, out, errOut)
	}

	// The test cluster's own role is a superuser: migrate names it.
	var me string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&me); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = migrate("up", "--grant-to", me)
	if code != exitOK || !strings.Contains(errOut, "WARNING: "+me+" can change or delete audit entries") || !strings.Contains(errOut, "is a superuser") {
		t.Fatalf("migrate --grant-to a superuser does not warn: exit %d\n%s%s", code, out, errOut)
	}
	// Without --grant-to, migrate says writ serve needs another role.
	code, out, _ = migrate("up")
	if code != exitOK || !strings.Contains(out, "run writ serve as a role other than the one that migrated") {
		t.Fatalf("migrate without --grant-to: exit %d\n%s", code, out)
	}
	// And --grant-to with the private cluster is a usage error.
	code, _, errOut = runCLI(t, "--data-dir", t.TempDir(), "migrate", "up", "--grant-to", role)
	if code != exitUsage || !strings.Contains(errOut, "external --database") {
		t.Fatalf("--grant-to without --database: exit %d\n%s", code, errOut)
	}
}
