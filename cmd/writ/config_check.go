package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/action/backends"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/engine"
	"github.com/writ-sec/writ/internal/notify"
)

func init() { register(newConfigCmd) }

func newConfigCmd(env *cliEnv, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the server configuration (writ.yaml)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Check a server configuration without starting the server",
		Long: `Check reads writ.yaml (FILE, else --config, else the embedded defaults)
strictly, with every problem located path:line:col, then does what writ
serve would do before starting, without connecting anywhere: it resolves
every secret reference (the environment variables and files must exist and
be non-empty; their values are never printed), builds every backend and
SIEM destination, loads the audit signing key, and lists which backend
serves each action in each environment.

Exit status: 0 usable, 1 problems, 2 usage error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.configPath
			if len(args) == 1 {
				path = args[0]
			}
			if code := runConfigCheck(cmd.Context(), path, g, env.getenv, env.stdout, env.stderr); code != exitOK {
				return exitWith(code, nil)
			}
			return nil
		},
	})
	return cmd
}

func runConfigCheck(ctx context.Context, path string, g *globals, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := config.Default()
	if path != "" {
		c, err := config.Load(path)
		var problems diag.Problems
		switch {
		case errors.As(err, &problems):
			_ = diag.WriteText(stdout, problems)
			return exitFailure
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintln(stderr, "writ:", err)
			return exitUsage
		case err != nil:
			fmt.Fprintln(stderr, "writ:", err)
			return exitFailure
		}
		cfg = c
	}
	// Backend settings are checked against their types' schemas, located
	// like the rest of the file; deprecated forms are warned about.
	problems := slices.Concat(cfg.Warnings, backends.Check(cfg))
	if len(problems) > 0 {
		problems.Sort()
		_ = diag.WriteText(stdout, problems)
		if problems.HasErrors() {
			return exitFailure
		}
	}
	var failed []string
	check := func(what string, err error) {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", what, err))
		}
	}
	secret := func(what, envName, file string) {
		if envName == "" && file == "" {
			return
		}
		s, err := config.ResolveSecret(getenv, envName, file)
		if err == nil && s.Value() == "" {
			err = errors.New("empty")
		}
		check(what, err)
	}
	r := cfg.Repository
	secret("repository password", r.PasswordEnv, r.PasswordFile)
	secret("repository SSH key passphrase", r.SSHKeyPassphraseEnv, "")
	for _, f := range []string{r.SSHKeyFile, r.KnownHostsFile} {
		if f != "" {
			_, err := os.Stat(f)
			check("repository file "+f, err)
		}
	}
	if cfg.Audit.SigningKeyFile != "" {
		pw, err := config.ResolveSecret(getenv, cfg.Audit.SigningKeyPasswordEnv, "")
		check("audit key password", err)
		if err == nil {
			_, err = audit.LoadSigningKey(cfg.Audit.SigningKeyFile, []byte(pw.Value()))
			check("audit signing key "+cfg.Audit.SigningKeyFile, err)
		}
	}
	if gh := cfg.GitHub; gh != nil {
		secret("github webhook secret", gh.WebhookSecretEnv, gh.WebhookSecretFile)
		if gh.App == nil {
			secret("github token", gh.TokenEnv, gh.TokenFile)
		} else if _, err := os.Stat(gh.App.PrivateKeyFile); err != nil {
			check("github app private key", err)
		}
	}
	if gl := cfg.GitLab; gl != nil {
		secret("gitlab webhook secret", gl.WebhookSecretEnv, gl.WebhookSecretFile)
		secret("gitlab token", gl.TokenEnv, gl.TokenFile)
	}
	if a := cfg.Auth; a != nil && a.OIDC != nil && a.OIDC.ConsoleLogin() {
		secret("console client secret", a.OIDC.ConsoleClientSecretEnv, a.OIDC.ConsoleClientSecretFile)
	}
	if n := cfg.Notifications; n != nil {
		chans, routes := n.Normalized(notify.DefaultEvents)
		check("notifications", notify.Check(chans, routes, getenv))
	}
	_, err := engine.SIEMDestinations(cfg, nil, getenv)
	check("audit.siem", err)
	reg, err := buildBackends(ctx, g, cfg, getenv, nil)
	check("backends", err)
	recovery, recoveryApprovals, err := engine.RecoveryKeyring(cfg)
	check("approvals.recovery", err)

	source := "the embedded defaults"
	if path != "" {
		source = path
	}
	if len(failed) > 0 {
		fmt.Fprintf(stdout, "%s: %d problems\n", source, len(failed))
		for _, f := range failed {
			fmt.Fprintf(stdout, "  %s\n", f)
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: ok\n", source)
	fmt.Fprintf(stdout, "  listen:        %s\n", cfg.ListenAddr())
	if r.URL != "" {
		fmt.Fprintf(stdout, "  repository:    %s (branch %s, every %s)\n", r.URL, cfg.Branch(), cfg.PollInterval())
	} else {
		fmt.Fprintf(stdout, "  repository:    none (pass --repo to writ serve)\n")
	}
	fmt.Fprintf(stdout, "  environments:  %s\n", strings.Join(cfg.EnvironmentNames(), ", "))
	fmt.Fprintf(stdout, "  approvals:     max age %s, admin approvals %d, proposals required for allowed playbooks: %v\n",
		cfg.ApprovalMaxAge(), cfg.AdminApprovals(), cfg.RequireProposal())
	if recovery != nil {
		fmt.Fprintf(stdout, "  recovery:      %d of %d recovery keys may adopt a change to policies/ or .writ/\n",
			cmp.Or(recoveryApprovals, approval.DefaultMetaApprovals), len(recovery.People()))
	}
	fmt.Fprintln(stdout, "  backends:")
	actions := cfg.Catalog().Names()
	for _, a := range actions {
		var where []string
		for _, e := range cfg.EnvironmentNames() {
			b, err := reg.Lookup(a, e)
			if err != nil {
				where = append(where, e+": none")
				continue
			}
			where = append(where, e+": "+b.Name())
		}
		fmt.Fprintf(stdout, "    %-14s %s\n", a, strings.Join(where, ", "))
	}
	if missing := missingBackends(cfg, actions); len(missing) > 0 {
		fmt.Fprintf(stdout, "  note: playbooks for %s will wait (no backend)\n", strings.Join(missing, ", "))
	}
	return exitOK
}

// missingBackends lists actions with no backend in any environment.
func missingBackends(cfg *config.Config, actions []string) []string {
	has := map[string]bool{"block_ip": true} // the default blocklist
	for _, b := range cfg.Backends {
		for _, a := range b.Actions {
			has[a] = true
		}
	}
	var out []string
	for _, a := range actions {
		if !has[a] {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}
