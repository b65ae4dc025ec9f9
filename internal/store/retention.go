package store

import (
	"context"
	"fmt"
	"time"
)

// DeleteExpiredSessions removes sessions that expired or were revoked
// before the cutoff. Sessions are credentials, not records: the audit log
// keeps the logins.
func (s *Store) DeleteExpiredSessions(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", translate(err))
	}
	return tag.RowsAffected(), nil
}

// ExpireUndecidedApprovals withdraws approval envelopes received before the
// cutoff that no operation waiting for approvals can use any more and that
// never led to one: they are kept (the audit log and the row record them)
// but no longer considered.
func (s *Store) ExpireUndecidedApprovals(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := s.db.Exec(ctx, `
		UPDATE approvals a SET withdrawn_at = now()
		WHERE a.withdrawn_at IS NULL AND a.received_at < $1
		AND NOT EXISTS (
			SELECT 1 FROM approval_subjects sub JOIN executions e ON e.digest = sub.digest
			WHERE sub.approval_id = a.id AND e.state IN ('waiting', 'pending', 'executing', 'completed'))`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("store: expire undecided approvals: %w", translate(err))
	}
	return tag.RowsAffected(), nil
}

// ArchivePlaybookVersions archives versions that are no longer in force and
// whose last change is older than the cutoff. Archived versions stay in the
// database; lists leave them out.
func (s *Store) ArchivePlaybookVersions(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := s.db.Exec(ctx, `
		UPDATE playbook_versions v SET archived_at = now()
		WHERE v.archived_at IS NULL AND v.updated_at < $1
		AND v.status IN ('denied', 'rejected', 'failed', 'reverted', 'expired', 'completed', 'proposed', 'planned', 'awaiting_approval')
		AND NOT EXISTS (SELECT 1 FROM active_playbooks a WHERE a.version_id = v.id)
		AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.version_id = v.id AND e.state IN ('waiting', 'pending', 'executing'))`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("store: archive playbook versions: %w", translate(err))
	}
	return tag.RowsAffected(), nil
}
