package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// executionDetail is an execution with its per-target results.
func (a *API) executionDetail(ctx context.Context, e *store.Execution) (*ExecutionDetail, error) {
	targets, err := a.opts.Store.ExecutionTargets(ctx, e.ID)
	if err != nil {
		return nil, err
	}
	targets = e.WithPending(targets)
	views := make([]TargetView, 0, len(targets))
	for _, t := range targets {
		views = append(views, TargetView{Target: t.Target, Planned: t.Planned, Result: t.Result, Detail: t.Detail, Attempts: t.Attempts})
	}
	return &ExecutionDetail{
		ID: e.ID, Digest: e.Digest, Operation: e.Operation, Incident: e.Incident, State: string(e.State), ReasonCode: e.ReasonCode, Reason: e.Reason, Trigger: e.Trigger,
		Attempts: e.Attempts, LastError: e.LastError, PolicyDigest: e.PolicyDigest, PlanDigest: e.PlanDigest,
		Plan: e.Plan, Approvals: e.Verdict, Targets: views, StartedAt: e.StartedAt, FinishedAt: e.FinishedAt,
	}, nil
}

// ExecutionView is an execution as /api/v1/executions shows it: the
// playbook it belongs to, and its detail.
type ExecutionView struct {
	Name        string    `json:"name"`
	Path        string    `json:"path"`
	Action      string    `json:"action"`
	Environment string    `json:"environment"`
	Manual      bool      `json:"manual"`
	Commit      string    `json:"commit,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExecutionDetail
}

func (a *API) executionView(ctx context.Context, e *store.Execution) (*ExecutionView, error) {
	d, err := a.executionDetail(ctx, e)
	if err != nil {
		return nil, err
	}
	return &ExecutionView{Name: e.Name, Path: e.Path, Action: e.Action, Environment: e.Environment, Manual: e.Manual,
		Commit: e.CommitSHA, CreatedAt: e.CreatedAt, ExecutionDetail: *d}, nil
}

func (a *API) listExecutions(w http.ResponseWriter, r *http.Request) {
	limit, before, err := pageParams(r)
	if err != nil {
		a.fail(w, r, "list executions", err)
		return
	}
	q := r.URL.Query()
	list, err := a.opts.Store.ListExecutions(r.Context(), store.ExecutionFilter{Name: q.Get("name"), State: store.ExecState(q.Get("state")), AfterID: before, Limit: limit})
	if err != nil {
		a.fail(w, r, "list executions", err)
		return
	}
	out := struct {
		Executions []ExecutionView `json:"executions"`
		Next       string          `json:"next,omitempty"`
	}{Executions: []ExecutionView{}}
	for _, e := range list {
		v, err := a.executionView(r.Context(), e)
		if err != nil {
			a.fail(w, r, "list executions", err)
			return
		}
		out.Executions = append(out.Executions, *v)
	}
	if len(list) == limit {
		out.Next = nextLink("/api/v1/executions", r, list[len(list)-1].ID, limit)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getExecution(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, r, "execution", err)
		return
	}
	e, err := a.opts.Store.ExecutionByID(r.Context(), id)
	if err != nil {
		a.fail(w, r, "execution", err)
		return
	}
	v, err := a.executionView(r.Context(), e)
	if err != nil {
		a.fail(w, r, "execution", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// runExecution starts an approved operation of a playbook marked
// execution: manual: the executor's decision, audited with the caller.
func (a *API) runExecution(w http.ResponseWriter, r *http.Request) {
	e := a.engine(w)
	if e == nil {
		return
	}
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, r, "run execution", err)
		return
	}
	if err := e.RunManual(r.Context(), id, actor(r, ExecuteRoles)); err != nil {
		a.fail(w, r, "run execution", err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": "started"})
}

// retryExecution asks for a new attempt of a failed (or partly applied)
// operation with the statements it has: the executor's decision, audited
// with the caller. The reconciler refuses it unless the content, the
// policy set and the plan its statements bind are unchanged; it runs
// through the executor, checked at the moment of use, on the targets not
// applied yet. The answer is the execution, pending again.
func (a *API) retryExecution(w http.ResponseWriter, r *http.Request) {
	e := a.engine(w)
	if e == nil {
		return
	}
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, r, "retry execution", err)
		return
	}
	ex, err := e.Retry(r.Context(), id, actor(r, ExecuteRoles))
	if err != nil {
		a.fail(w, r, "retry execution", err)
		return
	}
	v, err := a.executionView(r.Context(), ex)
	if err != nil {
		a.fail(w, r, "retry execution", err)
		return
	}
	writeJSON(w, http.StatusAccepted, v)
}

// postApproval accepts a DSSE envelope. The signature is the authority, so
// it needs no login; anything unsigned or unverifiable is refused with a
// reason (and audited by the engine, bounded). A client whose envelopes
// keep being refused is answered 429 past the guard's RefusedApprovals
// rate; a valid envelope is never limited.
func (a *API) postApproval(w http.ResponseWriter, r *http.Request) {
	e := a.engine(w)
	if e == nil {
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, approval.MaxEnvelopeBytes+1))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || len(raw) > approval.MaxEnvelopeBytes {
		writeProblem(w, http.StatusRequestEntityTooLarge, "too_large", "an approval envelope is at most %d bytes", approval.MaxEnvelopeBytes)
		return
	}
	if err != nil && isTimeout(err) {
		w.Header().Set("Connection", "close")
		writeProblem(w, http.StatusRequestTimeout, "body_timeout", "the request body was not sent in time")
		return
	}
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "bad_request", "read body: %v", err)
		return
	}
	var g *Guard
	if a.srv != nil {
		g = a.srv.guard.Load()
	}
	var client netip.Addr
	if g != nil {
		client = ClientAddr(r, g.TrustedProxies)
	} else {
		client = peerAddr(r.RemoteAddr)
	}
	in, err := e.SubmitApproval(r.Context(), raw, approval.Submitted{Source: "api", SourceRef: RequestID(r.Context()), Remote: client.String()})
	if errors.Is(err, reconcile.ErrRefused) {
		if g != nil && g.RefusedApprovals != nil {
			if ok, wait := g.RefusedApprovals.Allow(client); !ok {
				writeRateLimited(w, wait, "too many refused approval envelopes from %s: try again in %s (this one: %v)", client, wait.Round(time.Second), err)
				return
			}
		}
		writeProblem(w, http.StatusUnprocessableEntity, "refused", "%v", err)
		return
	}
	if err != nil {
		a.fail(w, r, "store the approval", err)
		return
	}
	status := http.StatusCreated
	if in.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, in)
}

// ApprovalView is a stored envelope's statement as received (whether it
// counts is decided each time against the exact digests).
type ApprovalView struct {
	ID           int64      `json:"id"`
	Decision     string     `json:"decision"`
	Approver     string     `json:"approver"`
	Subjects     []string   `json:"subjects"`
	Repository   string     `json:"repository,omitempty"`
	PullRequest  int        `json:"pull_request,omitempty"`
	HeadCommit   string     `json:"head_commit,omitempty"`
	PolicyDigest string     `json:"policy_digest,omitempty"`
	PlanDigest   string     `json:"plan_digest,omitempty"`
	Reason       string     `json:"reason,omitempty"`
	IssuedAt     time.Time  `json:"issued_at"`
	ExpiresAt    time.Time  `json:"expires_at"`
	Source       string     `json:"source"`
	SourceLogin  string     `json:"source_login,omitempty"`
	ReceivedAt   time.Time  `json:"received_at"`
	WithdrawnAt  *time.Time `json:"withdrawn_at,omitempty"`
	Envelope     string     `json:"envelope_sha256"`
}

func (a *API) listApprovals(w http.ResponseWriter, r *http.Request) {
	limit, before, err := pageParams(r)
	if err != nil {
		a.fail(w, r, "list approvals", err)
		return
	}
	q := r.URL.Query()
	f := store.ApprovalFilter{Approver: q.Get("approver"), Decision: q.Get("decision"), Digest: q.Get("digest"),
		Repository: q.Get("repository"), Withdrawn: q.Get("withdrawn") == "true", AfterID: before, Limit: limit}
	if v := q.Get("pull_request"); v != "" {
		n, err := parsePositive(v)
		if err != nil {
			a.fail(w, r, "list approvals", badRequest("pull_request must be a number"))
			return
		}
		f.PullRequest = int(n)
	}
	list, err := a.opts.Store.ListApprovals(r.Context(), f)
	if err != nil {
		a.fail(w, r, "list approvals", err)
		return
	}
	out := struct {
		Approvals []ApprovalView `json:"approvals"`
		Next      string         `json:"next,omitempty"`
	}{Approvals: []ApprovalView{}}
	for _, ap := range list {
		v := ApprovalView{ID: ap.ID, Decision: ap.Decision, Approver: ap.Approver, Subjects: []string{}, Repository: ap.Repository,
			PullRequest: ap.PullRequest, HeadCommit: ap.HeadCommit, PolicyDigest: ap.PolicyDigest, PlanDigest: ap.PlanDigest,
			Reason: ap.Reason, IssuedAt: ap.IssuedAt, ExpiresAt: ap.ExpiresAt, Source: ap.Source, SourceLogin: ap.SourceLogin,
			ReceivedAt: ap.ReceivedAt, WithdrawnAt: ap.WithdrawnAt, Envelope: ap.EnvelopeSHA256}
		for _, s := range ap.Subjects {
			v.Subjects = append(v.Subjects, s.Name+"@sha256:"+s.Digest)
		}
		out.Approvals = append(out.Approvals, v)
	}
	if len(list) == limit {
		out.Next = nextLink("/api/v1/approvals", r, list[len(list)-1].ID, limit)
	}
	writeJSON(w, http.StatusOK, out)
}

// HoldView is an open hold.
type HoldView struct {
	ID        int64     `json:"id"`
	Kind      string    `json:"kind"`
	Commit    string    `json:"commit"`
	Detail    any       `json:"detail,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func (a *API) listHolds(w http.ResponseWriter, r *http.Request) {
	holds, err := a.opts.Store.OpenHolds(r.Context())
	if err != nil {
		a.fail(w, r, "list holds", err)
		return
	}
	out := struct {
		Holds []HoldView `json:"holds"`
	}{Holds: []HoldView{}}
	for _, h := range holds {
		out.Holds = append(out.Holds, HoldView{ID: h.ID, Kind: h.Kind, Commit: h.CommitSHA, Detail: rawJSON(h.Detail), CreatedAt: h.CreatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

// acknowledgeHold lets writ move past a hold: an admin's decision,
// audited with the caller.
func (a *API) acknowledgeHold(w http.ResponseWriter, r *http.Request) {
	e := a.engine(w)
	if e == nil {
		return
	}
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, r, "acknowledge hold", err)
		return
	}
	if err := e.AcknowledgeHold(r.Context(), id, actor(r, AdminRoles)); err != nil {
		a.fail(w, r, "acknowledge hold", err)
		return
	}
	// How the hold ended: a change to policies/ or .writ/ is dismissed
	// (refused, never adopted); rewritten history is acknowledged.
	status := "acknowledged"
	if h, err := a.opts.Store.HoldByID(r.Context(), id); err == nil && h.ResolvedAs != "" {
		status = string(h.ResolvedAs)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "status": status})
}
