package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/outbound"
	"github.com/writ-sec/writ/internal/retry"
)

// auth adds the Authorization header: a static bearer token, or an OAuth
// 2.0 client-credentials token, cached until shortly before it expires.
type auth struct {
	bearer string
	oauth  *clientcredentials.Config
	http   *http.Client

	mu sync.Mutex
	ts oauth2.TokenSource
}

func (a *auth) header(ctx context.Context) (string, error) {
	if a.oauth == nil {
		if a.bearer == "" {
			return "", nil
		}
		return "Bearer " + a.bearer, nil
	}
	a.mu.Lock()
	if a.ts == nil {
		// The token source keeps this context for every refresh: it only
		// carries the HTTP client (whose timeout bounds each fetch).
		a.ts = a.oauth.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, a.http))
	}
	ts := a.ts
	a.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tok, err := ts.Token()
	if err != nil {
		return "", tokenError(a.oauth.TokenURL, err)
	}
	return "Bearer " + tok.AccessToken, nil
}

// reset drops a cached OAuth token (after a 401: it may have been revoked).
func (a *auth) reset() bool {
	if a.oauth == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ts = nil
	return true
}

// tokenError describes a failed token request without the response body
// (which a token endpoint may fill with anything); 5xx and network errors
// are transient.
func tokenError(tokenURL string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		msg := fmt.Sprintf("scim: OAuth token request to %s: HTTP %d", tokenURL, re.Response.StatusCode)
		if re.ErrorCode != "" {
			msg += " (" + outbound.Clean(re.ErrorCode) + ")"
		}
		if re.Response.StatusCode >= 500 || re.Response.StatusCode == http.StatusTooManyRequests {
			return fmt.Errorf("%w: %s", action.ErrTransient, msg)
		}
		return errors.New(msg)
	}
	if errors.Is(err, outbound.ErrRedirect) {
		return fmt.Errorf("scim: OAuth token request to %s: %w", tokenURL, outbound.ErrRedirect)
	}
	return fmt.Errorf("%w: scim: OAuth token request to %s failed: %s", action.ErrTransient, tokenURL, outbound.DescribeNetErr(err))
}

// response is a read, size-limited HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// scimError is the detail of an RFC 7644 §3.12 error response, cleaned
// for messages.
func (r *response) scimError() string {
	var e struct {
		ScimType string `json:"scimType"`
		Detail   string `json:"detail"`
	}
	if json.Unmarshal(r.body, &e) != nil {
		return ""
	}
	s := outbound.Clean(e.Detail)
	if e.ScimType != "" {
		s = strings.TrimSpace(outbound.Clean(e.ScimType) + ": " + s)
	}
	return s
}

// describe says what a response was, for errors and target details.
func (r *response) describe() string {
	s := fmt.Sprintf("HTTP %d", r.status)
	if d := r.scimError(); d != "" {
		s += " (" + d + ")"
	}
	return s
}

// do sends one request with retries: 429 (honouring Retry-After up to
// MaxRetryWait), 5xx and network errors are retried with exponential
// backoff up to Retries times, then returned as action.ErrTransient. Other
// responses are returned as they are.
func (b *Backend) do(ctx context.Context, method, u string, body []byte) (*response, error) {
	reauth := true
	for attempt := 0; ; attempt++ {
		resp, err := b.once(ctx, method, u, body)
		var wait time.Duration
		var why string
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("%w: scim: %s %s: %w", action.ErrTransient, method, u, ctx.Err())
		case errors.Is(err, outbound.ErrRedirect), errors.Is(err, outbound.ErrTooLarge), errors.Is(err, errAuth), outbound.BadCertificate(err):
			return nil, fmt.Errorf("scim: %s %s: %w", method, u, err)
		case errors.Is(err, action.ErrTransient):
			// A token endpoint that is down.
			why = err.Error()
		case err != nil:
			why = outbound.DescribeNetErr(err)
		case resp.status == http.StatusUnauthorized && reauth && b.auth.reset():
			// A revoked or rotated OAuth token: fetch a new one, once.
			reauth = false
			attempt--
			continue
		case resp.status == http.StatusTooManyRequests || resp.status >= 500:
			why = resp.describe()
			if ra, ok := outbound.RetryAfter(resp.header.Get("Retry-After"), time.Now()); ok {
				if ra > b.opts.MaxRetryWait {
					return nil, fmt.Errorf("%w: scim: %s %s: %s; Retry-After %s exceeds the %s this backend waits",
						action.ErrTransient, method, u, why, ra.Round(time.Second), b.opts.MaxRetryWait)
				}
				wait = ra
			}
		default:
			return resp, nil
		}
		if attempt >= b.opts.Retries {
			return nil, fmt.Errorf("%w: scim: %s %s: %s after %d attempts", action.ErrTransient, method, u, why, attempt+1)
		}
		if wait == 0 {
			wait = retry.Backoff{Initial: b.opts.RetryBase, Max: b.opts.MaxRetryWait}.Delay(attempt)
		}
		b.opts.Logger.WarnContext(ctx, "scim request will be retried", slog.String("backend", b.opts.Name),
			slog.String("method", method), slog.String("url", u), slog.String("reason", why),
			slog.Int("attempt", attempt+1), slog.Duration("wait", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w: scim: %s %s: %s; %w", action.ErrTransient, method, u, why, ctx.Err())
		case <-t.C:
		}
	}
}

var errAuth = errors.New("authentication")

// once sends a request and reads at most MaxResponseBytes of the answer.
func (b *Backend) once(ctx context.Context, method, u string, body []byte) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/scim+json, application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	h, err := b.auth.header(ctx)
	if err != nil {
		if errors.Is(err, action.ErrTransient) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errAuth, err)
	}
	if h != "" {
		req.Header.Set("Authorization", h)
	}
	res, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	data, err := outbound.ReadBody(res.Body, b.opts.MaxResponseBytes)
	if err != nil {
		return nil, err
	}
	b.opts.Logger.DebugContext(ctx, "scim request", slog.String("backend", b.opts.Name),
		slog.String("method", method), slog.String("url", u), slog.Int("status", res.StatusCode))
	return &response{status: res.StatusCode, header: res.Header, body: data}, nil
}
