package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/outbound"
	"github.com/writ-sec/writ/internal/retry"
)

// response is a read, size-limited HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// describe says what a response was: the status and, for a JSON error
// body with a message, the message.
func (r *response) describe() string {
	s := fmt.Sprintf("HTTP %d", r.status)
	if d := outbound.Clean(errorText(r)); d != "" {
		s += " (" + d + ")"
	}
	return s
}

// errorText is the start of a plain-text error body (JSON bodies are
// shown as they are, trimmed).
func errorText(r *response) string {
	if len(r.body) == 0 || r.status < 400 {
		return ""
	}
	return string(r.body)
}

// send POSTs a body with retries: timeouts, network errors, 408, 429
// (honouring Retry-After up to MaxRetryWait) and 5xx are retried with
// exponential backoff up to Retries times, then returned as
// action.ErrTransient. Every attempt carries the same body and
// idempotency key, signed afresh with its own timestamp.
func (b *Backend) send(ctx context.Context, u string, body []byte, key string) (*response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := b.once(ctx, u, body, key)
		var wait time.Duration
		var why string
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("%w: webhook: POST %s: %w", action.ErrTransient, u, ctx.Err())
		case errors.Is(err, outbound.ErrRedirect), errors.Is(err, outbound.ErrTooLarge), outbound.BadCertificate(err):
			return nil, fmt.Errorf("webhook: POST %s: %w", u, err)
		case err != nil:
			why = outbound.DescribeNetErr(err)
		case resp.status == http.StatusRequestTimeout || resp.status == http.StatusTooManyRequests || resp.status >= 500:
			why = resp.describe()
			if ra, ok := outbound.RetryAfter(resp.header.Get("Retry-After"), time.Now()); ok {
				if ra > b.opts.MaxRetryWait {
					return nil, fmt.Errorf("%w: webhook: POST %s: %s; Retry-After %s exceeds the %s this backend waits",
						action.ErrTransient, u, why, ra.Round(time.Second), b.opts.MaxRetryWait)
				}
				wait = ra
			}
		case resp.status >= 300 && resp.status < 400:
			// Not followed (CheckRedirect); a 3xx without Location lands here.
			return nil, fmt.Errorf("webhook: POST %s: %s: %w", u, resp.describe(), outbound.ErrRedirect)
		default:
			return resp, nil
		}
		if attempt >= b.opts.Retries {
			return nil, fmt.Errorf("%w: webhook: POST %s: %s after %d attempts", action.ErrTransient, u, why, attempt+1)
		}
		if wait == 0 {
			wait = retry.Backoff{Initial: b.opts.RetryBase, Max: b.opts.MaxRetryWait}.Delay(attempt)
		}
		b.opts.Logger.WarnContext(ctx, "webhook request will be retried", slog.String("backend", b.opts.Name),
			slog.String("url", u), slog.String("reason", why), slog.Int("attempt", attempt+1), slog.Duration("wait", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w: webhook: POST %s: %s; %w", action.ErrTransient, u, why, ctx.Err())
		case <-t.C:
		}
	}
}

// once sends one signed attempt and reads at most MaxResponseBytes of the
// answer.
func (b *Backend) once(ctx context.Context, u string, body []byte, key string) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(b.opts.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "writ-webhook/1")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign([]byte(b.opts.Secret.Value()), ts, body))
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
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
	b.opts.Logger.DebugContext(ctx, "webhook request", slog.String("backend", b.opts.Name),
		slog.String("url", u), slog.Int("status", res.StatusCode), slog.String("idempotency_key", key))
	return &response{status: res.StatusCode, header: res.Header, body: data}, nil
}
