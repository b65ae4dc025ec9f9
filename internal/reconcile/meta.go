package reconcile

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/internal/trust"
)

// Audit events of changes to what decides.
const (
	eventMetaHeld      = audit.EventPolicyChangeHeld
	eventMetaAdopted   = audit.EventPolicyChangeAdopted
	eventMetaReleased  = audit.EventPolicyHoldReleased
	eventMetaDismissed = audit.EventPolicyChangeDismissed
)

// stepMeta re-checks a pending change to policies/ or .writ/ (its admin
// approvals may have arrived since).
func (r *Reconciler) stepMeta(ctx context.Context, p *pass) error {
	if p.holding {
		return nil
	}
	return r.checkMeta(ctx, p)
}

// metaChange is the change to what decides from the adopted commit to
// another: nil when they decide alike (the same policy set digest, the
// same files under .writ/), whatever else differs.
func (r *Reconciler) metaChange(ctx context.Context, adopted *trusted, to string) (*trust.Change, error) {
	base, err := r.opts.Source.FS(adopted.Commit)
	if err != nil {
		return nil, err
	}
	head, err := r.opts.Source.FS(to)
	if err != nil {
		return nil, err
	}
	return trust.Diff(ctx, adopted.Commit, base, head, r.opts.DefaultPolicies)
}

// verifyMeta judges the statements about a change to what decides: by the
// admins of the keyring in force (never the changed one), else by the
// server's recovery keys. It says who adopted it, for the record.
func (r *Reconciler) verifyMeta(ctx context.Context, adopted *trusted, c *trust.Change) (approval.Verdict, string, bool, error) {
	envs, err := r.envelopesFor(ctx, c.Digests()...)
	if err != nil {
		return approval.Verdict{}, "", false, err
	}
	in := approval.MetaInput{
		Changes:      c.Subjects,
		Transition:   c.Transition,
		Repository:   r.opts.Repository,
		PolicyDigest: adopted.PolicyDigest,
		Keyring:      adopted.Keyring,
		Envelopes:    envs,
		Now:          r.opts.Now(),
		Options: approval.MetaOptions{
			ApprovalsRequired: r.opts.MetaApprovals,
			MaxAge:            r.opts.Approval.MaxAge,
			ClockSkew:         r.opts.Approval.ClockSkew,
		},
	}
	v := approval.VerifyMeta(in)
	if v.QuorumMet || r.opts.Recovery == nil {
		return v, "admin approvals: " + v.Summary(), false, nil
	}
	in.Keyring = r.opts.Recovery
	in.Options.ApprovalsRequired = r.opts.RecoveryApprovals
	if rv := approval.VerifyMeta(in); rv.QuorumMet {
		return rv, "recovery keys: " + rv.Summary(), true, nil
	}
	return v, "admin approvals: " + v.Summary(), false, nil
}

// checkMeta compares what decides at the processed commit with what is in
// force. A difference is adopted only with the signed admin quorum,
// verified with the keyring in force (or the server's recovery keys);
// until then writ holds: it keeps judging with the last trusted version
// and says so. An admin may dismiss the hold (the change is refused and
// not held again); nobody adopts a change without signatures.
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
	change, err := r.metaChange(ctx, adopted, p.state.ProcessedSHA)
	if err != nil {
		return err
	}
	if change == nil {
		// Only what does not decide changed (policy tests, say).
		return r.releaseMetaHolds(ctx, "the branch decides as the trusted policies and approvers do")
	}
	verdict, how, recovery, err := r.verifyMeta(ctx, adopted, change)
	if err != nil {
		return err
	}
	if verdict.QuorumMet {
		return r.adoptMeta(ctx, p, change, how, recovery)
	}
	metaKey := ph + "/" + wh
	if d, err := r.opts.Store.DismissedMetaChange(ctx, metaKey); err != nil {
		return err
	} else if d != nil {
		return nil // refused by an admin: still not adopted, not held again
	}
	return r.store(ctx, func(tx *store.Store) error {
		// An admin may have dismissed it since the check above.
		if dismissed, err := tx.LockMetaChange(ctx, metaKey); err != nil || dismissed {
			return err
		}
		h, created, err := tx.OpenHold(ctx, store.HoldMetaChange, p.state.ProcessedSHA, metaKey, map[string]any{
			"subjects": change.Subjects, "transition": change.Transition, "approvals": verdict.Summary(),
		})
		if err != nil || !created {
			return err
		}
		r.log.WarnContext(ctx, "holding: a change to policies/ or .writ/ lacks its admin approvals",
			slog.String("commit", p.state.ProcessedSHA), slog.String("approvals", verdict.Summary()))
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: eventMetaHeld, Success: false,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
			Payload: audit.MustJSON(map[string]any{"hold": h.ID, "commit": p.state.ProcessedSHA, "subjects": change.Subjects,
				"transition": change.Transition, "trusted_commit": p.state.AdoptedSHA, "approvals": verdict.Summary()}),
		})
		return err
	})
}

func (r *Reconciler) adoptMeta(ctx context.Context, p *pass, c *trust.Change, how string, recovery bool) error {
	st := *p.state
	st.AdoptedSHA = st.ProcessedSHA
	err := r.store(ctx, func(tx *store.Store) error {
		if err := tx.SaveRepoState(ctx, st); err != nil {
			return err
		}
		if _, err := tx.ResolveHoldsOfKind(ctx, store.HoldMetaChange, "writ", store.HoldAdopted, "adopted: "+how); err != nil {
			return err
		}
		_, err := r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: eventMetaAdopted, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
			Payload: audit.MustJSON(map[string]any{"commit": st.AdoptedSHA, "previous": p.state.AdoptedSHA, "subjects": c.Subjects,
				"transition": c.Transition, "how": how, "recovery": recovery}),
		})
		return err
	})
	if err != nil {
		return err
	}
	r.log.InfoContext(ctx, "adopted new policies and approvers", slog.String("commit", st.AdoptedSHA), slog.String("how", how),
		slog.Bool("recovery", recovery))
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
		if _, err := tx.ResolveHoldsOfKind(ctx, store.HoldMetaChange, "writ", store.HoldReleased, why); err != nil {
			return err
		}
		_, err := r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: eventMetaReleased, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
			Payload: audit.MustJSON(map[string]string{"reason": why}),
		})
		return err
	})
}

// envelopesFor loads the stored, non-withdrawn statements whose subjects
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
			out = append(out, submitted(a))
		}
	}
	return out, nil
}

func submitted(a *store.Approval) approval.Submitted {
	return approval.Submitted{Envelope: a.Envelope, Source: a.Source, SourceRef: a.SourceRef, SourceLogin: a.SourceLogin}
}

// store runs fn in a transaction of the reconciler's store.
func (r *Reconciler) store(ctx context.Context, fn func(tx *store.Store) error) error {
	return r.opts.Store.Tx(ctx, fn)
}
