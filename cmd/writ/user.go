package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/store"
)

func init() { register(newUserCmd) }

func newUserCmd(env *cliEnv, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Local accounts: add, list, roles, disable, unlock, reset a password",
		Long: `Local accounts log in to the API with a password (argon2id-hashed; an
account locks after repeated failures) for teams without SSO; accounts
without a password hold API tokens for automation (writ token). Roles:
viewer, analyst, approver, executor, admin (see docs/auth.md).

There are no default passwords: writ serve makes the first admin with a
one-time password printed once, and writ user add gives every new account a
one-time password, shown once, to be changed at the first login (or asks
for a password with --password).

These commands work on the database directly (--database, DATABASE_URL or
the private cluster) and sign their audit entries with the audit key
(audit.signingKeyFile in --config, or DATA_DIR/audit/audit.key; password
from WRIT_KEY_PASSWORD). The actor they record is cli:$USER.`,
	}
	cmd.AddCommand(newUserAddCmd(env, g), newUserListCmd(env, g), newUserRolesCmd(env, g),
		newUserSetCmd(env, g, "disable", "Disable an account: it cannot log in, its sessions are revoked, its tokens refused"),
		newUserSetCmd(env, g, "enable", "Enable a disabled account"),
		newUserSetCmd(env, g, "unlock", "Clear an account's lockout and failed logins"),
		newUserResetCmd(env, g), newUserRevokeCmd(env, g))
	return cmd
}

// accounts is an authenticator on the CLI's database and audit key.
type accounts struct {
	*auth.Authenticator
	db    *database
	actor audit.Actor
}

func (a *accounts) Close() { a.db.Close() }

// withAccounts opens the accounts (openAccounts) for fn, within timeout, and
// closes them after.
func withAccounts(ctx context.Context, env *cliEnv, g *globals, timeout time.Duration, fn func(context.Context, *accounts) error) error {
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	a, err := openAccounts(ctx, env, g)
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(ctx, a)
}

// openAccounts opens the database (migrated), the audit key and the
// account store.
func openAccounts(ctx context.Context, env *cliEnv, g *globals) (*accounts, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, usageError("%v", err)
	}
	pwEnv := "WRIT_KEY_PASSWORD"
	if cfg.Audit.SigningKeyPasswordEnv != "" {
		pwEnv = cfg.Audit.SigningKeyPasswordEnv
	}
	key, err := loadAuditKey(env, g, cfg.Audit.SigningKeyFile, pwEnv)
	if err != nil {
		return nil, err
	}
	db, err := openAuditStore(ctx, env, g)
	if err != nil {
		return nil, err
	}
	log := g.logger(env.stderr)
	alog, err := audit.NewLog(audit.LogOptions{Store: db.store, Key: key, Logger: log})
	if err != nil {
		db.Close()
		return nil, exitWith(exitFailure, err)
	}
	s := cfg.AuthSettings()
	a, err := auth.New(auth.Options{Store: db.store, Audit: alog, SessionTTL: s.SessionTTL, LockoutThreshold: s.LockoutThreshold,
		LockoutDuration: s.LockoutDuration, Logger: log})
	if err != nil {
		db.Close()
		return nil, exitWith(exitFailure, err)
	}
	who := localUser(env)
	if who == "" {
		who = "unknown"
	}
	return &accounts{Authenticator: a, db: db, actor: audit.Actor{ID: "cli:" + who, Role: "cli"}}, nil
}

// accountError maps account errors to exit codes: bad input is a usage
// error (2), anything else a failure (1).
func accountError(what string, err error) error {
	switch {
	case errors.Is(err, auth.ErrInvalid):
		return usageError("%s: %v", what, err)
	case errors.Is(err, store.ErrNotFound):
		return exitWith(exitFailure, fmt.Errorf("%s: not found", what))
	case errors.Is(err, store.ErrConflict):
		return exitWith(exitFailure, fmt.Errorf("%s: it exists already", what))
	}
	return exitWith(exitFailure, fmt.Errorf("%s: %w", what, err))
}

type userAddParams struct {
	roles       []string
	displayName string
	password    bool
	noPassword  bool
	timeout     time.Duration
}

func newUserAddCmd(env *cliEnv, g *globals) *cobra.Command {
	p := userAddParams{}
	cmd := &cobra.Command{
		Use:   "add USERNAME --role ROLE... [--display-name NAME] [--password | --no-password]",
		Short: "Make an account; prints its one-time password once",
		Long: `Add makes a local account with the roles given. Unless --password or
--no-password is given, it prints a one-time random password on standard
output, once: the account must change it at its first login. With
--password the password is read from WRIT_USER_PASSWORD or asked for on
the terminal (twice). --no-password makes an account that cannot log in,
for API tokens (automation).`,
		Example: `  writ user add alice --role analyst
  writ user add ci-bot --role viewer --role executor --no-password`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUserAdd(cmd.Context(), env, g, args[0], p)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&p.roles, "role", nil, "a role: viewer, analyst, approver, executor, admin (repeatable)")
	f.StringVar(&p.displayName, "display-name", "", "the person's name, for people reading the user list")
	f.BoolVar(&p.password, "password", false, "set the password now (WRIT_USER_PASSWORD or the terminal) instead of a one-time one")
	f.BoolVar(&p.noPassword, "no-password", false, "no password: the account only holds API tokens")
	f.DurationVar(&p.timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

func runUserAdd(ctx context.Context, env *cliEnv, g *globals, username string, p userAddParams) error {
	if len(p.roles) == 0 {
		return usageError("give at least one --role (viewer, analyst, approver, executor, admin)")
	}
	if p.password && p.noPassword {
		return usageError("--password or --no-password, not both")
	}
	roles, err := auth.ParseRoles(p.roles)
	if err != nil {
		return usageError("--role: %v", err)
	}
	nu := auth.NewUser{Username: username, DisplayName: p.displayName, Roles: roles, NoPassword: p.noPassword}
	if p.password {
		pw, err := readNewPassword(env)
		if err != nil {
			return usageError("%v", err)
		}
		if err := auth.CheckPasswordRules(username, pw); err != nil {
			return usageError("%v", err)
		}
		nu.Password = pw
	}
	return withAccounts(ctx, env, g, p.timeout, func(ctx context.Context, a *accounts) error {
		u, oneTime, err := a.CreateUser(ctx, a.actor, nu)
		if err != nil {
			return accountError("user "+username, err)
		}
		fmt.Fprintf(env.stdout, "created user %s (%s)\n", u.Username, u.Roles)
		if oneTime != "" {
			fmt.Fprintf(env.stdout, "one-time password (shown once; to be changed at the first login): %s\n", oneTime)
		}
		return nil
	})
}

// readNewPassword reads a password from WRIT_USER_PASSWORD or, twice, from
// the terminal.
func readNewPassword(env *cliEnv) (string, error) {
	if pw := env.getenv("WRIT_USER_PASSWORD"); pw != "" {
		return pw, nil
	}
	f, ok := env.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("a password is needed: set WRIT_USER_PASSWORD or run on a terminal")
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(env.stderr, prompt)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.stderr)
		return pw, err
	}
	pw, err := ask("Password: ")
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	again, err := ask("Repeat password: ")
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if !bytes.Equal(pw, again) {
		return "", errors.New("passwords do not match")
	}
	return string(pw), nil
}

func newUserListCmd(env *cliEnv, g *globals) *cobra.Command {
	format := "text"
	cmd := &cobra.Command{
		Use:   "list [--format text|json]",
		Short: "List the accounts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usageError("--format must be text or json, not %q", format)
			}
			return withAccounts(cmd.Context(), env, g, time.Minute, func(ctx context.Context, a *accounts) error {
				users, err := a.Users(ctx)
				if err != nil {
					return exitWith(exitFailure, err)
				}
				if format == "json" {
					return writeJSONOut(env.stdout, map[string]any{"users": users})
				}
				tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USERNAME\tROLES\tSTATE\tLAST LOGIN")
				for _, u := range users {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Username, u.Roles, userState(u), timeOrDash(u.LastLoginAt))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

func userState(u auth.User) string {
	var s []string
	switch {
	case u.Disabled:
		s = append(s, "disabled")
	case u.LockedUntil != nil && time.Now().Before(*u.LockedUntil):
		s = append(s, "locked until "+u.LockedUntil.UTC().Format(time.RFC3339))
	default:
		s = append(s, "enabled")
	}
	if !u.HasPassword {
		s = append(s, "tokens only")
	} else if u.MustChangePassword {
		s = append(s, "must change password")
	}
	return strings.Join(s, ", ")
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitWith(exitFailure, err)
	}
	return nil
}

func newUserRolesCmd(env *cliEnv, g *globals) *cobra.Command {
	var roles []string
	cmd := &cobra.Command{
		Use:   "roles USERNAME --role ROLE...",
		Short: "Set an account's roles (its tokens never carry more)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(roles) == 0 {
				return usageError("give the roles with --role")
			}
			rs, err := auth.ParseRoles(roles)
			if err != nil {
				return usageError("--role: %v", err)
			}
			return changeUser(cmd.Context(), env, g, args[0], auth.UserChange{Roles: &rs})
		},
	}
	cmd.Flags().StringArrayVar(&roles, "role", nil, "a role (repeatable): the account's whole set")
	return cmd
}

func newUserSetCmd(env *cliEnv, g *globals, verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " USERNAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var c auth.UserChange
			switch verb {
			case "disable", "enable":
				off := verb == "disable"
				c.Disabled = &off
			case "unlock":
				c.Unlock = true
			}
			return changeUser(cmd.Context(), env, g, args[0], c)
		},
	}
}

func changeUser(ctx context.Context, env *cliEnv, g *globals, username string, c auth.UserChange) error {
	return withAccounts(ctx, env, g, time.Minute, func(ctx context.Context, a *accounts) error {
		u, err := a.UpdateUser(ctx, a.actor, username, c)
		if errors.Is(err, auth.ErrLastAdmin) {
			return exitWith(exitFailure, fmt.Errorf("user %s: %w", username, err))
		}
		if err != nil {
			return accountError("user "+username, err)
		}
		fmt.Fprintf(env.stdout, "user %s: %s, roles %s\n", u.Username, userState(*u), u.Roles)
		return nil
	})
}

func newUserResetCmd(env *cliEnv, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reset-password USERNAME",
		Short: "Give an account a new one-time password (printed once); revokes its sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAccounts(cmd.Context(), env, g, time.Minute, func(ctx context.Context, a *accounts) error {
				pw, err := a.ResetPassword(ctx, a.actor, args[0])
				if err != nil {
					return accountError("user "+args[0], err)
				}
				fmt.Fprintf(env.stdout, "one-time password for %s (shown once; to be changed at the next login): %s\n", args[0], pw)
				return nil
			})
		},
	}
}

func newUserRevokeCmd(env *cliEnv, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-sessions USERNAME",
		Short: "Revoke every session of an account (log it out everywhere)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAccounts(cmd.Context(), env, g, time.Minute, func(ctx context.Context, a *accounts) error {
				n, err := a.RevokeSessions(ctx, a.actor, args[0])
				if err != nil {
					return accountError("user "+args[0], err)
				}
				fmt.Fprintf(env.stdout, "revoked %d session(s) of %s\n", n, args[0])
				return nil
			})
		},
	}
}
