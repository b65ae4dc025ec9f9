// Package github puts writ where analysts and approvers work: GitHub pull
// requests. It receives GitHub's webhooks (signed with the shared secret,
// stored in PostgreSQL before they are acknowledged, processed in order
// from there), judges every pull request that touches playbooks, policies
// or .writ/ as its merge would be judged, and reports it as a check run
// with a Markdown summary and annotations on the exact YAML lines. It reads
// signed approvals from review bodies (and signed proposals from the pull
// request's description or its author's comments), withdraws them when a
// review is dismissed, asks qualified approvers for reviews, and on a push
// to the tracked branch gathers the approvals of the merged pull requests
// and nudges the reconciler.
//
// The channel is never trusted: a review counts only through the signed
// envelope it carries, verified with the trusted approvers file, whose
// `github` login must also be the review's author.
package github

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v88/github"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/forge/inbox"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/retry"
	"github.com/writ-sec/writ/internal/store"
)

// Engine is what the integration needs of the reconciler.
type Engine interface {
	Evaluate(ctx context.Context, base, head string, pullRequest int) (*reconcile.Evaluation, error)
	SubmitApproval(ctx context.Context, raw []byte, ch approval.Submitted) (*reconcile.Intake, error)
	WithdrawApprovals(ctx context.Context, source, sourceRef, by string, keep ...string) (int64, error)
	Nudge()
}

// Source is what the integration needs of the content repository.
type Source interface {
	Fetch(ctx context.Context) (string, error)
	FetchRef(ctx context.Context, name string) (string, error)
	FS(sha string) (fs.FS, error)
	Branch() string
}

// DefaultCheckName is the check run's name unless configured.
const DefaultCheckName = "writ"

// WebhookPath is where GitHub delivers webhooks.
const WebhookPath = "/webhooks/github"

// Options configures the integration.
type Options struct {
	// Repository is OWNER/NAME of the content repository.
	Repository string
	// Client talks to GitHub's REST API (see NewClient).
	Client *gh.Client
	Engine Engine
	Source Source
	Store  *store.Store
	// WebhookSecret is the secret GitHub signs deliveries with.
	WebhookSecret []byte
	// CheckName is the check run's name. Default "writ".
	CheckName string
	// DetailsURL, when set, is linked from every check run (details_url).
	DetailsURL string
	// ConsoleOrigin is the writ console's public origin
	// (scheme://host[:port]). Without DetailsURL, a check run whose
	// conclusion is action_required links the console's queue of what
	// waits for signatures (ORIGIN/pending); without either, the pull
	// request's checks on GitHub. GitHub asks for details_url with
	// action_required.
	ConsoleOrigin string
	// MaxBodyBytes bounds a delivery. Default 10 MiB (GitHub caps payloads
	// at 25 MB; writ's events are far smaller).
	MaxBodyBytes int64
	// PollInterval is how often the processor looks for deliveries stored
	// by other replicas. Default 1s.
	PollInterval time.Duration
	// Lease is how long a claimed delivery is left to its processor before
	// another may claim it again. Default 5m.
	Lease time.Duration
	// MaxAttempts per delivery before it is marked failed. Default 10.
	MaxAttempts int
	// RetryBase and RetryMax bound the delay before a failed delivery is
	// tried again (doubling). Defaults 2s and 5m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// APIAttempts per GitHub API call (rate limits, 5xx, network).
	// Default 6.
	APIAttempts int
	// APIBackoff is the first delay between API attempts (doubling).
	// Default 1s.
	APIBackoff time.Duration
	// SecondaryWait is how long to wait after a secondary rate limit that
	// gives no Retry-After. Default 60s, as GitHub asks.
	SecondaryWait time.Duration
	// MaxRateLimitWait caps one wait for a rate limit to reset; a longer
	// one fails the call (the delivery is retried later). Default 15m.
	MaxRateLimitWait time.Duration
	// RefreshInterval re-checks open pull requests (approvals sent through
	// other channels, approvals expiring, the base moving). Default 5m;
	// negative disables.
	RefreshInterval time.Duration
	// CallTimeout bounds one API call. Default 30s.
	CallTimeout time.Duration
	// Now, when set, is the clock the delivery queue is read with (when a
	// delivery is due, when its lease ends). Nil: the database's clock,
	// shared by every replica. Tests set it so that leases and retry
	// delays never depend on the machine's speed.
	Now    func() time.Time
	Logger *slog.Logger
}

var repoRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$`) })

func (o *Options) setDefaults() {
	if o.CheckName == "" {
		o.CheckName = DefaultCheckName
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 10 << 20
	}
	if o.PollInterval == 0 {
		o.PollInterval = time.Second
	}
	if o.Lease == 0 {
		o.Lease = 5 * time.Minute
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 10
	}
	if o.RetryBase == 0 {
		o.RetryBase = 2 * time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.APIAttempts == 0 {
		o.APIAttempts = 6
	}
	if o.APIBackoff == 0 {
		o.APIBackoff = time.Second
	}
	if o.SecondaryWait == 0 {
		o.SecondaryWait = time.Minute
	}
	if o.MaxRateLimitWait == 0 {
		o.MaxRateLimitWait = 15 * time.Minute
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = 5 * time.Minute
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	switch {
	case !repoRE().MatchString(o.Repository):
		return fmt.Errorf("github: repository %q is not OWNER/NAME", o.Repository)
	case o.Client == nil:
		return errors.New("github: an API client is required")
	case o.Engine == nil:
		return errors.New("github: an engine is required")
	case o.Source == nil:
		return errors.New("github: a source is required")
	case o.Store == nil:
		return errors.New("github: a store is required")
	case len(o.WebhookSecret) == 0:
		return errors.New("github: a webhook secret is required: deliveries without a valid signature are refused")
	case len(o.CheckName) > 100:
		return fmt.Errorf("github: check name %q is longer than 100 characters", o.CheckName)
	case o.MaxBodyBytes < 1024:
		return fmt.Errorf("github: max body %d bytes is too small", o.MaxBodyBytes)
	case o.Lease < time.Second:
		return fmt.Errorf("github: lease %s is too short", o.Lease)
	case o.MaxAttempts < 1 || o.APIAttempts < 1:
		return errors.New("github: attempts must be at least 1")
	}
	return nil
}

// Service is the GitHub integration: the webhook receiver, the delivery
// processor and the pull request checker.
type Service struct {
	opts  Options
	log   *slog.Logger
	owner string
	name  string
	inbox *inbox.Inbox
	// sleep waits between attempts (replaced in tests of rate limits).
	sleep func(ctx context.Context, d time.Duration) error
}

// New checks the options and makes the service.
func New(opts Options) (*Service, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	owner, name, _ := strings.Cut(opts.Repository, "/")
	log := opts.Logger.With(slog.String("forge", approval.ForgeGitHub), slog.String("repository", opts.Repository))
	in, err := inbox.New(inbox.Options{Forge: approval.ForgeGitHub, Store: opts.Store, Lease: opts.Lease, MaxAttempts: opts.MaxAttempts,
		RetryBase: opts.RetryBase, RetryMax: opts.RetryMax, Now: opts.Now, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	return &Service{opts: opts, log: log, owner: owner, name: name, inbox: in, sleep: sleepCtx}, nil
}

// Name is the forge's name (approval sources, deliveries, logins).
func (s *Service) Name() string { return approval.ForgeGitHub }

// WebhookPath is where the forge delivers webhooks: Handler's path.
func (s *Service) WebhookPath() string { return WebhookPath }

// Readiness is the /readyz detail of the integration: its deliveries.
func (s *Service) Readiness(ctx context.Context) (string, error) { return s.inbox.Readiness(ctx) }

// Repository is OWNER/NAME.
func (s *Service) Repository() string { return s.opts.Repository }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff is the pause after attempt (1-based): base doubled per attempt,
// capped, jittered (internal/retry).
func backoff(base, limit time.Duration, attempt int) time.Duration {
	return retry.Backoff{Initial: base, Max: limit}.Delay(attempt - 1)
}
