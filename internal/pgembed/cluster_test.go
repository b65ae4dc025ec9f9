package pgembed

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tempDir returns a directory PostgreSQL can reach even when it runs as
// another user (tests as root).
func tempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != filepath.Clean(os.TempDir()) && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestStartKeepsDataAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(tempDir(t), "pg")

	c, err := Start(ctx, Options{Dir: dir, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')"); err != nil {
		t.Fatal(err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "writ" {
		t.Fatalf("current_user = %q, %v; want writ", user, err)
	}
	conn.Close(ctx)

	if os.Geteuid() == 0 {
		// As root, the server must run as the unprivileged user.
		fi, err := os.Stat(filepath.Join(dir, "PG_VERSION"))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Fatalf("cluster files owned by root; want the postgres user")
		}
		status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.Pid()), "status"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(status), "\nUid:\t") || strings.Contains(string(status), "\nUid:\t0\t") {
			t.Fatalf("postgres runs as root:\n%s", status)
		}
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err after Stop = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("postmaster.pid still there after Stop: %v", err)
	}

	c2, err := Start(ctx, Options{Dir: dir, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop(ctx)
	conn, err = pgx.Connect(ctx, c2.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "survives" {
		t.Fatalf("after restart: %q, %v", v, err)
	}
}

func TestStartWithoutBinariesSaysWhatToDo(t *testing.T) {
	_, err := Start(context.Background(), Options{Dir: filepath.Join(tempDir(t), "pg"), BinDir: t.TempDir()})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v; want ErrNoBinaries", err)
	}
	for _, want := range []string{"apt-get install postgresql", "--database"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no dir":       {},
		"relative dir": {Dir: "rel/pg"},
		"bad database": {Dir: "/tmp/x", Database: "a;drop"},
		"bad port":     {Dir: "/tmp/x", Port: 70000},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Start(context.Background(), o); err == nil {
				t.Fatal("Start succeeded")
			}
		})
	}
}

func TestRootNeedsExistingUnprivilegedUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only meaningful as root; non-root runs PostgreSQL as the current user")
	}
	_, err := Start(context.Background(), Options{Dir: filepath.Join(tempDir(t), "pg"), RunAsUser: "no-such-user-writ"})
	if err == nil || !strings.Contains(err.Error(), "no-such-user-writ") {
		t.Fatalf("err = %v; want it to name the missing user", err)
	}
}

func TestRootRefusesUnreachableDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only meaningful as root")
	}
	d := t.TempDir() // 0700, root's
	_, err := Start(context.Background(), Options{Dir: filepath.Join(d, "pg")})
	if err == nil || !strings.Contains(err.Error(), "cannot enter") {
		t.Fatalf("err = %v; want a message about the unreachable directory", err)
	}
}

func TestLongPathUsesPrivateSocketDir(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(tempDir(t), strings.Repeat("d", 90), "pg")
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Options{Dir: dir, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	sock := c.socketDir
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if sock == dir {
		t.Fatalf("socket dir = data dir although the path is too long")
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("private socket dir %s left behind", sock)
	}
}

func TestDoneAndErrReportUnexpectedExit(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Options{Dir: filepath.Join(tempDir(t), "pg"), Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(c.Pid(), syscall.SIGQUIT)
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("Done not closed after the server died")
	}
	if c.Err() == nil {
		t.Fatal("Err = nil after an unexpected exit")
	}
	_ = c.Stop(ctx)
}
