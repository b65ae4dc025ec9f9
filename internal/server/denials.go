package server

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/store"
)

// AuditLog appends audit entries (in tx, or in a transaction of their own
// when tx is the pool's Store).
type AuditLog interface {
	Append(ctx context.Context, tx *store.Store, entries ...audit.Entry) ([]audit.Receipt, error)
}

// Denial is one refused request.
type Denial struct {
	// Status is 401 (no or a refused credential), 403 (a principal
	// without the role) or 429 (password checks over the rate limit).
	Status int
	// Principal is the caller of a 403 (nil for a 401).
	Principal *auth.Principal
	// Code says why: no_credentials, malformed, unknown, expired, revoked,
	// disabled, oidc_disabled, invalid_token, forbidden,
	// password_change_required, bad_password, locked, ...
	Code   string
	Detail string
	// Route is the pattern matched ("POST /api/v1/users").
	Route     string
	Remote    string
	RequestID string
}

// Audit events of denials.
const (
	EventDenied        = "auth.denied"
	EventDeniedSummary = "auth.denied_summary"
)

// DenialOptions configures a DenialAuditor.
type DenialOptions struct {
	// Log and Store write the entries. Required.
	Log   AuditLog
	Store *store.Store
	// Burst is how many 401s a window audits one by one; the rest are
	// counted and audited as one summary entry when the window ends.
	// Default 20.
	Burst int
	// Window is the aggregation period. Default 1 minute.
	Window time.Duration
	// Timeout bounds one append. Default 5s.
	Timeout time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

// DenialAuditor writes every refused request to the audit log. A refused
// principal (403) is always audited one entry per request: it is someone
// known. Anonymous and refused-credential requests (401), and password
// checks over the rate limit (429), cost the caller nothing, so they are
// bounded: the first Burst of a window are audited
// one by one, the others are counted (by reason, route and client
// address, the 20 busiest addresses named) into one summary entry per
// window. A flood of anonymous requests thus writes at most Burst+1
// entries a minute, and is still on record with its size.
type DenialAuditor struct {
	opts DenialOptions

	mu         sync.Mutex
	start      time.Time
	individual int
	suppressed int
	byCode     map[string]int
	byRoute    map[string]int
	byRemote   map[string]int
}

// maxRemotes bounds the addresses counted per window.
const maxRemotes = 1000

// NewDenialAuditor checks the options.
func NewDenialAuditor(opts DenialOptions) (*DenialAuditor, error) {
	if opts.Log == nil || opts.Store == nil {
		return nil, errors.New("server: denial auditor needs an audit log and a store")
	}
	if opts.Burst == 0 {
		opts.Burst = 20
	}
	if opts.Window == 0 {
		opts.Window = time.Minute
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Burst < 0 || opts.Window < time.Second {
		return nil, errors.New("server: denial auditor: burst must not be negative, window at least 1s")
	}
	d := &DenialAuditor{opts: opts}
	d.reset(opts.Now())
	return d, nil
}

func (d *DenialAuditor) reset(now time.Time) {
	d.start, d.individual, d.suppressed = now, 0, 0
	d.byCode, d.byRoute, d.byRemote = map[string]int{}, map[string]int{}, map[string]int{}
}

// Record audits a denial (or counts it, see DenialAuditor). It never
// fails the request: an append error is logged.
func (d *DenialAuditor) Record(ctx context.Context, dn Denial) {
	if dn.Status == http.StatusUnauthorized || dn.Status == http.StatusTooManyRequests {
		d.mu.Lock()
		if d.opts.Now().Sub(d.start) >= d.opts.Window {
			d.mu.Unlock()
			d.Flush(ctx)
			d.mu.Lock()
		}
		if d.individual >= d.opts.Burst {
			d.suppressed++
			d.byCode[dn.Code]++
			d.byRoute[dn.Route]++
			if _, ok := d.byRemote[dn.Remote]; ok || len(d.byRemote) < maxRemotes {
				d.byRemote[dn.Remote]++
			} else {
				d.byRemote["other"]++
			}
			d.mu.Unlock()
			return
		}
		d.individual++
		d.mu.Unlock()
	}
	actor := audit.Actor{ID: "anonymous", Role: "none"}
	if dn.Principal != nil {
		actor = dn.Principal.Actor("")
	}
	payload := map[string]any{"status": dn.Status, "reason": dn.Code, "remote": dn.Remote, "request_id": dn.RequestID}
	if dn.Detail != "" {
		payload["detail"] = dn.Detail
	}
	if dn.Principal != nil {
		payload["method"] = string(dn.Principal.Method)
	}
	d.append(ctx, audit.Entry{Actor: actor, Event: EventDenied, Success: false,
		Subject: audit.Subject{Kind: "api", Name: dn.Route}, Payload: audit.MustJSON(payload)})
}

func (d *DenialAuditor) append(ctx context.Context, e audit.Entry) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.opts.Timeout)
	defer cancel()
	if _, err := d.opts.Log.Append(actx, d.opts.Store, e); err != nil {
		d.opts.Logger.ErrorContext(ctx, "audit a denied request", slog.String("event", e.Event), slog.Any("error", err))
	}
}

// Flush ends the current window: when requests were counted rather than
// audited one by one, it writes their summary.
func (d *DenialAuditor) Flush(ctx context.Context) {
	d.mu.Lock()
	now := d.opts.Now()
	if d.suppressed == 0 {
		d.reset(now)
		d.mu.Unlock()
		return
	}
	payload := map[string]any{
		"window_start": d.start.UTC().Format(time.RFC3339Nano), "window_end": now.UTC().Format(time.RFC3339Nano),
		"audited_individually": d.individual, "counted": d.suppressed,
		"by_reason": d.byCode, "by_route": d.byRoute, "by_remote": topN(d.byRemote, 20), "remotes": len(d.byRemote),
	}
	n := d.suppressed
	d.reset(now)
	d.mu.Unlock()
	d.opts.Logger.WarnContext(ctx, "unauthenticated requests refused", slog.Int("counted", n))
	d.append(ctx, audit.Entry{Actor: audit.Actor{ID: "anonymous", Role: "none"}, Event: EventDeniedSummary, Success: false,
		Subject: audit.Subject{Kind: "api", Name: "*"}, Payload: audit.MustJSON(payload)})
}

// Run flushes at the end of every window until ctx ends, then once more.
func (d *DenialAuditor) Run(ctx context.Context) error {
	t := time.NewTicker(d.opts.Window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.Flush(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
			d.Flush(ctx)
		}
	}
}

// topN keeps the n largest counts (ties by key).
func topN(m map[string]int, n int) map[string]int {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		if a < b {
			return -1
		}
		return 1
	})
	out := map[string]int{}
	for _, k := range keys[:min(n, len(keys))] {
		out[k] = m[k]
	}
	return out
}
