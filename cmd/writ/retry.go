package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/server"
)

func init() { register(newRetryCmd) }

func newRetryCmd(env *cliEnv, g *globals) *cobra.Command {
	var server string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "retry ID [--server URL] [--json]",
		Short: "Try a failed (or partly applied) operation again, with the approvals it has",
		Long: `Retry asks a writ server for a new attempt of a failed operation (ID is
the execution's id, or the op-N of writ pending): a backend that was down,
or a playbook applied to some targets and not to others.

No new signatures are needed while what they bind is unchanged: the
playbook on the branch is still this content, the policy set in force is
the one that judged it, and live state read again is the approved plan
(or what it becomes once the targets applied so far are applied). The
server refuses otherwise (409 retry_changed, naming the content, the
policy or the plan): the approvals do not cover what would run, so change
the playbook instead; its new version is judged and approved as an
operation of its own. Nor is a playbook applied again once its
expiresAfter has passed (409 not_retryable): its time counts from the
attempt that first applied part of it, and its expiry releases what that
attempt applied. Nor, once a playbook was removed and its revert
recorded, is its failed apply retried, even if the same content was
merged again (409 not_retryable): the version stays reverted, and to
act again you change the playbook. A failed drift heal is not retried
once its playbook expired or was reverted, or its incident resolved.

Like every attempt it is checked again right before the backend is
called: a fresh policy decision, the approvals verified again (expired,
withdrawn or rejected ones stop it), live state compared with the
approved plan, and no hold open. Targets an earlier attempt applied are
not applied again: only the failed and pending ones are sent.

To roll back a partly applied playbook instead, remove it from the
branch: its revert releases exactly the targets it applied, judged like
any revert (its own proposal, approvals where the policies ask).

Needs the executor or admin role. The server is --server, else
WRIT_SERVER, else the one you logged in to.`,
		Example: `  writ retry 42
  writ retry op-42 --server https://writ.example.com
  writ retry 42 --json | jq '.targets'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := executionID(args[0])
			if err != nil {
				return err
			}
			srv, err := resolveServer(env, server)
			if err != nil {
				return exitWith(exitFailure, err)
			}
			return runRetry(cmd.Context(), env, srv, id, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "the writ server (default: WRIT_SERVER, else the server you logged in to)")
	f.BoolVar(&asJSON, "json", false, "print the server's answer (the execution) as JSON")
	return cmd
}

// executionID reads an execution id: N or op-N.
func executionID(arg string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(arg, "op-"), 10, 64)
	if err != nil || n < 1 {
		return 0, usageError("%q is not an execution id (a number, or op-N as writ pending lists it)", arg)
	}
	return n, nil
}

func runRetry(ctx context.Context, env *cliEnv, srv string, id int64, asJSON bool) error {
	if srv == "" {
		return usageError("no server: pass --server URL, set WRIT_SERVER, or log in (writ login)")
	}
	resp, body, shown, err := callServer(ctx, env, srv, http.MethodPost, nil, "api", "v1", "executions", strconv.FormatInt(id, 10), "retry")
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		hint := retryHint(resp.StatusCode)
		var p server.Problem
		if json.Unmarshal(body, &p) == nil && p.Code != "" {
			hint = " [" + display.Safe(p.Code)
			if p.Changed != "" {
				hint += ": " + display.Safe(p.Changed)
			}
			hint += "]" + retryHint(resp.StatusCode)
		}
		return exitWith(exitFailure, fmt.Errorf("%s answered %s: %s%s", shown, resp.Status, serverMessage(body), hint))
	}
	if asJSON {
		env.stdout.Write(body)
		if !strings.HasSuffix(string(body), "\n") {
			fmt.Fprintln(env.stdout)
		}
		return nil
	}
	var e server.ExecutionView
	if err := json.Unmarshal(body, &e); err != nil {
		return exitWith(exitFailure, fmt.Errorf("%s: the answer is not an execution: %w", shown, err))
	}
	w := env.stdout
	fmt.Fprintf(w, "execution %d (%s of %s, %s in %s) is %s again: %s\n", e.ID, e.Operation, display.Safe(e.Path), display.Safe(e.Action),
		display.Safe(e.Environment), e.State, display.Safe(e.Reason))
	writeTargets(env, e.Targets)
	fmt.Fprintf(w, "it is checked at the moment of use before the backend is called; follow it with GET /api/v1/executions/%d\n", e.ID)
	return nil
}

// retryHint is what to do about a refused retry.
func retryHint(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return " (log in with writ login, or set WRIT_TOKEN)"
	case http.StatusForbidden:
		return " (retrying needs the executor or admin role)"
	}
	return ""
}

// writeTargets prints per-target results: applied (changed or
// unchanged), failed with the backend's error, pending.
func writeTargets(env *cliEnv, targets []server.TargetView) {
	for _, t := range targets {
		state := "to attempt"
		switch t.Result {
		case "changed", "unchanged":
			state = "applied (" + t.Result + "), not applied again"
		case "failed":
			state = "failed, to attempt again"
		}
		line := fmt.Sprintf("  %-40s %s", display.Safe(t.Target), state)
		if t.Detail != "" {
			line += ": " + display.Safe(flattenText(t.Detail, 200))
		}
		fmt.Fprintln(env.stdout, line)
	}
}
