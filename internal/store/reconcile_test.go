package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

func TestRepoStateAndHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	if _, err := st.RepoState(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("fresh state: %v", err)
	}
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	if err := st.SaveRepoState(ctx, store.RepoState{Branch: "main", ProcessedSHA: a, AdoptedSHA: a}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveRepoState(ctx, store.RepoState{Branch: "main", ProcessedSHA: b, AdoptedSHA: a, ObservedHead: b}); err != nil {
		t.Fatal(err)
	}
	rs, err := st.RepoState(ctx)
	if err != nil || rs.ProcessedSHA != b || rs.AdoptedSHA != a {
		t.Fatalf("state %+v %v", rs, err)
	}

	h1, created, err := st.OpenHold(ctx, store.HoldHistoryRewritten, b, "", map[string]string{"processed": a, "head": b})
	if err != nil || !created {
		t.Fatalf("open hold: %v %v", created, err)
	}
	h2, created, err := st.OpenHold(ctx, store.HoldHistoryRewritten, b, "", map[string]string{"processed": a, "head": b})
	if err != nil || created || h2.ID != h1.ID {
		t.Fatalf("same hold twice: %v %v %d/%d", created, err, h2.ID, h1.ID)
	}
	meta, _, err := st.OpenHold(ctx, store.HoldMetaChange, b, "ph/wh", nil)
	if err != nil || meta.MetaKey != "ph/wh" {
		t.Fatalf("open meta hold: %+v %v", meta, err)
	}
	open, _ := st.OpenHolds(ctx)
	if len(open) != 2 {
		t.Fatalf("%d open holds", len(open))
	}
	if err := st.ResolveHold(ctx, h1.ID, "admin", store.HoldAcknowledged, "acknowledged"); err != nil {
		t.Fatal(err)
	}
	if err := st.ResolveHold(ctx, h1.ID, "admin", store.HoldAcknowledged, "again"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("resolving twice: %v", err)
	}
	if h, err := st.AcknowledgedHold(ctx, store.HoldHistoryRewritten, a, b); err != nil || h == nil || h.ID != h1.ID {
		t.Fatalf("acknowledged hold: %+v %v", h, err)
	}
	// The acknowledgement is of the move from a to b, not of every move
	// to b.
	if h, err := st.AcknowledgedHold(ctx, store.HoldHistoryRewritten, "c", b); err != nil || h != nil {
		t.Fatalf("an acknowledgement of a -> b found for c -> b: %+v %v", h, err)
	}
	// A dismissed change to what decides is found by its content.
	if err := st.ResolveHold(ctx, meta.ID, "admin", store.HoldDismissed, "refused"); err != nil {
		t.Fatal(err)
	}
	if h, err := st.DismissedMetaChange(ctx, "ph/wh"); err != nil || h == nil || h.ID != meta.ID || h.ResolvedAs != store.HoldDismissed {
		t.Fatalf("dismissed change: %+v %v", h, err)
	}
	if h, err := st.DismissedMetaChange(ctx, "other/key"); err != nil || h != nil {
		t.Fatalf("another content dismissed: %+v %v", h, err)
	}
	if _, _, err := st.OpenHold(ctx, store.HoldMetaChange, a, "ph/wh2", nil); err != nil {
		t.Fatal(err)
	}
	n, err := st.ResolveHoldsOfKind(ctx, store.HoldMetaChange, "writ", store.HoldAdopted, "approved")
	if err != nil || n != 1 {
		t.Fatalf("resolve kind: %d %v", n, err)
	}
	// A new hold at the same commit may open once the old one is resolved.
	if _, created, _ := st.OpenHold(ctx, store.HoldHistoryRewritten, b, "", nil); !created {
		t.Fatal("a resolved hold blocked a new one")
	}
}

func newExecution(t *testing.T, st *store.Store, name, content, op string) *store.Execution {
	t.Helper()
	v, _, err := st.EnsurePlaybookVersion(context.Background(), newVersion(name, content))
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := st.CreateExecution(context.Background(), store.Execution{
		VersionID: v.ID, Name: v.Name, Digest: v.Digest, Path: v.Path, Action: "block_ip", Environment: "production",
		Operation: op, Targets: []string{"192.0.2.1"}, Trigger: "merge", ChangeType: "create",
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExecutionsHappenOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	e := newExecution(t, st, "block-a", "a", "apply")
	if e.State != store.ExecWaiting {
		t.Fatalf("new execution state %s", e.State)
	}
	again, created, err := st.CreateExecution(ctx, store.Execution{VersionID: e.VersionID, Name: e.Name, Digest: e.Digest, Operation: "apply", Trigger: "merge", ChangeType: "create"})
	if err != nil || created || again.ID != e.ID {
		t.Fatalf("second create: %v %v", created, err)
	}
	if _, err := st.RecordJudgement(ctx, e.ID, store.Judged{State: store.ExecPending, ReasonCode: "allowed", Reason: "allowed"}); err != nil {
		t.Fatal(err)
	}

	// Many claimers at once: exactly one gets it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	claimed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := st.Tx(ctx, func(tx *store.Store) error {
				c, err := tx.ClaimExecution(ctx, time.Now())
				if errors.Is(err, store.ErrNotFound) {
					return nil
				}
				if err != nil {
					return err
				}
				if c.ID != e.ID || c.State != store.ExecExecuting || c.Attempts != 1 {
					t.Errorf("claimed %+v", c)
				}
				mu.Lock()
				claimed++
				mu.Unlock()
				return tx.FinishExecution(ctx, c.ID, store.ExecCompleted, "", "done", "applied")
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if claimed != 1 {
		t.Fatalf("claimed %d times; want once", claimed)
	}
	if _, err := st.RecordJudgement(ctx, e.ID, store.Judged{State: store.ExecPending}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("re-judging a finished execution: %v", err)
	}
	if _, err := st.ClaimExecution(ctx, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim after completion: %v", err)
	}
}

func TestRetryAndCrashRecovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	e := newExecution(t, st, "block-b", "b", "apply")
	_, _ = st.RecordJudgement(ctx, e.ID, store.Judged{State: store.ExecPending})
	c, err := st.ClaimExecution(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A crash leaves it executing: the next claim takes it again.
	c2, err := st.ClaimExecution(ctx, time.Now())
	if err != nil || c2.ID != c.ID || c2.Attempts != 2 {
		t.Fatalf("reclaim after crash: %+v %v", c2, err)
	}
	later := time.Now().Add(time.Hour)
	if err := st.RetryExecution(ctx, c.ID, later, "timeout", "retry", "transient error"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimExecution(ctx, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claimed before its backoff: %v", err)
	}
	next, err := st.NextRunnableAt(ctx)
	if err != nil || next == nil || next.Sub(later).Abs() > time.Millisecond {
		t.Fatalf("next runnable %v %v; want %v", next, err, later)
	}
	if _, err := st.ClaimExecution(ctx, later.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveTargetResults(ctx, c.ID, []store.TargetResult{{Target: "192.0.2.1", Planned: "would_block", Result: "changed"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveTargetResults(ctx, c.ID, []store.TargetResult{{Target: "192.0.2.1", Result: "unchanged"}}); err != nil {
		t.Fatal(err)
	}
	ts, _ := st.ExecutionTargets(ctx, c.ID)
	if len(ts) != 1 || ts[0].Planned != "would_block" || ts[0].Result != "unchanged" || ts[0].Attempts != 2 {
		t.Fatalf("targets %+v", ts)
	}
}

func TestHeldTargetsAndExpiries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	commit := strings.Repeat("c", 40)
	done := func(name, content string, targets []string) *store.PlaybookVersion {
		v, _, _ := st.EnsurePlaybookVersion(ctx, newVersion(name, content))
		e, _, err := st.CreateExecution(ctx, store.Execution{VersionID: v.ID, Name: v.Name, Digest: v.Digest, Operation: "apply",
			Targets: targets, Trigger: "merge", ChangeType: "create", State: store.ExecPending})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ClaimExecution(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := st.FinishExecution(ctx, e.ID, store.ExecCompleted, "", "done", "applied"); err != nil {
			t.Fatal(err)
		}
		_ = st.SetPlaybookStatus(ctx, v.ID, store.StatusCompleted, "", commit)
		_ = st.SetActive(ctx, store.ActivePlaybook{Path: v.Path, Name: v.Name, VersionID: v.ID, SinceCommit: commit})
		return v
	}
	a := done("block-a", "a", []string{"192.0.2.1", "192.0.2.2"})
	b := done("block-b", "b", []string{"192.0.2.2", "192.0.2.3"})
	held, err := st.HeldTargets(ctx, "block_ip", "production", a.ID)
	if err != nil || len(held) != 2 || !held["192.0.2.2"] || !held["192.0.2.3"] {
		t.Fatalf("held except a: %v %v", held, err)
	}
	// b leaves the branch: it holds nothing any more.
	if err := st.RemoveActive(ctx, b.Path); err != nil {
		t.Fatal(err)
	}
	held, _ = st.HeldTargets(ctx, "block_ip", "production", a.ID)
	if len(held) != 0 {
		t.Fatalf("held after removal: %v", held)
	}

	past := time.Now().Add(-time.Minute)
	if err := st.SetPlaybookExpiry(ctx, a.ID, &past); err != nil {
		t.Fatal(err)
	}
	due, err := st.DueExpiries(ctx, time.Now())
	if err != nil || len(due) != 1 || due[0].ID != a.ID {
		t.Fatalf("due %v %v", due, err)
	}
	if next, err := st.NextExpiry(ctx); err != nil || next == nil || !next.Equal(past.Truncate(time.Microsecond)) {
		t.Fatalf("next expiry %v %v; want %v", next, err, past)
	}
	if _, _, err := st.CreateExecution(ctx, store.Execution{VersionID: a.ID, Name: a.Name, Digest: a.Digest, Operation: "revert", Trigger: "expiry", ChangeType: "delete"}); err != nil {
		t.Fatal(err)
	}
	due, _ = st.DueExpiries(ctx, time.Now())
	if len(due) != 0 {
		t.Fatalf("an expiry with a revert queued is still due: %v", due)
	}
	// Nor pending: the reconciler would wake for it at once, again and
	// again, while its revert waits for approval.
	if next, err := st.NextExpiry(ctx); err != nil || next != nil {
		t.Fatalf("next expiry with its revert queued: %v %v", next, err)
	}

	// A version whose apply failed after applying part of it has an
	// expiry too (the reconciler sets one only then): due like a
	// completed one.
	c := done("block-c", "c", []string{"192.0.2.9"})
	if err := st.SetPlaybookStatus(ctx, c.ID, store.StatusFailed, "partly applied", ""); err != nil {
		t.Fatal(err)
	}
	if err := st.SetPlaybookExpiry(ctx, c.ID, &past); err != nil {
		t.Fatal(err)
	}
	due, err = st.DueExpiries(ctx, time.Now())
	if err != nil || len(due) != 1 || due[0].ID != c.ID {
		t.Fatalf("due with a failed version %v %v", due, err)
	}
}

// A failed execution goes back to pending for a retry (its results and
// attempts kept, finished_at cleared), only from failed; its per-target
// view lists the targets no attempt reached as pending, planned as its
// plan says.
func TestRequeueFailedExecutionAndPendingTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	v, _, err := st.EnsurePlaybookVersion(ctx, newVersion("block-pair", "pair"))
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := st.CreateExecution(ctx, store.Execution{VersionID: v.ID, Name: v.Name, Digest: v.Digest, Operation: "apply",
		Targets: []string{"192.0.2.9", "192.0.2.1", "192.0.2.5"}, Trigger: "merge", ChangeType: "create", State: store.ExecPending,
		Plan: json.RawMessage(`{"targets":[{"target":"192.0.2.1","result":"would_block"},{"target":"192.0.2.5","result":"would_block"},{"target":"192.0.2.9","result":"would_block"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RequeueFailedExecution(ctx, e.ID, time.Now(), "retry_requested", "retry"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("requeue of a pending execution: %v", err)
	}
	if got := e.WithPending(nil); len(got) != 0 {
		t.Fatalf("targets of an execution not started: %+v", got)
	}
	if _, err := st.ClaimExecution(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveTargetResults(ctx, e.ID, []store.TargetResult{{Target: "192.0.2.1", Planned: "would_block", Result: "changed"},
		{Target: "192.0.2.9", Planned: "would_block", Result: "failed", Detail: "refused"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishExecution(ctx, e.ID, store.ExecFailed, "refused", "backend_error", "failed"); err != nil {
		t.Fatal(err)
	}
	failed, _ := st.ExecutionByID(ctx, e.ID)
	stored, err := st.ExecutionTargets(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := failed.WithPending(stored)
	want := []store.TargetResult{
		{Target: "192.0.2.1", Planned: "would_block", Result: "changed", Attempts: 1},
		{Target: "192.0.2.5", Planned: "would_block", Result: store.TargetPending},
		{Target: "192.0.2.9", Planned: "would_block", Result: "failed", Detail: "refused", Attempts: 1},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("targets %+v, want %+v", got, want)
	}
	if err := st.RequeueFailedExecution(ctx, e.ID, time.Now(), "retry_requested", "retry requested by oncall"); err != nil {
		t.Fatal(err)
	}
	again, _ := st.ExecutionByID(ctx, e.ID)
	if again.State != store.ExecPending || again.Attempts != 1 || again.FinishedAt != nil || again.ReasonCode != "retry_requested" || again.PlanDigest != failed.PlanDigest {
		t.Fatalf("requeued %+v", again)
	}
	if kept, _ := st.ExecutionTargets(ctx, e.ID); len(kept) != 2 {
		t.Fatalf("results after the requeue %+v", kept)
	}
}

// ReviveRevert takes up again only a revert cancelled before it ever ran
// (no attempt, no per-target result): one waiting, one that acted, or an
// apply, is refused, so that a version is still reverted at most once.
func TestReviveRevertOnlyWhenItNeverRan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	rv := newExecution(t, st, "block-back", "back", "revert")
	intent := store.Execution{VersionID: rv.VersionID, Path: rv.Path, CommitSHA: strings.Repeat("c", 40), Targets: []string{"192.0.2.1", "192.0.2.2"},
		Trigger: "delete", ChangeType: "delete", ReasonCode: "intended", Reason: "recorded; judging"}
	if _, err := st.ReviveRevert(ctx, rv.ID, intent); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("revive of a waiting revert: %v", err)
	}
	if err := st.SetExecutionState(ctx, rv.ID, []store.ExecState{store.ExecWaiting}, store.ExecCancelled, "restored", "back on the branch", nil); err != nil {
		t.Fatal(err)
	}
	got, err := st.ReviveRevert(ctx, rv.ID, intent)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != rv.ID || got.State != store.ExecWaiting || got.ReasonCode != "intended" || got.CommitSHA != intent.CommitSHA ||
		got.Trigger != "delete" || !slices.Equal(got.Targets, intent.Targets) || got.PlanDigest != "" {
		t.Fatalf("revived %+v", got)
	}
	// Once an attempt of it reached the backend, never again.
	if err := st.SetExecutionState(ctx, rv.ID, []store.ExecState{store.ExecWaiting}, store.ExecPending, "allowed", "allowed", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimExecution(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveTargetResults(ctx, rv.ID, []store.TargetResult{{Target: "192.0.2.1", Result: "changed"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.StopExecution(ctx, rv.ID, store.Judged{State: store.ExecCancelled, ReasonCode: "restored", Reason: "back"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ReviveRevert(ctx, rv.ID, intent); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("revive of a revert that acted: %v", err)
	}
	ap := newExecution(t, st, "block-back", "back", "apply")
	if err := st.SetExecutionState(ctx, ap.ID, []store.ExecState{store.ExecWaiting}, store.ExecCancelled, "removed", "removed", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ReviveRevert(ctx, ap.ID, intent); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("revive of an apply: %v", err)
	}
}
