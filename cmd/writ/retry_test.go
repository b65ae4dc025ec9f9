package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/webhook/webhooktest"
	"github.com/writ-sec/writ/internal/store"
)

const retryPlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-pair
  ticket: INC-5
spec:
  action: block_ip
  targets: [203.0.113.8, 203.0.113.9]
  justification: scanning from two addresses
  severity: low
  environment: staging
`

// writ retry against a real writ serve whose webhook backend (an EDR on
// loopback) failed one of two addresses: a viewer is refused, the
// executor's retry shows the per-target results and sends only the
// address not applied, and a completed execution is refused with its code.
func TestRetryCommand(t *testing.T) {
	t.Parallel()
	edr := webhooktest.New(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "edr.secret")
	if err := os.WriteFile(secret, []byte(webhooktest.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "writ.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `apiVersion: writ/v1
kind: ServerConfig
backends:
  - name: edr
    type: webhook
    actions: [block_ip]
    environments: ["*"]
    settings:
      url: %s/actions
      statusURL: %s/status
      secretFile: %s
      allowInsecureHTTP: true
approvals:
  requireProposal: false
`, edr.URL(), edr.URL(), secret), 0o644); err != nil {
		t.Fatal(err)
	}
	edr.Fail("203.0.113.9", "the firewall refused 203.0.113.9: rule table full")
	r := newTrustRigWith(t, map[string][]string{"alice": {"analyst"}}, "--config", cfg)
	r.repo.Write("playbooks/block-pair.yaml", retryPlaybook)
	r.repo.Commit("block the pair")
	r.repo.Push()
	var ex *store.Execution
	r.waitForSaying("the partly applied execution", func() bool {
		list, err := r.st.ListExecutions(context.Background(), store.ExecutionFilter{Name: "block-pair"})
		if err != nil || len(list) != 1 {
			return false
		}
		ex = list[0]
		return ex.State == store.ExecFailed
	}, func() string { return fmt.Sprintf("%+v", ex) })
	id := fmt.Sprint(ex.ID)
	cli := func(token string, args ...string) (int, string, string) {
		t.Helper()
		return runCLIEnv(t, map[string]string{"WRIT_SERVER": r.base, "WRIT_TOKEN": token}, args...)
	}

	viewer, executor := r.token("watcher", "viewer"), r.token("oncall", "executor")
	if code, _, errOut := cli(viewer, "retry", id); code != exitFailure || !strings.Contains(errOut, "403") || !strings.Contains(errOut, "executor or admin role") {
		t.Fatalf("a viewer's retry: %d %s", code, errOut)
	}
	if code, _, errOut := cli(executor, "retry", "op-x"); code != exitUsage {
		t.Fatalf("a bad id: %d %s", code, errOut)
	}

	edr.Fail("203.0.113.9", "")
	code, out, errOut := cli(executor, "retry", "op-"+id)
	if code != exitOK || !strings.Contains(out, "is pending again: retry requested by oncall") ||
		!strings.Contains(out, "203.0.113.8") || !strings.Contains(out, "applied (changed), not applied again") ||
		!strings.Contains(out, "failed, to attempt again: the firewall refused 203.0.113.9") {
		t.Fatalf("the executor's retry: %d\n%s\n%s", code, out, errOut)
	}
	r.waitFor("the retried execution to complete", func() bool {
		e, err := r.st.ExecutionByID(context.Background(), ex.ID)
		return err == nil && e.State == store.ExecCompleted
	})
	if n := edr.Count(action.Apply, "203.0.113.8"); n != 1 {
		t.Fatalf("203.0.113.8 was sent %d applies; want 1", n)
	}
	if got := edr.Contained(); len(got) != 2 {
		t.Fatalf("contained %v", got)
	}
	if code, _, errOut := cli(executor, "retry", id); code != exitFailure || !strings.Contains(errOut, "409") || !strings.Contains(errOut, "[not_retryable]") {
		t.Fatalf("a completed execution: %d %s", code, errOut)
	}
}
