// Package gitlab puts writ where analysts and approvers work on GitLab
// (gitlab.com or a self-managed instance): merge requests. It receives
// GitLab's project webhooks (authenticated by the secret token, stored in
// PostgreSQL before they are acknowledged, processed in order from there
// through internal/forge/inbox), judges every merge request into the
// tracked branch as its merge would be judged, and reports it as a commit
// status on the head commit (pending, then success or failed) with the
// full report in one note that writ edits in place. It reads signed
// statements from the merge request's notes (approvals, rejections,
// proposals) and description (proposals), withdraws a note's statements
// when the note is edited or deleted, and on a push to the tracked branch
// gathers the statements of the merged merge requests and nudges the
// reconciler.
//
// The channel is never trusted: a note counts only through the signed
// envelope it carries, verified with the trusted approvers file, whose
// `logins.gitlab` must also be the note's author.
//
// writ serve builds it from writ.yaml's gitlab section and mounts it like
// every forge (internal/engine).
package gitlab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/forge/inbox"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// Engine is what the integration needs of the reconciler (the same as the
// GitHub forge's).
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

// DefaultStatusName is the commit status's name unless configured.
const DefaultStatusName = "writ"

// DefaultBaseURL is GitLab.com.
const DefaultBaseURL = "https://gitlab.com"

// WebhookPath is where GitLab delivers webhooks.
const WebhookPath = "/webhooks/gitlab"

// Options configures the integration. The caller (writ serve) makes the
// Service with New, mounts Handler at WebhookPath, runs Run until
// shutdown and reports Readiness on /readyz.
type Options struct {
	// BaseURL is the GitLab instance (scheme://host[/path]), without
	// /api/v4. Default https://gitlab.com; a self-managed instance's URL
	// otherwise.
	BaseURL string
	// Token is a project (or group) access token with the api scope and
	// the Developer role: it reads merge requests and notes, sets commit
	// statuses and writes the report note. Never logged.
	Token string
	// Project is the content repository's project: its path with
	// namespace (group/sub/project) or its numeric id.
	Project string
	// Repository is the identity signed statements name (OWNER/NAME, the
	// reconciler's Repository), shown in the commands the report gives.
	// Default: Project when it has that shape.
	Repository string
	Engine     Engine
	Source     Source
	Store      *store.Store
	// WebhookSecret is the webhook's secret token (X-Gitlab-Token).
	WebhookSecret []byte
	// StatusName is the commit status's name. Default "writ".
	StatusName string
	// DetailsURL, when set, is the commit status's target_url.
	DetailsURL string
	// ConsoleOrigin is the writ console's public origin: without
	// DetailsURL, a merge request awaiting signatures links the console's
	// queue (ORIGIN/pending); without either, the merge request on GitLab.
	ConsoleOrigin string
	// MaxBodyBytes bounds a delivery. Default 10 MiB.
	MaxBodyBytes int64
	// PollInterval is how often the processor looks for deliveries stored
	// by other replicas. Default 1s.
	PollInterval time.Duration
	// Lease, MaxAttempts, RetryBase, RetryMax: the inbox's (defaults 5m,
	// 10, 2s, 5m).
	Lease       time.Duration
	MaxAttempts int
	RetryBase   time.Duration
	RetryMax    time.Duration
	// APIAttempts per GitLab API call (429, 5xx, network). Default 6.
	APIAttempts int
	// APIBackoff is the first delay between API attempts. Default 1s.
	APIBackoff time.Duration
	// MaxRateLimitWait caps one wait for GitLab's rate limit (Retry-After,
	// RateLimit-Reset). Default 15m.
	MaxRateLimitWait time.Duration
	// RefreshInterval re-checks open merge requests (approvals sent
	// through other channels or expiring, notes deleted, the base moving).
	// Default 5m; negative disables.
	RefreshInterval time.Duration
	// CallTimeout bounds one API call. Default 30s.
	CallTimeout time.Duration
	// UserAgent, when set, is the API requests' User-Agent
	// (writ/VERSION).
	UserAgent string
	// HTTPClient, when set, is the API's HTTP client (its Transport is
	// used; tests, proxies).
	HTTPClient *http.Client
	// Now, when set, is the clock the delivery queue is read with (nil:
	// the database's).
	Now    func() time.Time
	Logger *slog.Logger
}

var (
	projectPathRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$`)
	projectIDRE   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[1-9][0-9]{0,18}$`) })
)

// ValidProject reports whether p is a project path with namespace or a
// numeric id.
func ValidProject(p string) bool {
	return (len(p) <= 1024 && projectPathRE.MatchString(p) && !strings.Contains(p, "..") && strings.Count(p, "/") <= 20) || projectIDRE().MatchString(p)
}

func (o *Options) setDefaults() {
	if o.Repository == "" && strings.Count(o.Project, "/") == 1 {
		o.Repository = o.Project
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if o.StatusName == "" {
		o.StatusName = DefaultStatusName
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
	u, err := url.Parse(o.BaseURL)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("gitlab: base URL %q is not an http(s) URL without credentials, query or fragment", o.BaseURL)
	case !ValidProject(o.Project):
		return fmt.Errorf("gitlab: project %q is neither a path with namespace (group/project) nor a numeric id", o.Project)
	case o.Token == "":
		return errors.New("gitlab: an access token is required")
	case o.Engine == nil:
		return errors.New("gitlab: an engine is required")
	case o.Source == nil:
		return errors.New("gitlab: a source is required")
	case o.Store == nil:
		return errors.New("gitlab: a store is required")
	case len(o.WebhookSecret) == 0:
		return errors.New("gitlab: a webhook secret token is required: deliveries without it are refused")
	case len(o.StatusName) > 255 || strings.ContainsAny(o.StatusName, "\r\n"):
		return fmt.Errorf("gitlab: status name %q is longer than 255 characters or spans lines", o.StatusName)
	case o.MaxBodyBytes < 1024:
		return fmt.Errorf("gitlab: max body %d bytes is too small", o.MaxBodyBytes)
	case o.Lease < time.Second:
		return fmt.Errorf("gitlab: lease %s is too short", o.Lease)
	case o.MaxAttempts < 1 || o.APIAttempts < 1:
		return errors.New("gitlab: attempts must be at least 1")
	}
	return nil
}

// Service is the GitLab integration: the webhook receiver, the delivery
// processor and the merge request checker.
type Service struct {
	opts   Options
	log    *slog.Logger
	client *gl.Client
	inbox  *inbox.Inbox
	// web is the instance's web address (BaseURL).
	web *url.URL
}

// New checks the options and makes the service.
func New(opts Options) (*Service, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	log := opts.Logger.With(slog.String("forge", approval.ForgeGitLab), slog.String("project", opts.Project))
	in, err := inbox.New(inbox.Options{Forge: approval.ForgeGitLab, Store: opts.Store, Lease: opts.Lease, MaxAttempts: opts.MaxAttempts,
		RetryBase: opts.RetryBase, RetryMax: opts.RetryMax, Now: opts.Now, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("gitlab: %w", err)
	}
	client, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	web, _ := url.Parse(strings.TrimSuffix(opts.BaseURL, "/") + "/")
	return &Service{opts: opts, log: log, client: client, inbox: in, web: web}, nil
}

// Name is the forge's name (approval sources, deliveries, logins).
func (s *Service) Name() string { return approval.ForgeGitLab }

// WebhookPath is where the forge delivers webhooks: Handler's path.
func (s *Service) WebhookPath() string { return WebhookPath }

// Readiness is the /readyz detail of the integration: its deliveries.
func (s *Service) Readiness(ctx context.Context) (string, error) { return s.inbox.Readiness(ctx) }

// Project is the project writ follows, as configured.
func (s *Service) Project() string { return s.opts.Project }

// pid is the project as the API takes it.
func (s *Service) pid() any {
	if n, err := strconv.ParseInt(s.opts.Project, 10, 64); err == nil {
		return n
	}
	return s.opts.Project
}
