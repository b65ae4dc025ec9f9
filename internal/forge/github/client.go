package github

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v88/github"
)

// ClientOptions says how to reach GitHub and who writ is there: a token,
// or a GitHub App installation (installation tokens through
// bradleyfalzon/ghinstallation, refreshed before they expire).
type ClientOptions struct {
	// BaseURL of GitHub Enterprise Server (https://HOST/ or
	// https://HOST/api/v3/); "" for github.com.
	BaseURL string
	// Token authenticates as a user or with a fine-grained token.
	Token string
	// AppID, InstallationID and PrivateKey (PEM) authenticate as a GitHub
	// App installation. Exclusive with Token.
	AppID          int64
	InstallationID int64
	PrivateKey     []byte
	// Anonymous asks GitHub without credentials, for public data only
	// (a user's profile and keys), at GitHub's lower rate limit for
	// unauthenticated requests. Exclusive with Token and the App.
	Anonymous bool
	// Timeout bounds every request. Default 30s.
	Timeout time.Duration
	// Transport is the underlying transport (tests). Default: a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	UserAgent string
}

// LogValue never shows a token or a key.
func (o ClientOptions) LogValue() slog.Value {
	auth := "none"
	switch {
	case o.Anonymous:
		auth = "anonymous"
	case o.Token != "":
		auth = "token"
	case o.AppID != 0:
		auth = fmt.Sprintf("app %d installation %d", o.AppID, o.InstallationID)
	}
	base := o.BaseURL
	if base == "" {
		base = "https://api.github.com/"
	}
	return slog.GroupValue(slog.String("base_url", redactURL(base)), slog.String("auth", auth))
}

func (o *ClientOptions) validate() error {
	app := o.AppID != 0 || o.InstallationID != 0 || len(o.PrivateKey) > 0
	switch {
	case o.Anonymous && (o.Token != "" || app):
		return errors.New("github: anonymous access takes no token or app")
	case o.Token != "" && app:
		return errors.New("github: authenticate with a token or as an app, not both")
	case app && (o.AppID <= 0 || o.InstallationID <= 0 || len(o.PrivateKey) == 0):
		return errors.New("github: app authentication needs an app id, an installation id and a private key")
	case o.Token == "" && !app && !o.Anonymous:
		return errors.New("github: no credentials: give a token or a GitHub App")
	}
	if o.BaseURL != "" {
		u, err := url.Parse(o.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("github: base URL %q is not an http(s) URL", redactURL(o.BaseURL))
		}
		if u.User != nil {
			return errors.New("github: the base URL must not carry credentials")
		}
	}
	return nil
}

// NewClient builds a go-github client for github.com or an Enterprise
// Server.
func NewClient(o ClientOptions) (*gh.Client, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	base := o.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	opts := []gh.ClientOptionsFunc{gh.WithTimeout(o.Timeout)}
	if o.UserAgent != "" {
		opts = append(opts, gh.WithUserAgent(o.UserAgent))
	}
	if o.BaseURL != "" {
		b := strings.TrimRight(o.BaseURL, "/") + "/"
		upload := strings.TrimSuffix(strings.TrimSuffix(b, "/"), "/api/v3") + "/"
		opts = append(opts, gh.WithEnterpriseURLs(b, upload))
	}
	if o.Anonymous {
		return gh.NewClient(append(opts, gh.WithTransport(base))...)
	}
	if o.Token != "" {
		opts = append(opts, gh.WithTransport(base), gh.WithAuthToken(o.Token))
		return gh.NewClient(opts...)
	}
	itr, err := ghinstallation.New(base, o.AppID, o.InstallationID, o.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("github: app key: %w", err)
	}
	// The client fixes its base URL first; the installation transport asks
	// the same server for tokens.
	probe, err := gh.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	itr.BaseURL = strings.TrimRight(probe.BaseURL(), "/")
	opts = append(opts, gh.WithTransport(itr))
	return gh.NewClient(opts...)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// call runs one API call with the service's rules: a deadline per attempt;
// on the primary rate limit, wait until it resets; on a secondary rate
// limit, wait Retry-After (or SecondaryWait); on 5xx, 429 or a network
// error, back off and try again; any other error ends the call.
func (s *Service) call(ctx context.Context, what string, fn func(ctx context.Context) (*gh.Response, error)) error {
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
		resp, err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait, retry := s.retryWait(err, resp, attempt)
		if !retry {
			return fmt.Errorf("github: %s: %w", what, err)
		}
		if attempt >= s.opts.APIAttempts {
			return fmt.Errorf("github: %s: gave up after %d attempts: %w", what, attempt, err)
		}
		s.log.WarnContext(ctx, "GitHub API call will be retried", slog.String("call", what), slog.Int("attempt", attempt),
			slog.Duration("wait", wait), slog.String("error", err.Error()))
		if err := s.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// retryWait says whether and when an API error is worth another attempt.
func (s *Service) retryWait(err error, resp *gh.Response, attempt int) (time.Duration, bool) {
	var rl *gh.RateLimitError
	if errors.As(err, &rl) {
		wait := time.Until(rl.Rate.Reset.Time) + time.Second
		if rl.Rate.Reset.IsZero() {
			wait = backoff(s.opts.APIBackoff, time.Minute, attempt)
		}
		if wait > s.opts.MaxRateLimitWait {
			return 0, false
		}
		return max(wait, 0), true
	}
	var abuse *gh.AbuseRateLimitError
	if errors.As(err, &abuse) {
		wait := s.opts.SecondaryWait
		if abuse.RetryAfter != nil {
			wait = *abuse.RetryAfter
		}
		// Each further secondary limit waits longer, as GitHub asks.
		wait = max(wait, backoff(s.opts.APIBackoff, s.opts.MaxRateLimitWait, attempt))
		return min(wait, s.opts.MaxRateLimitWait), true
	}
	var ae *gh.AcceptedError
	if errors.As(err, &ae) {
		return backoff(s.opts.APIBackoff, time.Minute, attempt), true
	}
	if resp != nil && resp.Response != nil {
		code := resp.StatusCode
		if code >= 500 || code == http.StatusTooManyRequests {
			if ra := resp.Header.Get("Retry-After"); ra != "" {
				if d, perr := time.ParseDuration(ra + "s"); perr == nil && d <= s.opts.MaxRateLimitWait {
					return d, true
				}
			}
			return backoff(s.opts.APIBackoff, time.Minute, attempt), true
		}
		return 0, false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection") {
		return backoff(s.opts.APIBackoff, time.Minute, attempt), true
	}
	return 0, false
}

// statusOf is the HTTP status of a failed call, or 0.
func statusOf(err error) int {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

// InstallationTokens returns a source of GitHub App installation tokens
// (cached and refreshed before they expire by ghinstallation), for git
// fetches over HTTPS with the same App. Token auth needs none: use the
// token itself.
func InstallationTokens(o ClientOptions) (func(ctx context.Context) (string, error), error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Token != "" {
		return nil, errors.New("github: installation tokens need App credentials")
	}
	base := o.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	itr, err := ghinstallation.New(base, o.AppID, o.InstallationID, o.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("github: app key: %w", err)
	}
	if o.BaseURL != "" {
		itr.BaseURL = strings.TrimRight(o.BaseURL, "/")
	}
	return itr.Token, nil
}
