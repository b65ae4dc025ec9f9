package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/playbook"
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
		Actor: audit.SystemActor, Event: audit.EventRepositoryBootstrap, Success: true,
		Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "repository"},
		Payload: audit.MustJSON(map[string]any{"branch": st.Branch, "commit": p.head, "playbooks": len(work),
			"policy_digest": t.Policies.Digest()}),
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

// withTargetsFiles adds to a commit's (or a change's) playbook changes the
// playbooks in force whose targets file (spec.targetsFile, under
// indicators/) it changes, as modified: their content digest covers the
// file, so a new list of targets is new content, judged, proposed and
// approved like an edit of the playbook itself. They come after the
// playbooks the change touches itself.
func (r *Reconciler) withTargetsFiles(ctx context.Context, changes, pbChanges []gitsrc.Change) ([]gitsrc.Change, error) {
	var files []string
	for _, ch := range changes {
		if strings.HasPrefix(ch.Path, playbook.IndicatorsDir+"/") {
			files = append(files, ch.Path)
		}
	}
	if len(files) == 0 {
		return pbChanges, nil
	}
	paths, err := r.opts.Store.ActiveNamingTargetsFiles(ctx, files)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(pbChanges))
	for _, ch := range pbChanges {
		seen[ch.Path] = true
	}
	for _, p := range paths {
		if !seen[p] {
			pbChanges = append(pbChanges, gitsrc.Change{Path: p, Type: gitsrc.Modified})
		}
	}
	return pbChanges, nil
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
		pbChanges, err = r.withTargetsFiles(ctx, changes, pbChanges)
		if err == nil {
			work, err = r.prepareChanges(ctx, c, pbChanges, t, changes)
		}
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
		Actor: audit.SystemActor, Event: audit.EventMergeSeen, Success: true,
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
			Actor: audit.SystemActor, Event: audit.EventCommitRefused, Success: false,
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
// mends the tree. An admin may dismiss the hold (it is not opened again for
// that commit); nothing is adopted. Other errors pass through.
func (r *Reconciler) holdIfMalformed(ctx context.Context, p *pass, err error) error {
	var bad *gitsrc.MalformedError
	if !errors.As(err, &bad) {
		return err
	}
	commit := p.state.ProcessedSHA
	metaKey := "malformed:" + commit
	if dismissed, err := r.opts.Store.DismissedMetaChange(ctx, metaKey); err != nil || dismissed != nil {
		return err
	}
	malformed := map[string]string{"problem": string(bad.Problem), "path": bad.Path, "reason": bad.Detail}
	return r.store(ctx, func(tx *store.Store) error {
		// An admin may have dismissed it since the check above.
		if dismissed, err := tx.LockMetaChange(ctx, metaKey); err != nil || dismissed {
			return err
		}
		h, created, err := tx.OpenHold(ctx, store.HoldMetaChange, commit, metaKey, map[string]any{"malformed": malformed})
		if err != nil || !created {
			return err
		}
		r.log.WarnContext(ctx, "holding: policies/ or .writ/ is malformed at the branch position; the last trusted version stays in force",
			slog.String("commit", commit), slog.String("problem", string(bad.Problem)), slog.String("path", bad.Path))
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: audit.EventPolicyChangeHeld, Success: false,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
			Payload: audit.MustJSON(map[string]any{"hold": h.ID, "commit": commit, "trusted_commit": p.state.AdoptedSHA, "malformed": malformed}),
		})
		return err
	})
}

// holdRewrittenHistory records (once) that the branch no longer descends
// from what writ processed, and stops the pass: nothing runs until an admin
// acknowledges it.
func (r *Reconciler) holdRewrittenHistory(ctx context.Context, p *pass) error {
	p.holding = true
	err := r.opts.Store.Tx(ctx, func(tx *store.Store) error {
		h, created, err := tx.OpenHold(ctx, store.HoldHistoryRewritten, p.head, "", map[string]string{"processed": p.state.ProcessedSHA, "head": p.head})
		if err != nil || !created {
			return err
		}
		r.log.WarnContext(ctx, "branch history was rewritten: holding until an admin acknowledges it",
			slog.String("processed", p.state.ProcessedSHA), slog.String("head", p.head), slog.Int64("hold", h.ID))
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: audit.EventRepositoryHistoryRewritten, Success: false,
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
		Actor: audit.SystemActor, Event: audit.EventRepositoryResync, Success: true,
		Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "repository"},
		Payload: audit.MustJSON(map[string]any{"hold": h.ID, "acknowledged_by": h.ResolvedBy, "from": p.state.ProcessedSHA, "to": p.head}),
	}
	if err := r.commitWork(ctx, c, work, &st, entry); err != nil {
		return err
	}
	p.state = &st
	return r.checkMeta(ctx, p)
}
