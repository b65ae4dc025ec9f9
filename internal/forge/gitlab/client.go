package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/writ-sec/writ/internal/forge/inbox"
	"github.com/writ-sec/writ/internal/retry"
)

// newClient makes the API client: GitLab's official Go client
// (gitlab.com/gitlab-org/api/client-go), which retries 429s and 5xx;
// writ sets how often and how long it waits (Retry-After, then
// RateLimit-Reset, capped by MaxRateLimitWait).
func newClient(o Options) (*gl.Client, error) {
	opts := []gl.ClientOptionFunc{
		gl.WithBaseURL(strings.TrimSuffix(o.BaseURL, "/") + "/api/v4"),
		gl.WithCustomRetryMax(o.APIAttempts - 1),
		gl.WithCustomBackoff(o.backoff),
		gl.WithCustomRetryWaitMinMax(o.APIBackoff, 32*o.APIBackoff),
	}
	if o.UserAgent != "" {
		opts = append(opts, gl.WithUserAgent(o.UserAgent))
	}
	if o.HTTPClient != nil {
		opts = append(opts, gl.WithHTTPClient(o.HTTPClient))
	}
	c, err := gl.NewClient(o.Token, opts...)
	if err != nil {
		return nil, fmt.Errorf("gitlab: API client: %w", err)
	}
	return c, nil
}

var _ retryablehttp.Backoff = (&Options{}).backoff

// backoff is the wait before API attempt attempt+1: for a 429, what GitLab
// asks (Retry-After in seconds or as a date, else RateLimit-Reset, a Unix
// time), capped by MaxRateLimitWait; otherwise APIBackoff doubled per
// attempt, jittered.
func (o *Options) backoff(_, _ time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
		if d, ok := rateLimitWait(resp.Header, time.Now()); ok {
			return min(d, o.MaxRateLimitWait)
		}
	}
	return retry.Backoff{Initial: o.APIBackoff, Max: 32 * o.APIBackoff}.Delay(attempt)
}

// rateLimitWait reads how long GitLab asks a client to wait.
func rateLimitWait(h http.Header, now time.Time) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return time.Duration(n) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	if v := strings.TrimSpace(h.Get("RateLimit-Reset")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return max(time.Unix(n, 0).Sub(now), 0), true
		}
	}
	return 0, false
}

// call runs one API request with the call timeout; GitLab's refusals that
// retrying will not fix (4xx but 408 and 429) are inbox.ErrPermanent.
func (s *Service) call(ctx context.Context, what string, fn func(opt gl.RequestOptionFunc) (*gl.Response, error)) error {
	cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	resp, err := fn(gl.WithContext(cctx))
	if err == nil {
		return nil
	}
	code := statusOf(resp, err)
	if code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests {
		return fmt.Errorf("%w: gitlab: %s: %w", inbox.ErrPermanent, what, err)
	}
	return fmt.Errorf("gitlab: %s: %w", what, err)
}

// statusOf is the HTTP status of a failed call (0 without a response).
func statusOf(resp *gl.Response, err error) int {
	var er *gl.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	if resp != nil && resp.Response != nil {
		return resp.StatusCode
	}
	return 0
}
