package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/writ-sec/writ/internal/reconcile"
)

// Drift is what the drift routes need: the leader checks (CheckDrift
// answers ErrNotLeader on a replica that does not lead), every replica
// reads the latest report from the database.
type Drift interface {
	CheckDrift(ctx context.Context) (*reconcile.DriftReport, error)
	LatestDrift(ctx context.Context) (*reconcile.DriftReport, error)
}

// getDrift is the latest drift check's report.
func (a *API) getDrift(w http.ResponseWriter, r *http.Request) {
	if a.opts.Drift == nil {
		writeProblem(w, http.StatusServiceUnavailable, "no_engine", "no repository is configured: drift detection is not running")
		return
	}
	rep, err := a.opts.Drift.LatestDrift(r.Context())
	if errors.Is(err, reconcile.ErrNoDriftReport) {
		writeProblem(w, http.StatusNotFound, "no_drift_report", "%v: ask for one with POST /api/v1/drift/check", err)
		return
	}
	if err != nil {
		a.fail(w, r, "drift report", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// checkDrift checks drift now, on the leader, and answers its report.
// Heals it records are judged like any operation; it applies nothing
// itself.
func (a *API) checkDrift(w http.ResponseWriter, r *http.Request) {
	if a.opts.Drift == nil {
		writeProblem(w, http.StatusServiceUnavailable, "no_engine", "no repository is configured: drift detection is not running")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	rep, err := a.opts.Drift.CheckDrift(ctx)
	if errors.Is(err, ErrNotLeader) {
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusServiceUnavailable, "not_leader", "%v", err)
		return
	}
	if err != nil {
		a.fail(w, r, "drift check", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
