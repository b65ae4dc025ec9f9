package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Hold is a reason the reconciler does not move.
type Hold struct {
	ID        int64
	Kind      string // history_rewritten | meta_change | audit_rollback
	CommitSHA string
	// MetaKey identifies the content of policies/ and .writ/ a meta_change
	// hold is about (whatever commit carries it).
	MetaKey    string
	Detail     json.RawMessage
	CreatedAt  time.Time
	ResolvedAt *time.Time
	ResolvedBy string
	ResolvedAs HoldOutcome
	Resolution string
}

// HoldOutcome is how a hold ended.
type HoldOutcome string

// Hold outcomes.
const (
	// HoldAcknowledged: an admin moved writ past rewritten history.
	HoldAcknowledged HoldOutcome = "acknowledged"
	// HoldDismissed: an admin refused a change to policies/ or .writ/; it
	// is not adopted, and not held again.
	HoldDismissed HoldOutcome = "dismissed"
	// HoldAdopted: the change was adopted with its signed quorum.
	HoldAdopted HoldOutcome = "adopted"
	// HoldReleased: the branch went back to what is in force.
	HoldReleased HoldOutcome = "released"
)

// Hold kinds.
const (
	HoldHistoryRewritten = "history_rewritten"
	HoldMetaChange       = "meta_change"
	// HoldAuditRollback: the audit log no longer contains a checkpoint the
	// server knows of (rolled back, truncated or forked).
	HoldAuditRollback = "audit_rollback"
)

// OpenHold records a hold; an open hold of the same kind at the same commit
// is returned instead of a second one. metaKey names the content a
// meta_change hold is about ("" for other kinds).
func (s *Store) OpenHold(ctx context.Context, kind, commit, metaKey string, detail any) (*Hold, bool, error) {
	b, err := json.Marshal(detail)
	if err != nil {
		return nil, false, fmt.Errorf("store: hold detail: %w", err)
	}
	h, err := scanHold(s.db.QueryRow(ctx, `
		INSERT INTO holds (kind, commit_sha, meta_key, detail) VALUES ($1, $2, $3, $4)
		ON CONFLICT (kind, commit_sha) WHERE resolved_at IS NULL DO NOTHING
		RETURNING `+holdColumns, kind, commit, metaKey, b))
	if err == nil {
		return h, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("store: open hold: %w", err)
	}
	h, err = scanHold(s.db.QueryRow(ctx, `SELECT `+holdColumns+` FROM holds WHERE kind = $1 AND commit_sha = $2 AND resolved_at IS NULL`, kind, commit))
	if err != nil {
		return nil, false, fmt.Errorf("store: open hold: %w", err)
	}
	return h, false, nil
}

const holdColumns = `id, kind, commit_sha, meta_key, detail, created_at, resolved_at, resolved_by, resolved_as, resolution`

func scanHold(row pgx.Row) (*Hold, error) {
	var h Hold
	var detail []byte
	if err := row.Scan(&h.ID, &h.Kind, &h.CommitSHA, &h.MetaKey, &detail, &h.CreatedAt, &h.ResolvedAt, &h.ResolvedBy, &h.ResolvedAs, &h.Resolution); err != nil {
		return nil, translate(err)
	}
	h.Detail = detail
	return &h, nil
}

// OpenHolds lists unresolved holds, oldest first.
func (s *Store) OpenHolds(ctx context.Context) ([]*Hold, error) {
	rows, err := s.db.Query(ctx, `SELECT `+holdColumns+` FROM holds WHERE resolved_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: open holds: %w", translate(err))
	}
	defer rows.Close()
	var out []*Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, fmt.Errorf("store: open holds: %w", err)
		}
		out = append(out, h)
	}
	return out, translate(rows.Err())
}

// HoldByID loads one hold.
func (s *Store) HoldByID(ctx context.Context, id int64) (*Hold, error) {
	h, err := scanHold(s.db.QueryRow(ctx, `SELECT `+holdColumns+` FROM holds WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("store: hold %d: %w", id, err)
	}
	return h, nil
}

// ResolveHold closes a hold with its outcome and a text; ErrNotFound when
// it is not open.
func (s *Store) ResolveHold(ctx context.Context, id int64, by string, as HoldOutcome, resolution string) error {
	tag, err := s.db.Exec(ctx, `UPDATE holds SET resolved_at = now(), resolved_by = $2, resolved_as = $3, resolution = $4
		WHERE id = $1 AND resolved_at IS NULL`, id, by, as, resolution)
	if err != nil {
		return fmt.Errorf("store: resolve hold %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: open hold %d: %w", id, ErrNotFound)
	}
	return nil
}

// ResolveHoldsOfKind closes every open hold of a kind (e.g. a pending
// policy change that was adopted or reverted).
func (s *Store) ResolveHoldsOfKind(ctx context.Context, kind, by string, as HoldOutcome, resolution string) (int64, error) {
	tag, err := s.db.Exec(ctx, `UPDATE holds SET resolved_at = now(), resolved_by = $2, resolved_as = $3, resolution = $4
		WHERE kind = $1 AND resolved_at IS NULL`, kind, by, as, resolution)
	if err != nil {
		return 0, fmt.Errorf("store: resolve holds: %w", translate(err))
	}
	return tag.RowsAffected(), nil
}

// AcknowledgedHold returns the latest hold of a kind that an admin
// acknowledged for the move from processed to commit (the hold's detail
// names both), or nil. An acknowledgement is of that one move: the same
// head reached again from elsewhere (the branch moved on, then was
// rewritten back to it) is another rewrite, which needs its own.
func (s *Store) AcknowledgedHold(ctx context.Context, kind, processed, commit string) (*Hold, error) {
	h, err := scanHold(s.db.QueryRow(ctx, `SELECT `+holdColumns+` FROM holds
		WHERE kind = $1 AND commit_sha = $2 AND detail ->> 'processed' = $3
			AND resolved_at IS NOT NULL AND resolved_as = 'acknowledged'
		ORDER BY id DESC LIMIT 1`, kind, commit, processed))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: acknowledged hold: %w", err)
	}
	return h, nil
}

// DismissedMetaChange returns the latest meta_change hold about the content
// metaKey that an admin dismissed, or nil.
func (s *Store) DismissedMetaChange(ctx context.Context, metaKey string) (*Hold, error) {
	h, err := scanHold(s.db.QueryRow(ctx, `SELECT `+holdColumns+` FROM holds
		WHERE meta_key = $1 AND resolved_as = 'dismissed' AND kind = 'meta_change'
		ORDER BY id DESC LIMIT 1`, metaKey))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: dismissed change: %w", err)
	}
	return h, nil
}

// LockMetaChange, in the caller's transaction, locks the meta_change holds
// about metaKey and reports whether an admin dismissed one. A dismissal
// committing meanwhile is waited for and seen (the row lock), so a pass
// that decided to hold before it never opens the hold again behind it.
func (s *Store) LockMetaChange(ctx context.Context, metaKey string) (dismissed bool, err error) {
	rows, err := s.db.Query(ctx, `SELECT coalesce(resolved_as = 'dismissed', false) FROM holds
		WHERE kind = 'meta_change' AND meta_key = $1 ORDER BY id FOR UPDATE`, metaKey)
	if err != nil {
		return false, fmt.Errorf("store: lock meta holds: %w", translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		var d bool
		if err := rows.Scan(&d); err != nil {
			return false, fmt.Errorf("store: lock meta holds: %w", translate(err))
		}
		dismissed = dismissed || d
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("store: lock meta holds: %w", translate(err))
	}
	return dismissed, nil
}

// RewindNotificationCursor moves the notifier's cursors (each channel's)
// back to next when they are past it: after the audit log was rolled back,
// the entries appended since (the hold's first) have sequence numbers the
// notifier already passed.
func (s *Store) RewindNotificationCursor(ctx context.Context, next int64) error {
	if _, err := s.db.Exec(ctx, `UPDATE notification_cursor SET next_seq = least(next_seq, $1) WHERE id = 1`, next); err != nil {
		return fmt.Errorf("store: notification cursor: %w", translate(err))
	}
	if _, err := s.db.Exec(ctx, `UPDATE notification_channel_cursors SET next_seq = least(next_seq, $1), updated_at = now()`, next); err != nil {
		return fmt.Errorf("store: notification channel cursors: %w", translate(err))
	}
	return nil
}
