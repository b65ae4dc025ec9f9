// Package notify sends outbound notifications — approval needed, executed,
// failed, holding — as Slack-compatible JSON to a configured webhook,
// signed with HMAC-SHA256. Notifications are read from the audit log with a
// cursor kept in the database, so they survive restarts, never block the
// reconciler, and a failing receiver only delays them.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/metrics"
	"github.com/writ-sec/writ/internal/retry"
	"github.com/writ-sec/writ/internal/store"
)

// Options configures a notifier.
type Options struct {
	Store *store.Store
	// URL receives the notifications (https, or http when AllowHTTP).
	URL string
	// Secret signs each body (HMAC-SHA256); empty: unsigned.
	Secret    string
	CAFile    string
	AllowHTTP bool
	// Events to send; default DefaultEvents.
	Events []string
	// PollInterval between reads of the audit log. Default 2s.
	PollInterval time.Duration
	// Attempts per notification before it is given up (logged, counted).
	// Default 5.
	Attempts  int
	RetryBase time.Duration // default 1s, doubling
	Timeout   time.Duration // per request; default 10s
	Client    *http.Client  // tests
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
}

// DefaultEvents are the audit events that notify.
var DefaultEvents = []string{
	string(audit.EventExecutionWaiting), string(audit.EventExecutionCompleted), string(audit.EventExecutionFailed),
	string(audit.EventExecutionStopped), string(audit.EventExecutionRetryRequested), string(audit.EventRepositoryHistoryRewritten), string(audit.EventPolicyChangeHeld),
	string(audit.EventPolicyChangeAdopted), string(audit.EventPolicyChangeDismissed), string(audit.EventCommitRefused),
	string(audit.EventAuditRollbackHeld), string(audit.EventAuditRollbackAcknowledged),
	string(audit.EventDriftDetected), string(audit.EventDriftResolved),
}

func (o *Options) setDefaults() {
	if len(o.Events) == 0 {
		o.Events = DefaultEvents
	}
	if o.PollInterval == 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Attempts == 0 {
		o.Attempts = 5
	}
	if o.RetryBase == 0 {
		o.RetryBase = time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	if o.Store == nil {
		return errors.New("notify: a store is required")
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("notify: %q is not a URL", o.URL)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && o.AllowHTTP:
	default:
		return fmt.Errorf("notify: %s: https only (or allow http explicitly)", u.Redacted())
	}
	return nil
}

// Notifier delivers notifications.
type Notifier struct {
	opts   Options
	client *http.Client
	events map[string]bool
}

// New checks the options and builds the HTTP client (TLS verification
// always on; redirects refused).
func New(opts Options) (*Notifier, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	n := &Notifier{opts: opts, events: map[string]bool{}}
	for _, e := range opts.Events {
		n.events[e] = true
	}
	n.client = opts.Client
	if n.client == nil {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("notify: CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("notify: CA file %s holds no certificate", opts.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
		n.client = &http.Client{
			Timeout:       opts.Timeout,
			Transport:     &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return n, nil
}

// Message is what a receiver gets: Slack's "text" plus the event, for
// receivers that want structure.
type Message struct {
	Text string `json:"text"`
	Writ Event  `json:"writ"`
}

// Event is the audit entry a notification reports.
type Event struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`
	Event   string          `json:"event"`
	Subject audit.Subject   `json:"subject"`
	Success bool            `json:"success"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Run delivers notifications until ctx is done.
func (n *Notifier) Run(ctx context.Context) error {
	for {
		if err := n.once(ctx); err != nil && ctx.Err() == nil {
			n.opts.Logger.WarnContext(ctx, "notifications", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(n.opts.PollInterval):
		}
	}
}

// once delivers what the audit log holds past the cursor.
func (n *Notifier) once(ctx context.Context) error {
	cursor, err := n.opts.Store.NotificationCursor(ctx)
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
			if n.events[string(e.Event)] && n.wanted(e) {
				n.deliver(ctx, e)
			}
			cursor = se.Seq + 1
			if err := n.opts.Store.SetNotificationCursor(ctx, cursor); err != nil {
				return err
			}
		}
	}
}

// wanted filters events down to what people act on: a waiting execution
// notifies only when it waits for approvals (by its reason code, never its
// text).
func (n *Notifier) wanted(e audit.Entry) bool {
	if e.Event != audit.EventExecutionWaiting {
		return true
	}
	var p struct {
		ReasonCode string `json:"reason_code"`
	}
	_ = json.Unmarshal(e.Payload, &p)
	return p.ReasonCode == "awaiting_approval" || p.ReasonCode == "plan_changed"
}

// Text is the one-line message of an event.
func Text(e audit.Entry) string {
	var p struct {
		Reason      string   `json:"reason"`
		Action      string   `json:"action"`
		Environment string   `json:"environment"`
		Targets     []string `json:"targets"`
		Total       int      `json:"targets_total"`
		Operation   string   `json:"operation"`
		Error       string   `json:"error"`
		Commit      string   `json:"commit"`
		Head        string   `json:"head"`
		How         string   `json:"how"`
		Recovery    bool     `json:"recovery"`
		Problem     string   `json:"problem"`
		Path        string   `json:"path"`
		Execution   int64    `json:"execution"`
		Remaining   []string `json:"remaining"`
		Hold        int64    `json:"hold"`
		By          []string `json:"by"`
		Malformed   *struct {
			Problem string `json:"problem"`
			Path    string `json:"path"`
		} `json:"malformed"`
	}
	_ = json.Unmarshal(e.Payload, &p)
	name := e.Subject.Name
	targets := strings.Join(p.Targets, ", ")
	if p.Total > len(p.Targets) {
		// A long list (a targets file) is recorded as its first targets
		// and its length.
		targets = fmt.Sprintf("%d targets: %s, …", p.Total, targets)
	}
	what := fmt.Sprintf("%s %s on %s (%s)", p.Operation, p.Action, p.Environment, targets)
	switch e.Event {
	case audit.EventExecutionWaiting:
		return fmt.Sprintf(":writing_hand: Approval needed for %s: %s. %s Review and sign it: `writ approve op-%d`", name, what, p.Reason, p.Execution)
	case audit.EventExecutionCompleted:
		return fmt.Sprintf(":white_check_mark: %s executed: %s. %s", name, what, p.Reason)
	case audit.EventExecutionFailed:
		return fmt.Sprintf(":x: %s failed: %s. %s", name, what, firstNonEmpty(p.Error, p.Reason))
	case audit.EventRepositoryHistoryRewritten:
		return fmt.Sprintf(":warning: writ is holding: the branch history was rewritten (head %.12s). Nothing runs until an admin acknowledges it.", p.Head)
	case audit.EventPolicyChangeHeld:
		if m := p.Malformed; m != nil {
			return fmt.Sprintf(":warning: writ is holding: policies/ or .writ/ at %.12s is malformed (%s at %s) and cannot be adopted; the last trusted version stays in force.",
				p.Commit, slackEscape(m.Problem), slackEscape(fmt.Sprintf("%q", m.Path)))
		}
		return fmt.Sprintf(":warning: writ is holding: a change to policies/ or .writ/ at %.12s lacks its admin approvals; the last trusted version stays in force. Admins review and sign it: `writ approve trust-%d`", p.Commit, p.Hold)
	case audit.EventExecutionRetryRequested:
		left := ""
		if len(p.Remaining) > 0 && len(p.Remaining) < len(p.Targets) {
			left = "; only " + strings.Join(p.Remaining, ", ") + " (the others were applied)"
		}
		return fmt.Sprintf(":repeat: %s asked to retry %s: %s%s. It is checked at the moment of use before it runs.", e.Actor.ID, name, what, left)
	case audit.EventExecutionStopped:
		return fmt.Sprintf(":octagonal_sign: %s was stopped right before it ran: %s. %s", name, what, slackEscape(p.Reason))
	case audit.EventPolicyChangeAdopted:
		if p.Recovery {
			return fmt.Sprintf(":rotating_light: writ adopted the change to policies/ or .writ/ at %.12s with the server's RECOVERY keys (%s). Review it.", p.Commit, p.How)
		}
		return fmt.Sprintf(":scroll: writ adopted the change to policies/ or .writ/ at %.12s (%s).", p.Commit, p.How)
	case audit.EventPolicyChangeDismissed:
		return fmt.Sprintf(":no_entry: %s dismissed the unapproved change to policies/ or .writ/ at %.12s: it stays unadopted.", e.Actor.ID, p.Commit)
	case audit.EventAuditRollbackHeld:
		return fmt.Sprintf(":rotating_light: writ is holding (hold %d): %s. Nothing executes until a quorum of admins signs its acknowledgement.", p.Hold, slackEscape(p.Reason))
	case audit.EventAuditRollbackAcknowledged:
		return fmt.Sprintf(":scroll: the audit log rollback hold %d was acknowledged with signed statements (%s): the log as it is now is the one writ expects.", p.Hold, slackEscape(p.How))
	case audit.EventDriftDetected, audit.EventDriftResolved:
		return driftText(e)
	case audit.EventCommitRefused:
		return fmt.Sprintf(":no_entry: writ refused commit %.12s: its tree is malformed (%s at %s: %s); none of its playbook changes was processed.",
			p.Commit, slackEscape(p.Problem), slackEscape(fmt.Sprintf("%q", p.Path)), slackEscape(p.Reason))
	}
	return fmt.Sprintf("%s: %s", e.Event, name)
}

// slackEscape keeps text a pusher wrote (a file name) from being read as
// Slack markup: a mention such as <!channel>, or a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// deliver posts one notification, retrying with backoff; after the last
// attempt it is logged and counted as failed, and the cursor moves on.
func (n *Notifier) deliver(ctx context.Context, e audit.Entry) {
	body, _ := json.Marshal(Message{Text: Text(e), Writ: Event{Seq: e.Seq, Time: e.Time, Event: string(e.Event), Subject: e.Subject, Success: e.Success, Payload: e.Payload}})
	pause := retry.Backoff{Initial: n.opts.RetryBase, Max: 5 * time.Minute}
	var last error
	for attempt := 1; attempt <= n.opts.Attempts; attempt++ {
		if last = n.post(ctx, body, e.Seq); last == nil {
			n.opts.Metrics.Notified("delivered")
			return
		}
		if attempt == n.opts.Attempts || ctx.Err() != nil {
			break
		}
		if !pause.Sleep(ctx, attempt-1) {
			break
		}
	}
	n.opts.Metrics.Notified("failed")
	n.opts.Logger.WarnContext(ctx, "notification not delivered", slog.Uint64("seq", e.Seq), slog.String("event", string(e.Event)), slog.Any("error", last))
}

// Sign computes the signature header value of a body at a timestamp.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", ts)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (n *Notifier) post(ctx context.Context, body []byte, seq uint64) error {
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "writ-notify")
	req.Header.Set("X-Writ-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("Idempotency-Key", fmt.Sprintf("writ-audit-%d", seq))
	if n.opts.Secret != "" {
		req.Header.Set("X-Writ-Signature-256", Sign(n.opts.Secret, ts, body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("post notification: %w", redact(err, n.opts.URL))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post notification: HTTP %d", resp.StatusCode)
	}
	return nil
}

// redact keeps a webhook URL's secret path (Slack puts the credential in
// it) out of errors.
func redact(err error, raw string) error {
	u, perr := url.Parse(raw)
	if perr != nil {
		return err
	}
	short := u.Scheme + "://" + u.Host + "/…"
	return errors.New(strings.ReplaceAll(err.Error(), raw, short))
}
