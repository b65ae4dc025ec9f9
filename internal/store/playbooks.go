package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Playbook statuses.
const (
	StatusProposed         = "proposed"
	StatusPlanned          = "planned"
	StatusAwaitingApproval = "awaiting_approval"
	StatusApproved         = "approved"
	StatusDenied           = "denied"
	StatusRejected         = "rejected"
	StatusExecuting        = "executing"
	StatusCompleted        = "completed"
	StatusFailed           = "failed"
	StatusReverted         = "reverted"
	StatusExpired          = "expired"
)

// PlaybookVersion is one content version (name, digest) of a playbook.
type PlaybookVersion struct {
	ID      int64
	Name    string
	Path    string
	Digest  string
	Content []byte
	// TargetsPath is the targets file the playbook names (spec.targetsFile)
	// and TargetsFile its bytes as read at its commit; "" and nil when it
	// has none.
	TargetsPath  string
	TargetsFile  []byte
	Action       string
	Environment  string
	Severity     string
	CommitSHA    string
	Status       string
	StatusReason string
	Decision     json.RawMessage
	PolicyDigest string
	PlanDigest   string
	ExpiresAt    *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	ArchivedAt   *time.Time
}

// StatusChange is one entry of a playbook version's status history.
type StatusChange struct {
	From      string
	To        string
	Reason    string
	CommitSHA string
	At        time.Time
}

const playbookColumns = `id, name, path, digest, content, coalesce(targets_path, ''), targets_file, action, environment, severity,
	coalesce(commit_sha, ''), status, status_reason, decision, coalesce(policy_digest, ''),
	coalesce(plan_digest, ''), expires_at, created_at, updated_at, archived_at`

func scanPlaybook(row pgx.Row) (*PlaybookVersion, error) {
	var v PlaybookVersion
	var decision []byte
	err := row.Scan(&v.ID, &v.Name, &v.Path, &v.Digest, &v.Content, &v.TargetsPath, &v.TargetsFile, &v.Action, &v.Environment, &v.Severity,
		&v.CommitSHA, &v.Status, &v.StatusReason, &decision, &v.PolicyDigest,
		&v.PlanDigest, &v.ExpiresAt, &v.CreatedAt, &v.UpdatedAt, &v.ArchivedAt)
	if err != nil {
		return nil, translate(err)
	}
	if decision != nil {
		v.Decision = decision
	}
	return &v, nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// EnsurePlaybookVersion records a playbook version when it is new and
// returns the stored row either way; created reports which. A new version
// starts as proposed, with that first status in its history.
func (s *Store) EnsurePlaybookVersion(ctx context.Context, v PlaybookVersion) (_ *PlaybookVersion, created bool, err error) {
	err = s.Tx(ctx, func(tx *Store) error {
		row := tx.db.QueryRow(ctx, `
			INSERT INTO playbook_versions (name, path, digest, content, targets_path, targets_file, action, environment, severity, commit_sha)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (name, digest) DO NOTHING
			RETURNING `+playbookColumns,
			v.Name, v.Path, v.Digest, v.Content, nullIfEmpty(v.TargetsPath), v.TargetsFile, v.Action, v.Environment, v.Severity, nullIfEmpty(v.CommitSHA))
		got, err := scanPlaybook(row)
		if err == nil {
			created = true
			if _, err := tx.db.Exec(ctx, `
				INSERT INTO playbook_status_history (version_id, from_status, to_status, reason, commit_sha)
				VALUES ($1, NULL, $2, 'first seen', $3)`, got.ID, got.Status, nullIfEmpty(v.CommitSHA)); err != nil {
				return fmt.Errorf("store: record status of %s: %w", v.Name, translate(err))
			}
			v = *got
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("store: insert playbook %s: %w", v.Name, err)
		}
		got, err = scanPlaybook(tx.db.QueryRow(ctx, `SELECT `+playbookColumns+` FROM playbook_versions WHERE name = $1 AND digest = $2`, v.Name, v.Digest))
		if err != nil {
			return fmt.Errorf("store: load playbook %s: %w", v.Name, err)
		}
		v = *got
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return &v, created, nil
}

// SetPlaybookStatus moves a version to a status and appends the change to
// its history, in one transaction. A move to the status it already has with
// the same reason is a no-op.
func (s *Store) SetPlaybookStatus(ctx context.Context, id int64, status, reason, commitSHA string) error {
	return s.Tx(ctx, func(tx *Store) error {
		var from, oldReason string
		err := tx.db.QueryRow(ctx, `SELECT status, status_reason FROM playbook_versions WHERE id = $1 FOR UPDATE`, id).Scan(&from, &oldReason)
		if err != nil {
			return fmt.Errorf("store: playbook version %d: %w", id, translate(err))
		}
		if from == status && oldReason == reason {
			return nil
		}
		if _, err := tx.db.Exec(ctx, `UPDATE playbook_versions SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1`,
			id, status, reason); err != nil {
			return fmt.Errorf("store: set status of playbook version %d: %w", id, translate(err))
		}
		if _, err := tx.db.Exec(ctx, `
			INSERT INTO playbook_status_history (version_id, from_status, to_status, reason, commit_sha)
			VALUES ($1, $2, $3, $4, $5)`, id, from, status, reason, nullIfEmpty(commitSHA)); err != nil {
			return fmt.Errorf("store: record status of playbook version %d: %w", id, translate(err))
		}
		return nil
	})
}

// SetPlaybookDecision records the policy decision and the digests an
// approval must cite.
func (s *Store) SetPlaybookDecision(ctx context.Context, id int64, decision json.RawMessage, policyDigest, planDigest string) error {
	tag, err := s.db.Exec(ctx, `
		UPDATE playbook_versions SET decision = $2, policy_digest = $3, plan_digest = $4, updated_at = now()
		WHERE id = $1`, id, []byte(decision), nullIfEmpty(policyDigest), nullIfEmpty(planDigest))
	if err != nil {
		return fmt.Errorf("store: set decision of playbook version %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: playbook version %d: %w", id, ErrNotFound)
	}
	return nil
}

// PlaybookVersionByID loads one version.
func (s *Store) PlaybookVersionByID(ctx context.Context, id int64) (*PlaybookVersion, error) {
	v, err := scanPlaybook(s.db.QueryRow(ctx, `SELECT `+playbookColumns+` FROM playbook_versions WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("store: playbook version %d: %w", id, err)
	}
	return v, nil
}

// PlaybookVersionsByID loads versions by id in one query.
func (s *Store) PlaybookVersionsByID(ctx context.Context, ids []int64) (map[int64]*PlaybookVersion, error) {
	out := make(map[int64]*PlaybookVersion, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.db.Query(ctx, `SELECT `+playbookColumns+` FROM playbook_versions WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: %d playbook versions: %w", len(ids), translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scanPlaybook(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %d playbook versions: %w", len(ids), err)
		}
		out[v.ID] = v
	}
	return out, translate(rows.Err())
}

// PlaybookVersion loads the version of name with digest.
func (s *Store) PlaybookVersion(ctx context.Context, name, digest string) (*PlaybookVersion, error) {
	v, err := scanPlaybook(s.db.QueryRow(ctx, `SELECT `+playbookColumns+` FROM playbook_versions WHERE name = $1 AND digest = $2`, name, digest))
	if err != nil {
		return nil, fmt.Errorf("store: playbook %s@%.12s: %w", name, digest, err)
	}
	return v, nil
}

// LatestPlaybookVersion loads the newest version of name.
func (s *Store) LatestPlaybookVersion(ctx context.Context, name string) (*PlaybookVersion, error) {
	v, err := scanPlaybook(s.db.QueryRow(ctx, `SELECT `+playbookColumns+` FROM playbook_versions WHERE name = $1 ORDER BY created_at DESC, id DESC LIMIT 1`, name))
	if err != nil {
		return nil, fmt.Errorf("store: playbook %s: %w", name, err)
	}
	return v, nil
}

// PlaybookFilter narrows ListPlaybooks.
type PlaybookFilter struct {
	Status   string // empty: any
	AfterID  int64  // keyset pagination: only ids below this (newest first); 0: from the start
	Limit    int    // default 100, at most 1000
	Archived bool   // include archived versions
}

// ListPlaybooks lists versions, newest first.
func (s *Store) ListPlaybooks(ctx context.Context, f PlaybookFilter) ([]*PlaybookVersion, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	rows, err := s.db.Query(ctx, `SELECT `+playbookColumns+` FROM playbook_versions
		WHERE ($1 = '' OR status = $1) AND ($2::bigint = 0 OR id < $2::bigint) AND ($3 OR archived_at IS NULL)
		ORDER BY id DESC LIMIT $4`, f.Status, f.AfterID, f.Archived, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("store: list playbooks: %w", translate(err))
	}
	defer rows.Close()
	var out []*PlaybookVersion
	for rows.Next() {
		v, err := scanPlaybook(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list playbooks: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list playbooks: %w", translate(err))
	}
	return out, nil
}

// PlaybookHistory returns a version's status changes, oldest first.
func (s *Store) PlaybookHistory(ctx context.Context, id int64) ([]StatusChange, error) {
	rows, err := s.db.Query(ctx, `SELECT coalesce(from_status, ''), to_status, reason, coalesce(commit_sha, ''), at
		FROM playbook_status_history WHERE version_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("store: history of playbook version %d: %w", id, translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StatusChange, error) {
		var c StatusChange
		err := r.Scan(&c.From, &c.To, &c.Reason, &c.CommitSHA, &c.At)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: history of playbook version %d: %w", id, translate(err))
	}
	return out, nil
}

// PlaybookVersionsByName lists every version of a playbook, newest first.
func (s *Store) PlaybookVersionsByName(ctx context.Context, name string) ([]*PlaybookVersion, error) {
	rows, err := s.db.Query(ctx, `SELECT `+playbookColumns+` FROM playbook_versions WHERE name = $1 ORDER BY id DESC LIMIT 1000`, name)
	if err != nil {
		return nil, fmt.Errorf("store: versions of %s: %w", name, translate(err))
	}
	defer rows.Close()
	var out []*PlaybookVersion
	for rows.Next() {
		v, err := scanPlaybook(rows)
		if err != nil {
			return nil, fmt.Errorf("store: versions of %s: %w", name, err)
		}
		out = append(out, v)
	}
	return out, translate(rows.Err())
}
