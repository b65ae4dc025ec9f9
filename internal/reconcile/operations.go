package reconcile

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// Reason codes of the reconciler's own, beside judgement's (the executions
// table keeps them in reason_code; status is derived from codes, never
// from text).
const (
	codeIntended       judgement.Code = "intended"          // recorded; its first judgement follows
	codeAfterApply     judgement.Code = "after_apply"       // an update's revert waits for the update's apply
	codeAwaitingRunner judgement.Code = "awaiting_executor" // ready, execution: manual: an executor starts it
	codeStartedByHand  judgement.Code = "started_manually"  // an executor started it
	codeRemoved        judgement.Code = "removed"           // cancelled: the playbook left the branch before it ran
	codeSuperseded     judgement.Code = "superseded"        // cancelled: a newer version replaced it before it ran
	codeRestored       judgement.Code = "restored"          // cancelled: a revert whose version is back on the branch before it ran
	codeRetry          judgement.Code = "retry"             // a transient backend error: tried again later
	codeDone           judgement.Code = "done"              // completed: what it changed
	codeBackendError   judgement.Code = "backend_error"     // failed: the backend's error
	codeUnreadable     judgement.Code = "unreadable"        // failed: its stored playbook no longer parses
)

// Audit events of operations.
const (
	eventIntended    = audit.EventExecutionIntended
	eventNotRepeated = audit.EventExecutionNotRepeated
	eventStarted     = audit.EventExecutionStarted
	eventResumed     = audit.EventExecutionResumed
	eventRetry       = audit.EventExecutionRetry
	eventManualStart = audit.EventExecutionManualStart
	// eventStopped: the check at the moment of use found the operation no
	// longer allowed, approved or planned as approved; it went back before
	// touching the backend.
	eventStopped = audit.EventExecutionStopped
)

// work is one prepared change to a playbook, ready to be written.
type work struct {
	change  gitsrc.Change
	problem string // the file is not a valid playbook: recorded, nothing runs
	// problems are problem's located findings, kept for the API until a
	// later commit fixes or deletes the file.
	problems diag.Problems
	pb       *playbook.Playbook
	// version stored for pb (apply) or for the removed playbook (delete).
	version store.PlaybookVersion
	// prev is the version this change replaces or removes, if any.
	prev *store.PlaybookVersion
	// ops to create, in order; an op with an ID is a state change of an
	// existing one (a cancellation).
	ops []store.Execution
	// activate records pb as in force at its path; deactivate removes the
	// path.
	activate   bool
	deactivate bool
	// note says why nothing runs (the same content already ran once, ...).
	note string
}

// prepareChanges reads and parses every changed playbook of a commit and
// lays out the operations it intends, outside any transaction. Operations
// are judged once written (judge), under the trust then in force.
func (r *Reconciler) prepareChanges(ctx context.Context, c gitsrc.Commit, changes []gitsrc.Change, _ *trusted, _ []gitsrc.Change) ([]*work, error) {
	fsys, err := r.opts.Source.FS(c.SHA)
	if err != nil {
		return nil, err
	}
	// Paths deleted in this commit free their names for files added in it.
	deleted := map[string]bool{}
	for _, ch := range changes {
		if ch.Type == gitsrc.Deleted {
			deleted[ch.Path] = true
		}
	}
	var out []*work
	names := map[string]string{} // name -> path, within this commit
	for _, ch := range changes {
		w := &work{change: ch}
		out = append(out, w)
		active, err := r.opts.Store.ActiveByPath(ctx, ch.Path)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if active != nil {
			prev, err := r.opts.Store.PlaybookVersionByID(ctx, active.VersionID)
			if err != nil {
				return nil, err
			}
			w.prev = prev
		}
		if ch.Type == gitsrc.Deleted {
			if w.prev == nil {
				w.note = "a playbook that was never in force was removed"
				continue
			}
			w.deactivate = true
			if err := r.prepareRevert(ctx, c, w); err != nil {
				return nil, err
			}
			continue
		}
		data, prob, err := playbook.ReadFile(fsys, ch.Path)
		if err != nil {
			return nil, err
		}
		if prob != nil {
			w.problem, w.problems = prob.String(), diag.Problems{*prob}
			continue
		}
		// A targets file is read from the same commit's tree.
		pb, problems := playbook.Parse(ch.Path, data, playbook.Options{Actions: r.opts.Catalog, Environments: r.opts.Environments.Names(), Files: fsys})
		if problems != nil {
			w.problem, w.problems = problems.Error(), problems
			continue
		}
		if other, dup := names[pb.Metadata.Name]; dup {
			w.duplicate(ch.Path, pb.Metadata.Name, other)
			continue
		}
		if a, err := r.opts.Store.ActiveByName(ctx, pb.Metadata.Name); err == nil && a.Path != ch.Path && !deleted[a.Path] {
			w.duplicate(ch.Path, pb.Metadata.Name, a.Path)
			continue
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		names[pb.Metadata.Name] = ch.Path
		w.pb = pb
		w.activate = true
		w.version = versionOf(pb, c.SHA)
		if w.prev != nil && w.prev.Digest == pb.Digest && w.prev.Name == pb.Metadata.Name {
			w.note = "content unchanged"
			w.ops = nil
			continue
		}
		if err := r.prepareApply(ctx, c, w); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// duplicate records that the playbook at path takes a name other uses.
func (w *work) duplicate(path, name, other string) {
	p := diag.Errorf(path, diag.Position{}, "duplicate-name", "metadata.name %q is already used by %s", name, other)
	w.problem, w.problems = fmt.Sprintf("%s: metadata.name %q is already used by %s", path, name, other), diag.Problems{p}
}

// maxInvalidProblems bounds the problems kept for an invalid playbook file.
const maxInvalidProblems = 100

func versionOf(pb *playbook.Playbook, commit string) store.PlaybookVersion {
	v := store.PlaybookVersion{
		Name: pb.Metadata.Name, Path: pb.Path, Digest: pb.Digest, Content: pb.Raw,
		Action: pb.Spec.Action, Environment: pb.Spec.Environment, Severity: pb.Spec.Severity, CommitSHA: commit,
	}
	if pb.TargetsFile != nil {
		v.TargetsPath, v.TargetsFile = pb.TargetsFile.Path, pb.TargetsFile.Raw
	}
	return v
}

// parseVersion parses a stored version: its playbook and the targets file
// kept with it, never a later tree.
func (r *Reconciler) parseVersion(v *store.PlaybookVersion) (*playbook.Playbook, diag.Problems) {
	return playbook.ParseStored(v.Path, v.Content, v.TargetsFile, playbook.Options{Actions: r.opts.Catalog})
}

// prepareApply lays out the apply of a new or changed playbook and, for an
// update, the revert of the targets the update drops: an operation of its
// own, judged on its own (releasing a production block needs what any
// production change needs), that runs after the update's apply.
func (r *Reconciler) prepareApply(ctx context.Context, c gitsrc.Commit, w *work) error {
	changeType := "create"
	if w.prev != nil && w.prev.Name == w.pb.Metadata.Name {
		changeType = "update"
	}
	req := action.RequestFor(w.pb, action.Apply)
	w.ops = append(w.ops, store.Execution{
		Name: w.pb.Metadata.Name, Digest: w.pb.Digest, Path: w.pb.Path, Action: w.pb.Spec.Action,
		Environment: w.pb.Spec.Environment, Operation: string(action.Apply), CommitSHA: c.SHA,
		Targets: req.Targets, Trigger: string(judgement.Merge), ChangeType: changeType, Manual: w.pb.Manual(),
		State: store.ExecWaiting, ReasonCode: string(codeIntended), Reason: "recorded; judging",
	})
	if changeType != "update" {
		return nil
	}
	prevApply, err := r.opts.Store.ExecutionByKey(ctx, w.prev.Name, w.prev.Digest, string(action.Apply))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var prevTargets []string
	switch {
	case prevApply != nil && (prevApply.State == store.ExecWaiting || prevApply.State == store.ExecPending):
		// The version it replaces has not run (again): it is superseded,
		// never run later (its statements cannot bring it back). What an
		// earlier attempt of it applied (a partly applied apply whose
		// retry had not run yet) is released like any dropped target;
		// otherwise there is nothing of it to revert.
		if prevTargets, err = r.mayHaveApplied(ctx, prevApply); err != nil {
			return err
		}
		reason := fmt.Sprintf("superseded by %s@%.12s at commit %.12s before it ran", w.pb.Metadata.Name, w.pb.Digest, c.SHA)
		if len(prevTargets) > 0 {
			reason = fmt.Sprintf("superseded by %s@%.12s at commit %.12s before its retry ran; %d of its targets an earlier attempt applied are released where the new version drops them",
				w.pb.Metadata.Name, w.pb.Digest, c.SHA, len(prevTargets))
		}
		w.ops = append(w.ops, store.Execution{ID: prevApply.ID, State: store.ExecCancelled, ReasonCode: string(codeSuperseded), Reason: reason})
		if len(prevTargets) == 0 {
			return nil
		}
	case prevApply != nil && (prevApply.State == store.ExecDenied || prevApply.State == store.ExecRejected || prevApply.State == store.ExecCancelled):
		// Final: it never runs again. What an attempt of it applied before
		// it was stopped (a partly applied apply whose retry was rejected,
		// a lapsed break-glass) is released like any dropped target;
		// otherwise it never ran and there is nothing to revert.
		if prevTargets, err = r.mayHaveApplied(ctx, prevApply); err != nil {
			return err
		}
		if len(prevTargets) == 0 {
			return nil
		}
	default:
		if prevTargets, err = r.appliedTargets(ctx, w.prev); err != nil {
			return err
		}
	}
	// What the new version holds is kept; nothing when it is over (its
	// revert completed: the same bytes back on the branch are not applied
	// again, rule 4), and the version replaced releases it all.
	keep := map[string]bool{}
	over, err := r.revertCompleted(ctx, w.pb.Metadata.Name, w.pb.Digest)
	if err != nil {
		return err
	}
	for _, tg := range req.Targets {
		keep[tg] = !over
	}
	var dropped []string
	for _, tg := range prevTargets {
		if !keep[tg] {
			dropped = append(dropped, tg)
		}
	}
	if len(dropped) == 0 {
		return nil
	}
	w.ops = append(w.ops, store.Execution{
		Name: w.prev.Name, Digest: w.prev.Digest, Path: w.prev.Path, Action: w.prev.Action,
		Environment: w.prev.Environment, Operation: string(action.Revert), CommitSHA: c.SHA,
		Targets: dropped, Trigger: string(judgement.Update), ChangeType: "update",
		State: store.ExecWaiting, ReasonCode: string(codeIntended), Reason: "recorded; judging",
	})
	return nil
}

// revertCompleted reports whether a version's revert completed: the
// version is over and holds nothing, even with its bytes back on the
// branch (store.HeldTargets counts it out too).
func (r *Reconciler) revertCompleted(ctx context.Context, name, digest string) (bool, error) {
	rv, err := r.opts.Store.ExecutionByKey(ctx, name, digest, string(action.Revert))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return rv.State == store.ExecCompleted, nil
}

// appliedTargets are the targets a version in force holds: those its apply
// acted on (read from the stored apply, so that a version whose content no
// longer parses, an action removed from writ.yaml say, is still released),
// else those its content names.
func (r *Reconciler) appliedTargets(ctx context.Context, v *store.PlaybookVersion) ([]string, error) {
	applied, err := r.opts.Store.ExecutionByKey(ctx, v.Name, v.Digest, string(action.Apply))
	if err == nil && applied.State == store.ExecFailed {
		// A partly applied version holds only what its apply applied.
		return r.partlyApplied(ctx, applied)
	}
	if err == nil {
		return applied.Targets, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	pb, problems := r.parseVersion(v)
	if problems != nil {
		return nil, nil
	}
	return action.RequestFor(pb, action.Revert).Targets, nil
}

// prepareRevert lays out the revert of a playbook removed from the branch;
// one never applied is not reverted (its waiting apply is cancelled). A
// partly applied one (its apply failed for some targets, or went back to
// waiting, or ended rejected, denied or cancelled after an attempt) is
// reverted on the targets it applied: removing it from the branch is how
// a half-done playbook is rolled back, judged like any revert.
func (r *Reconciler) prepareRevert(ctx context.Context, c gitsrc.Commit, w *work) error {
	applied, err := r.opts.Store.ExecutionByKey(ctx, w.prev.Name, w.prev.Digest, string(action.Apply))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var targets []string
	waiting := applied != nil && (applied.State == store.ExecWaiting || applied.State == store.ExecPending)
	switch {
	case applied != nil && applied.State == store.ExecCompleted:
		targets = slices.Clone(applied.Targets)
	case applied != nil && applied.State == store.ExecFailed:
		if targets, err = r.partlyApplied(ctx, applied); err != nil {
			return err
		}
		if len(targets) == 0 {
			w.note = "removed; its failed apply applied none of its targets"
			return nil
		}
	case applied != nil && applied.State == store.ExecExecuting:
		// An apply executing: an attempt interrupted (a crash) and not
		// resumed yet, which the check at the moment of use now cancels.
		// What it applied is not recorded: the revert releases every
		// target it may have applied (releasing one it did not is a
		// no-op).
		targets = slices.Clone(applied.Targets)
		w.note = "removed while its apply was executing; the revert releases every target it may have applied"
	case applied != nil:
		// A partly applied apply retried, whose new attempt has not run,
		// or one stopped (rejected, denied) or cancelled after an attempt
		// (a lapsed break-glass): what the earlier attempts applied is
		// released like any partly applied playbook's.
		if targets, err = r.mayHaveApplied(ctx, applied); err != nil {
			return err
		}
	}
	if waiting {
		// A waiting apply never runs now.
		reason := "the playbook was removed from the branch before it ran"
		if len(targets) > 0 {
			reason = fmt.Sprintf("the playbook was removed from the branch before its retry ran; its revert releases the %d targets an earlier attempt applied", len(targets))
		}
		w.ops = append(w.ops, store.Execution{ID: applied.ID, State: store.ExecCancelled, ReasonCode: string(codeRemoved), Reason: reason})
	}
	if len(targets) == 0 {
		// Never applied: nothing to undo.
		w.note = "removed before it was executed"
		return nil
	}
	w.ops = append(w.ops, store.Execution{
		VersionID: w.prev.ID, Name: w.prev.Name, Digest: w.prev.Digest, Path: w.prev.Path, Action: w.prev.Action,
		Environment: w.prev.Environment, Operation: string(action.Revert), CommitSHA: c.SHA,
		Targets: targets, Trigger: string(judgement.Delete), ChangeType: "delete",
		State: store.ExecWaiting, ReasonCode: string(codeIntended), Reason: "recorded; judging",
	})
	return nil
}

// commitWork writes a commit's prepared changes, its audit entries and the
// new position in one transaction, then judges the new operations.
func (r *Reconciler) commitWork(ctx context.Context, c gitsrc.Commit, works []*work, st *store.RepoState, commitEntry audit.Entry) error {
	var created []int64
	err := r.opts.Store.Tx(ctx, func(tx *store.Store) error {
		created = created[:0]
		var entries []audit.Entry
		for _, w := range works {
			es, ids, err := r.writeWork(ctx, tx, c, w)
			if err != nil {
				return err
			}
			entries = append(entries, es...)
			created = append(created, ids...)
		}
		// Once every change is written (a playbook moved to another path
		// is a deletion and an addition, in either order): a version back
		// in force cancels its revert that has not run.
		for _, w := range works {
			if !w.activate {
				continue
			}
			es, err := r.cancelRestoredRevert(ctx, tx, c, w)
			if err != nil {
				return err
			}
			entries = append(entries, es...)
		}
		if err := tx.RecordCommit(ctx, c.SHA, c.Parent, c.Subject, map[string]any{"changes": len(works)}); err != nil {
			return err
		}
		if err := tx.SaveRepoState(ctx, *st); err != nil {
			return err
		}
		entries = append(entries, commitEntry)
		_, err := r.appendAudit(ctx, tx, entries...)
		return err
	})
	if err != nil {
		return err
	}
	for _, id := range created {
		if err := r.judgeByID(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// writeWork stores one prepared change inside the commit's transaction and
// returns its audit entries and the ids of operations to judge.
func (r *Reconciler) writeWork(ctx context.Context, tx *store.Store, c gitsrc.Commit, w *work) ([]audit.Entry, []int64, error) {
	if w.problem != "" {
		shown := w.problems
		if len(shown) > maxInvalidProblems {
			shown = shown[:maxInvalidProblems]
		}
		if shown == nil {
			shown = diag.Problems{diag.Errorf(w.change.Path, diag.Position{}, "invalid", "%s", w.problem)}
		}
		raw, err := json.Marshal(shown)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid playbook %s: %w", w.change.Path, err)
		}
		if err := tx.SetInvalidPlaybook(ctx, w.change.Path, c.SHA, raw); err != nil {
			return nil, nil, err
		}
		return []audit.Entry{{
			Actor: audit.SystemActor, Event: audit.EventPlaybookInvalid, Success: false,
			Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: w.change.Path},
			Payload: audit.MustJSON(map[string]any{"commit": c.SHA, "path": w.change.Path, "problems": w.problem}),
		}}, nil, nil
	}
	// A valid or deleted file is no longer an invalid one.
	if err := tx.ClearInvalidPlaybook(ctx, w.change.Path); err != nil {
		return nil, nil, err
	}
	var entries []audit.Entry
	var judge []int64
	versionID := int64(0)
	if w.pb != nil {
		v, created, err := tx.EnsurePlaybookVersion(ctx, w.version)
		if err != nil {
			return nil, nil, err
		}
		versionID = v.ID
		if created {
			entries = append(entries, audit.Entry{
				Actor: audit.SystemActor, Event: audit.EventPlaybookMerged, Success: true,
				Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: v.Name, Digest: v.Digest},
				Payload: audit.MustJSON(map[string]any{"commit": c.SHA, "path": v.Path, "action": v.Action, "environment": v.Environment,
					"severity": v.Severity, "change": string(w.change.Type)}),
			})
		}
	}
	for _, op := range w.ops {
		if op.ID != 0 { // a state change of an existing operation: it keeps its judgement
			err := tx.SetExecutionState(ctx, op.ID, []store.ExecState{store.ExecWaiting, store.ExecPending}, op.State, op.ReasonCode, op.Reason, nil)
			if err != nil && !errors.Is(err, store.ErrConflict) {
				return nil, nil, err
			}
			existing, err := tx.ExecutionByID(ctx, op.ID)
			if err != nil {
				return nil, nil, err
			}
			entries = append(entries, executionEntry(existing, eventFor(op.State), op.Reason))
			es, err := r.syncVersionStatus(ctx, tx, existing, c.SHA)
			if err != nil {
				return nil, nil, err
			}
			entries = append(entries, es...)
			continue
		}
		if op.VersionID == 0 {
			if op.Digest == w.version.Digest {
				op.VersionID = versionID
			} else if w.prev != nil && op.Digest == w.prev.Digest {
				op.VersionID = w.prev.ID
			}
		}
		e, created, revived, err := r.createOperation(ctx, tx, op)
		if err != nil {
			return nil, nil, err
		}
		if !created {
			// This content already had this operation: a version executes at
			// most once.
			if w.pb != nil && e.Operation == string(action.Apply) {
				entries = append(entries, executionEntry(e, eventNotRepeated,
					"this exact playbook content was already handled once; change it (for example its ticket) to run it again"))
			}
			continue
		}
		entry := executionEntry(e, eventIntended, e.Reason)
		if revived {
			// The revert its version's return cancelled before it ran,
			// taken up again: the same execution, intended anew.
			entry.Payload = withFields(entry.Payload, map[string]any{"revived": true})
		}
		entries = append(entries, entry)
		es, err := r.syncVersionStatus(ctx, tx, e, c.SHA)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, es...)
		judge = append(judge, e.ID)
	}
	if w.activate {
		if err := tx.SetActive(ctx, store.ActivePlaybook{Path: w.change.Path, Name: w.pb.Metadata.Name, VersionID: versionID, SinceCommit: c.SHA}); err != nil {
			return nil, nil, err
		}
	}
	if w.deactivate {
		if err := tx.RemoveActive(ctx, w.change.Path); err != nil {
			return nil, nil, err
		}
	}
	return entries, judge, nil
}

// createOperation records an intended operation (CreateExecution): the
// row of its key when there is none; else the row there is, unchanged
// (created false), except a revert that was cancelled before it ever ran
// (its version came back on the branch, cancelRestoredRevert), which this
// new intent takes up again (ReviveRevert, revived true): back to waiting
// with the new commit, trigger, change type and targets, to be judged
// afresh, and reported as created. It is still the version's one revert,
// and it acts at most once (trust rule 4); without this, removing the
// version again would record nothing and leave what it holds in force
// with no playbook.
func (r *Reconciler) createOperation(ctx context.Context, tx *store.Store, op store.Execution) (e *store.Execution, created, revived bool, err error) {
	e, created, err = tx.CreateExecution(ctx, op)
	if err != nil || created || op.Operation != string(action.Revert) || e.State != store.ExecCancelled {
		return e, created, false, err
	}
	if ok, err := neverRan(ctx, tx, e, 0); err != nil || !ok {
		return e, false, false, err
	}
	op.VersionID = cmp.Or(op.VersionID, e.VersionID)
	ne, err := tx.ReviveRevert(ctx, e.ID, op)
	if err != nil {
		return nil, false, false, err
	}
	return ne, true, true, nil
}

// neverRan reports whether no attempt of an operation reached its
// backend: at most attempts attempts counted (0 for an operation not
// claimed, whose attempts the moment of use stopped are not counted; 1
// for the claim being checked at the moment of use) and no per-target
// result.
func neverRan(ctx context.Context, st *store.Store, e *store.Execution, attempts int) (bool, error) {
	if e.Attempts > attempts {
		return false, nil
	}
	results, err := st.ExecutionTargets(ctx, e.ID)
	if err != nil {
		return false, err
	}
	return len(results) == 0, nil
}

// restorable reports whether a revert is one that its version back in
// force cancels: the revert of a removal or of an update (an expiry's, or
// a lapsed break-glass's, is due whatever the branch holds) that has not
// acted yet (neverRan with attempts). A revert that may have acted (an
// attempt resumed after a crash, a retry after a transient error or a
// partial failure) is left to finish: what it released is released, and
// it is the version's one revert (rule 4).
func restorable(ctx context.Context, st *store.Store, e *store.Execution, attempts int) (bool, error) {
	if e.Operation != string(action.Revert) || (e.Trigger != string(judgement.Delete) && e.Trigger != string(judgement.Update)) {
		return false, nil
	}
	return neverRan(ctx, st, e, attempts)
}

// cancelRestoredRevert cancels the revert of a version that is back in
// force on the branch (the same bytes merged again after its removal or
// update) while that revert has not run: it would release what the branch
// now says is in force, and the version's apply is not repeated (rule 4),
// so nothing could ever put it back. Cancelled (restored), it is taken up
// again by a later removal or update of the version (createOperation).
func (r *Reconciler) cancelRestoredRevert(ctx context.Context, tx *store.Store, c gitsrc.Commit, w *work) ([]audit.Entry, error) {
	rv, err := tx.ExecutionByKey(ctx, w.pb.Metadata.Name, w.pb.Digest, string(action.Revert))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rv.State != store.ExecWaiting && rv.State != store.ExecPending {
		return nil, nil
	}
	if ok, err := restorable(ctx, tx, rv, 0); err != nil || !ok {
		return nil, err
	}
	reason := fmt.Sprintf("%s@%.12s is back on the branch at commit %.12s before this revert ran: it is in force again, and its revert waits for its next removal or update",
		rv.Name, rv.Digest, c.SHA)
	err = tx.SetExecutionState(ctx, rv.ID, []store.ExecState{store.ExecWaiting, store.ExecPending}, store.ExecCancelled, string(codeRestored), reason, nil)
	if err != nil {
		return nil, err
	}
	ne, err := tx.ExecutionByID(ctx, rv.ID)
	if err != nil {
		return nil, err
	}
	entries := []audit.Entry{executionEntry(ne, eventFor(ne.State), reason)}
	es, err := r.syncVersionStatus(ctx, tx, ne, c.SHA)
	if err != nil {
		return nil, err
	}
	return append(entries, es...), nil
}

func executionEntry(e *store.Execution, event audit.Event, reason string) audit.Entry {
	payload := map[string]any{
		"execution": e.ID, "operation": e.Operation, "state": e.State, "path": e.Path,
		"action": e.Action, "environment": e.Environment, "trigger": e.Trigger,
		"attempts": e.Attempts,
	}
	auditTargets(payload, e.Targets)
	if reason != "" {
		payload["reason"] = reason
	}
	if e.ReasonCode != "" {
		payload["reason_code"] = e.ReasonCode
	}
	if e.PolicyDigest != "" {
		payload["policy_digest"] = e.PolicyDigest
	}
	if e.PlanDigest != "" {
		payload["plan_digest"] = e.PlanDigest
	}
	if len(e.Decision) > 0 {
		payload["decision"] = json.RawMessage(e.Decision)
	}
	if len(e.Verdict) > 0 {
		payload["approvals"] = json.RawMessage(e.Verdict)
	}
	if e.LastError != "" {
		payload["error"] = e.LastError
	}
	ok := e.State != store.ExecFailed && e.State != store.ExecDenied && e.State != store.ExecRejected
	return audit.Entry{
		Actor: audit.SystemActor, Event: event, Success: ok,
		Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: e.Name, Digest: e.Digest},
		Payload: audit.MustJSON(payload),
	}
}

// maxAuditList is the longest list of targets, or of per-target results,
// an audit entry carries whole. A longer one (a targets file holds up to
// 100,000) is recorded as its first action.ShownTargets items, its length
// and its sha256, so that an entry stays well under the log's 1 MiB: the
// whole list is the execution's (GET /api/v1/executions/{id}), and the
// digest in the entry proves it.
const maxAuditList = 1000

// auditTargets puts an operation's targets in an entry's payload:
// targets, whole up to maxAuditList; beyond, the first ones with
// targets_total and targets_sha256 (the hex sha256 of the targets in the
// operation's order, each followed by a newline).
func auditTargets(payload map[string]any, targets []string) {
	if len(targets) <= maxAuditList {
		payload["targets"] = targets
		return
	}
	h := sha256.New()
	for _, t := range targets {
		h.Write([]byte(t))
		h.Write([]byte{'\n'})
	}
	payload["targets"] = targets[:action.ShownTargets]
	payload["targets_total"] = len(targets)
	payload["targets_sha256"] = hex.EncodeToString(h.Sum(nil))
}

// auditResults puts per-target results in an entry's payload: results,
// whole up to maxAuditList; beyond, the first ones with results_total,
// results_counts (per result) and results_sha256 (the hex sha256 of one
// line per result in order: target, result and detail separated by tabs).
func auditResults(payload map[string]any, results []action.TargetResult) {
	if len(results) <= maxAuditList {
		payload["results"] = results
		return
	}
	h := sha256.New()
	counts := map[string]int{}
	for _, r := range results {
		fmt.Fprintf(h, "%s\t%s\t%s\n", r.Target, r.Result, r.Detail)
		counts[r.Result]++
	}
	payload["results"] = results[:action.ShownTargets]
	payload["results_total"] = len(results)
	payload["results_counts"] = counts
	payload["results_sha256"] = hex.EncodeToString(h.Sum(nil))
}

// statusFor maps an operation's state and reason code to its playbook
// version's status.
func statusFor(e *store.Execution) (string, bool) {
	if e.Operation == judgement.OperationHeal {
		return "", false // a heal restores what the completed apply did: the version stays completed
	}
	if e.Operation == string(action.Revert) {
		switch e.State {
		case store.ExecCompleted:
			if e.Trigger == string(judgement.Expiry) {
				return store.StatusExpired, true
			}
			if e.Trigger == string(judgement.Update) {
				return "", false // the update's version carries the status
			}
			return store.StatusReverted, true
		case store.ExecFailed:
			return store.StatusFailed, true
		}
		return "", false // a revert waiting or running leaves the version completed
	}
	switch e.State {
	case store.ExecWaiting:
		switch judgement.Code(e.ReasonCode) {
		case codeAwaitingRunner:
			return store.StatusApproved, true
		case judgement.CodeAwaitingApproval, judgement.CodePlanChanged:
			return store.StatusAwaitingApproval, true
		}
		return store.StatusPlanned, true
	case store.ExecPending:
		return store.StatusApproved, true
	case store.ExecExecuting:
		return store.StatusExecuting, true
	case store.ExecCompleted:
		return store.StatusCompleted, true
	case store.ExecFailed:
		return store.StatusFailed, true
	case store.ExecDenied:
		return store.StatusDenied, true
	case store.ExecRejected:
		return store.StatusRejected, true
	}
	return "", false
}

// syncVersionStatus moves the version to the status its operation implies
// and returns the audit entry of that change (none when unchanged).
func (r *Reconciler) syncVersionStatus(ctx context.Context, tx *store.Store, e *store.Execution, commit string) ([]audit.Entry, error) {
	status, ok := statusFor(e)
	if !ok || e.VersionID == 0 {
		return nil, nil
	}
	v, err := tx.PlaybookVersionByID(ctx, e.VersionID)
	if err != nil {
		return nil, err
	}
	reason := e.Reason
	if v.Status == status && v.StatusReason == reason {
		return nil, nil
	}
	if err := tx.SetPlaybookStatus(ctx, v.ID, status, reason, commit); err != nil {
		return nil, err
	}
	if e.Operation == string(action.Apply) && len(e.Decision) > 0 {
		if err := tx.SetPlaybookDecision(ctx, v.ID, e.Decision, e.PolicyDigest, e.PlanDigest); err != nil {
			return nil, err
		}
	}
	return []audit.Entry{{
		Actor: audit.SystemActor, Event: audit.EventPlaybookStatus, Success: status != store.StatusFailed,
		Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: v.Name, Digest: v.Digest},
		Before:  audit.MustJSON(map[string]string{"status": v.Status, "reason": v.StatusReason}),
		After:   audit.MustJSON(map[string]string{"status": status, "reason": reason}),
	}}, nil
}

// operation rebuilds the operation an execution carries out, for its
// judgement: the stored content of its version, and the targets it acts
// on. A revert releases only what no other playbook in force still holds
// (the rest is returned as held).
func (r *Reconciler) operation(ctx context.Context, e *store.Execution) (judgement.Operation, []string, error) {
	return r.operationOf(ctx, e, nil)
}

// operationOf is operation with the execution's version preloaded (nil:
// load it).
func (r *Reconciler) operationOf(ctx context.Context, e *store.Execution, v *store.PlaybookVersion) (judgement.Operation, []string, error) {
	if v == nil {
		var err error
		if v, err = r.opts.Store.PlaybookVersionByID(ctx, e.VersionID); err != nil {
			return judgement.Operation{}, nil, err
		}
	}
	pb, problems := r.parseVersion(v)
	if problems != nil {
		return judgement.Operation{}, nil, fmt.Errorf("%w: stored playbook %s no longer parses (was an action removed from writ.yaml?): %w", errUnreadable, v.Name, problems)
	}
	if e.Operation == judgement.OperationHeal {
		return healOperation(e, pb), nil, nil
	}
	op := judgement.Operation{Kind: action.Operation(e.Operation), Trigger: judgement.Trigger(e.Trigger), ChangeType: e.ChangeType, Playbook: pb}
	if op.Kind == action.Apply {
		return op, nil, nil
	}
	h, err := r.opts.Store.HeldTargets(ctx, e.Action, e.Environment, e.VersionID)
	if err != nil {
		return op, nil, err
	}
	var held []string
	op.Targets = slices.DeleteFunc(slices.Clone(e.Targets), func(t string) bool {
		if h[t] {
			held = append(held, t)
			return true
		}
		return false
	})
	if op.Targets == nil {
		op.Targets = []string{}
	}
	return op, held, nil
}

// versionPlaybook parses the stored content of an operation's version.
func (r *Reconciler) versionPlaybook(ctx context.Context, e *store.Execution) (*playbook.Playbook, error) {
	v, err := r.opts.Store.PlaybookVersionByID(ctx, e.VersionID)
	if err != nil {
		return nil, err
	}
	pb, problems := r.parseVersion(v)
	if problems != nil {
		return nil, fmt.Errorf("stored playbook %s no longer parses: %w", v.Name, problems)
	}
	return pb, nil
}
