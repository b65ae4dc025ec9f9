package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// Engine is what the API needs of the reconciler.
type Engine interface {
	SubmitApproval(ctx context.Context, raw []byte, ch approval.Submitted) (*reconcile.Intake, error)
	Nudge()
	Status() reconcile.Status
}

// API serves /api/v1.
type API struct {
	engine Engine
	store  *store.Store
	log    *slog.Logger
}

// NewAPI makes the API handlers.
func NewAPI(engine Engine, st *store.Store, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{engine: engine, store: st, log: log}
}

// Register mounts the API on a server.
func (a *API) Register(s *Server) {
	s.Handle("POST /api/v1/approvals", http.HandlerFunc(a.postApproval))
	s.Handle("POST /api/v1/reconcile", http.HandlerFunc(a.postReconcile))
	s.Handle("GET /api/v1/status", http.HandlerFunc(a.getStatus))
	s.Handle("GET /api/v1/playbooks", http.HandlerFunc(a.listPlaybooks))
	s.Handle("GET /api/v1/playbooks/{name}", http.HandlerFunc(a.getPlaybook))
}

// Problem is the error body of every API error.
type Problem struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeProblem(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, Problem{Error: fmt.Sprintf(format, args...), Code: code})
}

// postApproval accepts a DSSE envelope. The signature is the authority, so
// it needs no login; anything unsigned or unverifiable is refused with a
// reason (and audited by the engine).
func (a *API) postApproval(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, approval.MaxEnvelopeBytes+1))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || len(raw) > approval.MaxEnvelopeBytes {
		writeProblem(w, http.StatusRequestEntityTooLarge, "too_large", "an approval envelope is at most %d bytes", approval.MaxEnvelopeBytes)
		return
	}
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "bad_request", "read body: %v", err)
		return
	}
	in, err := a.engine.SubmitApproval(r.Context(), raw, approval.Submitted{Source: "api", SourceRef: r.Header.Get("X-Request-Id")})
	if errors.Is(err, reconcile.ErrRefused) {
		writeProblem(w, http.StatusUnprocessableEntity, "refused", "%v", err)
		return
	}
	if err != nil {
		a.log.ErrorContext(r.Context(), "store approval", slog.Any("error", err))
		writeProblem(w, http.StatusInternalServerError, "internal", "the approval could not be stored")
		return
	}
	status := http.StatusCreated
	if in.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, in)
}

func (a *API) postReconcile(w http.ResponseWriter, r *http.Request) {
	a.engine.Nudge()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "reconcile requested"})
}

func (a *API) getStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.engine.Status())
}

// PlaybookSummary is one playbook version in a list.
type PlaybookSummary struct {
	ID           int64      `json:"id"`
	Name         string     `json:"name"`
	Path         string     `json:"path"`
	Digest       string     `json:"digest"`
	Action       string     `json:"action"`
	Environment  string     `json:"environment"`
	Severity     string     `json:"severity"`
	Commit       string     `json:"commit,omitempty"`
	Status       string     `json:"status"`
	StatusReason string     `json:"status_reason,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

func summarize(v *store.PlaybookVersion) PlaybookSummary {
	return PlaybookSummary{
		ID: v.ID, Name: v.Name, Path: v.Path, Digest: v.Digest, Action: v.Action, Environment: v.Environment,
		Severity: v.Severity, Commit: v.CommitSHA, Status: v.Status, StatusReason: v.StatusReason,
		ExpiresAt: v.ExpiresAt, UpdatedAt: v.UpdatedAt,
	}
}

func (a *API) listPlaybooks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.PlaybookFilter{Status: q.Get("status")}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeProblem(w, http.StatusBadRequest, "bad_request", "before must be a playbook version id")
			return
		}
		f.AfterID = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeProblem(w, http.StatusBadRequest, "bad_request", "limit must be 1 to 1000")
			return
		}
		f.Limit = n
	}
	list, err := a.store.ListPlaybooks(r.Context(), f)
	if err != nil {
		a.log.ErrorContext(r.Context(), "list playbooks", slog.Any("error", err))
		writeProblem(w, http.StatusInternalServerError, "internal", "could not list playbooks")
		return
	}
	out := struct {
		Playbooks []PlaybookSummary `json:"playbooks"`
		Next      string            `json:"next,omitempty"`
	}{Playbooks: []PlaybookSummary{}}
	for _, v := range list {
		out.Playbooks = append(out.Playbooks, summarize(v))
	}
	if len(list) > 0 && len(list) == max(f.Limit, 1) {
		out.Next = fmt.Sprintf("/api/v1/playbooks?before=%d&limit=%d", list[len(list)-1].ID, f.Limit)
	}
	writeJSON(w, http.StatusOK, out)
}

// PlaybookDetail is one playbook: its latest version, status history,
// decision, approvals counted and missing, and executions.
type PlaybookDetail struct {
	PlaybookSummary
	PolicyDigest string            `json:"policy_digest,omitempty"`
	PlanDigest   string            `json:"plan_digest,omitempty"`
	Decision     json.RawMessage   `json:"decision,omitempty"`
	History      []HistoryEntry    `json:"history"`
	Executions   []ExecutionDetail `json:"executions"`
	Versions     []PlaybookSummary `json:"versions"`
}

// HistoryEntry is one status change.
type HistoryEntry struct {
	From   string    `json:"from,omitempty"`
	To     string    `json:"to"`
	Reason string    `json:"reason,omitempty"`
	Commit string    `json:"commit,omitempty"`
	At     time.Time `json:"at"`
}

// ExecutionDetail is one operation with its approvals and targets.
type ExecutionDetail struct {
	ID           int64                `json:"id"`
	Digest       string               `json:"digest"`
	Operation    string               `json:"operation"`
	State        string               `json:"state"`
	Reason       string               `json:"reason,omitempty"`
	Trigger      string               `json:"trigger"`
	Attempts     int                  `json:"attempts"`
	LastError    string               `json:"last_error,omitempty"`
	PolicyDigest string               `json:"policy_digest,omitempty"`
	PlanDigest   string               `json:"plan_digest,omitempty"`
	Plan         json.RawMessage      `json:"plan,omitempty"`
	Approvals    json.RawMessage      `json:"approvals,omitempty"`
	Targets      []store.TargetResult `json:"targets"`
	StartedAt    *time.Time           `json:"started_at,omitempty"`
	FinishedAt   *time.Time           `json:"finished_at,omitempty"`
}

func (a *API) getPlaybook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	v, err := a.store.LatestPlaybookVersion(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, http.StatusNotFound, "not_found", "no playbook named %q", name)
		return
	}
	if err != nil {
		a.fail(w, r, "load playbook", err)
		return
	}
	d := PlaybookDetail{PlaybookSummary: summarize(v), PolicyDigest: v.PolicyDigest, PlanDigest: v.PlanDigest, Decision: v.Decision,
		History: []HistoryEntry{}, Executions: []ExecutionDetail{}, Versions: []PlaybookSummary{}}
	hist, err := a.store.PlaybookHistory(ctx, v.ID)
	if err != nil {
		a.fail(w, r, "load history", err)
		return
	}
	for _, h := range hist {
		d.History = append(d.History, HistoryEntry{From: h.From, To: h.To, Reason: h.Reason, Commit: h.CommitSHA, At: h.At})
	}
	execs, err := a.store.ListExecutions(ctx, store.ExecutionFilter{Name: name, Limit: 100})
	if err != nil {
		a.fail(w, r, "load executions", err)
		return
	}
	for _, e := range execs {
		targets, err := a.store.ExecutionTargets(ctx, e.ID)
		if err != nil {
			a.fail(w, r, "load targets", err)
			return
		}
		if targets == nil {
			targets = []store.TargetResult{}
		}
		d.Executions = append(d.Executions, ExecutionDetail{
			ID: e.ID, Digest: e.Digest, Operation: e.Operation, State: e.State, Reason: e.Reason, Trigger: e.Trigger,
			Attempts: e.Attempts, LastError: e.LastError, PolicyDigest: e.PolicyDigest, PlanDigest: e.PlanDigest,
			Plan: e.Plan, Approvals: e.Verdict, Targets: targets, StartedAt: e.StartedAt, FinishedAt: e.FinishedAt,
		})
	}
	all, err := a.store.PlaybookVersionsByName(ctx, name)
	if err != nil {
		a.fail(w, r, "load versions", err)
		return
	}
	for _, o := range all {
		d.Versions = append(d.Versions, summarize(o))
	}
	writeJSON(w, http.StatusOK, d)
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	a.log.ErrorContext(r.Context(), what, slog.Any("error", err))
	writeProblem(w, http.StatusInternalServerError, "internal", "%s failed", what)
}
