package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
		Actor: audit.SystemActor, Event: "repository.bootstrap", Success: true,
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

// treeAsChanges lists every playbook of a commit's tree as added.
func (r *Reconciler) treeAsChanges(ctx context.Context, sha string) ([]gitsrc.Change, error) {
	fsys, err := r.opts.Source.FS(sha)
	if err != nil {
		return nil, err
	}
	var out []gitsrc.Change
	err = fs.WalkDir(fsys, playbook.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == playbook.Dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.IsDir() && playbook.IsPlaybookPath(p) {
			out = append(out, gitsrc.Change{Path: p, Type: gitsrc.Added})
		}
		return ctx.Err()
	})
	return out, err
}

// stepCommits processes the commits between the processed one and the
// head, oldest first, each in one transaction with its audit entries.
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
// then decides whether its changes to policies/ and .writ/ are adopted.
func (r *Reconciler) processCommit(ctx context.Context, p *pass, c gitsrc.Commit) error {
	t, err := r.trustAt(ctx, p.state.AdoptedSHA)
	if err != nil {
		return err
	}
	changes, err := r.opts.Source.Changes(ctx, c.Parent, c.SHA)
	if err != nil {
		return err
	}
	var pbChanges []gitsrc.Change
	meta := false
	for _, ch := range changes {
		switch {
		case playbook.IsPlaybookPath(ch.Path):
			pbChanges = append(pbChanges, ch)
		case ch.Path == policiesDir || strings.HasPrefix(ch.Path, policiesDir+"/") || strings.HasPrefix(ch.Path, writDir+"/"):
			meta = true
		}
	}
	work, err := r.prepareChanges(ctx, c, pbChanges, t, changes)
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
	return r.checkMeta(ctx, p)
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
