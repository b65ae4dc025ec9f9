package reconcile

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"strings"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// stepMeta re-checks a pending change to policies/ or .writ/ (its admin
// approvals may have arrived since).
func (r *Reconciler) stepMeta(ctx context.Context, p *pass) error {
	if p.holding {
		return nil
	}
	return r.checkMeta(ctx, p)
}

// checkMeta compares what decides at the processed commit with what is in
// force. A difference is adopted only with the admin quorum, verified with
// the keyring in force (never the changed one); until then writ holds: it
// keeps judging with the last trusted version and says so.
func (r *Reconciler) checkMeta(ctx context.Context, p *pass) error {
	adopted, err := r.trustAt(ctx, p.state.AdoptedSHA)
	if err != nil {
		return err
	}
	ph, wh, err := r.metaHashes(p.state.ProcessedSHA)
	if err != nil {
		return err
	}
	if ph == adopted.policiesHash && wh == adopted.writHash {
		return r.releaseMetaHolds(ctx, "the branch is back to the trusted policies and approvers")
	}
	subjects, err := r.metaSubjects(ctx, p.state.AdoptedSHA, p.state.ProcessedSHA, ph != adopted.policiesHash, wh != adopted.writHash)
	if err != nil {
		return err
	}
	acked, err := r.opts.Store.AcknowledgedHold(ctx, store.HoldMetaChange, p.state.ProcessedSHA)
	if err != nil {
		return err
	}
	var digests []string
	for _, s := range subjects {
		digests = append(digests, s.Digest)
	}
	envs, err := r.envelopesFor(ctx, digests...)
	if err != nil {
		return err
	}
	keyring := adopted.keyring
	verdict := approval.VerifyMeta(approval.MetaInput{
		Changes:      subjects,
		Repository:   r.opts.Repository,
		PolicyDigest: adopted.policies.Digest(),
		Keyring:      keyring,
		Envelopes:    envs,
		Now:          r.opts.Now(),
		Options: approval.MetaOptions{
			ApprovalsRequired: r.opts.MetaApprovals,
			MaxAge:            r.opts.Approval.MaxAge,
			ClockSkew:         r.opts.Approval.ClockSkew,
		},
	})
	if verdict.QuorumMet || acked != nil {
		how := "admin approvals: " + verdict.Summary()
		if !verdict.QuorumMet {
			how = "acknowledged by " + acked.ResolvedBy + " (override)"
		}
		return r.adoptMeta(ctx, p, subjects, how)
	}
	return r.store(ctx, func(tx *store.Store) error {
		h, created, err := tx.OpenHold(ctx, store.HoldMetaChange, p.state.ProcessedSHA, map[string]any{
			"subjects": subjects, "approvals": verdict.Summary(),
		})
		if err != nil || !created {
			return err
		}
		r.log.WarnContext(ctx, "holding: a change to policies/ or .writ/ lacks its admin approvals",
			slog.String("commit", p.state.ProcessedSHA), slog.String("approvals", verdict.Summary()))
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: "policy.change_held", Success: false,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
			Payload: audit.MustJSON(map[string]any{"hold": h.ID, "commit": p.state.ProcessedSHA, "subjects": subjects,
				"trusted_commit": p.state.AdoptedSHA, "approvals": verdict.Summary()}),
		})
		return err
	})
}

func (r *Reconciler) adoptMeta(ctx context.Context, p *pass, subjects []approval.Subject, how string) error {
	st := *p.state
	st.AdoptedSHA = st.ProcessedSHA
	err := r.store(ctx, func(tx *store.Store) error {
		if err := tx.SaveRepoState(ctx, st); err != nil {
			return err
		}
		if _, err := tx.ResolveHoldsOfKind(ctx, store.HoldMetaChange, "writ", "adopted: "+how); err != nil {
			return err
		}
		_, err := r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: "policy.change_adopted", Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
			Payload: audit.MustJSON(map[string]any{"commit": st.AdoptedSHA, "previous": p.state.AdoptedSHA, "subjects": subjects, "how": how}),
		})
		return err
	})
	if err != nil {
		return err
	}
	r.log.InfoContext(ctx, "adopted new policies and approvers", slog.String("commit", st.AdoptedSHA), slog.String("how", how))
	p.state = &st
	return nil
}

func (r *Reconciler) releaseMetaHolds(ctx context.Context, why string) error {
	holds, err := r.opts.Store.OpenHolds(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(holds, func(h *store.Hold) bool { return h.Kind == store.HoldMetaChange }) {
		return nil
	}
	return r.store(ctx, func(tx *store.Store) error {
		if _, err := tx.ResolveHoldsOfKind(ctx, store.HoldMetaChange, "writ", why); err != nil {
			return err
		}
		_, err := r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: "policy.hold_released", Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
			Payload: audit.MustJSON(map[string]string{"reason": why}),
		})
		return err
	})
}

// metaSubjects lists what a meta-change approval must cover: the new
// policy-set digest, and every file under .writ/ that differs (a removed
// file by the digest of no content).
func (r *Reconciler) metaSubjects(ctx context.Context, from, to string, policiesChanged, writChanged bool) ([]approval.Subject, error) {
	var out []approval.Subject
	if policiesChanged {
		d, err := r.newPolicyDigest(to)
		if err != nil {
			return nil, err
		}
		out = append(out, approval.PolicySetSubject(d))
	}
	if writChanged {
		oldFiles, err := r.writFiles(from)
		if err != nil {
			return nil, err
		}
		newFiles, err := r.writFiles(to)
		if err != nil {
			return nil, err
		}
		var paths []string
		for p := range newFiles {
			paths = append(paths, p)
		}
		for p := range oldFiles {
			if _, ok := newFiles[p]; !ok {
				paths = append(paths, p)
			}
		}
		slices.Sort(paths)
		for _, p := range paths {
			if oldFiles[p] == newFiles[p] {
				continue
			}
			out = append(out, approval.FileSubject(p, []byte(newFiles[p])))
		}
	}
	return out, ctx.Err()
}

// writFiles reads every regular file under .writ/ at a commit.
func (r *Reconciler) writFiles(sha string) (map[string]string, error) {
	fsys, err := r.opts.Source.FS(sha)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	err = fs.WalkDir(fsys, writDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == writDir {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, prob, err := playbook.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		if prob != nil {
			// A symlink or an oversized file still changes the tree: cover
			// it by a digest of its description.
			out[p] = "unreadable: " + prob.Message
			return nil
		}
		out[p] = string(data)
		return nil
	})
	return out, err
}

// envelopesFor loads the stored, non-withdrawn approvals whose subjects
// include any of the digests.
func (r *Reconciler) envelopesFor(ctx context.Context, digests ...string) ([]approval.Submitted, error) {
	var out []approval.Submitted
	seen := map[string]bool{}
	for _, d := range digests {
		rows, err := r.opts.Store.ApprovalsForDigest(ctx, strings.TrimPrefix(d, "sha256:"))
		if err != nil {
			return nil, err
		}
		for _, a := range rows {
			if seen[a.EnvelopeSHA256] {
				continue
			}
			seen[a.EnvelopeSHA256] = true
			out = append(out, approval.Submitted{Envelope: a.Envelope, Source: a.Source, SourceRef: a.SourceRef, SourceLogin: a.SourceLogin})
		}
	}
	return out, nil
}

// store runs fn in a transaction of the reconciler's store.
func (r *Reconciler) store(ctx context.Context, fn func(tx *store.Store) error) error {
	return r.opts.Store.Tx(ctx, fn)
}
