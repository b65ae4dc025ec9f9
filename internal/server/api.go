package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// Engine is what the API needs of the reconciler.
type Engine interface {
	SubmitApproval(ctx context.Context, raw []byte, ch approval.Submitted) (*reconcile.Intake, error)
	Nudge()
	Status() reconcile.Status
	RunManual(ctx context.Context, id int64, actor audit.Actor) error
	Retry(ctx context.Context, id int64, actor audit.Actor) (*store.Execution, error)
	DryRun(ctx context.Context, path string, data []byte) (*reconcile.PlaybookEvaluation, error)
	AcknowledgeHold(ctx context.Context, id int64, actor audit.Actor) error
	Pending(ctx context.Context) ([]reconcile.Pending, error)
	PendingItem(ctx context.Context, id string) (*reconcile.PendingDetail, error)
}

// Checkpointer signs a checkpoint of the audit log on demand.
type Checkpointer interface {
	Checkpoint(ctx context.Context) (*audit.Checkpoint, error)
}

// ErrNotLeader is what a Checkpointer returns on a replica that does not
// lead (only the leader signs checkpoints): the route answers 503.
var ErrNotLeader = errors.New("this replica does not lead: the leader makes checkpoints (periodically, or on a request that reaches it)")

// APIOptions configures the API.
type APIOptions struct {
	// Store answers reads. Required.
	Store *store.Store
	// Engine is the reconciler; nil: its routes answer 503.
	Engine Engine
	// Auth logs in, and manages accounts and tokens; nil: those routes
	// answer 503.
	Auth *auth.Authenticator
	// OIDCLogin is how a client logs in with the SSO provider, advertised
	// at GET /api/v1/auth/methods; nil: no SSO login is advertised.
	OIDCLogin *OIDCLogin
	// TrustedKeys verify the audit log (POST /api/v1/audit/verify); nil:
	// that route answers 503.
	TrustedKeys *audit.KeySet
	// Audit records who exported and verified the audit log
	// (audit.export, audit.verify entries); nil: they are not recorded.
	Audit *audit.Log
	// Checkpointer makes checkpoints on demand; nil: that route answers
	// 503 (the leader makes them periodically).
	Checkpointer Checkpointer
	// Drift checks drift on demand and reads the latest report; nil: the
	// drift routes answer 503.
	Drift Drift
	// VerifyConcurrency bounds simultaneous audit verifications. Default 1.
	VerifyConcurrency int
	Logger            *slog.Logger
}

// API serves /api/v1.
type API struct {
	opts      APIOptions
	log       *slog.Logger
	verifying chan struct{}
	srv       *Server // set by Register: its guard audits refused logins
}

// NewAPI makes the API handlers for an engine and a store (no accounts:
// login and administration answer 503). NewAPIWith takes every option.
func NewAPI(engine Engine, st *store.Store, log *slog.Logger) *API {
	a, err := NewAPIWith(APIOptions{Engine: engine, Store: st, Logger: log})
	if err != nil {
		panic(err) // only a nil store fails, a programming error
	}
	return a
}

// NewAPIWith makes the API handlers.
func NewAPIWith(opts APIOptions) (*API, error) {
	if opts.Store == nil {
		return nil, errors.New("server: the API needs a store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.VerifyConcurrency <= 0 {
		opts.VerifyConcurrency = 1
	}
	return &API{opts: opts, log: slog.New(RequestIDHandler(opts.Logger.Handler())), verifying: make(chan struct{}, opts.VerifyConcurrency)}, nil
}

// Register mounts the API on a server.
func (a *API) Register(s *Server) {
	a.srv = s
	for _, rt := range a.routes() {
		s.Route(rt)
	}
}

// routes is the API's route table: every endpoint and who may call it.
func (a *API) routes() []Route {
	h := func(f http.HandlerFunc) http.Handler { return f }
	self := auth.RoleSet(0) // any authenticated caller
	return []Route{
		{Pattern: "GET /api/v1/openapi.json", Public: "none needed: the API's description", Handler: h(serveOpenAPI)},
		{Pattern: "GET /api/v1/auth/methods", Public: "none needed: says how to log in", Handler: h(a.loginMethods)},
		{Pattern: "POST /api/v1/auth/login", Public: "the password it checks (rate-limited per client, accounts lock)", RateLimited: true, MaxBody: 8 << 10, Handler: h(a.login)},
		{Pattern: "POST /api/v1/auth/logout", Roles: self, DuringPasswordChange: true, Handler: h(a.logout)},
		{Pattern: "GET /api/v1/auth/whoami", Roles: self, DuringPasswordChange: true, Handler: h(a.whoami)},
		{Pattern: "POST /api/v1/auth/password", Roles: self, DuringPasswordChange: true, RateLimited: true, MaxBody: 8 << 10, Handler: h(a.changePassword)},

		{Pattern: "GET /api/v1/status", Roles: ReadRoles, Handler: h(a.getStatus)},
		{Pattern: "POST /api/v1/reconcile", Roles: ExecuteRoles, Handler: h(a.postReconcile)},
		{Pattern: "GET /api/v1/playbooks", Roles: ReadRoles, Handler: h(a.listPlaybooks)},
		{Pattern: "GET /api/v1/playbooks/{name}", Roles: ReadRoles, Handler: h(a.getPlaybook)},
		{Pattern: "POST /api/v1/dry-run", Roles: DryRunRoles, MaxBody: maxPlaybookBody, Handler: h(a.dryRun)},
		{Pattern: "GET /api/v1/executions", Roles: ReadRoles, Handler: h(a.listExecutions)},
		{Pattern: "GET /api/v1/executions/{id}", Roles: ReadRoles, Handler: h(a.getExecution)},
		{Pattern: "POST /api/v1/executions/{id}/run", Roles: ExecuteRoles, Handler: h(a.runExecution)},
		{Pattern: "POST /api/v1/executions/{id}/retry", Roles: ExecuteRoles, Handler: h(a.retryExecution)},
		// The envelope's body is the intake's to check (internal/approval
		// parses it as strictly: one object, no unknown or repeated
		// members), so that every refusal is audited and counted against
		// the client's budget of refused envelopes.
		{Pattern: "POST /api/v1/approvals", Public: "the envelope's signature, verified against the approvers in force", MaxBody: -1, Handler: h(a.postApproval)},
		{Pattern: "GET /api/v1/approvals", Roles: ReadRoles, Handler: h(a.listApprovals)},
		{Pattern: "GET /api/v1/holds", Roles: ReadRoles, Handler: h(a.listHolds)},
		{Pattern: "GET /api/v1/pending", Roles: ReadRoles, Handler: h(a.listPending)},
		{Pattern: "GET /api/v1/pending/{id}", Roles: ReadRoles, Handler: h(a.getPending)},
		{Pattern: "POST /api/v1/holds/{id}/acknowledge", Roles: AdminRoles, Handler: h(a.acknowledgeHold)},
		{Pattern: "GET /api/v1/drift", Roles: ReadRoles, Handler: h(a.getDrift)},
		{Pattern: "POST /api/v1/drift/check", Roles: ExecuteRoles, Handler: h(a.checkDrift)},

		{Pattern: "GET /api/v1/audit/export", Roles: AdminRoles, Handler: h(a.auditExport)},
		{Pattern: "POST /api/v1/audit/verify", Roles: AdminRoles, MaxBody: 1 << 20, Handler: h(a.auditVerify)},
		{Pattern: "GET /api/v1/audit/checkpoints/latest", Roles: AdminRoles, Handler: h(a.latestCheckpoint)},
		{Pattern: "POST /api/v1/audit/checkpoints", Roles: AdminRoles, Handler: h(a.makeCheckpoint)},

		{Pattern: "GET /api/v1/users", Roles: AdminRoles, Handler: h(a.listUsers)},
		{Pattern: "POST /api/v1/users", Roles: AdminRoles, MaxBody: 64 << 10, Handler: h(a.createUser)},
		{Pattern: "GET /api/v1/users/{username}", Roles: AdminRoles, Handler: h(a.getUser)},
		{Pattern: "PATCH /api/v1/users/{username}", Roles: AdminRoles, MaxBody: 64 << 10, Handler: h(a.updateUser)},
		{Pattern: "POST /api/v1/users/{username}/password", Roles: AdminRoles, Handler: h(a.resetPassword)},
		{Pattern: "DELETE /api/v1/users/{username}/sessions", Roles: AdminRoles, Handler: h(a.revokeSessions)},
		{Pattern: "GET /api/v1/tokens", Roles: AdminRoles, Handler: h(a.listTokens)},
		{Pattern: "POST /api/v1/tokens", Roles: AdminRoles, MaxBody: 64 << 10, Handler: h(a.createToken)},
		{Pattern: "DELETE /api/v1/tokens/{id}", Roles: AdminRoles, Handler: h(a.revokeToken)},
	}
}

// Problem is the error body of every API error.
type Problem struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// Pointer is the JSON pointer (RFC 6901) of the body's member a 400
	// refuses.
	Pointer string `json:"pointer,omitempty"`
	// Parameter is the query or path parameter a 400 refuses.
	Parameter string `json:"parameter,omitempty"`
	// Changed is what a refused retry found changed (409 retry_changed):
	// content, policy or plan.
	Changed string `json:"changed,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, Problem{Error: fmt.Sprintf(format, args...), Code: code})
}

// fail answers an error: the domain errors with their status, anything
// else as 500 (logged, never shown).
func (a *API) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	var tooBig *http.MaxBytesError
	var changed *reconcile.RetryChangedError
	switch {
	case errors.As(err, &tooBig):
		writeProblem(w, http.StatusRequestEntityTooLarge, "too_large", "the request body is larger than %d bytes", tooBig.Limit)
	case errors.As(err, new(*contractError)):
		writeContractError(w, err)
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, http.StatusNotFound, "not_found", "%s: not found", what)
	case errors.Is(err, store.ErrConflict):
		writeProblem(w, http.StatusConflict, "conflict", "%s: it exists already", what)
	case errors.Is(err, auth.ErrInvalid):
		writeProblem(w, http.StatusUnprocessableEntity, "invalid", "%v", err)
	case errors.Is(err, auth.ErrLastAdmin):
		writeProblem(w, http.StatusConflict, "last_admin", "%v", err)
	case errors.Is(err, auth.ErrNotSession):
		writeProblem(w, http.StatusBadRequest, "not_a_session", "%v: log in with a password", err)
	case errors.Is(err, reconcile.ErrNotPending):
		writeProblem(w, http.StatusNotFound, "not_pending", "%v", err)
	case errors.Is(err, reconcile.ErrNeedsSignatures):
		writeProblem(w, http.StatusConflict, "needs_signatures", "%v", err)
	case errors.Is(err, reconcile.ErrNotRunnable):
		writeProblem(w, http.StatusConflict, "not_runnable", "%v", err)
	case errors.As(err, &changed):
		writeJSON(w, http.StatusConflict, Problem{Error: err.Error(), Code: "retry_changed", Changed: changed.What})
	case errors.Is(err, reconcile.ErrNotRetryable):
		writeProblem(w, http.StatusConflict, "not_retryable", "%v", err)
	case errors.Is(err, reconcile.ErrHeld):
		writeProblem(w, http.StatusConflict, "held", "%v", err)
	case errors.Is(err, reconcile.ErrRetryNoPlan):
		writeProblem(w, http.StatusConflict, "no_plan", "%v", err)
	case errors.Is(err, errBadRequest):
		writeProblem(w, http.StatusBadRequest, "bad_request", "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, http.StatusGatewayTimeout, "timeout", "%s took too long", what)
	default:
		a.log.ErrorContext(r.Context(), what, slog.Any("error", err))
		writeProblem(w, http.StatusInternalServerError, "internal", "%s failed", what)
	}
}

var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

func (a *API) engine(w http.ResponseWriter) Engine {
	if a.opts.Engine == nil {
		writeProblem(w, http.StatusServiceUnavailable, "no_engine", "no repository is configured: the reconciler is not running")
		return nil
	}
	return a.opts.Engine
}

func (a *API) accounts(w http.ResponseWriter) *auth.Authenticator {
	if a.opts.Auth == nil {
		writeProblem(w, http.StatusServiceUnavailable, "auth_unavailable", "accounts are not set up on this server")
		return nil
	}
	return a.opts.Auth
}

// actor is the caller as the audit log records it, under the role that
// granted the route.
func actor(r *http.Request, roles auth.RoleSet) audit.Actor {
	p := PrincipalFrom(r.Context())
	if p == nil {
		return audit.Actor{ID: "anonymous", Role: "none"}
	}
	return p.Actor(grantingRole(p, roles))
}

// pageParams reads limit (1..1000) and before (an id) query parameters.
func pageParams(r *http.Request) (limit int, before int64, err error) {
	q := r.URL.Query()
	if v := q.Get("before"); v != "" {
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil || n < 0 {
			return 0, 0, badRequest("before must be an id")
		}
		before = n
	}
	limit = 100
	if v := q.Get("limit"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > 1000 {
			return 0, 0, badRequest("limit must be 1 to 1000")
		}
		limit = n
	}
	return limit, before, nil
}

func pathID(r *http.Request, name string) (int64, error) {
	n, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || n < 1 {
		return 0, badRequest("%s %q is not an id", name, r.PathValue(name))
	}
	return n, nil
}

func (a *API) getStatus(w http.ResponseWriter, r *http.Request) {
	if e := a.engine(w); e != nil {
		writeJSON(w, http.StatusOK, e.Status())
	}
}

func (a *API) postReconcile(w http.ResponseWriter, r *http.Request) {
	if e := a.engine(w); e != nil {
		e.Nudge()
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "reconcile requested"})
	}
}

// nextLink is the URL of the page after lastID, keeping the filters.
func nextLink(base string, r *http.Request, lastID int64, limit int) string {
	q := r.URL.Query()
	q.Set("before", strconv.FormatInt(lastID, 10))
	q.Set("limit", strconv.Itoa(limit))
	return base + "?" + q.Encode()
}

func parsePositive(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a positive number", s)
	}
	return n, nil
}

// rawJSON shows stored JSON as is (nil when empty).
func rawJSON(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}
