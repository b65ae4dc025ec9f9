package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The playbooks present on the branch (active_playbooks), the targets
// they hold, and their expiries.

// ActivePlaybook is a playbook present on the branch.
type ActivePlaybook struct {
	Path        string
	Name        string
	VersionID   int64
	SinceCommit string
}

// ActivePlaybooks lists the playbooks in force, by path.
func (s *Store) ActivePlaybooks(ctx context.Context) ([]ActivePlaybook, error) {
	rows, err := s.db.Query(ctx, `SELECT path, name, version_id, since_commit FROM active_playbooks ORDER BY path`)
	if err != nil {
		return nil, fmt.Errorf("store: active playbooks: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ActivePlaybook, error) {
		var a ActivePlaybook
		err := r.Scan(&a.Path, &a.Name, &a.VersionID, &a.SinceCommit)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: active playbooks: %w", translate(err))
	}
	return out, nil
}

// ActiveByPath finds the playbook in force at a path.
func (s *Store) ActiveByPath(ctx context.Context, path string) (*ActivePlaybook, error) {
	var a ActivePlaybook
	err := s.db.QueryRow(ctx, `SELECT path, name, version_id, since_commit FROM active_playbooks WHERE path = $1`, path).
		Scan(&a.Path, &a.Name, &a.VersionID, &a.SinceCommit)
	if err != nil {
		return nil, fmt.Errorf("store: active playbook at %s: %w", path, translate(err))
	}
	return &a, nil
}

// ActiveNamingTargetsFiles lists the paths of the playbooks in force whose
// version takes its targets from one of these files (spec.targetsFile), by
// path: a commit that changes such a file changes those playbooks.
func (s *Store) ActiveNamingTargetsFiles(ctx context.Context, files []string) ([]string, error) {
	if len(files) == 0 {
		return nil, nil
	}
	rows, err := s.db.Query(ctx, `SELECT a.path FROM active_playbooks a JOIN playbook_versions v ON v.id = a.version_id
		WHERE v.targets_path = ANY($1) ORDER BY a.path`, files)
	if err != nil {
		return nil, fmt.Errorf("store: playbooks naming %d targets files: %w", len(files), translate(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: playbooks naming %d targets files: %w", len(files), translate(err))
	}
	return out, nil
}

// ActiveByName finds the playbook in force with a name.
func (s *Store) ActiveByName(ctx context.Context, name string) (*ActivePlaybook, error) {
	var a ActivePlaybook
	err := s.db.QueryRow(ctx, `SELECT path, name, version_id, since_commit FROM active_playbooks WHERE name = $1`, name).
		Scan(&a.Path, &a.Name, &a.VersionID, &a.SinceCommit)
	if err != nil {
		return nil, fmt.Errorf("store: active playbook %s: %w", name, translate(err))
	}
	return &a, nil
}

// SetActive records the playbook in force at a path.
func (s *Store) SetActive(ctx context.Context, a ActivePlaybook) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO active_playbooks (path, name, version_id, since_commit) VALUES ($1, $2, $3, $4)
		ON CONFLICT (path) DO UPDATE SET name = $2, version_id = $3, since_commit = $4, updated_at = now()`,
		a.Path, a.Name, a.VersionID, a.SinceCommit)
	if err != nil {
		return fmt.Errorf("store: set active playbook %s: %w", a.Path, translate(err))
	}
	return nil
}

// RemoveActive forgets the playbook at a path.
func (s *Store) RemoveActive(ctx context.Context, path string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM active_playbooks WHERE path = $1`, path); err != nil {
		return fmt.Errorf("store: remove active playbook %s: %w", path, translate(err))
	}
	return nil
}

// HeldTargets is the union of the targets other playbooks in force hold
// for an action in an environment: versions still active on the branch
// whose apply completed and that were not reverted or expired since, and
// the targets a partly applied version still on the branch did apply (its
// apply failed for others, or is being tried again). Reverting one
// playbook must not release what another still wants. A version whose
// revert completed (versionOver) holds nothing, whatever its status says
// (an update's revert leaves it completed) and even when its very bytes
// are back on the branch: it never acts again (trust rule 4), so nothing
// of it would ever be released if it were counted as holding.
func (s *Store) HeldTargets(ctx context.Context, action, environment string, exceptVersion int64) (map[string]bool, error) {
	rows, err := s.db.Query(ctx, `
		SELECT unnest(e.targets)
		FROM active_playbooks a
		JOIN playbook_versions v ON v.id = a.version_id
		JOIN executions e ON e.version_id = v.id AND e.operation = 'apply' AND e.state = 'completed'
		WHERE v.action = $1 AND v.environment = $2 AND v.id <> $3 AND v.status = 'completed' AND NOT `+revertCompleted+`
		UNION
		SELECT t.target
		FROM active_playbooks a
		JOIN playbook_versions v ON v.id = a.version_id
		JOIN executions e ON e.version_id = v.id AND e.operation = 'apply' AND e.state IN ('failed', 'waiting', 'pending', 'executing')
		JOIN execution_targets t ON t.execution_id = e.id AND t.result IN ('changed', 'unchanged')
		WHERE v.action = $1 AND v.environment = $2 AND v.id <> $3 AND NOT `+revertCompleted+``,
		action, environment, exceptVersion)
	if err != nil {
		return nil, fmt.Errorf("store: held targets: %w", translate(err))
	}
	targets, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: held targets: %w", translate(err))
	}
	out := make(map[string]bool, len(targets))
	for _, t := range targets {
		out[t] = true
	}
	return out, nil
}

// SetPlaybookExpiry sets when a version is reverted automatically.
func (s *Store) SetPlaybookExpiry(ctx context.Context, id int64, at *time.Time) error {
	if _, err := s.db.Exec(ctx, `UPDATE playbook_versions SET expires_at = $2, updated_at = now() WHERE id = $1`, id, at); err != nil {
		return fmt.Errorf("store: expiry of playbook version %d: %w", id, translate(err))
	}
	return nil
}

// revertCompleted is the condition on a version v whose revert
// completed: it is over, and holds nothing.
const revertCompleted = `EXISTS (SELECT 1 FROM executions rc
		WHERE rc.name = v.name AND rc.digest = v.digest AND rc.operation = 'revert' AND rc.state = 'completed')`

// expiryPending is the condition on a version v whose expiry is still to
// come or due: completed, or failed after applying some targets (only
// those have an expiry), not archived, and not reverted yet nor being (a
// revert cancelled before it ran, its version back on the branch, does
// not count: the expiry takes it up again).
const expiryPending = `v.status IN ('completed', 'failed') AND v.expires_at IS NOT NULL AND v.archived_at IS NULL
		AND NOT EXISTS (SELECT 1 FROM executions r WHERE r.name = v.name AND r.digest = v.digest AND r.operation = 'revert'
			AND NOT (` + revertNeverRan + `))`

// DueExpiries lists versions whose expiry has come and that have no revert
// yet: completed ones, and failed ones whose apply acted on some targets
// (only those have an expiry; a version whose failed apply is being
// retried is neither until the retry ends).
func (s *Store) DueExpiries(ctx context.Context, now time.Time) ([]*PlaybookVersion, error) {
	rows, err := s.db.Query(ctx, `SELECT `+playbookColumns+` FROM playbook_versions v
		WHERE `+expiryPending+` AND v.expires_at <= $1
		ORDER BY v.expires_at`, now)
	if err != nil {
		return nil, fmt.Errorf("store: due expiries: %w", translate(err))
	}
	defer rows.Close()
	var out []*PlaybookVersion
	for rows.Next() {
		v, err := scanPlaybook(rows)
		if err != nil {
			return nil, fmt.Errorf("store: due expiries: %w", err)
		}
		out = append(out, v)
	}
	return out, translate(rows.Err())
}

// NextExpiry is the earliest pending expiry, or nil: of the versions
// DueExpiries would list once it comes (one whose revert exists, waiting
// for approval say, is not pending any more, or the reconciler would wake
// for it at once, again and again).
func (s *Store) NextExpiry(ctx context.Context) (*time.Time, error) {
	var t *time.Time
	err := s.db.QueryRow(ctx, `SELECT min(v.expires_at) FROM playbook_versions v WHERE `+expiryPending).Scan(&t)
	if err != nil {
		return nil, fmt.Errorf("store: next expiry: %w", translate(err))
	}
	return t, nil
}
