// Package reconcile is writ's main loop: it follows the content
// repository's branch, judges every changed playbook with the trusted base
// (the policies and approvers in force before the change), checks signed
// approvals, executes what is allowed or approved exactly once, reverts
// deleted and expired playbooks, and records every state change with its
// audit entry in the same transaction.
//
// One pass (ReconcileOnce) runs ordered steps — fetch, history, commits,
// meta, judge, expire, execute — and records its outcome in one place. A
// commit whose content is malformed (gitsrc.ErrMalformed) is refused on
// record and the branch moves past it; errors of the infrastructure fail
// the pass, which runs what is safe without the failed step and is tried
// again.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/metrics"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/store"
)

// Options configures a reconciler.
type Options struct {
	Source   *gitsrc.Source
	Store    *store.Store
	Audit    *audit.Log
	Backends *action.Registry
	// Catalog is the actions playbooks may use. Default playbook.Builtin.
	Catalog playbook.Catalog
	// Environments policies see. Default policy.DefaultEnvironments().
	Environments policy.Environments
	// DefaultPolicies are used when the trusted tree has no policies/
	// directory (the embedded defaults). Nil: such a tree denies everything.
	DefaultPolicies fs.FS
	// Approval rules for playbooks.
	Approval approval.Options
	// MetaApprovals is how many admins must approve a change to policies/
	// or .writ/. Default 2.
	MetaApprovals int
	// Recovery, when set, is the server operator's keyring of recovery keys
	// (writ.yaml approvals.recovery): RecoveryApprovals of them may adopt a
	// change to policies/ or .writ/ when the admins cannot (lost keys). The
	// adoption is signed, audited and notified like any other.
	Recovery          *approval.Keyring
	RecoveryApprovals int
	// Repository is the content repository's identity (OWNER/NAME): signed
	// statements count only when they name it. Required.
	Repository string
	// PollInterval between fetches. Default 30s.
	PollInterval time.Duration
	// MaxAttempts per execution before it fails. Default 5.
	MaxAttempts int
	// RetryBase is the first retry delay; it doubles per attempt up to
	// RetryMax. Defaults 2s and 5m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// BreakGlassWindow is how long an emergency apply that ran on a
	// break-glass statement has to gather its normal quorum before it is
	// reverted. Default 4h.
	BreakGlassWindow time.Duration
	// MaxCommitsPerPass bounds one pass. Default 1000.
	MaxCommitsPerPass int
	// JudgeInterval between full re-judgements of every waiting operation
	// (approvals expire, live state changes). Between them, only operations
	// whose approvals changed are judged. Default 1m.
	JudgeInterval time.Duration
	// MaxPlaybooksPerChange bounds the playbook files Evaluate judges in one
	// change (a pull request): each is parsed, decided and dry-run against
	// live systems at every event of the pull request. A larger change
	// fails its check unjudged. Merged commits are not bounded. Default
	// 1000.
	MaxPlaybooksPerChange int
	// PolicyCompileTimeout bounds compiling one commit's policies (default
	// policy.Options' 10s); past it the set is fail-closed and compiled
	// again after a minute.
	PolicyCompileTimeout time.Duration
	// Metrics, when set, receives pass, execution, policy and audit figures.
	Metrics *metrics.Metrics
	// Refusals audits envelopes refused at the door, bounded (see
	// NewRefusalAuditor): anyone can send junk. Nil: one with the
	// defaults on Store and Audit, read with Now, whose summary is written
	// when a refusal comes after its window ended; run a Refusals of your
	// own (its Run) to have every summary written on time.
	Refusals *audit.Bounded
	// AuditWatch, when set, is the leader's guard against a rolled-back
	// audit log (CheckAuditLog): while it holds, no pass runs.
	AuditWatch *audit.RollbackWatch
	// Drift configures drift detection (drift.go): how often, and per
	// environment whether drift is reported or healed.
	Drift DriftOptions
	// OnNudge, when set, is called by Nudge too: a replica that does not
	// run the loop forwards nudges to the one that does.
	OnNudge func()
	Logger  *slog.Logger
	Now     func() time.Time
}

func (o *Options) setDefaults() {
	if o.Catalog == nil {
		o.Catalog = playbook.Builtin
	}
	if o.Environments == nil {
		o.Environments = policy.DefaultEnvironments()
	}
	if o.MetaApprovals == 0 {
		o.MetaApprovals = approval.DefaultMetaApprovals
	}
	if o.RecoveryApprovals == 0 {
		o.RecoveryApprovals = approval.DefaultMetaApprovals
	}
	if o.PollInterval == 0 {
		o.PollInterval = 30 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.RetryBase == 0 {
		o.RetryBase = 2 * time.Second
	}
	if o.BreakGlassWindow == 0 {
		o.BreakGlassWindow = 4 * time.Hour
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.MaxCommitsPerPass == 0 {
		o.MaxCommitsPerPass = 1000
	}
	if o.JudgeInterval == 0 {
		o.JudgeInterval = time.Minute
	}
	if o.MaxPlaybooksPerChange == 0 {
		o.MaxPlaybooksPerChange = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o *Options) validate() error {
	switch {
	case o.Source == nil:
		return errors.New("reconcile: a source is required")
	case o.Store == nil:
		return errors.New("reconcile: a store is required")
	case o.Audit == nil:
		return errors.New("reconcile: an audit log is required")
	case o.Backends == nil:
		return errors.New("reconcile: a backend registry is required")
	case !gitsrc.ValidIdentity(o.Repository):
		return fmt.Errorf("reconcile: repository identity %q is not OWNER/NAME (statements count only when they name it)", o.Repository)
	case o.PollInterval < 10*time.Millisecond:
		return fmt.Errorf("reconcile: poll interval %s is too short", o.PollInterval)
	case o.MaxPlaybooksPerChange < 0:
		return fmt.Errorf("reconcile: max playbooks per change %d is negative", o.MaxPlaybooksPerChange)
	case o.PolicyCompileTimeout < 0:
		return fmt.Errorf("reconcile: policy compile timeout %s is negative", o.PolicyCompileTimeout)
	case o.MetaApprovals < 1:
		return fmt.Errorf("reconcile: meta approvals %d must be at least 1", o.MetaApprovals)
	}
	return nil
}

// Reconciler runs the loop.
type Reconciler struct {
	opts  Options
	log   *slog.Logger
	nudge chan struct{}
	trust *trustCache

	mu     sync.Mutex
	status Status
	// Judging state, used by passes only (under passMu).
	lastSweep     time.Time
	sweptTrust    string
	approvalsSeen time.Time
	lastDrift     time.Time
	// passMu serializes passes (the loop, tests, a nudge).
	passMu sync.Mutex
}

// Status is the outcome of the last pass, for /readyz, metrics and the API.
type Status struct {
	// Repository is the identity signed statements must name.
	Repository  string    `json:"repository"`
	Head        string    `json:"head"`
	Processed   string    `json:"processed"`
	Adopted     string    `json:"adopted"`
	Holds       []string  `json:"holds,omitempty"`
	LastPass    time.Time `json:"last_pass"`
	LastSuccess time.Time `json:"last_success"`
	LastError   string    `json:"last_error,omitempty"`
	Passes      uint64    `json:"passes"`
	Executed    uint64    `json:"executed"`
	Failed      uint64    `json:"failed"`
	// LagSeconds is how long the head has waited to be processed.
	LagSeconds float64 `json:"lag_seconds"`
	// Leader says whether this replica runs the loop; LeaderHolder and
	// LeaderEpoch name the replica that does.
	Leader       bool   `json:"leader"`
	LeaderHolder string `json:"leader_holder,omitempty"`
	LeaderEpoch  int64  `json:"leader_epoch,omitempty"`
}

// New checks the options and makes a reconciler.
func New(opts Options) (*Reconciler, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Refusals == nil {
		b, err := NewRefusalAuditor(audit.BoundedOptions{Log: opts.Audit, Store: opts.Store, Logger: opts.Logger, Now: opts.Now})
		if err != nil {
			return nil, err
		}
		opts.Refusals = b
	}
	return &Reconciler{
		opts:   opts,
		log:    opts.Logger,
		nudge:  make(chan struct{}, 1),
		trust:  newTrustCache(8),
		status: Status{Repository: opts.Repository},
	}, nil
}

// Nudge asks for a pass now (a push, an approval, an API call). It never
// blocks.
func (r *Reconciler) Nudge() {
	select {
	case r.nudge <- struct{}{}:
	default:
	}
	if r.opts.OnNudge != nil {
		r.opts.OnNudge()
	}
}

// WithStore returns a reconciler that shares this one's options but runs
// on another store (the leader's fenced one).
func (r *Reconciler) WithStore(st *store.Store) *Reconciler {
	o := r.opts
	o.Store = st
	o.OnNudge = nil
	return &Reconciler{opts: o, log: r.log, nudge: make(chan struct{}, 1), trust: r.trust, status: Status{Repository: o.Repository}}
}

// Status returns the outcome of the last pass.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Holds = append([]string(nil), r.status.Holds...)
	return s
}

// Run passes until ctx is done: on every poll interval, on every nudge, and
// when an execution's retry or a playbook's expiry comes due.
func (r *Reconciler) Run(ctx context.Context) error {
	r.log.InfoContext(ctx, "reconciler started", slog.String("branch", r.opts.Source.Branch()), slog.Duration("poll_interval", r.opts.PollInterval))
	for {
		if err := r.ReconcileOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.ErrorContext(ctx, "reconcile pass failed", slog.Any("error", err))
		}
		wait := r.opts.PollInterval
		if next := r.nextDue(ctx); next > 0 && next < wait {
			wait = next
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-r.nudge:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// nextDue is how long until a retry or an expiry comes due (0: none known).
func (r *Reconciler) nextDue(ctx context.Context) time.Duration {
	now := r.opts.Now()
	var next time.Duration
	consider := func(t *time.Time) {
		if t == nil {
			return
		}
		d := max(t.Sub(now), 10*time.Millisecond)
		if next == 0 || d < next {
			next = d
		}
	}
	if t, err := r.opts.Store.NextRunnableAt(ctx); err == nil {
		consider(t)
	}
	if t, err := r.opts.Store.NextExpiry(ctx); err == nil {
		consider(t)
	}
	if t, err := r.opts.Store.NextBreakGlassDeadline(ctx); err == nil {
		consider(t)
	}
	return next
}

// step is one stage of a pass. A step returning errStop ends the pass
// without error (e.g. holding on rewritten history).
type step struct {
	name string
	run  func(ctx context.Context, p *pass) error
	// branch marks the steps that follow the branch (fetch, history,
	// commits, meta): after fetch they need the fetched head and the
	// position.
	branch bool
	// onError is what a failure of the step means for the rest of the pass.
	onError onError
}

// onError says which steps still run after one fails.
type onError int

const (
	// goOn: the later steps run (the operations judge, expire and execute
	// work on are recorded already, whatever became of the branch).
	goOn onError = iota
	// skipBranch: the steps that follow the branch cannot run; the others
	// do, unless a hold on rewritten history is open.
	skipBranch
	// stopPass: nothing else runs, as while rewritten history is held.
	stopPass
)

var errStop = errors.New("stop pass")

// pass is the state one pass carries between steps.
type pass struct {
	head  string
	state *store.RepoState
	// holding is set when commits must not be processed.
	holding bool
}

// ReconcileOnce runs one pass: fetch the branch, check its history, process
// new commits, judge waiting operations, queue expiries, execute. Passes
// never overlap.
//
// A failing step does not keep the later ones from running when they are
// safe without it: when fetching or processing commits fails (the git
// server is down, a database call failed), the operations already recorded
// are still judged, expired and executed in the same pass, so approved work
// runs and expiries fire. When the history check fails, nothing runs, as
// while rewritten history is held: writ cannot tell whether it was. The
// pass returns every step's error (errors.Join), which the status and
// /readyz report, and the next pass tries again.
func (r *Reconciler) ReconcileOnce(ctx context.Context) (err error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	p := &pass{}
	start := r.opts.Now()
	defer func() { r.record(ctx, p, start, err) }()
	steps := []step{
		{"audit", r.stepAuditHold, false, stopPass},
		{"fetch", r.stepFetch, true, skipBranch},
		{"history", r.stepHistory, true, stopPass},
		{"commits", r.stepCommits, true, goOn},
		{"meta", r.stepMetaOrHold, true, goOn},
		{"judge", r.stepJudge, false, goOn},
		{"breakglass", r.stepBreakGlass, false, goOn},
		{"expire", r.stepExpire, false, goOn},
		{"drift", r.stepDrift, false, goOn},
		{"execute", r.stepExecute, false, goOn},
	}
	var errs []error
	branch := true
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if s.branch && !branch {
			continue
		}
		t0 := time.Now()
		err := s.run(ctx, p)
		r.log.DebugContext(ctx, "reconcile step", slog.String("step", s.name), slog.Duration("took", time.Since(t0)))
		if err == nil {
			continue
		}
		if errors.Is(err, errStop) {
			return errors.Join(errs...)
		}
		errs = append(errs, fmt.Errorf("reconcile %s: %w", s.name, err))
		switch s.onError {
		case stopPass:
			return errors.Join(errs...)
		case skipBranch:
			// The history step does not run: a hold on rewritten history
			// is known from the database only.
			held, err := r.historyHeld(ctx)
			if err != nil || held {
				return errors.Join(append(errs, err)...)
			}
			branch = false
		}
	}
	return errors.Join(errs...)
}

// stepMetaOrHold is stepMeta, holding on a malformed tree of what decides
// rather than failing every pass on it (holdIfMalformed).
func (r *Reconciler) stepMetaOrHold(ctx context.Context, p *pass) error {
	return r.holdIfMalformed(ctx, p, r.stepMeta(ctx, p))
}

// historyHeld reports whether a hold on rewritten history is open.
func (r *Reconciler) historyHeld(ctx context.Context) (bool, error) {
	holds, err := r.opts.Store.OpenHolds(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(holds, func(h *store.Hold) bool { return h.Kind == store.HoldHistoryRewritten }), nil
}

// record summarizes a pass in the status, in one place.
func (r *Reconciler) record(ctx context.Context, p *pass, start time.Time, err error) {
	holds, herr := r.opts.Store.OpenHolds(ctx)
	defer func() {
		s := r.Status()
		r.opts.Metrics.Pass(r.opts.Now().Sub(start), err, time.Duration(s.LagSeconds*float64(time.Second)))
		if herr == nil {
			r.opts.Metrics.Holds(len(holds))
		}
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.status
	s.Passes++
	s.LastPass = start
	if p.head != "" {
		s.Head = p.head
	}
	if p.state != nil {
		s.Processed, s.Adopted = p.state.ProcessedSHA, p.state.AdoptedSHA
		if s.Head != "" && s.Head != s.Processed {
			s.LagSeconds = r.opts.Now().Sub(p.state.UpdatedAt).Seconds()
		} else {
			s.LagSeconds = 0
		}
	}
	if herr == nil {
		s.Holds = s.Holds[:0]
		for _, h := range holds {
			s.Holds = append(s.Holds, describeHold(h))
		}
	}
	if err != nil {
		s.LastError = err.Error()
		return
	}
	s.LastError = ""
	s.LastSuccess = start
}

func describeHold(h *store.Hold) string {
	switch h.Kind {
	case store.HoldHistoryRewritten:
		return fmt.Sprintf("hold %d: branch history was rewritten at %.12s; nothing runs until an admin acknowledges it", h.ID, h.CommitSHA)
	case store.HoldAuditRollback:
		var d auditHoldDetail
		_ = json.Unmarshal(h.Detail, &d)
		return fmt.Sprintf("hold %d: %s; nothing executes until the admins sign its acknowledgement (%s)", h.ID, d.Reason, AuditAckSubject)
	case store.HoldMetaChange:
		var d struct {
			Malformed *struct {
				Problem string `json:"problem"`
				Path    string `json:"path"`
			} `json:"malformed"`
		}
		if json.Unmarshal(h.Detail, &d) == nil && d.Malformed != nil {
			return fmt.Sprintf("hold %d: policies/ or .writ/ at %.12s is malformed (%s at %q) and cannot be adopted; the last trusted version stays in force until a commit mends it",
				h.ID, h.CommitSHA, d.Malformed.Problem, d.Malformed.Path)
		}
		return fmt.Sprintf("hold %d: the change to policies/ or .writ/ at %.12s lacks its admin approvals; the last trusted version stays in force", h.ID, h.CommitSHA)
	}
	return fmt.Sprintf("hold %d: %s at %.12s", h.ID, h.Kind, h.CommitSHA)
}

// stepFetch fetches the branch and loads the position, bootstrapping it on
// the first pass.
func (r *Reconciler) stepFetch(ctx context.Context, p *pass) error {
	head, err := r.opts.Source.Fetch(ctx)
	if err != nil {
		return err
	}
	p.head = head
	st, err := r.opts.Store.RepoState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return r.bootstrap(ctx, p)
	}
	if err != nil {
		return err
	}
	p.state = st
	if st.ObservedHead != head {
		if err := r.opts.Store.SetObservedHead(ctx, head); err != nil {
			return err
		}
		st.ObservedHead = head
	}
	return nil
}

// stepHistory refuses to follow a branch whose history was rewritten, until
// an admin acknowledges the hold.
func (r *Reconciler) stepHistory(ctx context.Context, p *pass) error {
	if p.head == p.state.ProcessedSHA {
		return nil
	}
	ok, err := r.opts.Source.IsAncestor(ctx, p.state.ProcessedSHA, p.head)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	if acked, err := r.opts.Store.AcknowledgedHold(ctx, store.HoldHistoryRewritten, p.state.ProcessedSHA, p.head); err != nil {
		return err
	} else if acked != nil {
		return r.resync(ctx, p, acked)
	}
	return r.holdRewrittenHistory(ctx, p)
}

// appendAudit appends entries in tx, timing it for the metrics.
func (r *Reconciler) appendAudit(ctx context.Context, tx *store.Store, entries ...audit.Entry) ([]audit.Receipt, error) {
	start := time.Now()
	rs, err := r.opts.Audit.Append(ctx, tx, entries...)
	if err == nil {
		r.opts.Metrics.AuditAppend(time.Since(start), len(entries))
	}
	return rs, err
}

// decideWith asks a policy set, timing it for the metrics.
func (r *Reconciler) decideWith(ctx context.Context, set *policy.Set, in policy.Input) policy.Decision {
	start := time.Now()
	d := set.Decide(ctx, in)
	r.opts.Metrics.PolicyDecision(time.Since(start))
	return d
}
