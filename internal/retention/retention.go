// Package retention runs the clean-up jobs: expired sessions are deleted,
// approval envelopes that never led to a decision are withdrawn, and old
// playbook records no longer in force are archived. Audit entries are never
// deleted, by this or anything else; nor are GitHub webhook deliveries:
// the body digests they keep are what refuses a replayed delivery (a job
// that prunes them must keep the digests).
package retention

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

// Options configures the jobs; zero durations take the defaults.
type Options struct {
	Store *store.Store
	Audit *audit.Log
	// Sessions: delete sessions expired or revoked this long ago. Default 7d.
	Sessions time.Duration
	// Approvals: withdraw envelopes received this long ago that no
	// operation used. Default 24h.
	Approvals time.Duration
	// Playbooks: archive versions not in force, unchanged this long.
	// Default 90d.
	Playbooks time.Duration
	// Interval between runs. Default 1h.
	Interval time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

func (o *Options) setDefaults() {
	if o.Sessions == 0 {
		o.Sessions = 7 * 24 * time.Hour
	}
	if o.Approvals == 0 {
		o.Approvals = 24 * time.Hour
	}
	if o.Playbooks == 0 {
		o.Playbooks = 90 * 24 * time.Hour
	}
	if o.Interval == 0 {
		o.Interval = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Jobs runs the retention jobs.
type Jobs struct{ opts Options }

// New checks the options.
func New(opts Options) (*Jobs, error) {
	opts.setDefaults()
	if opts.Store == nil || opts.Audit == nil {
		return nil, errors.New("retention: a store and an audit log are required")
	}
	return &Jobs{opts: opts}, nil
}

// Result counts what one run did.
type Result struct {
	SessionsDeleted    int64 `json:"sessions_deleted"`
	ApprovalsWithdrawn int64 `json:"approvals_withdrawn"`
	PlaybooksArchived  int64 `json:"playbooks_archived"`
}

// RunOnce runs every job in one transaction with its audit entry.
func (j *Jobs) RunOnce(ctx context.Context) (Result, error) {
	var r Result
	now := j.opts.Now()
	err := j.opts.Store.Tx(ctx, func(tx *store.Store) error {
		var err error
		if r.SessionsDeleted, err = tx.DeleteExpiredSessions(ctx, now.Add(-j.opts.Sessions)); err != nil {
			return err
		}
		if r.ApprovalsWithdrawn, err = tx.ExpireUndecidedApprovals(ctx, now.Add(-j.opts.Approvals)); err != nil {
			return err
		}
		if r.PlaybooksArchived, err = tx.ArchivePlaybookVersions(ctx, now.Add(-j.opts.Playbooks)); err != nil {
			return err
		}
		if r == (Result{}) {
			return nil
		}
		_, err = j.opts.Audit.Append(ctx, tx, audit.Entry{
			Actor: audit.SystemActor, Event: audit.EventRetentionRun, Success: true,
			Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "retention"},
			Payload: audit.MustJSON(r),
		})
		return err
	})
	return r, err
}

// Run runs the jobs every Interval until ctx is done.
func (j *Jobs) Run(ctx context.Context) error {
	for {
		r, err := j.RunOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			j.opts.Logger.WarnContext(ctx, "retention", slog.Any("error", err))
		case r != Result{}:
			j.opts.Logger.InfoContext(ctx, "retention", slog.Int64("sessions_deleted", r.SessionsDeleted),
				slog.Int64("approvals_withdrawn", r.ApprovalsWithdrawn), slog.Int64("playbooks_archived", r.PlaybooksArchived))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(j.opts.Interval):
		}
	}
}
