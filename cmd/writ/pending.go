package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/reconcile"
)

func init() { register(newPendingCmd) }

func newPendingCmd(env *cliEnv, g *globals) *cobra.Command {
	var server string
	var asJSON bool
	var approver string
	cmd := &cobra.Command{
		Use:   "pending [--server URL] [--json] [--approver ID]",
		Short: "List what waits for signatures, what each needs and who may sign it",
		Long: `Pending lists, from a writ server, what waits for signatures: playbook
operations (the apply of a merged playbook, the revert of a deleted one or
of the targets an update drops) whose signed proposal or approvals are
missing, and a change to policies/ and .writ/ that waits for the admins.
For each: what it needs (roles, how many, who already signed and until
when) and who may still sign, and the command that signs it:

  writ approve ID --key FILE      (or --ssh-key FILE)

which fetches what the statement binds from the server, shows it, and
signs after you confirm. --approver ID lists only what that person may
sign now.

The server is --server, else WRIT_SERVER, else the one you logged in to;
any role may list.`,
		Example: `  writ pending --server https://writ.example.com
  writ pending --approver bob
  writ pending --json | jq '.pending[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srv, err := resolveServer(env, server)
			if err != nil {
				return exitWith(exitFailure, err)
			}
			return runPending(cmd.Context(), env, srv, approver, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "the writ server (default: WRIT_SERVER, else the server you logged in to)")
	f.BoolVar(&asJSON, "json", false, "print the server's answer as JSON")
	f.StringVar(&approver, "approver", "", "only what this person (an id in .writ/approvers.yaml) may sign now")
	return cmd
}

func runPending(ctx context.Context, env *cliEnv, server, approver string, asJSON bool) error {
	if server == "" {
		return usageError("no server: pass --server URL, set WRIT_SERVER, or log in (writ login)")
	}
	resp, body, shown, err := callServer(ctx, env, server, http.MethodGet, nil, "api", "v1", "pending")
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if resp.StatusCode != http.StatusOK {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = " (log in with writ login, or set WRIT_TOKEN)"
		}
		return exitWith(exitFailure, fmt.Errorf("%s answered %s: %s%s", shown, resp.Status, serverMessage(body), hint))
	}
	var answer struct {
		Pending []reconcile.Pending `json:"pending"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return exitWith(exitFailure, fmt.Errorf("%s: the answer is not a pending list: %w", shown, err))
	}
	list := answer.Pending
	if approver != "" {
		var mine []reconcile.Pending
		for _, p := range list {
			for _, e := range p.Needs.Eligible {
				if e.ID == approver {
					mine = append(mine, p)
					break
				}
			}
		}
		list = mine
	}
	if asJSON {
		out := struct {
			Pending []reconcile.Pending `json:"pending"`
		}{Pending: list}
		if out.Pending == nil {
			out.Pending = []reconcile.Pending{}
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(list) == 0 {
		if approver != "" {
			fmt.Fprintf(env.stdout, "nothing waits for %s's signature\n", display.Safe(approver))
		} else {
			fmt.Fprintln(env.stdout, "nothing waits for signatures")
		}
		return nil
	}
	now := time.Now()
	for i, p := range list {
		if i > 0 {
			fmt.Fprintln(env.stdout)
		}
		writePendingItem(env, p, now)
	}
	return nil
}

func writePendingItem(env *cliEnv, p reconcile.Pending, now time.Time) {
	w := env.stdout
	if p.Kind == reconcile.PendingAuditRollback {
		fmt.Fprintf(w, "%s  acknowledge the audit log rollback hold: %s\n", p.ID, display.Safe(p.Reason))
	} else if p.Kind == reconcile.PendingTrustChange {
		var paths []string
		for _, s := range p.Subjects {
			paths = append(paths, s.Path)
		}
		fmt.Fprintf(w, "%s  change to %s (trusted commit %.12s → %.12s)\n", p.ID, display.Safe(strings.Join(paths, ", ")),
			display.Safe(p.Transition.TrustedCommit), display.Safe(p.Commit))
	} else {
		fmt.Fprintf(w, "%s  %s of %s (%s, %s)\n", p.ID, p.Operation, display.Safe(p.Path), display.Safe(p.Environment), display.Safe(p.Action))
	}
	fmt.Fprintf(w, "  needs     %s, waiting %s\n", needsText(p.Needs), now.Sub(p.Since).Round(time.Second))
	for _, s := range p.Needs.Signed {
		line := fmt.Sprintf("%s %s", display.Safe(s.Approver), s.Decision)
		switch {
		case s.Counted && s.ValidUntil != nil:
			line += fmt.Sprintf(", counts until %s", s.ValidUntil.UTC().Format(time.RFC3339))
		case s.Counted:
			line += ", counts"
		default:
			line += ", does not count: " + display.Safe(s.Note)
		}
		fmt.Fprintf(w, "  signed    %s\n", line)
	}
	var who []string
	for _, e := range p.Needs.Eligible {
		who = append(who, fmt.Sprintf("%s (%s)", display.Safe(e.ID), e.Decision))
	}
	if len(who) > 0 {
		fmt.Fprintf(w, "  may sign  %s\n", strings.Join(who, ", "))
	} else {
		fmt.Fprintf(w, "  may sign  nobody in the approvers file in force\n")
	}
	fmt.Fprintf(w, "  sign with %s --key FILE\n", p.Command)
}
