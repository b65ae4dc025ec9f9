// Package pgembed runs a private PostgreSQL cluster from the machine's
// PostgreSQL server binaries, for users who do not point writ at a server of
// their own.
//
// The cluster lives in a directory of its own (initdb on first use, reused
// after), listens only on a unix socket inside a private directory, and runs
// as an unprivileged user when writ runs as root, because PostgreSQL refuses
// to run as root.
package pgembed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configures a private cluster. The zero value is not usable: Dir is
// required.
type Options struct {
	// Dir is the cluster's data directory. It is created when missing.
	Dir string
	// AttachRunning connects to a server already running in Dir (another
	// writ's, e.g. writ serve's) instead of waiting for it to exit: the
	// Cluster returned is attached, and Stop leaves that server running.
	AttachRunning bool
	// BinDir, when set, is the only place searched for initdb and postgres.
	BinDir string
	// RunAsUser is the unprivileged account PostgreSQL runs as when writ
	// runs as root. Default "postgres". Ignored when not root.
	RunAsUser string
	// Database is created on first start when missing. Default "writ".
	Database string
	// Superuser is the cluster's bootstrap role. Default "writ".
	Superuser string
	// Port names the unix socket (.s.PGSQL.<port>). Default 5432; the socket
	// directory is private, so the number cannot clash with other servers.
	Port int
	// Ephemeral trades durability for speed (fsync off, no initdb sync). For
	// tests only.
	Ephemeral bool
	// StartTimeout bounds initdb plus start-up. Default 60s.
	StartTimeout time.Duration
	// Logger receives lifecycle events. Default: discard.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.RunAsUser == "" {
		o.RunAsUser = "postgres"
	}
	if o.Database == "" {
		o.Database = "writ"
	}
	if o.Superuser == "" {
		o.Superuser = "writ"
	}
	if o.Port == 0 {
		o.Port = 5432
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	if o.Dir == "" {
		return errors.New("pgembed: data directory is required")
	}
	if !filepath.IsAbs(o.Dir) {
		return fmt.Errorf("pgembed: data directory %q must be absolute", o.Dir)
	}
	if o.Port < 1 || o.Port > 65535 {
		return fmt.Errorf("pgembed: port %d out of range", o.Port)
	}
	for _, name := range []string{o.Database, o.Superuser} {
		if !isIdentifier(name) {
			return fmt.Errorf("pgembed: %q is not a plain identifier", name)
		}
	}
	return nil
}

func isIdentifier(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Cluster is a running private PostgreSQL server.
type Cluster struct {
	opts      Options
	bin       *Binaries
	socketDir string
	ownSocket bool // socketDir was created by us outside Dir
	cmd       *exec.Cmd
	logFile   *os.File

	// attached: the server is another process's (Options.AttachRunning).
	attached bool
	cred     *syscall.Credential

	done    chan struct{}
	mu      sync.Mutex
	exitErr error
	stopped bool
}

// Start initializes the cluster directory when needed, starts PostgreSQL and
// waits until it accepts connections and the database exists.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	bin, err := FindBinaries(ctx, opts.BinDir)
	if err != nil {
		return nil, err
	}
	cred, err := credentialFor(opts.RunAsUser)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, bin: bin, done: make(chan struct{})}
	log := opts.Logger

	c.cred = cred
	if err := prepareDir(opts.Dir, cred); err != nil {
		return nil, err
	}
	if opts.AttachRunning {
		ok, err := c.attach(ctx)
		if err != nil {
			return nil, err
		}
		if ok {
			log.DebugContext(ctx, "attached to the running private PostgreSQL", slog.String("dir", opts.Dir), slog.String("socket", c.socketDir))
			return c, nil
		}
	}
	if err := c.waitForStalePostmaster(ctx); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		log.InfoContext(ctx, "initializing private PostgreSQL cluster",
			slog.String("dir", opts.Dir), slog.String("version", bin.Version))
		if err := c.initdb(ctx, cred); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("pgembed: inspect %s: %w", opts.Dir, err)
	} else if err := c.checkVersion(); err != nil {
		return nil, err
	}

	if err := c.chooseSocketDir(cred); err != nil {
		return nil, err
	}
	if err := c.startPostgres(ctx, cred); err != nil {
		c.cleanupSocketDir()
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		_ = c.Stop(context.Background())
		return nil, err
	}
	if err := c.ensureDatabase(ctx); err != nil {
		_ = c.Stop(context.Background())
		return nil, err
	}
	log.InfoContext(ctx, "private PostgreSQL ready",
		slog.String("dir", opts.Dir), slog.String("socket", c.socketDir), slog.Int("pid", c.cmd.Process.Pid))
	return c, nil
}

// credentialFor returns the credential PostgreSQL runs with, or nil when
// writ is not root and PostgreSQL runs as the current user.
func credentialFor(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgembed: running as root, PostgreSQL must run as an unprivileged user, "+
			"but user %q was not found (install the postgresql package, which creates it, or name another user): %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgembed: user %q has a non-numeric uid or gid", name)
	}
	if uid == 0 {
		return nil, fmt.Errorf("pgembed: user %q is root; PostgreSQL refuses to run as root", name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// prepareDir creates the cluster directory owned by the account that runs
// PostgreSQL, and checks that account can reach it.
func prepareDir(dir string, cred *syscall.Credential) error {
	if cred == nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("pgembed: create %s: %w", dir, err)
		}
		return os.Chmod(dir, 0o700)
	}
	// The parent (writ's data directory) must let PostgreSQL's user pass
	// through to the cluster, without letting it list anything.
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o711); err != nil {
		return fmt.Errorf("pgembed: create %s: %w", parent, err)
	}
	if fi, err := os.Stat(parent); err == nil {
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) == os.Geteuid() && fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(parent, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("pgembed: let PostgreSQL through %s: %w", parent, err)
			}
		}
	}
	if err := checkTraversable(parent, cred); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pgembed: create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != cred.Uid {
		// Only an empty (new) directory is handed over; an existing cluster
		// owned by someone else is left alone.
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("pgembed: %w", err)
		}
		if len(entries) > 0 {
			return fmt.Errorf("pgembed: %s is owned by uid %d, not by the PostgreSQL user (uid %d)", dir, st.Uid, cred.Uid)
		}
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgembed: hand %s to uid %d: %w", dir, cred.Uid, err)
		}
	}
	return os.Chmod(dir, 0o700)
}

// checkTraversable verifies every ancestor of dir grants search permission
// to the credential, so PostgreSQL can chdir into its data directory.
func checkTraversable(dir string, cred *syscall.Credential) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgembed: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 ||
			(st.Uid == cred.Uid && mode&0o100 != 0) ||
			(st.Gid == cred.Gid && mode&0o010 != 0)
		if !ok {
			return fmt.Errorf("pgembed: PostgreSQL runs as uid %d, which cannot enter %s (mode %v): "+
				"choose a --data-dir whose parents it can enter (the default for root is /var/lib/writ) or grant it search permission (chmod o+x)", cred.Uid, d, mode)
		}
		if d == "/" || d == filepath.Dir(d) {
			return nil
		}
	}
}

func (c *Cluster) checkVersion() error {
	b, err := os.ReadFile(filepath.Join(c.opts.Dir, "PG_VERSION"))
	if err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("pgembed: %s/PG_VERSION is not a version: %q", c.opts.Dir, b)
	}
	if v != c.bin.Major {
		return fmt.Errorf("pgembed: the cluster in %s was made by PostgreSQL %d but the binaries in %s are %d; "+
			"install PostgreSQL %d, upgrade the cluster with pg_upgrade, or pass --database", c.opts.Dir, v, c.bin.Dir, c.bin.Major, v)
	}
	return nil
}

func (c *Cluster) command(ctx context.Context, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.opts.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if cred != nil {
		if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil {
			cmd.Env = append(cmd.Env, "HOME="+u.HomeDir)
		}
	}
	return cmd
}

func (c *Cluster) initdb(ctx context.Context, cred *syscall.Credential) error {
	args := []string{
		"-D", c.opts.Dir,
		"-U", c.opts.Superuser,
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--no-locale",
	}
	if c.opts.Ephemeral {
		args = append(args, "--no-sync")
	}
	cmd := c.command(ctx, cred, c.bin.Initdb, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgembed: initdb %s: %w: %s", c.opts.Dir, err, lastLines(string(out), 5))
	}
	return nil
}

// chooseSocketDir uses the data directory itself when the socket path fits
// the kernel's limit, and a private directory under the system temp
// directory otherwise.
func (c *Cluster) chooseSocketDir(cred *syscall.Credential) error {
	const maxSocketPath = 100 // sun_path is 108 bytes, with room to spare
	sock := filepath.Join(c.opts.Dir, fmt.Sprintf(".s.PGSQL.%d", c.opts.Port))
	if len(sock) <= maxSocketPath {
		c.socketDir = c.opts.Dir
		return nil
	}
	d, err := os.MkdirTemp("", "writ-pg-")
	if err != nil {
		return fmt.Errorf("pgembed: socket directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.Remove(d)
			return fmt.Errorf("pgembed: socket directory: %w", err)
		}
	}
	c.socketDir, c.ownSocket = d, true
	return nil
}

func (c *Cluster) cleanupSocketDir() {
	if c.ownSocket {
		_ = os.RemoveAll(c.socketDir)
	}
}

func (c *Cluster) logPath() string {
	return filepath.Join(c.opts.Dir, "log", "postgres.log")
}

func (c *Cluster) startPostgres(ctx context.Context, cred *syscall.Credential) error {
	args := []string{
		"-D", c.opts.Dir,
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories=" + c.socketDir,
		"-c", "unix_socket_permissions=0700",
		"-c", "port=" + strconv.Itoa(c.opts.Port),
		"-c", "max_connections=200",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
		"-c", "timezone=UTC",
	}
	if c.opts.Ephemeral {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off")
	}
	logDir := filepath.Dir(c.logPath())
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	if cred != nil {
		_ = os.Chown(logDir, int(cred.Uid), int(cred.Gid))
	}
	// Start a fresh log when the old one has grown large.
	if fi, err := os.Stat(c.logPath()); err == nil && fi.Size() > 16<<20 {
		_ = os.Rename(c.logPath(), c.logPath()+".1")
	}
	lf, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgembed: open log: %w", err)
	}
	// The server outlives the start-up context, so it gets a background one.
	cmd := c.command(context.Background(), cred, c.bin.Postgres, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// If writ dies without stopping it, the kernel asks PostgreSQL for a
	// fast shutdown.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("pgembed: start postgres: %w", err)
	}
	c.mu.Lock()
	c.cmd, c.logFile = cmd, lf
	done := c.done
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.exitErr = err
		c.mu.Unlock()
		lf.Close()
		close(done)
	}()
	return nil
}

// attach connects to the server running in Dir when its postmaster.pid
// says it is ready (line 1 its pid, line 4 the port, line 5 the socket
// directory, line 8 the status), and reports whether it did. A server
// starting or stopping is not attached to.
func (c *Cluster) attach(ctx context.Context) (bool, error) {
	b, err := os.ReadFile(filepath.Join(c.opts.Dir, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pgembed: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 {
		return false, nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 || !processAlive(pid) {
		return false, nil
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	sock := strings.TrimSpace(lines[4])
	if err != nil || sock == "" || strings.TrimSpace(lines[7]) != "ready" {
		return false, nil
	}
	c.opts.Port, c.socketDir, c.attached = port, sock, true
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, c.connString(c.opts.Database))
	if err != nil {
		c.attached = false
		return false, fmt.Errorf("pgembed: a PostgreSQL server (pid %d) runs in %s but does not answer on %s: %w", pid, c.opts.Dir, sock, err)
	}
	conn.Close(context.Background())
	return true, nil
}

// Attached reports whether the server is another process's.
func (c *Cluster) Attached() bool { return c.attached }

// Restart starts the server again after it exited unexpectedly (Err is not
// nil) and waits until it accepts connections. Clients reconnect through
// the same socket.
func (c *Cluster) Restart(ctx context.Context) error {
	if c.attached {
		return errors.New("pgembed: cannot restart a server another process runs")
	}
	select {
	case <-c.Done():
	default:
		return errors.New("pgembed: restart: the server is running")
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	if err := c.waitForStalePostmaster(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.done, c.exitErr = make(chan struct{}), nil
	c.mu.Unlock()
	if err := c.startPostgres(ctx, c.cred); err != nil {
		c.mu.Lock()
		c.exitErr = err
		close(c.done)
		c.mu.Unlock()
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		_ = c.signal(syscall.SIGQUIT)
		<-c.Done()
		return err
	}
	return nil
}

func (c *Cluster) signal(sig syscall.Signal) error {
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	return cmd.Process.Signal(sig)
}

// waitForStalePostmaster waits for a server left behind by an earlier writ
// (it was told to shut down when that writ died) to exit.
func (c *Cluster) waitForStalePostmaster(ctx context.Context) error {
	pidFile := filepath.Join(c.opts.Dir, "postmaster.pid")
	for {
		b, err := os.ReadFile(pidFile)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pgembed: %w", err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil || pid <= 0 || !processAlive(pid) {
			return nil // stale: PostgreSQL removes it itself on start
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgembed: a PostgreSQL server (pid %d) is still running in %s; stop it or wait for it to exit", pid, c.opts.Dir)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (c *Cluster) waitReady(ctx context.Context) error {
	var lastErr error
	for {
		select {
		case <-c.Done():
			return fmt.Errorf("pgembed: postgres exited during start-up: %v: %s", c.exitError(), c.logTail(8))
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, c.connString("postgres"))
		if err == nil {
			err = conn.Ping(cctx)
			conn.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgembed: postgres not ready after %s: %v: %s", c.opts.StartTimeout, lastErr, c.logTail(8))
		case <-c.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.connString("postgres"))
	if err != nil {
		return fmt.Errorf("pgembed: connect: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", c.opts.Database).Scan(&exists); err != nil {
		return fmt.Errorf("pgembed: look up database %s: %w", c.opts.Database, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{c.opts.Database}.Sanitize()); err != nil {
		return fmt.Errorf("pgembed: create database %s: %w", c.opts.Database, err)
	}
	return nil
}

func (c *Cluster) connString(db string) string { return c.connStringAs(c.opts.Superuser, db) }

func (c *Cluster) connStringAs(user, db string) string {
	q := url.Values{}
	q.Set("host", c.socketDir)
	q.Set("port", strconv.Itoa(c.opts.Port))
	q.Set("sslmode", "disable")
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: "", Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// URL is the connection URL of the cluster's database.
func (c *Cluster) URL() string { return c.connString(c.opts.Database) }

// URLAs is the connection URL of the cluster's database for another role
// (local connections need no password; the role's privileges are what
// limit it).
func (c *Cluster) URLAs(role string) string { return c.connStringAs(role, c.opts.Database) }

// DatabaseURL is the connection URL of another database in the cluster.
func (c *Cluster) DatabaseURL(db string) string { return c.connString(db) }

// Dir is the cluster's data directory.
func (c *Cluster) Dir() string { return c.opts.Dir }

// Pid is the postmaster's process id.
func (c *Cluster) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Done is closed when the server process has exited.
// For an attached server it is never closed.
func (c *Cluster) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (c *Cluster) exitError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitErr
}

// Err reports why the server exited; nil while it runs or after Stop.
func (c *Cluster) Err() error {
	select {
	case <-c.Done():
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	return fmt.Errorf("pgembed: postgres exited unexpectedly: %v: %s", c.exitErr, c.logTailLocked(5))
}

// Stop asks PostgreSQL for a fast shutdown (active transactions roll back,
// everything committed is on disk) and waits for it, escalating to an
// immediate shutdown and then SIGKILL if ctx expires.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	if c.attached {
		return nil
	}
	defer c.cleanupSocketDir()
	done := c.Done()
	select {
	case <-done:
		return nil
	default:
	}
	_ = c.signal(syscall.SIGINT)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	case <-time.After(60 * time.Second):
	}
	_ = c.signal(syscall.SIGQUIT)
	select {
	case <-done:
		return errors.New("pgembed: postgres needed an immediate shutdown")
	case <-time.After(10 * time.Second):
	}
	_ = c.signal(syscall.SIGKILL)
	<-done
	return errors.New("pgembed: postgres had to be killed")
}

func (c *Cluster) logTail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logTailLocked(n)
}

func (c *Cluster) logTailLocked(n int) string {
	f, err := os.Open(c.logPath())
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 64<<10 {
		_, _ = f.Seek(-64<<10, io.SeekEnd)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lastLines(strings.Join(lines, "\n"), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
