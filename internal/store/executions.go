package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ExecState is where an execution is in its life: waiting (for its
// judgement to allow it: approvals, a proposal, a plan, an executor) →
// pending (may run once not_before has come) → executing → completed |
// failed; or denied, rejected, cancelled. Only waiting and pending are
// judged again; executing is checked once more at the moment of use and
// may go back to waiting, denied or rejected.
type ExecState string

// Execution states.
const (
	ExecWaiting   ExecState = "waiting"
	ExecPending   ExecState = "pending"
	ExecExecuting ExecState = "executing"
	ExecCompleted ExecState = "completed"
	ExecFailed    ExecState = "failed"
	ExecDenied    ExecState = "denied"
	ExecRejected  ExecState = "rejected"
	ExecCancelled ExecState = "cancelled"
)

// Done reports whether the state is final.
func (s ExecState) Done() bool {
	switch s {
	case ExecCompleted, ExecFailed, ExecDenied, ExecRejected, ExecCancelled:
		return true
	}
	return false
}

// Execution is one intended operation on a playbook version.
type Execution struct {
	ID          int64
	VersionID   int64
	Name        string
	Digest      string
	Path        string
	Action      string
	Environment string
	Operation   string // apply | revert | heal
	// Incident is the drift incident a heal answers (0 for an apply or a
	// revert): a heal is (name, digest, heal, incident), once per incident.
	Incident     int64
	State        ExecState
	Attempts     int
	LastError    string
	CommitSHA    string
	Targets      []string
	Trigger      string // merge | update | delete | expiry | drift
	ChangeType   string // create | update | delete | expiry | drift (what policies see)
	Decision     json.RawMessage
	PolicyDigest string
	PlanDigest   string
	Plan         json.RawMessage
	Verdict      json.RawMessage
	// ReasonCode is the reason's stable code (judgement.Code and the
	// reconciler's own); Reason its text for people.
	ReasonCode string
	Reason     string
	Manual     bool
	NotBefore  time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

const executionColumns = `id, version_id, name, digest, path, action, environment, operation, state, attempts,
	last_error, coalesce(commit_sha, ''), targets, trigger, change_type, decision, policy_digest, plan_digest,
	plan, verdict, reason_code, reason, manual, not_before, started_at, finished_at, created_at, updated_at, incident`

func scanExecution(row pgx.Row) (*Execution, error) {
	var e Execution
	var decision, plan, verdict []byte
	err := row.Scan(&e.ID, &e.VersionID, &e.Name, &e.Digest, &e.Path, &e.Action, &e.Environment, &e.Operation, &e.State, &e.Attempts,
		&e.LastError, &e.CommitSHA, &e.Targets, &e.Trigger, &e.ChangeType, &decision, &e.PolicyDigest, &e.PlanDigest,
		&plan, &verdict, &e.ReasonCode, &e.Reason, &e.Manual, &e.NotBefore, &e.StartedAt, &e.FinishedAt, &e.CreatedAt, &e.UpdatedAt, &e.Incident)
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
// operation, incident) key makes it happen at most once (incident is 0 but
// for a heal): when the row exists, it is returned with created false and
// nothing changes.
func (s *Store) CreateExecution(ctx context.Context, e Execution) (*Execution, bool, error) {
	if e.State == "" {
		e.State = ExecWaiting
	}
	if e.Targets == nil {
		e.Targets = []string{}
	}
	got, err := scanExecution(s.db.QueryRow(ctx, `
		INSERT INTO executions (version_id, name, digest, path, action, environment, operation, state, commit_sha,
			targets, trigger, change_type, decision, policy_digest, plan_digest, plan, verdict, reason, manual, not_before, reason_code, incident)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, coalesce($20, now()), $21, $22)
		ON CONFLICT (name, digest, operation, incident) DO NOTHING
		RETURNING `+executionColumns,
		e.VersionID, e.Name, e.Digest, e.Path, e.Action, e.Environment, e.Operation, e.State, nullIfEmpty(e.CommitSHA),
		e.Targets, e.Trigger, e.ChangeType, rawOrNil(e.Decision), e.PolicyDigest, e.PlanDigest, rawOrNil(e.Plan),
		rawOrNil(e.Verdict), e.Reason, e.Manual, notBeforeArg(e.NotBefore), e.ReasonCode, e.Incident))
	if err == nil {
		return got, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("store: create execution %s/%s: %w", e.Name, e.Operation, err)
	}
	got, err = s.executionByKey(ctx, e.Name, e.Digest, e.Operation, e.Incident)
	if err != nil {
		return nil, false, err
	}
	return got, false, nil
}

// ExecutionByKey loads the execution of (name, digest, operation): an
// apply or a revert (a heal is one per incident: HealExecution).
func (s *Store) ExecutionByKey(ctx context.Context, name, digest, op string) (*Execution, error) {
	return s.executionByKey(ctx, name, digest, op, 0)
}

func (s *Store) executionByKey(ctx context.Context, name, digest, op string, incident int64) (*Execution, error) {
	e, err := scanExecution(s.db.QueryRow(ctx, `SELECT `+executionColumns+` FROM executions WHERE name = $1 AND digest = $2 AND operation = $3 AND incident = $4`,
		name, digest, op, incident))
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

// ExecutionsByDigests lists the operations on any of these content
// digests, oldest first: whether a statement about that content can still
// count for anything.
func (s *Store) ExecutionsByDigests(ctx context.Context, digests []string) ([]*Execution, error) {
	if len(digests) == 0 {
		return nil, nil
	}
	out, err := collectExecutions(s.db.Query(ctx, `SELECT `+executionColumns+` FROM executions WHERE digest = ANY($1) ORDER BY id`, digests))
	if err != nil {
		return nil, fmt.Errorf("store: executions of %d digests: %w", len(digests), err)
	}
	return out, nil
}

// WaitingForSignatures lists the operations waiting for statements: the
// proposal or approvals their judgement found missing, or approvals of a
// plan that changed. Oldest first.
func (s *Store) WaitingForSignatures(ctx context.Context) ([]*Execution, error) {
	out, err := collectExecutions(s.db.Query(ctx, `SELECT `+executionColumns+` FROM executions
		WHERE state = 'waiting' AND reason_code IN ('awaiting_approval', 'plan_changed') ORDER BY id`))
	if err != nil {
		return nil, fmt.Errorf("store: executions waiting for signatures: %w", err)
	}
	return out, nil
}

// UndoneExecutions lists the operations not started yet: waiting and
// pending (a pending one may be backing off between retries). These are
// judged again whenever the trust in force changes.
func (s *Store) UndoneExecutions(ctx context.Context) ([]*Execution, error) {
	out, err := collectExecutions(s.db.Query(ctx, `SELECT `+executionColumns+` FROM executions WHERE state IN ('waiting', 'pending') ORDER BY id`))
	if err != nil {
		return nil, fmt.Errorf("store: executions not done: %w", err)
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

// WaitingExecutionsTouchedSince lists the operations not started yet
// (waiting, or pending: a withdrawal or rejection must reach them too)
// whose playbook digest received or lost an approval after since (the
// database's clock), and returns the database time to use as the next
// since.
func (s *Store) WaitingExecutionsTouchedSince(ctx context.Context, since time.Time) ([]*Execution, time.Time, error) {
	now, err := s.Now(ctx)
	if err != nil {
		return nil, since, err
	}
	out, err := collectExecutions(s.db.Query(ctx, `SELECT `+executionColumns+` FROM executions
		WHERE state IN ('waiting', 'pending') AND digest IN (
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

// Judged is a judgement of an execution to record: its state and reason,
// and the decision, plan and verdict it was made on.
type Judged struct {
	State      ExecState
	ReasonCode string
	Reason     string
	// NotBefore, when set, is the earliest time the operation may run.
	NotBefore    *time.Time
	Decision     json.RawMessage
	PolicyDigest string
	PlanDigest   string
	Plan         json.RawMessage
	Verdict      json.RawMessage
}

// RecordJudgement writes a judgement of an execution in one of the states
// from (default: waiting or pending, an operation not started) and returns
// the execution as written. Every judgement column is written: a
// judgement replaces the last one whole. ErrConflict when the execution is
// in another state (it started, or ended, meanwhile).
func (s *Store) RecordJudgement(ctx context.Context, id int64, j Judged, from ...ExecState) (*Execution, error) {
	if len(from) == 0 {
		from = []ExecState{ExecWaiting, ExecPending}
	}
	e, err := scanExecution(s.db.QueryRow(ctx, `
		UPDATE executions SET state = $2, reason_code = $3, reason = $4, decision = $5, policy_digest = $6,
			plan_digest = $7, plan = $8, verdict = $9, not_before = coalesce($10, not_before), updated_at = now()
		WHERE id = $1 AND state = ANY($11)
		RETURNING `+executionColumns,
		id, j.State, j.ReasonCode, j.Reason, rawOrNil(j.Decision), j.PolicyDigest, j.PlanDigest, rawOrNil(j.Plan), rawOrNil(j.Verdict),
		j.NotBefore, statesArg(from)))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("store: execution %d is not %v: %w", id, from, ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("store: judgement of execution %d: %w", id, err)
	}
	return e, nil
}

// SetExecutionState moves an execution from one of the states from to
// state with a reason, leaving its decision, plan and verdict as they are
// (a cancelled operation keeps what it was judged on). notBefore, when
// set, is when it may run. ErrConflict when it is in another state.
func (s *Store) SetExecutionState(ctx context.Context, id int64, from []ExecState, state ExecState, code, reason string, notBefore *time.Time) error {
	tag, err := s.db.Exec(ctx, `
		UPDATE executions SET state = $2, reason_code = $3, reason = $4, not_before = coalesce($5, not_before), updated_at = now()
		WHERE id = $1 AND state = ANY($6)`,
		id, state, code, reason, notBefore, statesArg(from))
	if err != nil {
		return fmt.Errorf("store: state of execution %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: execution %d is not %v: %w", id, from, ErrConflict)
	}
	return nil
}

// StopExecution sends a claimed (executing) execution back before its
// backend was called: the time-of-use check found it no longer allowed,
// approved or planned as approved. It records that judgement, and the
// attempt it was claimed for does not count. ErrConflict when it is not
// executing.
func (s *Store) StopExecution(ctx context.Context, id int64, j Judged) error {
	tag, err := s.db.Exec(ctx, `
		UPDATE executions SET state = $2, reason_code = $3, reason = $4, decision = $5, policy_digest = $6,
			plan_digest = $7, plan = $8, verdict = $9, attempts = greatest(attempts - 1, 0), updated_at = now()
		WHERE id = $1 AND state = 'executing'`,
		id, j.State, j.ReasonCode, j.Reason, rawOrNil(j.Decision), j.PolicyDigest, j.PlanDigest, rawOrNil(j.Plan), rawOrNil(j.Verdict))
	if err != nil {
		return fmt.Errorf("store: stop execution %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: execution %d is not executing: %w", id, ErrConflict)
	}
	return nil
}

func statesArg(states []ExecState) []string {
	out := make([]string, len(states))
	for i, st := range states {
		out[i] = string(st)
	}
	return out
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
	// One statement for all of them (a targets file has up to 100,000): the
	// columns as arrays, one row per target; a target given twice keeps its
	// last result, as upserting them one by one did.
	last := make(map[string]int, len(results))
	for i, r := range results {
		last[r.Target] = i
	}
	n := len(last)
	targets, planned, result, detail := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	for i, r := range results {
		if last[r.Target] != i {
			continue
		}
		targets, planned = append(targets, r.Target), append(planned, r.Planned)
		result, detail = append(result, r.Result), append(detail, r.Detail)
	}
	_, err := s.db.Exec(ctx, `INSERT INTO execution_targets (execution_id, target, planned, result, detail, attempts, updated_at)
		SELECT $1::bigint, t.target, t.planned, t.result, t.detail, 1, now()
		FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS t(target, planned, result, detail)
		ON CONFLICT (execution_id, target) DO UPDATE SET
			planned = CASE WHEN excluded.planned = '' THEN execution_targets.planned ELSE excluded.planned END,
			result = excluded.result, detail = excluded.detail, attempts = execution_targets.attempts + 1, updated_at = now()`,
		id, targets, planned, result, detail)
	if err != nil {
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

// TargetPending is the result of a target no attempt has reached yet.
const TargetPending = "pending"

// WithPending completes an execution's stored per-target results with its
// targets no attempt has a result for yet, as pending (planned as its
// recorded plan says), once it has started: what a partly applied
// operation still has to do. Sorted by target, like ExecutionTargets.
func (e *Execution) WithPending(stored []TargetResult) []TargetResult {
	if e.StartedAt == nil {
		return stored
	}
	seen := make(map[string]bool, len(stored))
	for _, t := range stored {
		seen[t.Target] = true
	}
	var plan struct {
		Targets []struct {
			Target string `json:"target"`
			Result string `json:"result"`
		} `json:"targets"`
	}
	planned := map[string]string{}
	if len(e.Plan) > 0 && json.Unmarshal(e.Plan, &plan) == nil {
		for _, t := range plan.Targets {
			planned[t.Target] = t.Result
		}
	}
	out := slices.Clone(stored)
	for _, t := range e.Targets {
		if !seen[t] {
			seen[t] = true
			out = append(out, TargetResult{Target: t, Planned: planned[t], Result: TargetPending})
		}
	}
	if len(out) != len(stored) {
		slices.SortFunc(out, func(a, b TargetResult) int { return strings.Compare(a.Target, b.Target) })
	}
	return out
}

// FinishExecution ends an execution (completed or failed) with the code
// and text of what it did.
func (s *Store) FinishExecution(ctx context.Context, id int64, state ExecState, lastError, code, reason string) error {
	tag, err := s.db.Exec(ctx, `UPDATE executions SET state = $2, last_error = $3, finished_at = now(), updated_at = now(),
		reason_code = $4, reason = $5
		WHERE id = $1 AND state = 'executing'`, id, state, lastError, code, reason)
	if err != nil {
		return fmt.Errorf("store: finish execution %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: execution %d is not executing: %w", id, ErrConflict)
	}
	return nil
}

// RetryExecution puts an execution back to pending until notBefore.
func (s *Store) RetryExecution(ctx context.Context, id int64, notBefore time.Time, lastError, code, reason string) error {
	tag, err := s.db.Exec(ctx, `UPDATE executions SET state = 'pending', not_before = $2, last_error = $3, updated_at = now(),
		reason_code = $4, reason = $5
		WHERE id = $1 AND state = 'executing'`, id, notBefore, lastError, code, reason)
	if err != nil {
		return fmt.Errorf("store: retry execution %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: execution %d is not executing: %w", id, ErrConflict)
	}
	return nil
}

// RequeueFailedExecution puts a failed execution back to pending for a new
// attempt an executor asked for (POST /api/v1/executions/{id}/retry): it
// runs from now, keeps its judgement (decision, plan, verdict), its
// attempts and its per-target results, and is checked at the moment of use
// like every attempt. ErrConflict when it is not failed.
func (s *Store) RequeueFailedExecution(ctx context.Context, id int64, now time.Time, code, reason string) error {
	tag, err := s.db.Exec(ctx, `UPDATE executions SET state = 'pending', not_before = $2, finished_at = NULL, updated_at = now(),
		reason_code = $3, reason = $4
		WHERE id = $1 AND state = 'failed'`, id, now, code, reason)
	if err != nil {
		return fmt.Errorf("store: retry failed execution %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: execution %d is not failed: %w", id, ErrConflict)
	}
	return nil
}

// ExecutionFilter narrows ListExecutions.
type ExecutionFilter struct {
	Name    string
	State   ExecState
	AfterID int64 // ids below this (newest first); 0 from the start
	Limit   int   // default 100, at most 1000
}

// ListExecutions lists executions, newest first.
func (s *Store) ListExecutions(ctx context.Context, f ExecutionFilter) ([]*Execution, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	out, err := collectExecutions(s.db.Query(ctx, `SELECT `+executionColumns+` FROM executions
		WHERE ($1 = '' OR name = $1) AND ($2 = '' OR state = $2) AND ($3::bigint = 0 OR id < $3::bigint)
		ORDER BY id DESC LIMIT $4`, f.Name, f.State, f.AfterID, f.Limit))
	if err != nil {
		return nil, fmt.Errorf("store: list executions: %w", err)
	}
	return out, nil
}

// revertNeverRan is the condition on a revert r cancelled before any
// attempt of it reached a backend: no attempt counted (an attempt the
// moment of use stopped is not counted) and no per-target result. Such a
// revert has not acted, so a later removal, update or expiry of its
// version may take it up again (ReviveRevert): the version is still
// reverted at most once (trust rule 4).
const revertNeverRan = `r.state = 'cancelled' AND r.attempts = 0
		AND NOT EXISTS (SELECT 1 FROM execution_targets rt WHERE rt.execution_id = r.id)`

// ReviveRevert takes up again, for a new removal, update or expiry of its
// version, a revert that was cancelled before it ever ran (its version
// came back on the branch): back to waiting with what the new intent says
// (commit, version and path, targets, trigger and change type, reason),
// to be judged afresh (its earlier judgement no longer applies). It is
// still the version's one revert. ErrConflict when the row is not a
// revert cancelled with no attempt and no per-target result: one that
// acted, or may have, is never revived.
func (s *Store) ReviveRevert(ctx context.Context, id int64, e Execution) (*Execution, error) {
	if e.Targets == nil {
		e.Targets = []string{}
	}
	got, err := scanExecution(s.db.QueryRow(ctx, `
		UPDATE executions r SET state = 'waiting', version_id = $2, path = $3, commit_sha = $4, targets = $5,
			trigger = $6, change_type = $7, reason_code = $8, reason = $9, manual = $10,
			decision = NULL, policy_digest = '', plan_digest = '', plan = NULL, verdict = NULL,
			last_error = '', not_before = now(), started_at = NULL, finished_at = NULL, updated_at = now()
		WHERE r.id = $1 AND r.operation = 'revert' AND `+revertNeverRan+`
		RETURNING `+executionColumns,
		id, e.VersionID, e.Path, nullIfEmpty(e.CommitSHA), e.Targets, e.Trigger, e.ChangeType, e.ReasonCode, e.Reason, e.Manual))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("store: revert %d is not cancelled before it ran: %w", id, ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("store: revive revert %d: %w", id, err)
	}
	return got, nil
}
