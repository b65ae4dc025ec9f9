// Package notify tells people what happened and what to do next: audit
// events (an operation waiting for approvals, a rejection, a denial, an
// invalid merge, a failure, drift, a hold, break-glass, an override) are
// routed to named channels — writ's signed webhook, Slack-compatible
// incoming webhooks, email over SMTP — and, for email, to recipients
// resolved against the approvers file in force (docs/notifications.md).
//
// Each channel reads the audit log from a cursor of its own kept in the
// database: delivery survives restarts, is at least once (a message is
// retried until its channel takes it; only a permanent refusal gives it
// up), never blocks the reconciler, and a failing channel delays only its
// own messages.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/metrics"
	"github.com/writ-sec/writ/internal/retry"
	"github.com/writ-sec/writ/internal/store"
)

// Options configures a notifier.
type Options struct {
	Store *store.Store
	// Channels and Routes, as config.Notifications.Normalized gives them.
	Channels []config.NotificationChannel
	Routes   []config.NotificationRoute
	// Getenv resolves secret references (default: none set).
	Getenv func(string) string
	// Keyring is the approvers file in force, whom people and roles
	// resolve against (reconcile.Reconciler.KeyringInForce). A nil
	// keyring resolves nobody.
	Keyring func(context.Context) (*approval.Keyring, error)
	// ConsoleURL links the console in messages ("": no links).
	ConsoleURL string
	// PollInterval between reads of the audit log. Default 2s.
	PollInterval time.Duration
	// Attempts before a message a channel refuses for good (HTTP 4xx, SMTP
	// 5xx) is given up (logged, counted). Default 5. Unreachable channels
	// are retried without limit: nothing is lost.
	Attempts  int
	RetryBase time.Duration // default 1s, doubling
	RetryMax  time.Duration // default 5m
	Timeout   time.Duration // per attempt; default 30s
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
	// HTTP transport settings for tests: extra root CAs come from caFile.
}

// DefaultEvents are what the single-webhook shorthand sends when it names
// no events.
var DefaultEvents = []string{
	string(audit.EventExecutionWaiting), string(audit.EventExecutionCompleted), string(audit.EventExecutionFailed),
	string(audit.EventExecutionStopped), string(audit.EventExecutionRetryRequested), string(audit.EventRepositoryHistoryRewritten), string(audit.EventPolicyChangeHeld),
	string(audit.EventPolicyChangeAdopted), string(audit.EventPolicyChangeDismissed), string(audit.EventCommitRefused),
	string(audit.EventAuditRollbackHeld), string(audit.EventAuditRollbackAcknowledged),
	string(audit.EventExecutionDenied), string(audit.EventExecutionRejected), string(audit.EventPlaybookInvalid),
	string(audit.EventDriftDetected), string(audit.EventDriftResolved),
	string(audit.EventBreakGlassInvoked), string(audit.EventBreakGlassConfirmed), string(audit.EventBreakGlassLapsed),
}

func (o *Options) setDefaults() {
	if o.PollInterval == 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Attempts == 0 {
		o.Attempts = 5
	}
	if o.RetryBase == 0 {
		o.RetryBase = time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
}

// Notifier delivers notifications, one loop per channel.
type Notifier struct {
	opts     Options
	channels []*channel
}

// channel is one configured channel and the routes that reach it.
type channel struct {
	name   string
	kind   string
	sender sender
	routes []config.NotificationRoute
}

// sender delivers one message. A *permanentError is a refusal retrying
// cannot change.
type sender interface {
	send(ctx context.Context, m *outgoing) error
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// outgoing is one message for one channel.
type outgoing struct {
	entry   audit.Entry
	channel string
	desc    Description // unescaped for Slack (email)
	slack   string      // Slack text
	to      []string    // email recipients
}

// New checks the options, resolves the channels' secrets and builds their
// senders (TLS verification always on).
func New(opts Options) (*Notifier, error) {
	opts.setDefaults()
	if opts.Store == nil {
		return nil, errors.New("notify: a store is required")
	}
	chans, err := buildChannels(opts)
	if err != nil {
		return nil, err
	}
	return &Notifier{opts: opts, channels: chans}, nil
}

// Check builds the channels as writ serve would (secrets resolved, CA
// files read), for writ config check; nothing is sent.
func Check(channels []config.NotificationChannel, routes []config.NotificationRoute, getenv func(string) string) error {
	opts := Options{Channels: channels, Routes: routes, Getenv: getenv}
	opts.setDefaults()
	_, err := buildChannels(opts)
	return err
}

func buildChannels(opts Options) ([]*channel, error) {
	if len(opts.Channels) == 0 {
		return nil, errors.New("notify: no channel")
	}
	var out []*channel
	for _, c := range opts.Channels {
		ch := &channel{name: c.Name, kind: c.Kind()}
		var err error
		switch {
		case c.Webhook != nil:
			ch.sender, err = newWebhook(c.Webhook, opts)
		case c.Slack != nil:
			ch.sender, err = newSlack(c.Slack, opts)
		case c.Email != nil:
			ch.sender, err = newEmail(c.Email, opts)
		default:
			err = errors.New("needs webhook, slack or email")
		}
		if err != nil {
			return nil, fmt.Errorf("notify: channel %s: %w", c.Name, err)
		}
		for _, r := range opts.Routes {
			if slices.Contains(r.Channels, c.Name) {
				ch.routes = append(ch.routes, r)
			}
		}
		out = append(out, ch)
	}
	return out, nil
}

// Run delivers notifications until ctx is done, each channel from its own
// loop.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ch := range n.channels {
		wg.Go(func() {
			for {
				if err := n.once(ctx, ch); err != nil && ctx.Err() == nil {
					n.opts.Logger.WarnContext(ctx, "notifications", slog.String("channel", ch.name), slog.Any("error", err))
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(n.opts.PollInterval):
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// once delivers what the audit log holds past the channel's cursor. It
// returns when the log is read to its end, or with the error that stopped
// it (the cursor stays before the message not delivered).
func (n *Notifier) once(ctx context.Context, ch *channel) error {
	// Every configured channel's cursor is made at once, so that channels
	// configured together start together.
	names := make([]string, len(n.channels))
	for i, c := range n.channels {
		names[i] = c.name
	}
	if err := n.opts.Store.EnsureChannelCursors(ctx, names); err != nil {
		return err
	}
	cursor, err := n.opts.Store.ChannelCursor(ctx, ch.name)
	if err != nil {
		return err
	}
	for {
		entries, err := n.opts.Store.AuditEntries(ctx, cursor, 100)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		for _, se := range entries {
			e, err := audit.Decode(se.Entry)
			if err != nil {
				return fmt.Errorf("notify: decode audit entry %d: %w", se.Seq, err)
			}
			m, err := n.compose(ctx, ch, e)
			if err != nil {
				return err
			}
			if m != nil {
				if err := n.deliver(ctx, ch, m); err != nil {
					return err
				}
			}
			cursor = se.Seq + 1
			if err := n.opts.Store.SetChannelCursor(ctx, ch.name, cursor); err != nil {
				return err
			}
		}
	}
}

// compose is the channel's message for an entry, or nil when no route of
// the channel takes it (or an email has nobody to go to).
func (n *Notifier) compose(ctx context.Context, ch *channel, e audit.Entry) (*outgoing, error) {
	var matched []config.NotificationRoute
	for _, r := range ch.routes {
		if routeTakes(r, e) {
			matched = append(matched, r)
		}
	}
	if len(matched) == 0 {
		return nil, nil
	}
	m := &outgoing{entry: e, channel: ch.name, desc: Describe(e, n.opts.ConsoleURL, nil)}
	m.slack = slackText(Describe(e, n.opts.ConsoleURL, slackEscape))
	if ch.kind != "email" {
		return m, nil
	}
	var err error
	if m.to, err = n.recipients(ctx, matched, e); err != nil {
		return nil, err
	}
	if len(m.to) == 0 {
		n.opts.Metrics.Notified(ch.name, "no_recipients")
		n.opts.Logger.WarnContext(ctx, "notification has no recipient with an email address", slog.String("channel", ch.name),
			slog.Uint64("seq", e.Seq), slog.String("event", string(e.Event)))
		return nil, nil
	}
	return m, nil
}

// routeTakes reports whether a route sends an entry: by its event name or
// a group. An operation waiting notifies only when it waits for
// approvals (by its reason code, never its text); the override group takes
// an adoption only when the recovery keys made it.
func routeTakes(r config.NotificationRoute, e audit.Entry) bool {
	if e.Event == audit.EventExecutionWaiting {
		code := payloadOf(e).ReasonCode
		if code != "awaiting_approval" && code != "plan_changed" {
			return false
		}
	}
	for _, name := range r.Events {
		if name == string(e.Event) {
			return true
		}
		if slices.Contains(config.NotificationGroups[name], e.Event) {
			if name == "override" && e.Event == audit.EventPolicyChangeAdopted && !payloadOf(e).Recovery {
				continue
			}
			return true
		}
	}
	return false
}

// mustAct are the roles of the people who must act next on an entry.
func mustAct(e audit.Entry) []string {
	switch e.Event {
	case audit.EventExecutionWaiting, audit.EventBreakGlassInvoked:
		return payloadOf(e).approverRoles()
	case audit.EventPolicyChangeHeld, audit.EventRepositoryHistoryRewritten, audit.EventAuditRollbackHeld,
		audit.EventPolicyChangeAdopted, audit.EventAuditRollbackAcknowledged, audit.EventRepositoryHoldAcknowledged, audit.EventPolicyChangeDismissed:
		return []string{"admin"}
	case audit.EventExecutionFailed, audit.EventBreakGlassLapsed, audit.EventDriftDetected:
		return []string{"executor"}
	case audit.EventExecutionRejected, audit.EventExecutionDenied, audit.EventPlaybookInvalid, audit.EventCommitRefused:
		return []string{"analyst"}
	}
	return nil
}

// recipients resolves the matched routes' recipients to addresses, in
// order, each once. People and roles resolve against the approvers file in
// force (none when it does not load); disabled people and people without
// an email address are skipped. An error reading it is returned: the
// message is tried again.
func (n *Notifier) recipients(ctx context.Context, routes []config.NotificationRoute, e audit.Entry) ([]string, error) {
	var out []string
	add := func(a string) {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	var kr *approval.Keyring
	needPeople := false
	for _, r := range routes {
		if r.To != nil && (len(r.To.People) > 0 || len(r.To.Roles) > 0 || r.To.MustAct) {
			needPeople = true
		}
	}
	if needPeople && n.opts.Keyring != nil {
		var err error
		if kr, err = n.opts.Keyring(ctx); err != nil {
			return nil, fmt.Errorf("notify: the approvers file in force: %w", err)
		}
		if kr == nil {
			n.opts.Logger.WarnContext(ctx, "notifications: the approvers file in force does not load; people and roles reach nobody")
		}
	}
	for _, r := range routes {
		if r.To == nil {
			continue
		}
		for _, a := range r.To.Addresses {
			add(a)
		}
		if kr == nil {
			continue
		}
		roles := slices.Clone(r.To.Roles)
		if r.To.MustAct {
			roles = append(roles, mustAct(e)...)
		}
		for _, p := range kr.People() {
			if p.Disabled || p.Email == "" {
				continue
			}
			if slices.Contains(r.To.People, p.ID) || slices.ContainsFunc(roles, p.Has) {
				add(p.Email)
			}
		}
	}
	return out, nil
}

// deliver sends one message, retrying with backoff: without limit while
// the channel is unreachable or answers "try later", up to Attempts when
// it refuses the message for good (then logged, counted, and the cursor
// moves on). It returns an error only when ctx ends first.
func (n *Notifier) deliver(ctx context.Context, ch *channel, m *outgoing) error {
	pause := retry.Backoff{Initial: n.opts.RetryBase, Max: n.opts.RetryMax}
	refusals := 0
	defer n.opts.Metrics.NotificationFailing(ch.name, false)
	for attempt := 0; ; attempt++ {
		err := ch.sender.send(ctx, m)
		if err == nil {
			n.opts.Metrics.Notified(ch.name, "delivered")
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			if refusals++; refusals >= n.opts.Attempts {
				n.opts.Metrics.Notified(ch.name, "failed")
				n.opts.Logger.WarnContext(ctx, "notification refused: given up", slog.String("channel", ch.name),
					slog.Uint64("seq", m.entry.Seq), slog.String("event", string(m.entry.Event)), slog.Any("error", err))
				return nil
			}
		}
		n.opts.Metrics.Notified(ch.name, "retried")
		n.opts.Metrics.NotificationFailing(ch.name, true)
		n.opts.Logger.WarnContext(ctx, "notification not delivered yet: retrying", slog.String("channel", ch.name),
			slog.Uint64("seq", m.entry.Seq), slog.String("event", string(m.entry.Event)), slog.Int("attempt", attempt+1), slog.Any("error", err))
		if !pause.Sleep(ctx, attempt) {
			return ctx.Err()
		}
	}
}
