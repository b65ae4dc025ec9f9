// Package webhook is the signed HTTP webhook backend: isolate_host (and
// its revert, release_host) for EDR-style isolation, and any action a team
// defines in the server configuration. Apply and revert POST one JSON
// request with the playbook, its targets and an idempotency key to a
// configured URL, signed with HMAC-SHA256 over the timestamp and the body
// so a receiver can check who sent it and refuse replays; the plan asks a
// configured status endpoint for each target's live state.
//
// TLS is always verified (an optional CA file replaces the system roots),
// http:// needs an explicit setting, redirects are refused and responses
// are size-limited. Timeouts, 5xx and 429 answers are retried with
// backoff, re-signed but with the same body and idempotency key, and then
// reported as action.ErrTransient so the reconciler retries later. The
// wire contract is in docs/backends.md.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/outbound"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/playbook"
)

// Headers of a request.
const (
	HeaderSignature      = "X-Writ-Signature-256" // "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)
	HeaderTimestamp      = "X-Writ-Timestamp"     // Unix seconds when the attempt was signed
	HeaderIdempotencyKey = "Idempotency-Key"      // stable across retries of one operation
)

// States a status endpoint reports per target.
const (
	StateApplied    = "applied"     // the action is in force on the target (e.g. the host is isolated)
	StateNotApplied = "not_applied" // it is not
	StateNotFound   = "not_found"   // the receiver does not know the target
)

// Planned results of team-defined actions (the built-in ones use their
// own words: would_isolate, already_isolated, ...).
const (
	AlreadyApplied = "already_applied"
	NotApplied     = "not_applied"
)

// Options configures a webhook receiver.
type Options struct {
	// Name identifies the backend in plans, e.g. "webhook:edr".
	Name string
	// URL receives apply and revert requests.
	URL string
	// StatusURL answers plans with each target's state. Without it a plan
	// says would_send for every target: the receiver decides.
	StatusURL string
	// Secret is the HMAC-SHA256 key shared with the receiver (at least 16
	// bytes).
	Secret config.Secret
	// CAFile, when set, holds the only CA certificates trusted (PEM).
	CAFile string
	// AllowHTTP permits http:// URLs; without it only https:// is used.
	AllowHTTP bool
	// Timeout of one attempt; default 10s.
	Timeout time.Duration
	// Retries after the first attempt for timeouts, network errors, 408,
	// 429 and 5xx; default 3, -1 for none.
	Retries int
	// RetryBase is the first backoff, doubled on each retry; default 500ms.
	RetryBase time.Duration
	// MaxRetryWait is the longest Retry-After honoured in place; default 30s.
	MaxRetryWait time.Duration
	// MaxResponseBytes bounds a response body; default 1 MiB.
	MaxResponseBytes int64
	// Catalog gives the target kind of each action, to validate targets;
	// default the built-in actions (others take any target).
	Catalog playbook.Catalog
	// RevertCommands names the revert of each action in requests
	// ("command"): release_host for isolate_host, and a team-defined
	// action's revertWith. Default: the built-in ones.
	RevertCommands map[string]string
	// Logger receives request and retry records (never the secret).
	Logger *slog.Logger
	// Now is the clock of timestamps; default time.Now.
	Now func() time.Time
}

// BuiltinRevertCommands name the reverts of the built-in actions.
var BuiltinRevertCommands = map[string]string{
	"isolate_host": "release_host",
	"block_ip":     "unblock_ip",
	"suspend_user": "unsuspend_user",
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = "webhook"
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	switch {
	case o.Retries == 0:
		o.Retries = 3
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.RetryBase == 0 {
		o.RetryBase = 500 * time.Millisecond
	}
	if o.MaxRetryWait == 0 {
		o.MaxRetryWait = 30 * time.Second
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = 1 << 20
	}
	if o.Catalog == nil {
		o.Catalog = playbook.Builtin
	}
	cmds := map[string]string{}
	for k, v := range BuiltinRevertCommands {
		cmds[k] = v
	}
	for k, v := range o.RevertCommands {
		cmds[k] = v
	}
	o.RevertCommands = cmds
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// MinSecretBytes is the shortest HMAC key accepted.
const MinSecretBytes = 16

func (o *Options) validate() error {
	if err := checkURL("url", o.URL, o.AllowHTTP); err != nil {
		return err
	}
	if o.StatusURL != "" {
		if err := checkURL("statusURL", o.StatusURL, o.AllowHTTP); err != nil {
			return err
		}
	}
	if n := len(o.Secret.Value()); n < MinSecretBytes {
		return fmt.Errorf("webhook: the signing secret (secretEnv or secretFile) must be at least %d bytes, got %d", MinSecretBytes, n)
	}
	if err := outbound.CheckLimits(o.Timeout, o.Retries, o.RetryBase, o.MaxRetryWait, o.MaxResponseBytes); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

// checkURL accepts absolute https URLs (http with allowHTTP) without
// credentials or fragment.
func checkURL(field, s string, allowHTTP bool) error {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return fmt.Errorf("webhook: %s %q is not a URL", field, s)
	}
	switch {
	case u.User != nil:
		return fmt.Errorf("webhook: %s must not hold credentials; requests are signed with the secret", field)
	case u.Scheme == "http" && !allowHTTP:
		return fmt.Errorf("webhook: %s %s: http:// needs allowInsecureHTTP; use https://", field, u.Redacted())
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("webhook: %s %q must be an https:// URL", field, u.Redacted())
	case u.Host == "":
		return fmt.Errorf("webhook: %s %q has no host", field, u.Redacted())
	case u.Fragment != "":
		return fmt.Errorf("webhook: %s %s must not have a fragment", field, u.Redacted())
	}
	return nil
}

// Backend is a webhook receiver.
type Backend struct {
	opts   Options
	client *http.Client
}

var _ action.Backend = (*Backend)(nil)

// New checks the options and returns the backend. It sends nothing until
// the first plan.
func New(opts Options) (*Backend, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	client, err := outbound.NewClient(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return &Backend{opts: opts, client: client}, nil
}

// Name identifies the backend.
func (b *Backend) Name() string { return b.opts.Name }

// LogValue names the backend's settings, never its secret.
func (b *Backend) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", b.opts.Name), slog.String("url", b.opts.URL),
		slog.String("status_url", b.opts.StatusURL))
}

// maxParamsBytes bounds a playbook's params in a request.
const maxParamsBytes = 64 << 10

// Validate checks the targets for the action's target kind and that the
// params are JSON of at most 64 KiB (they are sent as they are).
func (b *Backend) Validate(req action.Request) error {
	if len(req.Targets) == 0 {
		return errors.New("no targets")
	}
	kind, ok := b.opts.Catalog[req.Action]
	if !ok {
		kind = playbook.TargetAny
	}
	seen := map[string]bool{}
	for _, t := range req.Targets {
		if t == "" {
			return errors.New("an empty target")
		}
		if _, err := playbook.ParseTarget(kind, t); err != nil {
			return fmt.Errorf("target %v", err)
		}
		if seen[t] {
			return fmt.Errorf("target %q is listed twice", t)
		}
		seen[t] = true
	}
	p, err := json.Marshal(req.Params)
	if err != nil {
		return fmt.Errorf("params are not JSON: %v", err)
	}
	if len(p) > maxParamsBytes {
		return fmt.Errorf("params are %d bytes of JSON; at most %d are sent", len(p), maxParamsBytes)
	}
	return nil
}

// Request is the JSON body of every request writ sends.
type Request struct {
	Playbook    string           `json:"playbook"`
	Digest      string           `json:"digest"`
	Action      string           `json:"action"`
	Command     string           `json:"command"` // the action, or its revert (release_host)
	Environment string           `json:"environment"`
	Operation   action.Operation `json:"operation"`
	Targets     []string         `json:"targets"`
	Params      map[string]any   `json:"params"`
	// IdempotencyKey is the same for every attempt of one operation of one
	// playbook version (also in the Idempotency-Key header); status
	// requests have none.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	SentAt         string `json:"sentAt"`
}

func (b *Backend) body(req action.Request, withKey bool) ([]byte, error) {
	cmd := req.Action
	if req.Operation == action.Revert {
		if c, ok := b.opts.RevertCommands[req.Action]; ok {
			cmd = c
		}
	}
	params := req.Params
	if params == nil {
		params = map[string]any{}
	}
	r := Request{
		Playbook: req.Playbook, Digest: req.Digest, Action: req.Action, Command: cmd,
		Environment: req.Environment, Operation: req.Operation, Targets: req.Targets, Params: params,
		SentAt: b.opts.Now().UTC().Format(time.RFC3339),
	}
	if withKey {
		r.IdempotencyKey = req.Key()
	}
	out, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("webhook: encode request: %w", err)
	}
	return out, nil
}

// Sign returns the signature header value of a body at a timestamp:
// "sha256=" and the hex HMAC-SHA256 of "TIMESTAMP.BODY".
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a request's signature and that its timestamp lies within
// tolerance of now, for receivers written in Go.
func Verify(secret []byte, signature, timestamp string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q is not Unix seconds", HeaderTimestamp, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%s is %s away from now; replayed or a skewed clock", HeaderTimestamp, d.Round(time.Second))
	}
	if !hmac.Equal([]byte(signature), []byte(Sign(secret, timestamp, body))) {
		return errors.New("signature does not match")
	}
	return nil
}

// vocabulary maps states to planned results for an action: would apply,
// already applied, would revert, not applied.
func vocabulary(actionName string) [4]string {
	switch actionName {
	case "isolate_host":
		return [4]string{action.WouldIsolate, action.AlreadyIsolated, action.WouldRelease, action.NotIsolated}
	case "block_ip":
		return [4]string{action.WouldBlock, action.AlreadyBlocked, action.WouldUnblock, action.NotBlocked}
	case "suspend_user":
		return [4]string{action.WouldSuspend, action.AlreadySuspended, action.WouldUnsuspend, action.NotSuspended}
	}
	return [4]string{action.WouldSend, AlreadyApplied, action.WouldSend, NotApplied}
}

// statusResponse is what a status endpoint answers.
type statusResponse struct {
	Targets []struct {
		Target string `json:"target"`
		State  string `json:"state"`
		Detail string `json:"detail"`
	} `json:"targets"`
}

// Plan asks the status endpoint for every target's state and says what
// the request's operation would do. Without a status endpoint every
// target would_send.
func (b *Backend) Plan(ctx context.Context, req action.Request) (*action.Plan, error) {
	p := &action.Plan{Action: req.Action, Backend: b.Name(), Environment: req.Environment, Operation: req.Operation}
	if b.opts.StatusURL == "" {
		for _, t := range req.Targets {
			p.Targets = append(p.Targets, action.TargetPlan{Target: t, Result: action.WouldSend, Detail: "no status endpoint; the receiver decides"})
		}
		return p, nil
	}
	body, err := b.body(req, false)
	if err != nil {
		return nil, err
	}
	resp, err := b.send(ctx, b.opts.StatusURL, body, "")
	if err != nil {
		return nil, b.redact(err)
	}
	if resp.status != http.StatusOK {
		return nil, b.redact(fmt.Errorf("webhook: status %s: %s", b.opts.StatusURL, resp.describe()))
	}
	states, err := parseStatus(resp.body, req.Targets)
	if err != nil {
		return nil, b.redact(fmt.Errorf("webhook: status %s: %w", b.opts.StatusURL, err))
	}
	words := vocabulary(req.Action)
	for _, t := range req.Targets {
		s := states[t]
		tp := action.TargetPlan{Target: t, Detail: b.redactString(outbound.Clean(s.Detail))}
		switch {
		case s.State == StateNotFound:
			tp.Result = action.NotFound
		case req.Operation == action.Revert && s.State == StateApplied:
			tp.Result = words[2]
		case req.Operation == action.Revert:
			tp.Result = words[3]
		case s.State == StateApplied:
			tp.Result = words[1]
		default:
			tp.Result = words[0]
		}
		p.Targets = append(p.Targets, tp)
	}
	return p, nil
}

type state struct{ State, Detail string }

// parseStatus checks a status response names every requested target once,
// with a known state, and nothing else.
func parseStatus(body []byte, targets []string) (map[string]state, error) {
	var sr statusResponse
	if err := json.Unmarshal(body, &sr); err != nil {
		return nil, fmt.Errorf("the response is not a status response: %v", err)
	}
	want := map[string]bool{}
	for _, t := range targets {
		want[t] = true
	}
	out := map[string]state{}
	for _, e := range sr.Targets {
		switch {
		case !want[e.Target]:
			return nil, fmt.Errorf("the response names target %q, which was not asked about", outbound.Clean(e.Target))
		case out[e.Target] != state{}:
			return nil, fmt.Errorf("the response names target %q twice", outbound.Clean(e.Target))
		}
		switch e.State {
		case StateApplied, StateNotApplied, StateNotFound:
		default:
			return nil, fmt.Errorf("target %q: state %q is not applied, not_applied or not_found", outbound.Clean(e.Target), outbound.Clean(e.State))
		}
		out[e.Target] = state{e.State, e.Detail}
	}
	for _, t := range targets {
		if _, ok := out[t]; !ok {
			return nil, fmt.Errorf("the response says nothing about target %q", t)
		}
	}
	return out, nil
}

// Apply sends the apply request: the receiver contains the targets.
func (b *Backend) Apply(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	return b.deliver(ctx, req)
}

// Revert sends the revert request (e.g. release_host).
func (b *Backend) Revert(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	return b.deliver(ctx, req)
}

// resultResponse is what the receiver may answer to apply and revert.
type resultResponse struct {
	Targets []action.TargetResult `json:"targets"`
}

func (b *Backend) deliver(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	body, err := b.body(req, true)
	if err != nil {
		return nil, err
	}
	fail := func(detail string) []action.TargetResult {
		rs := make([]action.TargetResult, len(req.Targets))
		for i, t := range req.Targets {
			rs[i] = action.TargetResult{Target: t, Result: action.Failed, Detail: detail}
		}
		return rs
	}
	resp, err := b.send(ctx, b.opts.URL, body, req.Key())
	if err != nil {
		err = b.redact(err)
		return fail(err.Error()), err
	}
	if resp.status < 200 || resp.status > 299 {
		err := b.redact(fmt.Errorf("webhook: %s %s: %s", req.Operation, b.opts.URL, resp.describe()))
		return fail(err.Error()), err
	}
	results, err := parseResults(resp, req.Targets)
	if err != nil {
		err = b.redact(fmt.Errorf("webhook: %s %s: %w", req.Operation, b.opts.URL, err))
		return fail(err.Error()), err
	}
	var failed []string
	for i := range results {
		results[i].Detail = b.redactString(results[i].Detail)
		if results[i].Result == action.Failed {
			failed = append(failed, results[i].Target)
		}
	}
	if len(failed) > 0 {
		return results, fmt.Errorf("webhook: the receiver failed %d of %d targets (%s)", len(failed), len(results), strings.Join(failed, ", "))
	}
	return results, nil
}

// parseResults reads per-target results from a 2xx answer. A body that is
// not JSON, or JSON without targets, accepts every target as changed; a
// JSON body with targets must account for each one.
func parseResults(resp *response, targets []string) ([]action.TargetResult, error) {
	accepted := func() []action.TargetResult {
		rs := make([]action.TargetResult, len(targets))
		for i, t := range targets {
			rs[i] = action.TargetResult{Target: t, Result: action.Changed, Detail: fmt.Sprintf("accepted by the receiver (HTTP %d)", resp.status)}
		}
		return rs
	}
	mt, _, _ := mime.ParseMediaType(resp.header.Get("Content-Type"))
	if len(resp.body) == 0 || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return accepted(), nil
	}
	var rr resultResponse
	if err := json.Unmarshal(resp.body, &rr); err != nil {
		return nil, fmt.Errorf("the response is not a result response: %v", err)
	}
	if len(rr.Targets) == 0 {
		return accepted(), nil
	}
	byTarget := map[string]action.TargetResult{}
	for _, r := range rr.Targets {
		if !slices.Contains(targets, r.Target) {
			return nil, fmt.Errorf("the response names target %q, which was not sent", outbound.Clean(r.Target))
		}
		if _, dup := byTarget[r.Target]; dup {
			return nil, fmt.Errorf("the response names target %q twice", outbound.Clean(r.Target))
		}
		switch r.Result {
		case action.Changed, action.Unchanged, action.Failed:
		default:
			return nil, fmt.Errorf("target %q: result %q is not changed, unchanged or failed", outbound.Clean(r.Target), outbound.Clean(r.Result))
		}
		r.Detail = outbound.Clean(r.Detail)
		byTarget[r.Target] = r
	}
	out := make([]action.TargetResult, len(targets))
	for i, t := range targets {
		r, ok := byTarget[t]
		if !ok {
			r = action.TargetResult{Target: t, Result: action.Failed, Detail: "the receiver did not report this target"}
		}
		out[i] = r
	}
	return out, nil
}

// redact removes the secret from an error, keeping whether it is
// transient.
func (b *Backend) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := b.redactString(err.Error())
	for _, kind := range []error{action.ErrTransient, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, kind) {
			return &redacted{msg: msg, kind: kind}
		}
	}
	return &redacted{msg: msg}
}

func (b *Backend) redactString(s string) string {
	if v := b.opts.Secret.Value(); v != "" {
		s = strings.ReplaceAll(s, v, "[redacted]")
	}
	return s
}

// redacted is an error whose text holds no secret; it unwraps only to its
// kind, never to the original.
type redacted struct {
	msg  string
	kind error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.kind }

var _ action.Blind = (*Backend)(nil)

// Blind reports whether the backend cannot read live state (no statusURL):
// drift checks then find nothing here.
func (b *Backend) Blind() bool { return b.opts.StatusURL == "" }
