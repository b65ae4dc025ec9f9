package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

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

// StatusInvalid is the status of a playbook file on the branch that is not
// a valid playbook: nothing of it runs until a commit fixes or deletes it.
const StatusInvalid = "invalid"

// InvalidPlaybook is a file on the branch that is not a valid playbook.
type InvalidPlaybook struct {
	Path     string            `json:"path"`
	Status   string            `json:"status"`
	Commit   string            `json:"commit"`
	Since    time.Time         `json:"since"`
	Problems []PlaybookProblem `json:"problems"`
}

// PlaybookProblem is one located problem of an invalid playbook file (line
// and col 0: not known).
type PlaybookProblem struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

func invalidOf(b store.InvalidPlaybook) InvalidPlaybook {
	out := InvalidPlaybook{Path: b.Path, Status: StatusInvalid, Commit: b.CommitSHA, Since: b.Since, Problems: []PlaybookProblem{}}
	_ = json.Unmarshal(b.Problems, &out.Problems)
	return out
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
	list, err := a.opts.Store.ListPlaybooks(r.Context(), f)
	if err != nil {
		a.log.ErrorContext(r.Context(), "list playbooks", slog.Any("error", err))
		writeProblem(w, http.StatusInternalServerError, "internal", "could not list playbooks")
		return
	}
	out := struct {
		Playbooks []PlaybookSummary `json:"playbooks"`
		Invalid   []InvalidPlaybook `json:"invalid,omitempty"`
		Next      string            `json:"next,omitempty"`
	}{Playbooks: []PlaybookSummary{}}
	for _, v := range list {
		out.Playbooks = append(out.Playbooks, summarize(v))
	}
	// The first page also lists the files on the branch that are not
	// valid playbooks, with their problems (status invalid).
	if f.AfterID == 0 && (f.Status == "" || f.Status == StatusInvalid) {
		bad, err := a.opts.Store.InvalidPlaybooks(r.Context())
		if err != nil {
			a.log.ErrorContext(r.Context(), "list invalid playbooks", slog.Any("error", err))
			writeProblem(w, http.StatusInternalServerError, "internal", "could not list playbooks")
			return
		}
		out.Invalid = []InvalidPlaybook{}
		for _, b := range bad {
			out.Invalid = append(out.Invalid, invalidOf(b))
		}
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
	ID           int64           `json:"id"`
	Digest       string          `json:"digest"`
	Operation    string          `json:"operation"`
	Incident     int64           `json:"incident,omitempty"`
	State        string          `json:"state"`
	ReasonCode   string          `json:"reason_code,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	Trigger      string          `json:"trigger"`
	Attempts     int             `json:"attempts"`
	LastError    string          `json:"last_error,omitempty"`
	PolicyDigest string          `json:"policy_digest,omitempty"`
	PlanDigest   string          `json:"plan_digest,omitempty"`
	Plan         json.RawMessage `json:"plan,omitempty"`
	Approvals    json.RawMessage `json:"approvals,omitempty"`
	Targets      []TargetView    `json:"targets"`
	StartedAt    *time.Time      `json:"started_at,omitempty"`
	FinishedAt   *time.Time      `json:"finished_at,omitempty"`
}

// TargetView is what happened to one target of an execution.
type TargetView struct {
	Target   string `json:"target"`
	Planned  string `json:"planned"`
	Result   string `json:"result"`
	Detail   string `json:"detail,omitempty"`
	Attempts int    `json:"attempts"`
}

func (a *API) getPlaybook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	v, err := a.opts.Store.LatestPlaybookVersion(ctx, name)
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
	hist, err := a.opts.Store.PlaybookHistory(ctx, v.ID)
	if err != nil {
		a.fail(w, r, "load history", err)
		return
	}
	for _, h := range hist {
		d.History = append(d.History, HistoryEntry{From: h.From, To: h.To, Reason: h.Reason, Commit: h.CommitSHA, At: h.At})
	}
	execs, err := a.opts.Store.ListExecutions(ctx, store.ExecutionFilter{Name: name, Limit: 100})
	if err != nil {
		a.fail(w, r, "load executions", err)
		return
	}
	for _, e := range execs {
		ed, err := a.executionDetail(ctx, e)
		if err != nil {
			a.fail(w, r, "load targets", err)
			return
		}
		d.Executions = append(d.Executions, *ed)
	}
	all, err := a.opts.Store.PlaybookVersionsByName(ctx, name)
	if err != nil {
		a.fail(w, r, "load versions", err)
		return
	}
	for _, o := range all {
		d.Versions = append(d.Versions, summarize(o))
	}
	writeJSON(w, http.StatusOK, d)
}

// maxPlaybookBody bounds a dry-run's body: a playbook is at most 1 MiB.
const maxPlaybookBody = 1 << 20

// dryRun judges a posted playbook (YAML body) as the reconciler would if it
// were merged now: validation, the decision of the policies in force, the
// live plan and the stored approvals. Nothing is written or executed.
func (a *API) dryRun(w http.ResponseWriter, r *http.Request) {
	e := a.engine(w)
	if e == nil {
		return
	}
	path := r.URL.Query().Get("path")
	if path == "" {
		path = playbook.Dir + "/dry-run.yaml"
	}
	if !playbook.IsPlaybookPath(path) || len(path) > 1024 {
		a.fail(w, r, "dry-run", badRequest("path %q is not a playbook path (playbooks/**/*.yaml)", path))
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		a.fail(w, r, "dry-run", err)
		return
	}
	if len(data) == 0 {
		a.fail(w, r, "dry-run", badRequest("the body is empty: post the playbook's YAML"))
		return
	}
	ev, err := e.DryRun(r.Context(), path, data)
	if err != nil {
		a.fail(w, r, "dry-run", err)
		return
	}
	writeJSON(w, http.StatusOK, ev)
}
