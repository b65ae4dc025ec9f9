package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Execution states.
const (
	ExecWaiting   = "waiting"
	ExecPending   = "pending"
	ExecExecuting = "executing"
	ExecCompleted = "completed"
	ExecFailed    = "failed"
	ExecDenied    = "denied"
	ExecRejected  = "rejected"
	ExecCancelled = "cancelled"
)

// RepoState is the reconciler's position in the branch.
type RepoState struct {
	Branch       string
	ProcessedSHA string // last commit whose changes were processed
	AdoptedSHA   string // commit whose policies/ and .writ/ are in force
	ObservedHead string
	UpdatedAt    time.Time
}

// RepoState loads the position; ErrNotFound before the first start.
func (s *Store) RepoState(ctx context.Context) (*RepoState, error) {
	var r RepoState
	err := s.db.QueryRow(ctx, `SELECT branch, processed_sha, adopted_sha, observed_head, updated_at FROM repo_state WHERE id = 1`).
		Scan(&r.Branch, &r.ProcessedSHA, &r.AdoptedSHA, &r.ObservedHead, &r.UpdatedAt)
	if err != nil {
		return nil, fmt.Errorf("store: repository state: %w", translate(err))
	}
	return &r, nil
}

// SaveRepoState writes the position.
func (s *Store) SaveRepoState(ctx context.Context, r RepoState) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO repo_state (id, branch, processed_sha, adopted_sha, observed_head, updated_at)
		VALUES (1, $1, $2, $3, $4, now())
		ON CONFLICT (id) DO UPDATE SET branch = $1, processed_sha = $2, adopted_sha = $3, observed_head = $4, updated_at = now()`,
		r.Branch, r.ProcessedSHA, r.AdoptedSHA, r.ObservedHead)
	if err != nil {
		return fmt.Errorf("store: save repository state: %w", translate(err))
	}
	return nil
}

// SetObservedHead records the branch head last seen (for status), without
// moving the processed position.
func (s *Store) SetObservedHead(ctx context.Context, head string) error {
	_, err := s.db.Exec(ctx, `UPDATE repo_state SET observed_head = $1, updated_at = now() WHERE id = 1`, head)
	if err != nil {
		return fmt.Errorf("store: observed head: %w", translate(err))
	}
	return nil
}

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

// Hold is a reason the reconciler does not move.
type Hold struct {
	ID         int64
	Kind       string // history_rewritten | meta_change
	CommitSHA  string
	Detail     json.RawMessage
	CreatedAt  time.Time
	ResolvedAt *time.Time
	ResolvedBy string
	Resolution string
}

// Hold kinds.
const (
	HoldHistoryRewritten = "history_rewritten"
	HoldMetaChange       = "meta_change"
)

// OpenHold records a hold; an open hold of the same kind at the same commit
// is returned instead of a second one.
func (s *Store) OpenHold(ctx context.Context, kind, commit string, detail any) (*Hold, bool, error) {
	b, err := json.Marshal(detail)
	if err != nil {
		return nil, false, fmt.Errorf("store: hold detail: %w", err)
	}
	h, err := scanHold(s.db.QueryRow(ctx, `
		INSERT INTO holds (kind, commit_sha, detail) VALUES ($1, $2, $3)
		ON CONFLICT (kind, commit_sha) WHERE resolved_at IS NULL DO NOTHING
		RETURNING `+holdColumns, kind, commit, b))
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

const holdColumns = `id, kind, commit_sha, detail, created_at, resolved_at, resolved_by, resolution`

func scanHold(row pgx.Row) (*Hold, error) {
	var h Hold
	var detail []byte
	if err := row.Scan(&h.ID, &h.Kind, &h.CommitSHA, &detail, &h.CreatedAt, &h.ResolvedAt, &h.ResolvedBy, &h.Resolution); err != nil {
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

// ResolveHold closes a hold; ErrNotFound when it is not open.
func (s *Store) ResolveHold(ctx context.Context, id int64, by, resolution string) error {
	tag, err := s.db.Exec(ctx, `UPDATE holds SET resolved_at = now(), resolved_by = $2, resolution = $3 WHERE id = $1 AND resolved_at IS NULL`,
		id, by, resolution)
	if err != nil {
		return fmt.Errorf("store: resolve hold %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: open hold %d: %w", id, ErrNotFound)
	}
	return nil
}

// ResolveHoldsOfKind closes every open hold of a kind (e.g. a pending
// policy change that was approved or reverted).
func (s *Store) ResolveHoldsOfKind(ctx context.Context, kind, by, resolution string) (int64, error) {
	tag, err := s.db.Exec(ctx, `UPDATE holds SET resolved_at = now(), resolved_by = $2, resolution = $3 WHERE kind = $1 AND resolved_at IS NULL`,
		kind, by, resolution)
	if err != nil {
		return 0, fmt.Errorf("store: resolve holds: %w", translate(err))
	}
	return tag.RowsAffected(), nil
}

// RecordCommit marks a commit processed.
func (s *Store) RecordCommit(ctx context.Context, sha, parent, subject string, summary any) error {
	b, err := json.Marshal(summary)
	if err != nil {
		return fmt.Errorf("store: commit summary: %w", err)
	}
	_, err = s.db.Exec(ctx, `INSERT INTO processed_commits (sha, parent, subject, summary) VALUES ($1, $2, $3, $4)
		ON CONFLICT (sha) DO UPDATE SET summary = $4, processed_at = now()`, sha, parent, subject, b)
	if err != nil {
		return fmt.Errorf("store: record commit %s: %w", sha, translate(err))
	}
	return nil
}

// Execution is one intended operation on a playbook version.
type Execution struct {
	ID           int64
	VersionID    int64
	Name         string
	Digest       string
	Path         string
	Action       string
	Environment  string
	Operation    string // apply | revert
	State        string
	Attempts     int
	LastError    string
	CommitSHA    string
	Targets      []string
	Trigger      string // merge | update | delete | expiry | manual
	ChangeType   string // create | update | delete (what policies see)
	Decision     json.RawMessage
	PolicyDigest string
	PlanDigest   string
	Plan         json.RawMessage
	Verdict      json.RawMessage
	Reason       string
	Manual       bool
	NotBefore    time.Time
	StartedAt    *time.Time
	FinishedAt   *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

const executionColumns = `id, version_id, name, digest, path, action, environment, operation, state, attempts,
	last_error, coalesce(commit_sha, ''), targets, trigger, change_type, decision, policy_digest, plan_digest,
	plan, verdict, reason, manual, not_before, started_at, finished_at, created_at, updated_at`

func scanExecution(row pgx.Row) (*Execution, error) {
	var e Execution
	var decision, plan, verdict []byte
	err := row.Scan(&e.ID, &e.VersionID, &e.Name, &e.Digest, &e.Path, &e.Action, &e.Environment, &e.Operation, &e.State, &e.Attempts,
		&e.LastError, &e.CommitSHA, &e.Targets, &e.Trigger, &e.ChangeType, &decision, &e.PolicyDigest, &e.PlanDigest,
		&plan, &verdict, &e.Reason, &e.Manual, &e.NotBefore, &e.StartedAt, &e.FinishedAt, &e.CreatedAt, &e.UpdatedAt)
	if err != nil {
		return nil, translate(err)
	}
	e.Decision, e.Plan, e.Verdict = decision, plan, verdict
	return &e, nil
}

func collectExecutions(rows pgx.Rows, err error) ([]*Execution, error) {
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []*Execution
	for rows.Next() {
		e, err := scanExecution(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, translate(rows.Err())
}

func notBeforeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func rawOrNil(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

// CreateExecution records an intended operation. The (name, digest,
// operation) key makes it happen at most once: when the row exists, it is
// returned with created false and nothing changes.
func (s *Store) CreateExecution(ctx context.Context, e Execution) (*Execution, bool, error) {
	if e.State == "" {
		e.State = ExecWaiting
	}
	if e.Targets == nil {
		e.Targets = []string{}
	}
	got, err := scanExecution(s.db.QueryRow(ctx, `
		INSERT INTO executions (version_id, name, digest, path, action, environment, operation, state, commit_sha,
			targets, trigger, change_type, decision, policy_digest, plan_digest, plan, verdict, reason, manual, not_before)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, coalesce($20, now()))
		ON CONFLICT (name, digest, operation) DO NOTHING
		RETURNING `+executionColumns,
		e.VersionID, e.Name, e.Digest, e.Path, e.Action, e.Environment, e.Operation, e.State, nullIfEmpty(e.CommitSHA),
		e.Targets, e.Trigger, e.ChangeType, rawOrNil(e.Decision), e.PolicyDigest, e.PlanDigest, rawOrNil(e.Plan),
		rawOrNil(e.Verdict), e.Reason, e.Manual, notBeforeArg(e.NotBefore)))
	if err == nil {
		return got, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("store: create execution %s/%s: %w", e.Name, e.Operation, err)
	}
	got, err = s.ExecutionByKey(ctx, e.Name, e.Digest, e.Operation)
	if err != nil {
		return nil, false, err
	}
	return got, false, nil
}

// ExecutionByKey loads the execution of (name, digest, operation).
func (s *Store) ExecutionByKey(ctx context.Context, name, digest, op string) (*Execution, error) {
	e, err := scanExecution(s.db.QueryRow(ctx, `SELECT `+executionColumns+` FROM executions WHERE name = $1 AND digest = $2 AND operation = $3`,
		name, digest, op))
	if err != nil {
		return nil, fmt.Errorf("store: execution %s@%.12s/%s: %w", name, digest, op, err)
	}
	return e, nil
}

// ExecutionByID loads one execution.
func (s *Store) ExecutionByID(ctx context.Context, id int64) (*Execution, error) {
	e, err := scanExecution(s.db.QueryRow(ctx, `SELECT `+executionColumns+` FROM executions WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("store: execution %d: %w", id, err)
	}
	return e, nil
}

// LockExecution loads one execution FOR UPDATE (inside a transaction).
func (s *Store) LockExecution(ctx context.Context, id int64) (*Execution, error) {
	e, err := scanExecution(s.db.QueryRow(ctx, `SELECT `+executionColumns+` FROM executions WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return nil, fmt.Errorf("store: execution %d: %w", id, err)
	}
	return e, nil
}

// WaitingExecutions lists operations waiting for a decision or approvals.
func (s *Store) WaitingExecutions(ctx context.Context) ([]*Execution, error) {
	out, err := collectExecutions(s.db.Query(ctx, `SELECT `+executionColumns+` FROM executions WHERE state = 'waiting' ORDER BY id`))
	if err != nil {
		return nil, fmt.Errorf("store: waiting executions: %w", err)
	}
	return out, nil
}

// Now is the database's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	if err := s.db.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("store: clock: %w", translate(err))
	}
	return now, nil
}

// WaitingExecutionsTouchedSince lists the operations waiting for approvals
// whose playbook digest received or lost an approval after since (the
// database's clock), and returns the database time to use as the next
// since.
func (s *Store) WaitingExecutionsTouchedSince(ctx context.Context, since time.Time) ([]*Execution, time.Time, error) {
	now, err := s.Now(ctx)
	if err != nil {
		return nil, since, err
	}
	out, err := collectExecutions(s.db.Query(ctx, `SELECT `+executionColumns+` FROM executions
		WHERE state = 'waiting' AND digest IN (
			SELECT sub.digest FROM approval_subjects sub JOIN approvals a ON a.id = sub.approval_id
			WHERE a.received_at > $1 OR a.withdrawn_at > $1)
		ORDER BY id`, since))
	if err != nil {
		return nil, since, fmt.Errorf("store: waiting executions with new approvals: %w", err)
	}
	// A little overlap: an approval committed just before the clock was read
	// but after since is never missed.
	return out, now.Add(-time.Second), nil
}

// ExecutionUpdate is a judged execution's new decision and state.
type ExecutionUpdate struct {
	State string
	// NotBefore, when set, is the earliest time the operation may run.
	NotBefore    *time.Time
	Reason       string
	Targets      []string // nil: unchanged
	Decision     json.RawMessage
	PolicyDigest string
	PlanDigest   string
	Plan         json.RawMessage
	Verdict      json.RawMessage
}

// UpdateExecution records a new judgement of an execution that has not
// started: its state (waiting, pending, denied, rejected, cancelled),
// reason, decision, digests, plan and approval verdict.
func (s *Store) UpdateExecution(ctx context.Context, id int64, u ExecutionUpdate) error {
	tag, err := s.db.Exec(ctx, `
		UPDATE executions SET state = $2, reason = $3, targets = coalesce($4, targets), decision = $5, policy_digest = $6,
			plan_digest = $7, plan = $8, verdict = $9, not_before = coalesce($10, not_before), updated_at = now()
		WHERE id = $1 AND state IN ('waiting', 'pending')`,
		id, u.State, u.Reason, u.Targets, rawOrNil(u.Decision), u.PolicyDigest, u.PlanDigest, rawOrNil(u.Plan), rawOrNil(u.Verdict), u.NotBefore)
	if err != nil {
		return fmt.Errorf("store: update execution %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: execution %d has started or ended: %w", id, ErrConflict)
	}
	return nil
}

// ClaimExecution takes the next runnable execution (pending, or executing
// when a crashed run left it so) whose time has come, marks it executing
// and counts the attempt. Call it inside a transaction, with the audit
// entry of the start; concurrent claimers skip each other's rows.
func (s *Store) ClaimExecution(ctx context.Context, now time.Time) (*Execution, error) {
	e, err := scanExecution(s.db.QueryRow(ctx, `
		UPDATE executions SET state = 'executing', attempts = attempts + 1,
			started_at = coalesce(started_at, $1), updated_at = now()
		WHERE id = (
			SELECT id FROM executions
			WHERE state IN ('pending', 'executing') AND not_before <= $1
			ORDER BY not_before, id
			FOR UPDATE SKIP LOCKED LIMIT 1)
		RETURNING `+executionColumns, now))
	if err != nil {
		return nil, fmt.Errorf("store: claim execution: %w", err)
	}
	return e, nil
}

// NextRunnableAt is when the earliest pending execution may run, or nil.
func (s *Store) NextRunnableAt(ctx context.Context) (*time.Time, error) {
	var t *time.Time
	err := s.db.QueryRow(ctx, `SELECT min(not_before) FROM executions WHERE state IN ('pending', 'executing')`).Scan(&t)
	if err != nil {
		return nil, fmt.Errorf("store: next runnable execution: %w", translate(err))
	}
	return t, nil
}

// TargetResult is one target's outcome.
type TargetResult struct {
	Target   string
	Planned  string
	Result   string
	Detail   string
	Attempts int
}

// SaveTargetResults upserts per-target results of an execution.
func (s *Store) SaveTargetResults(ctx context.Context, id int64, results []TargetResult) error {
	if len(results) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, r := range results {
		b.Queue(`INSERT INTO execution_targets (execution_id, target, planned, result, detail, attempts, updated_at)
			VALUES ($1, $2, $3, $4, $5, 1, now())
			ON CONFLICT (execution_id, target) DO UPDATE SET
				planned = CASE WHEN $3 = '' THEN execution_targets.planned ELSE $3 END,
				result = $4, detail = $5, attempts = execution_targets.attempts + 1, updated_at = now()`,
			id, r.Target, r.Planned, r.Result, r.Detail)
	}
	if err := s.db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store: target results of execution %d: %w", id, translate(err))
	}
	return nil
}

// ExecutionTargets lists an execution's per-target results.
func (s *Store) ExecutionTargets(ctx context.Context, id int64) ([]TargetResult, error) {
	rows, err := s.db.Query(ctx, `SELECT target, planned, result, detail, attempts FROM execution_targets WHERE execution_id = $1 ORDER BY target`, id)
	if err != nil {
		return nil, fmt.Errorf("store: targets of execution %d: %w", id, translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TargetResult, error) {
		var t TargetResult
		err := r.Scan(&t.Target, &t.Planned, &t.Result, &t.Detail, &t.Attempts)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: targets of execution %d: %w", id, translate(err))
	}
	return out, nil
}

// FinishExecution ends an execution (completed or failed); reason, when
// not empty, replaces the execution's reason (e.g. what it changed).
func (s *Store) FinishExecution(ctx context.Context, id int64, state, lastError string, reason ...string) error {
	why := ""
	if len(reason) > 0 {
		why = reason[0]
	}
	tag, err := s.db.Exec(ctx, `UPDATE executions SET state = $2, last_error = $3, finished_at = now(), updated_at = now(),
		reason = CASE WHEN $4 = '' THEN reason ELSE $4 END
		WHERE id = $1 AND state = 'executing'`, id, state, lastError, why)
	if err != nil {
		return fmt.Errorf("store: finish execution %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: execution %d is not executing: %w", id, ErrConflict)
	}
	return nil
}

// RetryExecution puts an execution back to pending until notBefore.
func (s *Store) RetryExecution(ctx context.Context, id int64, notBefore time.Time, lastError string) error {
	tag, err := s.db.Exec(ctx, `UPDATE executions SET state = 'pending', not_before = $2, last_error = $3, updated_at = now()
		WHERE id = $1 AND state = 'executing'`, id, notBefore, lastError)
	if err != nil {
		return fmt.Errorf("store: retry execution %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: execution %d is not executing: %w", id, ErrConflict)
	}
	return nil
}

// ExecutionFilter narrows ListExecutions.
type ExecutionFilter struct {
	Name    string
	State   string
	AfterID int64 // ids below this (newest first); 0 from the start
	Limit   int   // default 100, at most 1000
}

// ListExecutions lists executions, newest first.
func (s *Store) ListExecutions(ctx context.Context, f ExecutionFilter) ([]*Execution, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	out, err := collectExecutions(s.db.Query(ctx, `SELECT `+executionColumns+` FROM executions
		WHERE ($1 = '' OR name = $1) AND ($2 = '' OR state = $2) AND ($3 = 0 OR id < $3)
		ORDER BY id DESC LIMIT $4`, f.Name, f.State, f.AfterID, f.Limit))
	if err != nil {
		return nil, fmt.Errorf("store: list executions: %w", err)
	}
	return out, nil
}

// HeldTargets is the union of the targets other playbooks in force hold
// for an action in an environment: versions still active on the branch
// whose apply completed and that were not reverted or expired since.
// Reverting one playbook must not release what another still wants.
func (s *Store) HeldTargets(ctx context.Context, action, environment string, exceptVersion int64) (map[string]bool, error) {
	rows, err := s.db.Query(ctx, `
		SELECT DISTINCT unnest(e.targets)
		FROM active_playbooks a
		JOIN playbook_versions v ON v.id = a.version_id
		JOIN executions e ON e.version_id = v.id AND e.operation = 'apply' AND e.state = 'completed'
		WHERE v.action = $1 AND v.environment = $2 AND v.id <> $3 AND v.status = 'completed'`,
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

// DueExpiries lists completed versions whose expiry has come and that have
// no revert yet.
func (s *Store) DueExpiries(ctx context.Context, now time.Time) ([]*PlaybookVersion, error) {
	rows, err := s.db.Query(ctx, `SELECT `+playbookColumns+` FROM playbook_versions v
		WHERE v.status = 'completed' AND v.expires_at IS NOT NULL AND v.expires_at <= $1 AND v.archived_at IS NULL
		AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.name = v.name AND e.digest = v.digest AND e.operation = 'revert')
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

// NextExpiry is the earliest pending expiry, or nil.
func (s *Store) NextExpiry(ctx context.Context) (*time.Time, error) {
	var t *time.Time
	err := s.db.QueryRow(ctx, `SELECT min(expires_at) FROM playbook_versions WHERE status = 'completed' AND expires_at IS NOT NULL AND archived_at IS NULL`).Scan(&t)
	if err != nil {
		return nil, fmt.Errorf("store: next expiry: %w", translate(err))
	}
	return t, nil
}

// Acknowledgement is the resolution an admin gives a hold to let writ
// move on.
const Acknowledgement = "acknowledged"

// AcknowledgeHold resolves an open hold as acknowledged by an admin.
func (s *Store) AcknowledgeHold(ctx context.Context, id int64, by string) error {
	return s.ResolveHold(ctx, id, by, Acknowledgement)
}

// AcknowledgedHold returns the latest hold of a kind at a commit that an
// admin acknowledged, or nil.
func (s *Store) AcknowledgedHold(ctx context.Context, kind, commit string) (*Hold, error) {
	h, err := scanHold(s.db.QueryRow(ctx, `SELECT `+holdColumns+` FROM holds
		WHERE kind = $1 AND commit_sha = $2 AND resolved_at IS NOT NULL AND resolution = $3
		ORDER BY id DESC LIMIT 1`, kind, commit, Acknowledgement))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: acknowledged hold: %w", err)
	}
	return h, nil
}
