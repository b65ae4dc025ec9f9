package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/server"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitFailure = 1 // the check failed, or the command could not do its job
	exitUsage   = 2 // the command line or its input is wrong
)

// cliEnv is what a command may touch of the process, injected so tests run
// commands with buffers.
type cliEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// httpClient talks to writ servers and SSO providers; nil: a default
	// client with a timeout.
	httpClient *http.Client
}

// globals are the flags every command shares.
type globals struct {
	configPath string
	dataDir    string
	database   string
	pgUser     string
	pgBinDir   string
	logLevel   string
	logFormat  string
}

// exitError carries a command's exit code through cobra.
type exitError struct {
	code int
	err  error // printed when not nil
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitWith ends a command with a code; err, when set, is printed.
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// usageError ends a command with exit code 2.
func usageError(format string, args ...any) error {
	return exitWith(exitUsage, fmt.Errorf(format, args...))
}

func run(ctx context.Context, args []string, env *cliEnv) int {
	root := newRootCmd(env)
	root.SetArgs(args)
	root.SetIn(env.stdin)
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(env.stderr, "writ:", ee.err)
		}
		return ee.code
	}
	// cobra's own errors: unknown command or flag, wrong argument count.
	fmt.Fprintln(env.stderr, "writ:", err)
	return exitUsage
}

func newRootCmd(env *cliEnv) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "writ",
		Short: "GitOps for security operations: playbooks in git, signed approvals, exactly-once execution, a verifiable audit log",
		Long: `writ is a declarative GitOps engine for security operations.

Containment and remediation actions (block an IP, suspend an account, isolate
a host) are playbook YAML files in a git repository, guarded by Rego policies
in the same repository. writ validates and dry-runs every change, accepts
approvals only as signed statements, executes merged playbooks exactly once
and records every step in a hash-chained, signed audit log in PostgreSQL.

Commands that need a database use a private PostgreSQL cluster in the data
directory unless --database (or DATABASE_URL) names a server.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.resolve(env)
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "", "server configuration file, writ.yaml (env WRIT_CONFIG; default: the embedded defaults)")
	pf.StringVar(&g.dataDir, "data-dir", "", "where writ keeps its state, including the private PostgreSQL cluster (env WRIT_DATA_DIR; default $XDG_STATE_HOME/writ, ~/.local/state/writ, or /var/lib/writ for root)")
	pf.StringVar(&g.database, "database", "", "PostgreSQL URL of an external server (env DATABASE_URL); default: the private cluster in the data directory")
	pf.StringVar(&g.pgUser, "pg-user", "postgres", "when run as root, the unprivileged user the private PostgreSQL runs as")
	pf.StringVar(&g.pgBinDir, "pg-bin", "", "directory of the PostgreSQL server binaries (default: PATH, pg_config --bindir, /usr/lib/postgresql/*/bin)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error (env WRIT_LOG_LEVEL)")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json (env WRIT_LOG_FORMAT)")

	for _, newCmd := range commands {
		root.AddCommand(newCmd(env, g))
	}
	return root
}

// commands are the subcommands; each command's file registers its
// constructor in an init function, so adding a command touches one file.
var commands []func(*cliEnv, *globals) *cobra.Command

func register(newCmd func(*cliEnv, *globals) *cobra.Command) {
	commands = append(commands, newCmd)
}

// resolve applies environment variables and defaults to the global flags.
func (g *globals) resolve(env *cliEnv) error {
	if g.dataDir == "" {
		g.dataDir = env.getenv("WRIT_DATA_DIR")
	}
	if g.dataDir == "" {
		d, err := defaultDataDir(env.getenv)
		if err != nil {
			return usageError("%v", err)
		}
		g.dataDir = d
	}
	abs, err := filepath.Abs(g.dataDir)
	if err != nil {
		return usageError("data directory %q: %v", g.dataDir, err)
	}
	g.dataDir = abs
	if g.database == "" {
		g.database = env.getenv("DATABASE_URL")
	}
	if g.configPath == "" {
		g.configPath = env.getenv("WRIT_CONFIG")
	}
	if v := env.getenv("WRIT_LOG_LEVEL"); v != "" && g.logLevel == "info" {
		g.logLevel = v
	}
	if v := env.getenv("WRIT_LOG_FORMAT"); v != "" && g.logFormat == "text" {
		g.logFormat = v
	}
	if _, err := parseLevel(g.logLevel); err != nil {
		return usageError("%v", err)
	}
	if g.logFormat != "text" && g.logFormat != "json" {
		return usageError("--log-format must be text or json, not %q", g.logFormat)
	}
	return nil
}

// defaultDataDir is $XDG_STATE_HOME/writ, else ~/.local/state/writ; for
// root, whose home PostgreSQL's unprivileged user cannot enter,
// /var/lib/writ (the conventional state directory of a system service).
func defaultDataDir(getenv func(string) string) (string, error) {
	if x := getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "writ"), nil
	}
	if os.Geteuid() == 0 {
		return "/var/lib/writ", nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home directory for the default data directory: pass --data-dir")
		}
		home = h
	}
	return filepath.Join(home, ".local", "state", "writ"), nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// logger builds the process logger on stderr.
func (g *globals) logger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(g.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	// Records made while serving a request carry its request id.
	if g.logFormat == "json" {
		return slog.New(server.RequestIDHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(server.RequestIDHandler(slog.NewTextHandler(w, opts)))
}

// localUser names the person running the command, for the actor of what
// it records: $USER, else $LOGNAME, else the account of the process's uid
// (a container or cron job often has no $USER); "" when none is known.
func localUser(env *cliEnv) string {
	for _, k := range []string{"USER", "LOGNAME"} {
		if v := strings.TrimSpace(env.getenv(k)); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return ""
}
