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

func init() { register(newDriftCmd) }

func newDriftCmd(env *cliEnv, _ *globals) *cobra.Command {
	var server string
	var check, asJSON bool
	cmd := &cobra.Command{
		Use:   "drift [--check] [--server URL] [--json]",
		Short: "Show how live state differs from the playbooks in force",
		Long: `Drift shows the latest drift check of a writ server: per environment,
action and backend, the targets a playbook in force holds that live state
no longer contains (missing), those live state contains that no playbook
holds (unexpected: backends that can list what they hold, nftables and
the blocklist file), and those there but not as the playbook put them
(changed). With --check the server checks now (the executor or admin
role); the server also checks every drift.interval (writ.yaml).

In an environment whose drift mode is heal (environments.NAME.drift in
writ.yaml), the missing targets of a playbook are an incident, and its heal
is an operation of its own, judged like any other: where the policies ask
approvals it waits in writ pending as op-N, and writ approve op-N signs
it. Unexpected and changed targets are only reported.

The server is --server, else WRIT_SERVER, else the one you logged in to.
Exit status 0 when in sync, 1 when drift was found (or the server could
not be asked).`,
		Example: `  writ drift
  writ drift --check --server https://writ.example.com
  writ drift --json | jq '.groups[].findings'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srv, err := resolveServer(env, server)
			if err != nil {
				return exitWith(exitFailure, err)
			}
			return runDrift(cmd.Context(), env, srv, check, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "the writ server (default: WRIT_SERVER, else the server you logged in to)")
	f.BoolVar(&check, "check", false, "check now (executor or admin) rather than show the latest check")
	f.BoolVar(&asJSON, "json", false, "print the server's report as JSON")
	return cmd
}

func runDrift(ctx context.Context, env *cliEnv, srv string, check, asJSON bool) error {
	if srv == "" {
		return usageError("no server: pass --server URL, set WRIT_SERVER, or log in (writ login)")
	}
	method, path := http.MethodGet, []string{"api", "v1", "drift"}
	if check {
		method, path = http.MethodPost, append(path, "check")
	}
	resp, body, shown, err := callServer(ctx, env, srv, method, nil, path...)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if resp.StatusCode != http.StatusOK {
		return exitWith(exitFailure, fmt.Errorf("%s answered %s: %s", shown, resp.Status, serverMessage(body)))
	}
	var rep reconcile.DriftReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return exitWith(exitFailure, fmt.Errorf("%s: the answer is not a drift report: %w", shown, err))
	}
	if asJSON {
		env.stdout.Write(body)
		if !strings.HasSuffix(string(body), "\n") {
			fmt.Fprintln(env.stdout)
		}
	} else {
		writeDrift(env, &rep)
	}
	if !rep.InSync {
		return exitWith(exitFailure, nil)
	}
	return nil
}

func writeDrift(env *cliEnv, rep *reconcile.DriftReport) {
	w := env.stdout
	state := "in sync"
	if !rep.InSync {
		state = fmt.Sprintf("drift: %d missing, %d unexpected, %d changed", rep.Counts.Missing, rep.Counts.Unexpected, rep.Counts.Changed)
	}
	fmt.Fprintf(w, "checked %s: %s\n", rep.CheckedAt.Local().Format(time.RFC3339), state)
	for _, g := range rep.Groups {
		line := fmt.Sprintf("%s %s on %s (%s): %s", display.Safe(g.Environment), display.Safe(g.Action), display.Safe(g.Backend), g.Mode, g.Status)
		if g.Status == reconcile.DriftFound {
			line += fmt.Sprintf(", %d missing, %d unexpected, %d changed", g.Counts.Missing, g.Counts.Unexpected, g.Counts.Changed)
			if g.Since != nil {
				line += " since " + g.Since.Local().Format(time.RFC3339)
			}
		}
		if g.Error != "" {
			line += ": " + display.Safe(flattenText(g.Error, 200))
		}
		fmt.Fprintln(w, line)
		for i, f := range g.Findings {
			if i == 20 {
				fmt.Fprintf(w, "  … and %d more (--json lists up to 1,000)\n", g.FindingsTotal-i)
				break
			}
			text := fmt.Sprintf("  %-10s %-40s", f.Kind, display.Safe(f.Target))
			if f.Playbook != "" {
				text += " " + display.Safe(f.Playbook)
			}
			if f.Detail != "" {
				text += ": " + display.Safe(flattenText(f.Detail, 160))
			}
			fmt.Fprintln(w, text)
		}
		for _, h := range g.Heals {
			fmt.Fprintf(w, "  heal of incident %d (%s, %d targets): op-%d is %s", h.Incident, display.Safe(h.Playbook), h.Targets, h.Execution, h.State)
			if h.State == "waiting" {
				fmt.Fprintf(w, "; sign it with writ approve op-%d", h.Execution)
			}
			fmt.Fprintln(w)
		}
	}
}
