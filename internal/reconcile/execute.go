package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

// stepExecute runs every operation whose time has come, one at a time.
func (r *Reconciler) stepExecute(ctx context.Context, p *pass) error {
	if p.holding {
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := r.claim(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := r.run(ctx, e); err != nil {
			return fmt.Errorf("execution %d (%s %s): %w", e.ID, e.Operation, e.Name, err)
		}
	}
}

// claim takes the next runnable operation and records its start (with its
// audit entry) before anything touches a backend. An operation found
// executing was interrupted by a crash: it is claimed again and finished
// through the backend's idempotent Apply or Revert after re-reading live
// state, never blindly repeated.
func (r *Reconciler) claim(ctx context.Context) (*store.Execution, error) {
	var e *store.Execution
	err := r.store(ctx, func(tx *store.Store) error {
		var err error
		e, err = tx.ClaimExecution(ctx, r.opts.Now())
		if err != nil {
			return err
		}
		event := "execution.started"
		if e.Attempts > 1 {
			event = "execution.resumed"
		}
		entries := []audit.Entry{executionEntry(e, event, "")}
		es, err := r.syncVersionStatus(ctx, tx, e, e.CommitSHA)
		if err != nil {
			return err
		}
		entries = append(entries, es...)
		_, err = r.appendAudit(ctx, tx, entries...)
		return err
	})
	return e, err
}

// run carries out one claimed operation and records its outcome.
func (r *Reconciler) run(ctx context.Context, e *store.Execution) error {
	pb, err := r.versionPlaybook(ctx, e)
	if err != nil {
		return r.finish(ctx, e, nil, nil, err)
	}
	req, held, err := r.request(ctx, e, pb)
	if err != nil {
		return err
	}
	log := r.log.With(slog.Int64("execution", e.ID), slog.String("playbook", e.Name), slog.String("operation", e.Operation))
	if len(req.Targets) == 0 {
		results := make([]action.TargetResult, 0, len(held))
		for _, t := range held {
			results = append(results, action.TargetResult{Target: t, Result: action.Unchanged, Detail: "still held by another playbook in force"})
		}
		return r.finish(ctx, e, nil, results, nil)
	}
	// A started execution finishes even when shutdown begins: stopping
	// halfway would only make the next start resume it.
	execCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	// Re-read live state first: after a crash this says what is left to do.
	plan, err := r.opts.Backends.Plan(execCtx, req)
	if err != nil {
		log.WarnContext(ctx, "plan before execution failed", slog.Any("error", err))
		return r.finish(ctx, e, nil, nil, err)
	}
	results, err := r.opts.Backends.Execute(execCtx, req)
	for _, t := range held {
		results = append(results, action.TargetResult{Target: t, Result: action.Unchanged, Detail: "still held by another playbook in force"})
	}
	if err != nil {
		log.WarnContext(ctx, "execution failed", slog.Any("error", err), slog.Int("attempt", e.Attempts))
	}
	return r.finish(ctx, e, plan, results, err)
}

// finish records an operation's per-target results and its end (completed,
// failed, or a retry after a transient error), with audit entries and the
// version's status, in one transaction.
func (r *Reconciler) finish(ctx context.Context, e *store.Execution, plan *action.Plan, results []action.TargetResult, runErr error) error {
	planned := map[string]string{}
	if plan != nil {
		for _, t := range plan.Targets {
			planned[t.Target] = t.Result
		}
	}
	rows := make([]store.TargetResult, 0, len(results))
	for _, res := range results {
		rows = append(rows, store.TargetResult{Target: res.Target, Planned: planned[res.Target], Result: res.Result, Detail: res.Detail})
	}
	retry := runErr != nil && errors.Is(runErr, action.ErrTransient) && e.Attempts < r.opts.MaxAttempts
	// Finishing must not be lost to a cancelled context (shutdown): the
	// backend has acted.
	ctx = context.WithoutCancel(ctx)
	var next []int64
	err := r.store(ctx, func(tx *store.Store) error {
		next = next[:0]
		if err := tx.SaveTargetResults(ctx, e.ID, rows); err != nil {
			return err
		}
		var entries []audit.Entry
		switch {
		case retry:
			at := r.opts.Now().Add(r.backoff(e.Attempts))
			if err := tx.RetryExecution(ctx, e.ID, at, runErr.Error()); err != nil {
				return err
			}
			ne, err := tx.ExecutionByID(ctx, e.ID)
			if err != nil {
				return err
			}
			entry := executionEntry(ne, "execution.retry", fmt.Sprintf("transient error; retry at %s", at.UTC().Format(time.RFC3339)))
			entry.Payload = withResults(entry.Payload, results)
			entries = append(entries, entry)
		default:
			state, msg := store.ExecCompleted, ""
			if runErr != nil {
				state, msg = store.ExecFailed, runErr.Error()
			}
			if err := tx.FinishExecution(ctx, e.ID, state, msg, outcome(e, results, runErr)); err != nil {
				return err
			}
			ne, err := tx.ExecutionByID(ctx, e.ID)
			if err != nil {
				return err
			}
			entry := executionEntry(ne, "execution."+state, msg)
			entry.Payload = withResults(entry.Payload, results)
			entries = append(entries, entry)
			es, err := r.syncVersionStatus(ctx, tx, ne, ne.CommitSHA)
			if err != nil {
				return err
			}
			entries = append(entries, es...)
			if state == store.ExecCompleted && ne.Operation == string(action.Apply) {
				es, ids, err := r.afterApply(ctx, tx, ne)
				if err != nil {
					return err
				}
				entries = append(entries, es...)
				next = append(next, ids...)
			}
		}
		_, err := r.appendAudit(ctx, tx, entries...)
		return err
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	switch {
	case retry:
		r.opts.Metrics.Executed(e.Operation, "retry")
	case runErr != nil:
		r.status.Failed++
		r.opts.Metrics.Executed(e.Operation, "failed")
	default:
		r.status.Executed++
		r.opts.Metrics.Executed(e.Operation, "completed")
	}
	r.mu.Unlock()
	return nil
}

// outcome says in one line what an operation did.
func outcome(e *store.Execution, results []action.TargetResult, runErr error) string {
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Result]++
	}
	verb := "applied"
	if e.Operation == string(action.Revert) {
		verb = "reverted"
	}
	s := fmt.Sprintf("%s: %d changed, %d unchanged", verb, counts[action.Changed], counts[action.Unchanged])
	if n := counts[action.Failed]; n > 0 {
		s += fmt.Sprintf(", %d failed", n)
	}
	if runErr != nil {
		s = "failed: " + runErr.Error() + " (" + s + ")"
	}
	return s
}

func withResults(payload json.RawMessage, results []action.TargetResult) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return payload
	}
	m["results"] = results
	return audit.MustJSON(m)
}

// afterApply schedules what a completed apply starts: its expiry, and the
// revert of targets an update dropped.
func (r *Reconciler) afterApply(ctx context.Context, tx *store.Store, e *store.Execution) ([]audit.Entry, []int64, error) {
	var entries []audit.Entry
	var ids []int64
	pb, err := r.versionPlaybook(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	if d, ok := pb.Expiry(); ok {
		at := r.opts.Now().Add(d)
		if err := tx.SetPlaybookExpiry(ctx, e.VersionID, &at); err != nil {
			return nil, nil, err
		}
		entries = append(entries, audit.Entry{
			Actor: audit.SystemActor, Event: "playbook.expiry_scheduled", Success: true,
			Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: e.Name, Digest: e.Digest},
			Payload: audit.MustJSON(map[string]any{"expires_at": at.UTC().Format(time.RFC3339), "after": pb.Spec.ExpiresAfter}),
		})
	}
	waiting, err := tx.WaitingExecutions(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range waiting {
		if w.Trigger != "update" || w.Name != e.Name || w.Operation != string(action.Revert) {
			continue
		}
		now := r.opts.Now()
		if err := tx.UpdateExecution(ctx, w.ID, store.ExecutionUpdate{State: store.ExecPending, NotBefore: &now,
			Reason:   fmt.Sprintf("%s@%.12s was applied: releasing the targets it dropped", e.Name, e.Digest),
			Decision: w.Decision, PolicyDigest: w.PolicyDigest}); err != nil {
			return nil, nil, err
		}
		nw, err := tx.ExecutionByID(ctx, w.ID)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, executionEntry(nw, "execution.pending", nw.Reason))
		ids = append(ids, nw.ID)
	}
	return entries, ids, nil
}

func (r *Reconciler) backoff(attempt int) time.Duration {
	d := r.opts.RetryBase
	for i := 1; i < attempt && d < r.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.opts.RetryMax)
}

// stepExpire queues the revert of every applied playbook whose
// expiresAfter has passed. The expiry was part of what was approved, so the
// revert needs no further approval.
func (r *Reconciler) stepExpire(ctx context.Context, p *pass) error {
	if p.holding {
		return nil
	}
	due, err := r.opts.Store.DueExpiries(ctx, r.opts.Now())
	if err != nil {
		return err
	}
	for _, v := range due {
		applied, err := r.opts.Store.ExecutionByKey(ctx, v.Name, v.Digest, string(action.Apply))
		if err != nil {
			return err
		}
		err = r.store(ctx, func(tx *store.Store) error {
			e, created, err := tx.CreateExecution(ctx, store.Execution{
				VersionID: v.ID, Name: v.Name, Digest: v.Digest, Path: v.Path, Action: v.Action, Environment: v.Environment,
				Operation: string(action.Revert), CommitSHA: v.CommitSHA, Targets: slices.Clone(applied.Targets),
				Trigger: "expiry", ChangeType: "delete", State: store.ExecPending, NotBefore: r.opts.Now(),
				Decision: applied.Decision, PolicyDigest: applied.PolicyDigest,
				Reason: fmt.Sprintf("expiresAfter %s has passed", v.ExpiresAt.UTC().Format(time.RFC3339)),
			})
			if err != nil || !created {
				return err
			}
			_, err = r.appendAudit(ctx, tx, executionEntry(e, "execution.intended", e.Reason))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
