package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/playbook"
)

func init() { register(newTokenCmd) }

func newTokenCmd(env *cliEnv, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "API tokens for automation: create, list, revoke",
		Long: `An API token is a bearer credential of an account (often one made with
writ user add --no-password), carrying a subset of the account's roles and
never more than the account has when it is used. Tokens expire (default
90 days, at most a year) and can be revoked. The secret is printed once;
only its sha256 is stored. Send it as "Authorization: Bearer <token>".`,
	}
	cmd.AddCommand(newTokenCreateCmd(env, g), newTokenListCmd(env, g), newTokenRevokeCmd(env, g))
	return cmd
}

type tokenCreateParams struct {
	user  string
	name  string
	roles []string
	ttl   string
}

func newTokenCreateCmd(env *cliEnv, g *globals) *cobra.Command {
	p := tokenCreateParams{}
	cmd := &cobra.Command{
		Use:   "create --user USERNAME --name NAME [--role ROLE]... [--ttl 90d]",
		Short: "Make an API token; prints its secret once",
		Long: `Create makes a token for an account and prints the secret alone on
standard output (so TOKEN=$(writ token create ...) works), once; what it is
goes to standard error. Without --role the token carries all of the
account's roles.`,
		Example: `  writ token create --user ci-bot --name prometheus --role viewer --ttl 365d`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p.user == "" || p.name == "" {
				return usageError("--user and --name are required")
			}
			roles, err := auth.ParseRoles(p.roles)
			if err != nil {
				return usageError("--role: %v", err)
			}
			var ttl time.Duration
			if p.ttl != "" {
				if ttl, err = playbook.ParseDuration(p.ttl); err != nil {
					return usageError("--ttl: %v", err)
				}
			}
			return withAccounts(cmd.Context(), env, g, time.Minute, func(ctx context.Context, a *accounts) error {
				t, secret, err := a.CreateToken(ctx, a.actor, auth.NewToken{Username: p.user, Name: p.name, Roles: roles, TTL: ttl})
				if err != nil {
					return accountError("token "+p.name+" of "+p.user, err)
				}
				fmt.Fprintln(env.stdout, secret)
				fmt.Fprintf(env.stderr, "token %d %q of %s: roles %s, expires %s (the secret above is shown once)\n",
					t.ID, t.Name, t.Username, t.Roles, t.ExpiresAt.UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.user, "user", "", "the account the token acts as")
	f.StringVar(&p.name, "name", "", "a name for the token, unique per account (what it is for)")
	f.StringArrayVar(&p.roles, "role", nil, "a role the token carries (repeatable; default all of the account's)")
	f.StringVar(&p.ttl, "ttl", "", "lifetime, e.g. 30d or 12h (default 90d, at most 366d)")
	return cmd
}

func newTokenListCmd(env *cliEnv, g *globals) *cobra.Command {
	var user, format string
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--user USERNAME] [--all] [--format text|json]",
		Short: "List API tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usageError("--format must be text or json, not %q", format)
			}
			return withAccounts(cmd.Context(), env, g, time.Minute, func(ctx context.Context, a *accounts) error {
				ts, err := a.Tokens(ctx, user, all)
				if err != nil {
					return accountError("tokens", err)
				}
				if format == "json" {
					return writeJSONOut(env.stdout, map[string]any{"tokens": ts})
				}
				tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tUSER\tNAME\tROLES\tEXPIRES\tSTATE\tLAST USED")
				for _, t := range ts {
					state := "live"
					if t.RevokedAt != nil {
						state = "revoked"
					} else if t.ExpiresAt != nil && !time.Now().Before(*t.ExpiresAt) {
						state = "expired"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Username, t.Name, t.Roles, timeOrDash(t.ExpiresAt), state, timeOrDash(t.LastUsedAt))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "only this account's tokens")
	cmd.Flags().BoolVar(&all, "all", false, "revoked and expired tokens too")
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

func newTokenRevokeCmd(env *cliEnv, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id < 1 {
				return usageError("%q is not a token id (writ token list shows them)", args[0])
			}
			return withAccounts(cmd.Context(), env, g, time.Minute, func(ctx context.Context, a *accounts) error {
				t, err := a.RevokeToken(ctx, a.actor, id)
				if err != nil {
					return accountError("token "+args[0], err)
				}
				fmt.Fprintf(env.stdout, "revoked token %d %q of %s\n", t.ID, t.Name, t.Username)
				return nil
			})
		},
	}
}
