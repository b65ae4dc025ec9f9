package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Drift: what live state should hold (DriftDesired), what the last check
// found per environment, action and backend (drift_groups, drift_reports),
// and the incidents heals answer (drift_incidents). The comparison itself
// is internal/reconcile/drift.go.

// DesiredTarget is one target writ has put in force and not released.
type DesiredTarget struct {
	VersionID   int64
	Name        string
	Digest      string
	Path        string
	Action      string
	Environment string
	Target      string
	// Held: a playbook in force holds it (active on the branch, its apply
	// completed or, partly applied, this target applied, not expired, and
	// its revert not completed: an update's revert leaves its version
	// completed, and a version whose revert ran holds nothing even when its
	// bytes are back on the branch):
	// missing live, it is drift a heal may re-apply. Not held: its release
	// is under way (a deleted playbook's revert waits for approval, say);
	// live, it is expected, never unexpected; missing, it is not drift.
	Held bool
}

// DriftDesired lists every target the playbooks writ applied still hold
// or have not released yet, by version.
func (s *Store) DriftDesired(ctx context.Context) ([]DesiredTarget, error) {
	rows, err := s.db.Query(ctx, `
		WITH applied AS (
			SELECT v.id, v.name, v.digest, v.path, v.action, v.environment, v.status, unnest(e.targets) AS target
			FROM executions e JOIN playbook_versions v ON v.id = e.version_id
			WHERE e.operation = 'apply' AND e.state = 'completed'
			UNION
			SELECT v.id, v.name, v.digest, v.path, v.action, v.environment, v.status, t.target
			FROM executions e JOIN playbook_versions v ON v.id = e.version_id
			JOIN execution_targets t ON t.execution_id = e.id AND t.result IN ('changed', 'unchanged')
			WHERE e.operation = 'apply' AND e.state IN ('failed', 'waiting', 'pending', 'executing')
		)
		SELECT a.id, a.name, a.digest, a.path, a.action, a.environment, a.target,
			EXISTS (SELECT 1 FROM active_playbooks ap WHERE ap.version_id = a.id) AND a.status NOT IN ('expired', 'reverted')
				AND NOT EXISTS (SELECT 1 FROM executions rc WHERE rc.version_id = a.id AND rc.operation = 'revert' AND rc.state = 'completed') AS held
		FROM applied a
		WHERE NOT EXISTS (
			SELECT 1 FROM executions r
			WHERE r.version_id = a.id AND r.operation = 'revert' AND r.state = 'completed' AND a.target = ANY (r.targets))
		ORDER BY a.action, a.environment, a.id`)
	if err != nil {
		return nil, fmt.Errorf("store: drift desired: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DesiredTarget, error) {
		var d DesiredTarget
		err := row.Scan(&d.VersionID, &d.Name, &d.Digest, &d.Path, &d.Action, &d.Environment, &d.Target, &d.Held)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: drift desired: %w", translate(err))
	}
	return out, nil
}

// DriftGroup is what the last check found for one environment, action and
// backend.
type DriftGroup struct {
	Environment string
	Action      string
	Backend     string
	Mode        string
	// Fingerprint identifies the findings: a change of it is new drift.
	Fingerprint string
	Findings    json.RawMessage
	Error       string
	// Since is when the drift it records was first found (nil: none).
	Since     *time.Time
	CheckedAt time.Time
}

// DriftGroups lists the groups of the last checks.
func (s *Store) DriftGroups(ctx context.Context) ([]DriftGroup, error) {
	rows, err := s.db.Query(ctx, `SELECT environment, action, backend, mode, fingerprint, findings, error, since, checked_at
		FROM drift_groups ORDER BY environment, action, backend`)
	if err != nil {
		return nil, fmt.Errorf("store: drift groups: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DriftGroup, error) {
		var g DriftGroup
		var f []byte
		err := row.Scan(&g.Environment, &g.Action, &g.Backend, &g.Mode, &g.Fingerprint, &f, &g.Error, &g.Since, &g.CheckedAt)
		g.Findings = f
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: drift groups: %w", translate(err))
	}
	return out, nil
}

// SaveDriftGroup records what a check found for a group.
func (s *Store) SaveDriftGroup(ctx context.Context, g DriftGroup) error {
	if len(g.Findings) == 0 {
		g.Findings = json.RawMessage("[]")
	}
	_, err := s.db.Exec(ctx, `
		INSERT INTO drift_groups (environment, action, backend, mode, fingerprint, findings, error, since, checked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (environment, action, backend) DO UPDATE SET mode = excluded.mode, fingerprint = excluded.fingerprint,
			findings = excluded.findings, error = excluded.error, since = excluded.since, checked_at = excluded.checked_at`,
		g.Environment, g.Action, g.Backend, g.Mode, g.Fingerprint, []byte(g.Findings), g.Error, g.Since, g.CheckedAt)
	if err != nil {
		return fmt.Errorf("store: save drift group %s/%s/%s: %w", g.Environment, g.Action, g.Backend, translate(err))
	}
	return nil
}

// DeleteDriftGroup forgets a group no longer checked (its backend or last
// playbook is gone).
func (s *Store) DeleteDriftGroup(ctx context.Context, environment, action, backend string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM drift_groups WHERE environment = $1 AND action = $2 AND backend = $3`,
		environment, action, backend); err != nil {
		return fmt.Errorf("store: delete drift group: %w", translate(err))
	}
	return nil
}

// SaveDriftReport keeps a check's report; only the latest few are kept.
func (s *Store) SaveDriftReport(ctx context.Context, at time.Time, report json.RawMessage) error {
	if _, err := s.db.Exec(ctx, `INSERT INTO drift_reports (checked_at, report) VALUES ($1, $2)`, at, []byte(report)); err != nil {
		return fmt.Errorf("store: save drift report: %w", translate(err))
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM drift_reports WHERE id <= (SELECT max(id) - 10 FROM drift_reports)`); err != nil {
		return fmt.Errorf("store: trim drift reports: %w", translate(err))
	}
	return nil
}

// LatestDriftReport is the last check's report (ErrNotFound before the
// first).
func (s *Store) LatestDriftReport(ctx context.Context) (json.RawMessage, error) {
	var b []byte
	err := s.db.QueryRow(ctx, `SELECT report FROM drift_reports ORDER BY id DESC LIMIT 1`).Scan(&b)
	if err != nil {
		return nil, fmt.Errorf("store: latest drift report: %w", translate(err))
	}
	return b, nil
}

// DriftIncident is the missing targets of one playbook version, from the
// check that found them until one finds them contained again.
type DriftIncident struct {
	ID          int64
	VersionID   int64
	Name        string
	Digest      string
	Action      string
	Environment string
	Backend     string
	Targets     []string
	Fingerprint string
	OpenedAt    time.Time
	ResolvedAt  *time.Time
}

const incidentColumns = `id, version_id, name, digest, action, environment, backend, targets, fingerprint, opened_at, resolved_at`

func scanIncident(row pgx.Row) (*DriftIncident, error) {
	var d DriftIncident
	err := row.Scan(&d.ID, &d.VersionID, &d.Name, &d.Digest, &d.Action, &d.Environment, &d.Backend, &d.Targets, &d.Fingerprint, &d.OpenedAt, &d.ResolvedAt)
	if err != nil {
		return nil, translate(err)
	}
	return &d, nil
}

// OpenIncidents lists the incidents not resolved, by version.
func (s *Store) OpenIncidents(ctx context.Context) (map[int64]*DriftIncident, error) {
	rows, err := s.db.Query(ctx, `SELECT `+incidentColumns+` FROM drift_incidents WHERE resolved_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("store: open incidents: %w", translate(err))
	}
	defer rows.Close()
	out := map[int64]*DriftIncident{}
	for rows.Next() {
		d, err := scanIncident(rows)
		if err != nil {
			return nil, fmt.Errorf("store: open incidents: %w", err)
		}
		out[d.VersionID] = d
	}
	return out, translate(rows.Err())
}

// IncidentByID loads one incident, open or resolved (ErrNotFound: none).
func (s *Store) IncidentByID(ctx context.Context, id int64) (*DriftIncident, error) {
	d, err := scanIncident(s.db.QueryRow(ctx, `SELECT `+incidentColumns+` FROM drift_incidents WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("store: drift incident %d: %w", id, err)
	}
	return d, nil
}

// OpenIncident records a new incident (a version has at most one open).
func (s *Store) OpenIncident(ctx context.Context, d DriftIncident) (*DriftIncident, error) {
	got, err := scanIncident(s.db.QueryRow(ctx, `
		INSERT INTO drift_incidents (version_id, name, digest, action, environment, backend, targets, fingerprint, opened_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+incidentColumns,
		d.VersionID, d.Name, d.Digest, d.Action, d.Environment, d.Backend, d.Targets, d.Fingerprint, d.OpenedAt))
	if err != nil {
		return nil, fmt.Errorf("store: open incident for %s: %w", d.Name, err)
	}
	return got, nil
}

// ResolveIncident closes an incident.
func (s *Store) ResolveIncident(ctx context.Context, id int64, at time.Time) error {
	if _, err := s.db.Exec(ctx, `UPDATE drift_incidents SET resolved_at = $2 WHERE id = $1 AND resolved_at IS NULL`, id, at); err != nil {
		return fmt.Errorf("store: resolve incident %d: %w", id, translate(err))
	}
	return nil
}

// HealExecution is the heal of an incident (ErrNotFound: none yet).
func (s *Store) HealExecution(ctx context.Context, name, digest string, incident int64) (*Execution, error) {
	return s.executionByKey(ctx, name, digest, "heal", incident)
}
