package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
// bounded (audit.Bounded): the first Burst of a window are audited one by
// one, the others are counted (by reason, route and client address, the
// 20 busiest of each named) into one summary entry per window. A flood of
// anonymous requests thus writes at most Burst+1 entries a minute, and is
// still on record with its size.
type DenialAuditor struct{ bounded *audit.Bounded }

// NewDenialAuditor checks the options.
func NewDenialAuditor(opts DenialOptions) (*DenialAuditor, error) {
	if opts.Log == nil || opts.Store == nil {
		return nil, errors.New("server: denial auditor needs an audit log and a store")
	}
	b, err := audit.NewBounded(audit.BoundedOptions{Log: opts.Log, Store: opts.Store, Burst: opts.Burst, Window: opts.Window,
		Timeout: opts.Timeout, Logger: opts.Logger, Now: opts.Now,
		Summary: audit.Entry{Actor: anonymous, Event: audit.EventAuthDeniedSummary, Success: false, Subject: audit.Subject{Kind: "api", Name: "*"}}})
	if err != nil {
		return nil, fmt.Errorf("server: denial auditor: %w", err)
	}
	return &DenialAuditor{bounded: b}, nil
}

var anonymous = audit.Actor{ID: "anonymous", Role: "none"}

// Record audits a denial (or counts it, see DenialAuditor). It never
// fails the request: an append error is logged.
func (d *DenialAuditor) Record(ctx context.Context, dn Denial) {
	actor := anonymous
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
	e := audit.Entry{Actor: actor, Event: audit.EventAuthDenied, Success: false,
		Subject: audit.Subject{Kind: "api", Name: dn.Route}, Payload: audit.MustJSON(payload)}
	if dn.Status == http.StatusUnauthorized || dn.Status == http.StatusTooManyRequests {
		d.bounded.Record(ctx, e, map[string]string{"reason": dn.Code, "route": dn.Route, "remote": dn.Remote})
		return
	}
	d.bounded.Append(ctx, e)
}

// Flush ends the current window: when requests were counted rather than
// audited one by one, it writes their summary.
func (d *DenialAuditor) Flush(ctx context.Context) { d.bounded.Flush(ctx) }

// Run flushes at the end of every window until ctx ends, then once more.
func (d *DenialAuditor) Run(ctx context.Context) error { return d.bounded.Run(ctx) }
