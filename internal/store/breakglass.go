package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// BreakGlass is an emergency apply that ran on a break-glass statement and
// must gather its normal quorum by Deadline (docs/design.md, Break-glass
// containment).
type BreakGlass struct {
	ExecutionID int64
	Name        string
	Digest      string
	Environment string
	Signer      string
	InvokedAt   time.Time
	Deadline    time.Time
	State       string // open | confirmed | lapsed
	Resolution  string
	ResolvedAt  *time.Time
	RevertID    *int64
}

// Break-glass states.
const (
	BreakGlassOpen      = "open"
	BreakGlassConfirmed = "confirmed"
	BreakGlassLapsed    = "lapsed"
)

const breakGlassColumns = `execution_id, name, digest, environment, signer, invoked_at, deadline, state, resolution, resolved_at, revert_id`

func scanBreakGlass(row pgx.Row) (*BreakGlass, error) {
	var b BreakGlass
	err := row.Scan(&b.ExecutionID, &b.Name, &b.Digest, &b.Environment, &b.Signer, &b.InvokedAt, &b.Deadline,
		&b.State, &b.Resolution, &b.ResolvedAt, &b.RevertID)
	if err != nil {
		return nil, translate(err)
	}
	return &b, nil
}

// InvokeBreakGlass records that an emergency apply runs on a break-glass
// statement, with the deadline of its quorum. An apply already recorded
// (a resumed or retried attempt) keeps its first row and deadline;
// created says whether this call made it.
func (s *Store) InvokeBreakGlass(ctx context.Context, b BreakGlass) (*BreakGlass, bool, error) {
	row := s.db.QueryRow(ctx, `INSERT INTO breakglass (execution_id, name, digest, environment, signer, invoked_at, deadline)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (execution_id) DO NOTHING RETURNING `+breakGlassColumns,
		b.ExecutionID, b.Name, b.Digest, b.Environment, b.Signer, b.InvokedAt, b.Deadline)
	got, err := scanBreakGlass(row)
	if errors.Is(err, ErrNotFound) {
		got, err = s.BreakGlassOf(ctx, b.ExecutionID)
		return got, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: record break-glass of execution %d: %w", b.ExecutionID, err)
	}
	return got, true, nil
}

// BreakGlassOf is the break-glass record of an apply, or ErrNotFound.
func (s *Store) BreakGlassOf(ctx context.Context, executionID int64) (*BreakGlass, error) {
	b, err := scanBreakGlass(s.db.QueryRow(ctx, `SELECT `+breakGlassColumns+` FROM breakglass WHERE execution_id = $1`, executionID))
	if err != nil {
		return nil, fmt.Errorf("store: break-glass of execution %d: %w", executionID, err)
	}
	return b, nil
}

// OpenBreakGlass lists the emergency applies still waiting for their
// quorum, the earliest deadline first.
func (s *Store) OpenBreakGlass(ctx context.Context) ([]*BreakGlass, error) {
	return s.listBreakGlass(ctx, `WHERE state = 'open' ORDER BY deadline, execution_id`)
}

// BreakGlassRecords lists every break-glass record, the latest first.
func (s *Store) BreakGlassRecords(ctx context.Context, limit int) ([]*BreakGlass, error) {
	return s.listBreakGlass(ctx, `ORDER BY invoked_at DESC, execution_id DESC LIMIT $1`, limit)
}

func (s *Store) listBreakGlass(ctx context.Context, where string, args ...any) ([]*BreakGlass, error) {
	rows, err := s.db.Query(ctx, `SELECT `+breakGlassColumns+` FROM breakglass `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("store: break-glass records: %w", translate(err))
	}
	defer rows.Close()
	var out []*BreakGlass
	for rows.Next() {
		b, err := scanBreakGlass(rows)
		if err != nil {
			return nil, fmt.Errorf("store: break-glass records: %w", err)
		}
		out = append(out, b)
	}
	return out, translate(rows.Err())
}

// NextBreakGlassDeadline is the earliest deadline of an open record, or nil.
func (s *Store) NextBreakGlassDeadline(ctx context.Context) (*time.Time, error) {
	var t *time.Time
	if err := s.db.QueryRow(ctx, `SELECT min(deadline) FROM breakglass WHERE state = 'open'`).Scan(&t); err != nil {
		return nil, fmt.Errorf("store: next break-glass deadline: %w", translate(err))
	}
	return t, nil
}

// ResolveBreakGlass ends an open record: confirmed (the quorum came in
// time) or lapsed (with the revert it recorded, if any). A record already
// resolved is ErrConflict.
func (s *Store) ResolveBreakGlass(ctx context.Context, executionID int64, state, resolution string, at time.Time, revertID *int64) error {
	if state != BreakGlassConfirmed && state != BreakGlassLapsed {
		return fmt.Errorf("store: resolve break-glass of execution %d as %q: %w", executionID, state, ErrConflict)
	}
	tag, err := s.db.Exec(ctx, `UPDATE breakglass SET state = $2, resolution = $3, resolved_at = $4, revert_id = $5
		WHERE execution_id = $1 AND state = 'open'`, executionID, state, resolution, at, revertID)
	if err != nil {
		return fmt.Errorf("store: resolve break-glass of execution %d: %w", executionID, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: break-glass of execution %d is not open: %w", executionID, ErrConflict)
	}
	return nil
}

// RetriggerRevertForBreakGlass turns the revert of the version a lapsed
// break-glass apply ran (a deletion's or an update's, recorded inside the
// window) into the lapse's revert: trigger and change type breakglass,
// the targets the apply applied, back to waiting to be judged afresh (its
// earlier judgement no longer applies). It may have been waiting for
// statements of its own, rejected, denied, or failed after releasing part
// of them: it stays the version's one revert (rule 4: its attempts and
// per-target results are kept, so a target it released is not released
// again). ErrConflict when it is executing or completed.
func (s *Store) RetriggerRevertForBreakGlass(ctx context.Context, id int64, targets []string, reason string) (*Execution, error) {
	e, err := scanExecution(s.db.QueryRow(ctx, `
		UPDATE executions SET trigger = 'breakglass', change_type = 'breakglass', targets = $2, state = 'waiting',
			reason_code = 'intended', reason = $3, decision = NULL, policy_digest = '', plan_digest = '', plan = NULL, verdict = NULL,
			finished_at = NULL, updated_at = now()
		WHERE id = $1 AND operation = 'revert' AND state NOT IN ('executing', 'completed')
		RETURNING `+executionColumns, id, targets, reason))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("store: revert %d is executing or completed: %w", id, ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("store: retrigger revert %d: %w", id, err)
	}
	return e, nil
}
