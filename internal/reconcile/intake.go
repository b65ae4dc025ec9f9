package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

// ErrRefused wraps why an envelope was refused at the door.
var ErrRefused = errors.New("approval refused")

// NewRefusalAuditor makes the bounded audit of refused envelopes
// (Options.Refusals; opts.Summary is set here): within a window the first
// opts.Burst refusals are audited one entry each (approval.refused), the
// others are counted by reason code, source (api, github) and client (the
// API caller's address, the GitHub login) into one approval.refused_summary
// entry per window. Run it on every replica that takes envelopes.
func NewRefusalAuditor(opts audit.BoundedOptions) (*audit.Bounded, error) {
	opts.Summary = audit.Entry{Actor: audit.Actor{ID: "anonymous", Role: "channel:*"}, Event: audit.EventApprovalRefusedSummary,
		Success: false, Subject: audit.Subject{Kind: audit.SubjectApproval, Name: "*"}}
	b, err := audit.NewBounded(opts)
	if err != nil {
		return nil, fmt.Errorf("reconcile: refusal auditor: %w", err)
	}
	return b, nil
}

// Intake is an accepted envelope.
type Intake struct {
	ID       int64    `json:"id"`
	Approver string   `json:"approver"`
	KeyID    string   `json:"key_id"`
	Decision string   `json:"decision"`
	Subjects []string `json:"subjects"`
	// Duplicate: this exact envelope was already stored.
	Duplicate bool `json:"duplicate"`
}

// SubmitApproval takes a signed envelope from any channel (API, CLI,
// forge). The channel is never trusted: the envelope must parse strictly
// and be signed by a key of the approvers file in force, or it is refused
// (and the refusal audited, bounded: see NewRefusalAuditor). An accepted
// envelope is stored with its audit entry in one transaction, and a pass
// is nudged to judge it; whether it counts is decided there, every time,
// against the exact digests.
func (r *Reconciler) SubmitApproval(ctx context.Context, raw []byte, ch approval.Submitted) (*Intake, error) {
	env, err := approval.Parse(raw)
	if err != nil {
		code := approval.CodeMalformed
		if errors.Is(err, approval.ErrNotApproval) {
			code = approval.CodeWrongPredicateType
		}
		return nil, r.refuse(ctx, ch, "", code, err)
	}
	t, err := r.currentTrust(ctx)
	if err != nil {
		return nil, err
	}
	key, err := env.VerifySigner(t.Keyring)
	if err != nil && r.opts.Recovery != nil && env.Statement.Predicate.Transition != nil {
		// A change to what decides may also be signed by the server's
		// recovery keys.
		if rk, rerr := env.VerifySigner(r.opts.Recovery); rerr == nil {
			key, err = rk, nil
		}
	}
	if err != nil {
		code := approval.CodeUnknownKey
		switch {
		case key != nil && key.Person.Disabled:
			code = approval.CodePersonDisabled
		case key != nil:
			code = approval.CodeKeyOfAnotherPerson
		}
		return nil, r.refuse(ctx, ch, env.Statement.Predicate.Approver, code, err)
	}
	if repo := env.Statement.Predicate.Repository; !strings.EqualFold(repo, r.opts.Repository) {
		return nil, r.refuse(ctx, ch, key.Person.ID, approval.CodeRepositoryMismatch, fmt.Errorf("the statement names repository %q; this is %s", repo, r.opts.Repository))
	}
	if msg := ch.LoginMismatch(key.Person); msg != "" {
		return nil, r.refuse(ctx, ch, key.Person.ID, approval.CodeLoginMismatch, errors.New(msg))
	}
	if why, err := r.stale(ctx, &env.Statement); err != nil {
		return nil, err
	} else if why != nil {
		return nil, r.refuse(ctx, ch, key.Person.ID, approval.CodeNotPending, why)
	}
	// A withdrawn statement stays withdrawn, in whatever bytes it comes
	// again (another encoding, another key id hint, another valid
	// signature of it).
	if withdrawn, err := r.opts.Store.StatementWithdrawn(ctx, env.StatementSHA256); err != nil {
		return nil, err
	} else if withdrawn {
		return nil, r.refuse(ctx, ch, key.Person.ID, approval.CodeWithdrawn,
			fmt.Errorf("this statement by %s was withdrawn (its review dismissed or its text edited away): it never counts again; sign a new one", key.Person.ID))
	}
	pred := env.Statement.Predicate
	rec := store.Approval{
		Envelope: raw, EnvelopeSHA256: env.SHA256, StatementSHA256: env.StatementSHA256, Decision: pred.Decision, Approver: key.Person.ID,
		Repository: pred.Repository, PullRequest: pred.PullRequest, HeadCommit: pred.HeadCommit,
		PolicyDigest: pred.PolicyDigest, PlanDigest: pred.PlanDigest, Reason: pred.Reason,
		IssuedAt: pred.IssuedAt, ExpiresAt: pred.ExpiresAt,
		Source: ch.Source, SourceRef: ch.SourceRef, SourceLogin: ch.SourceLogin,
	}
	in := &Intake{Approver: key.Person.ID, KeyID: key.ID, Decision: pred.Decision}
	for _, d := range env.Statement.Subject {
		rec.Subjects = append(rec.Subjects, store.ApprovalSubject{Digest: d.SHA256(), Name: d.Name})
		in.Subjects = append(in.Subjects, d.Name+"@sha256:"+d.SHA256())
	}
	err = r.store(ctx, func(tx *store.Store) error {
		got, created, err := tx.InsertApproval(ctx, rec)
		if err != nil {
			return err
		}
		in.ID, in.Duplicate = got.ID, !created
		if !created {
			return nil
		}
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.Actor{ID: key.Person.ID, Role: "signer"}, Event: audit.EventApprovalReceived, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectApproval, Name: pred.Decision, Digest: env.SHA256},
			Payload: audit.MustJSON(map[string]any{"id": got.ID, "key_id": key.ID, "decision": pred.Decision,
				"subjects": in.Subjects, "policy_digest": pred.PolicyDigest, "plan_digest": pred.PlanDigest,
				"source": ch.Source, "source_ref": ch.SourceRef, "source_login": ch.SourceLogin,
				"issued_at": pred.IssuedAt, "expires_at": pred.ExpiresAt}),
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	r.log.InfoContext(ctx, "approval received", slog.String("approver", in.Approver), slog.String("decision", in.Decision),
		slog.Int64("id", in.ID), slog.Bool("duplicate", in.Duplicate), slog.String("source", ch.Source))
	r.Nudge()
	return in, nil
}

// stale says why a statement can never count, or nil: it is about a
// playbook operation that is already done (completed, failed, denied,
// rejected, cancelled — a version superseded or removed before it ran is
// cancelled; an emergency apply that ran on break-glass is done once its
// deadline has passed), or about a change to policies/ or .writ/ from a
// trusted commit that is no longer in force. A statement about content writ has
// not seen yet (a pull request not merged) is taken: it may count later.
// Refusing never touches what is stored.
func (r *Reconciler) stale(ctx context.Context, st *approval.Statement) (why, err error) {
	p := st.Predicate
	if t := p.Transition; t != nil {
		rs, err := r.opts.Store.RepoState(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if rs.AdoptedSHA != "" && !strings.EqualFold(t.TrustedCommit, rs.AdoptedSHA) {
			return fmt.Errorf("the statement approves a change from trusted commit %.12s, but the trust in force is commit %.12s: it can never count (sign the change pending now: writ pending)",
				t.TrustedCommit, rs.AdoptedSHA), nil
		}
		return nil, nil
	}
	op := cmp.Or(p.Operation, approval.OperationApply)
	var digests []string
	for _, d := range st.Subject {
		digests = append(digests, d.SHA256())
	}
	ops, err := r.opts.Store.ExecutionsByDigests(ctx, digests)
	if err != nil {
		return nil, err
	}
	var done *store.Execution
	for _, e := range ops {
		if e.Operation != op || e.Incident != p.Incident {
			continue
		}
		if !e.State.Done() {
			return nil, nil // something it is about still waits
		}
		if e.State == store.ExecCancelled && op == approval.OperationRevert {
			// A revert cancelled before it ran, its version back on the
			// branch: the next removal or update takes it up again.
			unrun, err := neverRan(ctx, r.opts.Store, e, 0)
			if err != nil {
				return nil, err
			}
			if unrun {
				return nil, nil
			}
		}
		if op == approval.OperationApply && !p.BreakGlass {
			// An emergency apply that ran on break-glass waits for its
			// approvals until its deadline, and no longer: past it, they
			// could only confirm it late (it lapses).
			b, err := r.opts.Store.BreakGlassOf(ctx, e.ID)
			if err == nil && b.State == store.BreakGlassOpen {
				if r.opts.Now().Before(b.Deadline) {
					return nil, nil
				}
				return fmt.Errorf("the approvals of the %s of %s@%.12s, which ran on break-glass, were due by %s: past its deadline it lapses and is reverted, whatever is signed",
					op, e.Path, e.Digest, b.Deadline.UTC().Format(time.RFC3339)), nil
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
		done = e
	}
	if done == nil {
		return nil, nil
	}
	return fmt.Errorf("the %s of %s@%.12s is no longer pending: it is %s (%s)", op, done.Path, done.Digest, done.State,
		cmp.Or(done.Reason, done.ReasonCode)), nil
}

// refuse audits a refused envelope (bounded: a flood of junk is counted,
// not written entry by entry) and returns why, for the channel to show. It
// never fails on the audit: an append error is logged.
func (r *Reconciler) refuse(ctx context.Context, ch approval.Submitted, approver string, code approval.Code, why error) error {
	payload := map[string]any{"reason": why.Error(), "code": code, "source": ch.Source, "source_ref": ch.SourceRef, "source_login": ch.SourceLogin}
	client := ch.Source
	switch {
	case ch.Remote != "":
		payload["remote"] = ch.Remote
		client = ch.Remote
	case ch.SourceLogin != "":
		client = "@" + ch.SourceLogin
	}
	r.opts.Refusals.Record(ctx, audit.Entry{
		Actor: audit.Actor{ID: "anonymous", Role: "channel:" + ch.Source}, Event: audit.EventApprovalRefused, Success: false,
		Subject: audit.Subject{Kind: audit.SubjectApproval, Name: approver}, Payload: audit.MustJSON(payload),
	}, map[string]string{"reason": string(code), "source": ch.Source, "client": client})
	return fmt.Errorf("%w: %w", ErrRefused, why)
}

// WithdrawApprovals withdraws the statements that came through a channel
// reference (a dismissed GitHub review; with keep, the statements an edit
// removed from a text: all but those whose statement sha256 is in keep),
// in every envelope that carries them, audited, and nudges a pass.
func (r *Reconciler) WithdrawApprovals(ctx context.Context, source, sourceRef, by string, keep ...string) (int64, error) {
	var n int64
	err := r.store(ctx, func(tx *store.Store) error {
		var err error
		n, err = tx.WithdrawApprovals(ctx, source, sourceRef, keep...)
		if err != nil || n == 0 {
			return err
		}
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: audit.Actor{ID: by, Role: "channel:" + source}, Event: audit.EventApprovalWithdrawn, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectApproval, Name: sourceRef},
			Payload: audit.MustJSON(map[string]any{"source": source, "source_ref": sourceRef, "withdrawn": n, "kept": len(keep)}),
		})
		return err
	})
	if err == nil && n > 0 {
		r.Nudge()
	}
	return n, err
}

// ErrNotRunnable is returned when a manual run is asked for an operation
// that is not approved and waiting for an executor.
var ErrNotRunnable = errors.New("not waiting for an executor")

// RunManual starts an operation of a playbook marked execution: manual that
// policy allowed or approvers approved: the executor's decision, audited
// with its actor. Like every operation it is checked again at the moment
// of use.
func (r *Reconciler) RunManual(ctx context.Context, id int64, actor audit.Actor) error {
	err := r.store(ctx, func(tx *store.Store) error {
		e, err := tx.LockExecution(ctx, id)
		if err != nil {
			return err
		}
		if !e.Manual || e.State != store.ExecWaiting || e.ReasonCode != string(codeAwaitingRunner) {
			return fmt.Errorf("execution %d (%s, %s): %w", id, e.State, e.Reason, ErrNotRunnable)
		}
		now := r.opts.Now()
		reason := "started by " + actor.ID + " (execution: manual)"
		if err := tx.SetExecutionState(ctx, id, []store.ExecState{store.ExecWaiting}, store.ExecPending, string(codeStartedByHand), reason, &now); err != nil {
			return err
		}
		ne, err := tx.ExecutionByID(ctx, id)
		if err != nil {
			return err
		}
		entry := executionEntry(ne, eventManualStart, reason)
		entry.Actor = actor
		entries := []audit.Entry{entry}
		es, err := r.syncVersionStatus(ctx, tx, ne, ne.CommitSHA)
		if err != nil {
			return err
		}
		_, err = r.appendAudit(ctx, tx, append(entries, es...)...)
		return err
	})
	if err == nil {
		r.Nudge()
	}
	return err
}

// AcknowledgeHold is an admin's answer to a hold, audited with its actor.
// Rewritten history: writ then adopts the new head as desired state, still
// judged by the trust in force (nothing runs without its signatures). A
// change to policies/ or .writ/ without its signed quorum: the change is
// dismissed — refused and not held again — never adopted; adopting one
// takes the admins' signatures (or the server's recovery keys).
func (r *Reconciler) AcknowledgeHold(ctx context.Context, id int64, actor audit.Actor) error {
	err := r.store(ctx, func(tx *store.Store) error {
		h, err := tx.HoldByID(ctx, id)
		if err != nil {
			return err
		}
		if h.Kind == store.HoldAuditRollback {
			return fmt.Errorf("hold %d (the audit log was rolled back): %w (a quorum of admins, as for a change to policies/ or .writ/)", h.ID, ErrNeedsSignatures)
		}
		as, event, text := store.HoldAcknowledged, audit.EventRepositoryHoldAcknowledged, "acknowledged"
		if h.Kind == store.HoldMetaChange {
			as, event = store.HoldDismissed, eventMetaDismissed
			text = "dismissed: the change is refused and stays unadopted; adopting it needs the signed admin quorum"
		}
		if err := tx.ResolveHold(ctx, id, actor.ID, as, text); err != nil {
			return err
		}
		_, err = r.appendAudit(ctx, tx, audit.Entry{
			Actor: actor, Event: event, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "repository"},
			Payload: audit.MustJSON(map[string]any{"hold": h.ID, "kind": h.Kind, "commit": h.CommitSHA, "resolution": as, "detail": h.Detail}),
		})
		return err
	})
	if err == nil {
		r.Nudge()
	}
	return err
}
