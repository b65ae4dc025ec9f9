package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/store"
)

// bootstrap starts following the branch at its head. The operator chose the
// repository, so the head's policies and approvers are the first trusted
// base; every playbook present at the head is desired state and is judged
// by them like a merged one (allowed, or approved with signed approvals).
func (r *Reconciler) bootstrap(ctx context.Context, p *pass) error {
	c, err := r.opts.Source.CommitInfo(p.head)
	if err != nil {
		return err
	}
	t, err := r.trustAt(ctx, p.head)
	if err != nil {
		return err
	}
	changes, err := r.treeAsChanges(ctx, p.head)
	if err != nil {
		return err
	}
	st := store.RepoState{Branch: r.opts.Source.Branch(), ProcessedSHA: p.head, AdoptedSHA: p.head, ObservedHead: p.head}
	work, err := r.prepareChanges(ctx, c, changes, t, nil)
	if err != nil {
		return err
	}
	entry := audit.Entry{
		Actor: audit.SystemActor, Event: "repository.bootstrap", Success: true,
		Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "repository"},
		Payload: audit.MustJSON(map[string]any{"branch": st.Branch, "commit": p.head, "playbooks": len(work),
			"policy_digest": t.policies.Digest()}),
	}
	if err := r.commitWork(ctx, c, work, &st, entry); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "following the branch", slog.String("branch", st.Branch), slog.String("commit", p.head), slog.Int("playbooks", len(work)))
	p.state = &st
	return nil
}

// treeAsChanges lists every playbook of a commit's tree as added. A
// malformed playbooks/ tree fails with gitsrc.ErrMalformed.
func (r *Reconciler) treeAsChanges(ctx context.Context, sha string) ([]gitsrc.Change, error) {
	files, err := r.opts.Source.ListFiles(ctx, sha, playbook.Dir)
	if err != nil {
		return nil, err
	}
	var out []gitsrc.Change
	for _, p := range files {
		if playbook.IsPlaybookPath(p) {
			out = append(out, gitsrc.Change{Path: p, Type: gitsrc.Added})
		}
	}
	return out, nil
}

// stepCommits processes the commits between the processed one and the
// head, oldest first, each in one transaction with its audit entries. A
// malformed commit is refused on record and the next one is processed; an
// error of the infrastructure stops the step, and the next pass starts
// again from the last commit processed.
func (r *Reconciler) stepCommits(ctx context.Context, p *pass) error {
	if p.holding || p.head == p.state.ProcessedSHA {
		return nil
	}
	chain, err := r.opts.Source.FirstParentChain(ctx, p.state.ProcessedSHA, p.head, r.opts.MaxCommitsPerPass)
	if err != nil {
		return err
	}
	for _, c := range chain {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.processCommit(ctx, p, c); err != nil {
			return fmt.Errorf("commit %s: %w", c.SHA, err)
		}
	}
	return nil
}

// processCommit judges a commit's playbook changes with the trusted base,
// then decides whether its changes to policies/ and .writ/ are adopted. A
// commit whose tree writ will not read (gitsrc.ErrMalformed) is refused
// as a whole (refuseCommit).
func (r *Reconciler) processCommit(ctx context.Context, p *pass, c gitsrc.Commit) error {
	t, err := r.trustAt(ctx, p.state.AdoptedSHA)
	if err != nil {
		return err
	}
	var pbChanges []gitsrc.Change
	var work []*work
	meta := false
	changes, err := r.opts.Source.Changes(ctx, c.Parent, c.SHA)
	if err == nil {
		for _, ch := range changes {
			switch {
			case playbook.IsPlaybookPath(ch.Path):
				pbChanges = append(pbChanges, ch)
			case ch.Path == policiesDir || strings.HasPrefix(ch.Path, policiesDir+"/") || strings.HasPrefix(ch.Path, writDir+"/"):
				meta = true
			}
		}
		work, err = r.prepareChanges(ctx, c, pbChanges, t, changes)
	}
	var bad *gitsrc.MalformedError
	if errors.As(err, &bad) {
		if err := r.refuseCommit(ctx, p, c, bad, pbChanges); err != nil {
			return err
		}
		return r.holdIfMalformed(ctx, p, r.checkMeta(ctx, p))
	}
	if err != nil {
		return err
	}
	st := *p.state
	st.ProcessedSHA = c.SHA
	st.ObservedHead = p.head
	summary := map[string]any{"commit": c.SHA, "parent": c.Parent, "subject": c.Subject, "playbooks": len(work), "meta_changed": meta}
	entry := audit.Entry{
		Actor: audit.SystemActor, Event: "merge.seen", Success: true,
		Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "repository"},
		Payload: audit.MustJSON(summary),
	}
	if err := r.commitWork(ctx, c, work, &st, entry); err != nil {
		return err
	}
	p.state = &st
	// Changes to what decides are judged after the commit's playbooks (a PR
	// that edits a policy is judged by the old one).
	return r.holdIfMalformed(ctx, p, r.checkMeta(ctx, p))
}

// refuseCommit records that a commit's content is malformed and moves the
// branch position past it. None of its playbook changes is processed, the
// valid ones included: a tree that holds a malformed entry may mean
// something else to git, to a checkout and to writ, and what it asks is
// therefore not judged at all. The refusal (commit.refused) names the
// commit, the entry and the problem, and lists the playbook changes it
// drops when they are known; they take effect only when a later commit
// changes those files again. Its changes to policies/ and .writ/ are not
// refused here: what decides is adopted from the branch position, and
// only with the admin quorum, as always.
func (r *Reconciler) refuseCommit(ctx context.Context, p *pass, c gitsrc.Commit, bad *gitsrc.MalformedError, dropped []gitsrc.Change) error {
	st := *p.state
	st.ProcessedSHA = c.SHA
	st.ObservedHead = p.head
	payload := map[string]any{"commit": c.SHA, "parent": c.Parent, "subject": c.Subject,
		"problem": bad.Problem, "path": bad.Path, "reason": bad.Detail}
	if len(dropped) > 0 {
		var paths []string
		for _, ch := range dropped {
			paths = append(paths, ch.Path)
		}
		payload["playbooks_not_processed"] = paths
	}
	err := r.store(ctx, func(tx *store.Store) error {
		if err := tx.RecordCommit(ctx, c.SHA, c.Parent, c.Subject, map[string]any{"refused": bad.Problem, "path": bad.Path}); err != nil {
			return err
		}
		if err := tx.SaveRepoState(ctx, st); err != nil {
			return err
		}
		_, err := r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: "commit.refused", Success: false,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "repository"},
			Payload: audit.MustJSON(payload),
		})
		return err
	})
	if err != nil {
		return err
	}
	r.log.WarnContext(ctx, "refused a malformed commit: none of its playbook changes is processed",
		slog.String("commit", c.SHA), slog.String("problem", string(bad.Problem)), slog.String("path", bad.Path), slog.String("reason", bad.Detail))
	p.state = &st
	return nil
}

// holdIfMalformed turns a malformed tree of policies/ or .writ/ at the
// processed commit, met while checking what decides (err is checkMeta's),
// into a hold: such a change can never be adopted (its digest cannot even
// be computed), so writ keeps the last trusted version in force and says
// so, as for a change that lacks its admin approvals, until a later commit
// mends the tree. An admin's acknowledgement closes the hold without
// adopting anything. Other errors pass through.
func (r *Reconciler) holdIfMalformed(ctx context.Context, p *pass, err error) error {
	var bad *gitsrc.MalformedError
	if !errors.As(err, &bad) {
		return err
	}
	commit := p.state.ProcessedSHA
	if acked, err := r.opts.Store.AcknowledgedHold(ctx, store.HoldMetaChange, commit); err != nil || acked != nil {
		return err
	}
	malformed := map[string]string{"problem": string(bad.Problem), "path": bad.Path, "reason": bad.Detail}
	return r.store(ctx, func(tx *store.Store) error {
		h, created, err := tx.OpenHold(ctx, store.HoldMetaChange, commit, map[string]any{"malformed": malformed})
		if err != nil || !created {
			return err
		}
		r.log.WarnContext(ctx, "holding: policies/ or .writ/ is malformed at the branch position; the last trusted version stays in force",
			slog.String("commit", commit), slog.String("problem", string(bad.Problem)), slog.String("path", bad.Path))
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: "policy.change_held", Success: false,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
			Payload: audit.MustJSON(map[string]any{"hold": h.ID, "commit": commit, "trusted_commit": p.state.AdoptedSHA, "malformed": malformed}),
		})
		return err
	})
}

// work is one prepared change to a playbook, ready to be written.
type work struct {
	change  gitsrc.Change
	problem string // the file is not a valid playbook: recorded, nothing runs
	pb      *playbook.Playbook
	// version stored for pb (apply) or for the removed playbook (delete).
	version store.PlaybookVersion
	// prev is the version this change replaces or removes, if any.
	prev *store.PlaybookVersion
	// ops to create, in order.
	ops []store.Execution
	// activate records pb as in force at its path; deactivate removes the
	// path.
	activate   bool
	deactivate bool
	// staleVersion: the same content already ran once.
	note string
}

// prepareChanges reads, parses and decides every changed playbook of a
// commit, outside any transaction (it reads files and asks backends).
func (r *Reconciler) prepareChanges(ctx context.Context, c gitsrc.Commit, changes []gitsrc.Change, t *trust, all []gitsrc.Change) ([]*work, error) {
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
			if err := r.prepareRevert(ctx, c, w, t, "delete"); err != nil {
				return nil, err
			}
			continue
		}
		data, prob, err := playbook.ReadFile(fsys, ch.Path)
		if err != nil {
			return nil, err
		}
		if prob != nil {
			w.problem = prob.String()
			continue
		}
		pb, problems := playbook.Parse(ch.Path, data, playbook.Options{Actions: r.opts.Catalog, Environments: r.opts.Environments.Names()})
		if problems != nil {
			w.problem = problems.Error()
			continue
		}
		if other, dup := names[pb.Metadata.Name]; dup {
			w.problem = fmt.Sprintf("%s: metadata.name %q is already used by %s", ch.Path, pb.Metadata.Name, other)
			continue
		}
		if a, err := r.opts.Store.ActiveByName(ctx, pb.Metadata.Name); err == nil && a.Path != ch.Path && !deleted[a.Path] {
			w.problem = fmt.Sprintf("%s: metadata.name %q is already used by %s", ch.Path, pb.Metadata.Name, a.Path)
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
		if err := r.prepareApply(ctx, c, w, t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func versionOf(pb *playbook.Playbook, commit string) store.PlaybookVersion {
	return store.PlaybookVersion{
		Name: pb.Metadata.Name, Path: pb.Path, Digest: pb.Digest, Content: pb.Raw,
		Action: pb.Spec.Action, Environment: pb.Spec.Environment, Severity: pb.Spec.Severity, CommitSHA: commit,
	}
}

// prepareApply decides a new or updated playbook and plans its apply; for an
// update it also prepares the revert of the targets the update drops.
func (r *Reconciler) prepareApply(ctx context.Context, c gitsrc.Commit, w *work, t *trust) error {
	changeType := "create"
	if w.prev != nil && w.prev.Name == w.pb.Metadata.Name {
		changeType = "update"
	}
	req := action.RequestFor(w.pb, action.Apply)
	op := store.Execution{
		Name: w.pb.Metadata.Name, Digest: w.pb.Digest, Path: w.pb.Path, Action: w.pb.Spec.Action,
		Environment: w.pb.Spec.Environment, Operation: string(action.Apply), CommitSHA: c.SHA,
		Targets: req.Targets, Trigger: "merge", ChangeType: changeType, Manual: w.pb.Manual(),
	}
	r.decide(ctx, &op, w.pb, t, changeType)
	w.ops = append(w.ops, op)
	if changeType == "update" {
		prevPB, problems := playbook.Parse(w.prev.Path, w.prev.Content, playbook.Options{Actions: r.opts.Catalog})
		if problems != nil {
			return nil
		}
		keep := map[string]bool{}
		for _, tg := range req.Targets {
			keep[tg] = true
		}
		var dropped []string
		for _, tg := range action.RequestFor(prevPB, action.Revert).Targets {
			if !keep[tg] {
				dropped = append(dropped, tg)
			}
		}
		w.ops = append(w.ops, store.Execution{
			Name: w.prev.Name, Digest: w.prev.Digest, Path: w.prev.Path, Action: w.prev.Action,
			Environment: w.prev.Environment, Operation: string(action.Revert), CommitSHA: c.SHA,
			Targets: dropped, Trigger: "update", ChangeType: "update", State: store.ExecWaiting,
			Reason: fmt.Sprintf("runs after %s@%.12s is applied", w.pb.Metadata.Name, w.pb.Digest),
		})
	}
	return nil
}

// prepareRevert decides the removal of a playbook in force.
func (r *Reconciler) prepareRevert(ctx context.Context, c gitsrc.Commit, w *work, t *trust, changeType string) error {
	prevPB, problems := playbook.Parse(w.prev.Path, w.prev.Content, playbook.Options{Actions: r.opts.Catalog})
	if problems != nil {
		return fmt.Errorf("stored playbook %s no longer parses: %v", w.prev.Name, problems)
	}
	op := store.Execution{
		VersionID: w.prev.ID, Name: w.prev.Name, Digest: w.prev.Digest, Path: w.prev.Path, Action: w.prev.Action,
		Environment: w.prev.Environment, Operation: string(action.Revert), CommitSHA: c.SHA,
		Targets: action.RequestFor(prevPB, action.Revert).Targets, Trigger: "delete", ChangeType: changeType,
	}
	applied, err := r.opts.Store.ExecutionByKey(ctx, w.prev.Name, w.prev.Digest, string(action.Apply))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if applied == nil || applied.State != store.ExecCompleted {
		// Never applied: nothing to undo. A waiting apply is cancelled.
		w.note = "removed before it was executed"
		if applied != nil && (applied.State == store.ExecWaiting || applied.State == store.ExecPending) {
			w.ops = append(w.ops, store.Execution{ID: applied.ID, State: store.ExecCancelled, Reason: "the playbook was removed from the branch before it ran"})
		}
		return nil
	}
	r.decide(ctx, &op, prevPB, t, changeType)
	w.ops = append(w.ops, op)
	return nil
}

// decide records the trusted base's policy decision for an operation.
func (r *Reconciler) decide(ctx context.Context, op *store.Execution, pb *playbook.Playbook, t *trust, changeType string) {
	env, _ := r.opts.Environments.Lookup(pb.Spec.Environment)
	d := r.decideWith(ctx, t.policies, policy.Input{
		Playbook:    pb.PolicyInput(),
		Change:      policy.Change{Type: changeType},
		Environment: env,
	})
	op.Decision, _ = json.Marshal(d)
	op.PolicyDigest = t.policies.Digest()
	op.State = store.ExecWaiting
	if d.Outcome == policy.Deny {
		op.State = store.ExecDenied
		op.Reason = "denied by policy: " + reasonText(d)
	}
}

func reasonText(d policy.Decision) string {
	var parts []string
	for _, rs := range d.Reasons {
		parts = append(parts, rs.Message)
	}
	if len(parts) == 0 {
		return string(d.Outcome)
	}
	return strings.Join(parts, "; ")
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
		return []audit.Entry{{
			Actor: audit.SystemActor, Event: "playbook.invalid", Success: false,
			Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: w.change.Path},
			Payload: audit.MustJSON(map[string]any{"commit": c.SHA, "path": w.change.Path, "problems": w.problem}),
		}}, nil, nil
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
				Actor: audit.SystemActor, Event: "playbook.merged", Success: true,
				Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: v.Name, Digest: v.Digest},
				Payload: audit.MustJSON(map[string]any{"commit": c.SHA, "path": v.Path, "action": v.Action, "environment": v.Environment,
					"severity": v.Severity, "change": string(w.change.Type)}),
			})
		}
	}
	for _, op := range w.ops {
		if op.ID != 0 { // a state change of an existing operation
			if err := tx.UpdateExecution(ctx, op.ID, store.ExecutionUpdate{State: op.State, Reason: op.Reason}); err != nil && !errors.Is(err, store.ErrConflict) {
				return nil, nil, err
			}
			existing, err := tx.ExecutionByID(ctx, op.ID)
			if err != nil {
				return nil, nil, err
			}
			entries = append(entries, executionEntry(existing, "execution."+op.State, op.Reason))
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
		e, created, err := tx.CreateExecution(ctx, op)
		if err != nil {
			return nil, nil, err
		}
		if !created {
			// This content already had this operation: a version executes at
			// most once.
			if w.pb != nil && e.Operation == string(action.Apply) {
				entries = append(entries, executionEntry(e, "execution.not_repeated",
					"this exact playbook content was already handled once; change it (for example its ticket) to run it again"))
			}
			continue
		}
		entries = append(entries, executionEntry(e, "execution.intended", e.Reason))
		es, err := r.syncVersionStatus(ctx, tx, e, c.SHA)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, es...)
		if e.State == store.ExecWaiting && e.Trigger != "update" {
			judge = append(judge, e.ID)
		}
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

func executionEntry(e *store.Execution, event, reason string) audit.Entry {
	payload := map[string]any{
		"execution": e.ID, "operation": e.Operation, "state": e.State, "path": e.Path,
		"action": e.Action, "environment": e.Environment, "targets": e.Targets, "trigger": e.Trigger,
		"attempts": e.Attempts,
	}
	if reason != "" {
		payload["reason"] = reason
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

// statusFor maps an operation's state to its playbook version's status.
func statusFor(e *store.Execution) (string, bool) {
	if e.Operation == string(action.Revert) {
		switch e.State {
		case store.ExecCompleted:
			if e.Trigger == "expiry" {
				return store.StatusExpired, true
			}
			return store.StatusReverted, true
		case store.ExecFailed:
			return store.StatusFailed, true
		}
		return "", false // a revert waiting or running leaves the version completed
	}
	switch e.State {
	case store.ExecWaiting:
		if len(e.Verdict) > 0 || strings.Contains(e.Reason, "approv") {
			if strings.HasPrefix(e.Reason, "approved") {
				return store.StatusApproved, true
			}
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
		Actor: audit.SystemActor, Event: "playbook.status", Success: status != store.StatusFailed,
		Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: v.Name, Digest: v.Digest},
		Before:  audit.MustJSON(map[string]string{"status": v.Status, "reason": v.StatusReason}),
		After:   audit.MustJSON(map[string]string{"status": status, "reason": reason}),
	}}, nil
}

// holdRewrittenHistory records (once) that the branch no longer descends
// from what writ processed, and stops the pass: nothing runs until an admin
// acknowledges it.
func (r *Reconciler) holdRewrittenHistory(ctx context.Context, p *pass) error {
	p.holding = true
	err := r.opts.Store.Tx(ctx, func(tx *store.Store) error {
		h, created, err := tx.OpenHold(ctx, store.HoldHistoryRewritten, p.head, map[string]string{"processed": p.state.ProcessedSHA, "head": p.head})
		if err != nil || !created {
			return err
		}
		r.log.WarnContext(ctx, "branch history was rewritten: holding until an admin acknowledges it",
			slog.String("processed", p.state.ProcessedSHA), slog.String("head", p.head), slog.Int64("hold", h.ID))
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: "repository.history_rewritten", Success: false,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "repository"},
			Payload: audit.MustJSON(map[string]any{"hold": h.ID, "processed": p.state.ProcessedSHA, "head": p.head, "branch": r.opts.Source.Branch()}),
		})
		return err
	})
	if err != nil {
		return err
	}
	return errStop
}

// resync adopts an acknowledged rewritten head: the playbooks at the new
// head become the desired state, compared with what is in force (added
// ones are judged, missing ones reverted, changed ones updated), still
// judged by the policies and approvers trusted before the rewrite.
func (r *Reconciler) resync(ctx context.Context, p *pass, h *store.Hold) error {
	c, err := r.opts.Source.CommitInfo(p.head)
	if err != nil {
		return err
	}
	t, err := r.trustAt(ctx, p.state.AdoptedSHA)
	if err != nil {
		return err
	}
	inTree, err := r.treeAsChanges(ctx, p.head)
	if err != nil {
		return err
	}
	active, err := r.opts.Store.ActivePlaybooks(ctx)
	if err != nil {
		return err
	}
	present := map[string]bool{}
	var changes []gitsrc.Change
	for _, ch := range inTree {
		present[ch.Path] = true
		changes = append(changes, gitsrc.Change{Path: ch.Path, Type: gitsrc.Modified})
	}
	for _, a := range active {
		if !present[a.Path] {
			changes = append(changes, gitsrc.Change{Path: a.Path, Type: gitsrc.Deleted})
		}
	}
	slices.SortFunc(changes, func(a, b gitsrc.Change) int { return strings.Compare(a.Path, b.Path) })
	work, err := r.prepareChanges(ctx, c, changes, t, nil)
	if err != nil {
		return err
	}
	st := *p.state
	st.ProcessedSHA = p.head
	st.ObservedHead = p.head
	entry := audit.Entry{
		Actor: audit.SystemActor, Event: "repository.resync", Success: true,
		Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "repository"},
		Payload: audit.MustJSON(map[string]any{"hold": h.ID, "acknowledged_by": h.ResolvedBy, "from": p.state.ProcessedSHA, "to": p.head}),
	}
	if err := r.commitWork(ctx, c, work, &st, entry); err != nil {
		return err
	}
	p.state = &st
	return r.checkMeta(ctx, p)
}
