package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/migrations"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

func digestOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// migrator is an empty database, a connection to it and writ's
// migrations loaded, for tests that migrate it step by step (MigrateTo).
func migrator(t *testing.T) (string, *pgx.Conn, *migrate.Migrator) {
	t.Helper()
	ctx := context.Background()
	url := dbtest.EmptyURL(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	m, err := migrate.NewMigratorEx(ctx, conn, "writ_schema_version", &migrate.MigratorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		t.Fatal(err)
	}
	return url, conn, m
}

func TestMigrateFromEmpty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URL: dbtest.EmptyURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	if err := st.Ready(ctx); !errors.Is(err, store.ErrNotMigrated) {
		t.Fatalf("Ready on an empty database = %v; want ErrNotMigrated", err)
	}
	before, err := st.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Current != 0 || before.Latest < 1 || before.UpToDate() {
		t.Fatalf("status before = %+v", before)
	}
	n, err := st.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != int(before.Latest) {
		t.Fatalf("applied %d migrations; want %d", n, before.Latest)
	}
	if err := st.Ready(ctx); err != nil {
		t.Fatalf("Ready after migrate = %v", err)
	}
	n, err = st.Migrate(ctx)
	if err != nil || n != 0 {
		t.Fatalf("second migrate applied %d, %v; want 0, nil", n, err)
	}
	after, _ := st.MigrationStatus(ctx)
	for _, m := range after.Migrations {
		if !m.Applied {
			t.Errorf("migration %d %s not applied", m.Version, m.Name)
		}
	}
}

func TestConcurrentMigrateIsSerialized(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.EmptyURL(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	counts := make([]int, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := store.Open(ctx, store.Options{URL: url, MaxConns: 2})
			if err != nil {
				errs[i] = err
				return
			}
			defer st.Close()
			counts[i], errs[i] = st.Migrate(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range 4 {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	st, _ := store.Open(ctx, store.Options{URL: url})
	defer st.Close()
	s, _ := st.MigrationStatus(ctx)
	if total != int(s.Latest) {
		t.Fatalf("migrations applied %d times in all; want each once (%d)", total, s.Latest)
	}
}

func newVersion(name, content string) store.PlaybookVersion {
	return store.PlaybookVersion{
		Name: name, Path: "playbooks/" + name + ".yaml", Digest: digestOf(content), Content: []byte(content),
		Action: "block_ip", Environment: "production", Severity: "high", CommitSHA: strings.Repeat("a", 40),
	}
}

func TestPlaybookVersionLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)

	v, created, err := st.EnsurePlaybookVersion(ctx, newVersion("block-c2", "one"))
	if err != nil || !created {
		t.Fatalf("first ensure: created=%v err=%v", created, err)
	}
	if v.Status != store.StatusProposed {
		t.Fatalf("new version status %q; want proposed", v.Status)
	}
	again, created, err := st.EnsurePlaybookVersion(ctx, newVersion("block-c2", "one"))
	if err != nil || created || again.ID != v.ID {
		t.Fatalf("second ensure: id %d created=%v err=%v; want same id %d, not created", again.ID, created, err, v.ID)
	}
	for _, s := range []string{store.StatusPlanned, store.StatusAwaitingApproval, store.StatusAwaitingApproval, store.StatusApproved} {
		if err := st.SetPlaybookStatus(ctx, v.ID, s, "because "+s, ""); err != nil {
			t.Fatal(err)
		}
	}
	decision := json.RawMessage(`{"outcome":"require_approval"}`)
	if err := st.SetPlaybookDecision(ctx, v.ID, decision, digestOf("policies"), digestOf("plan")); err != nil {
		t.Fatal(err)
	}
	got, err := st.PlaybookVersion(ctx, "block-c2", v.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusApproved || got.StatusReason != "because approved" || got.PolicyDigest != digestOf("policies") {
		t.Fatalf("got %+v", got)
	}
	hist, err := st.PlaybookHistory(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, h := range hist {
		path = append(path, h.From+">"+h.To)
	}
	want := ">proposed proposed>planned planned>awaiting_approval awaiting_approval>approved"
	if strings.Join(path, " ") != want {
		t.Fatalf("history %q; want %q (a repeated status is not recorded twice)", strings.Join(path, " "), want)
	}

	if _, err := st.PlaybookVersionByID(ctx, 1<<40); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing id: %v; want ErrNotFound", err)
	}
	if err := st.SetPlaybookStatus(ctx, v.ID, "bogus", "", ""); err == nil {
		t.Fatal("an unknown status was accepted")
	}
	got, _ = st.PlaybookVersionByID(ctx, v.ID)
	if got.Status != store.StatusApproved {
		t.Fatalf("a refused status change altered the row: %q", got.Status)
	}

	v2, _, err := st.EnsurePlaybookVersion(ctx, newVersion("block-c2", "two"))
	if err != nil {
		t.Fatal(err)
	}
	latest, err := st.LatestPlaybookVersion(ctx, "block-c2")
	if err != nil || latest.ID != v2.ID {
		t.Fatalf("latest = %v, %v; want id %d", latest, err, v2.ID)
	}
	list, err := st.ListPlaybooks(ctx, store.PlaybookFilter{Status: store.StatusApproved})
	if err != nil || len(list) != 1 || list[0].ID != v.ID {
		t.Fatalf("list approved = %v, %v", list, err)
	}
}

func TestSchemaRefusesBadRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	for name, v := range map[string]store.PlaybookVersion{
		"bad digest":    func() store.PlaybookVersion { v := newVersion("a", "x"); v.Digest = "abc"; return v }(),
		"absolute path": func() store.PlaybookVersion { v := newVersion("b", "x"); v.Path = "/etc/passwd"; return v }(),
		"dotdot path":   func() store.PlaybookVersion { v := newVersion("c", "x"); v.Path = "playbooks/../../x.yaml"; return v }(),
		"bad name":      func() store.PlaybookVersion { v := newVersion("D_x", "x"); return v }(),
	} {
		if _, _, err := st.EnsurePlaybookVersion(ctx, v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	list, err := st.ListPlaybooks(ctx, store.PlaybookFilter{})
	if err != nil || len(list) != 0 {
		t.Fatalf("refused rows left %d rows behind (%v)", len(list), err)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://writ:s3cret@db.example:5432/writ?sslmode=require": "postgres://writ:xxxxx@db.example:5432/writ?sslmode=require",
		"postgres://writ@/writ?host=/run/pg&password=s3cret":          "postgres://writ@/writ?host=%2Frun%2Fpg&password=xxxxx",
		"host=db user=writ password=s3cret dbname=writ":               "host=db user=writ password=xxxxx dbname=writ",
	} {
		if got := store.RedactURL(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("RedactURL(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	t.Parallel()
	_, err := store.Open(context.Background(), store.Options{URL: "postgres://writ:hunter2hunter2@127.0.0.1:1/writ?connect_timeout=1"})
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if strings.Contains(err.Error(), "hunter2hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
}
