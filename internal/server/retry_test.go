package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/webhook/webhooktest"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

const pairPlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-pair
  ticket: %s
spec:
  action: block_ip
  targets: [203.0.113.8, 203.0.113.9]
  justification: scanning from two addresses
  severity: low
  environment: staging
`

// A partly applied playbook through the API, on a live server (real
// PostgreSQL, a real repository, the webhook backend against an EDR that
// fails one address): its per-target results, a viewer refused, the
// executor's retry (checked against the OpenAPI document) that sends only
// the address not applied, and the refusals with their codes.
func TestRetryPartialFailureAPI(t *testing.T) {
	t.Parallel()
	edr := webhooktest.New(t)
	h := newHarness(t, harnessOptions{approver: true, relaxProposal: true, backends: func(reg *action.Registry) {
		reg.Register("block_ip", "staging", edr.Backend("webhook:edr"))
	}})
	c := newContractChecker(t, h.http.URL)
	viewer, executor := h.tokens["viewer"], h.tokens["executor"]
	edr.Fail("203.0.113.9", "the firewall refused 203.0.113.9: rule table full")
	h.repo.Write("playbooks/network/block-pair.yaml", fmt.Sprintf(pairPlaybook, "INC-5"))
	h.repo.Commit("block the pair")
	h.repo.Push()
	if err := h.rec.ReconcileOnce(h.ctx); err != nil {
		t.Fatal(err)
	}
	list, err := h.st.ListExecutions(h.ctx, store.ExecutionFilter{Name: "block-pair"})
	if err != nil || len(list) != 1 {
		t.Fatalf("executions %v %v", list, err)
	}
	id := list[0].ID
	path := fmt.Sprintf("/api/v1/executions/%d", id)

	view := func(ex exchange) ExecutionView {
		t.Helper()
		if ex.resErr != nil {
			t.Fatalf("%s %d: the answer does not match the document: %v\n%s", ex.key, ex.status, ex.resErr, ex.body)
		}
		var v ExecutionView
		if err := json.Unmarshal(ex.body, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	results := func(v ExecutionView) map[string]string {
		out := map[string]string{}
		for _, tg := range v.Targets {
			out[tg.Target] = tg.Result
		}
		return out
	}

	// Per-target results: one applied, one failed with the backend's error.
	got := view(c.do(t, "GET", h.http.URL+path, viewer, "", nil))
	if got.State != "failed" || results(got)["203.0.113.8"] != "changed" || results(got)["203.0.113.9"] != "failed" {
		t.Fatalf("the partly applied execution: %s %s (%s) %v", got.State, got.ReasonCode, got.Reason, got.Targets)
	}
	for _, tg := range got.Targets {
		if tg.Target == "203.0.113.9" && !strings.Contains(tg.Detail, "rule table full") {
			t.Fatalf("the failed target lacks the backend's error: %+v", tg)
		}
	}

	// A viewer may not retry (audited as a denial).
	ex := c.do(t, "POST", h.http.URL+path+"/retry", viewer, "", nil)
	if ex.status != http.StatusForbidden || ex.resErr != nil {
		t.Fatalf("a viewer's retry: %d %v %s", ex.status, ex.resErr, ex.body)
	}

	// The executor retries once the firewall has room: 202, pending again,
	// the applied address kept.
	edr.Fail("203.0.113.9", "")
	ex = c.do(t, "POST", h.http.URL+path+"/retry", executor, "", nil)
	if ex.status != http.StatusAccepted {
		t.Fatalf("the executor's retry: %d %s", ex.status, ex.body)
	}
	got = view(ex)
	if got.State != "pending" || got.ReasonCode != "retry_requested" || got.FinishedAt != nil || results(got)["203.0.113.8"] != "changed" {
		t.Fatalf("after the retry request: %+v", got)
	}
	// Asked again before it ran: it is not failed any more.
	wantProblem(t, c.do(t, "POST", h.http.URL+path+"/retry", executor, "", nil), http.StatusConflict, "not_retryable", "")

	if err := h.rec.ReconcileOnce(h.ctx); err != nil {
		t.Fatal(err)
	}
	got = view(c.do(t, "GET", h.http.URL+path, viewer, "", nil))
	if got.State != "completed" || results(got)["203.0.113.9"] != "changed" {
		t.Fatalf("after the retry ran: %s %v", got.State, got.Targets)
	}
	if n := edr.Count(action.Apply, "203.0.113.8"); n != 1 {
		t.Fatalf("203.0.113.8 was sent %d applies", n)
	}
	// Completed: an operation runs at most once.
	wantProblem(t, c.do(t, "POST", h.http.URL+path+"/retry", executor, "", nil), http.StatusConflict, "not_retryable", "")
	wantProblem(t, c.do(t, "POST", h.http.URL+"/api/v1/executions/424242/retry", executor, "", nil), http.StatusNotFound, "not_found", "")

	// Another partial failure, then the playbook changes: the retry is
	// refused, naming the content.
	edr.Fail("203.0.113.11", "rule table full")
	h.repo.Write("playbooks/network/block-more.yaml", strings.NewReplacer("block-pair", "block-more", "203.0.113.8, 203.0.113.9", "203.0.113.10, 203.0.113.11").
		Replace(fmt.Sprintf(pairPlaybook, "INC-6")))
	h.repo.Commit("block more")
	h.repo.Push()
	if err := h.rec.ReconcileOnce(h.ctx); err != nil {
		t.Fatal(err)
	}
	more, err := h.st.ListExecutions(h.ctx, store.ExecutionFilter{Name: "block-more"})
	if err != nil || len(more) != 1 || more[0].State != store.ExecFailed {
		t.Fatalf("block-more: %v %v", more, err)
	}
	h.repo.Write("playbooks/network/block-more.yaml", strings.NewReplacer("block-pair", "block-more", "203.0.113.8, 203.0.113.9", "203.0.113.10, 203.0.113.11").
		Replace(fmt.Sprintf(pairPlaybook, "INC-7")))
	h.repo.Commit("block more, new ticket")
	h.repo.Push()
	if err := h.rec.ReconcileOnce(h.ctx); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, c.do(t, "POST", h.http.URL+fmt.Sprintf("/api/v1/executions/%d/retry", more[0].ID), executor, "", nil),
		http.StatusConflict, "retry_changed", "content")

	// Audited: the executor's request, with who asked.
	entries := h.auditEntries(audit.EventExecutionRetryRequested)
	if len(entries) != 1 || entries[0].Actor.ID != "u-executor" || entries[0].Actor.Role != "executor" {
		t.Fatalf("retry_requested entries %+v", entries)
	}
}

// wantProblem checks an error answer: its status, code, changed member,
// and that it matches the document.
func wantProblem(t *testing.T, ex exchange, status int, code, changed string) {
	t.Helper()
	var p Problem
	_ = json.Unmarshal(ex.body, &p)
	if ex.status != status || p.Code != code || p.Changed != changed || ex.resErr != nil {
		t.Fatalf("%s: %d %s (changed %q), want %d %s (changed %q); document: %v\n%s", ex.key, ex.status, p.Code, p.Changed, status, code, changed, ex.resErr, ex.body)
	}
}
