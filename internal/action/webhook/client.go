package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/action"
)

// errRedirect refuses redirects: a receiver that answers elsewhere is
// misconfigured, and a signed containment request must reach the URL that
// was configured, nothing else.
var errRedirect = errors.New("redirect refused")

var errTooLarge = errors.New("response too large")

// newHTTPClient makes the client: TLS verification always on (with only
// the CA file's roots when one is given), no redirects, no cookies.
func newHTTPClient(caFile string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("webhook: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("webhook: CA file %s holds no PEM certificate", caFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}, nil
}

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
	if d := clean(errorText(r)); d != "" {
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

// clean makes remote text safe for one line of a message: no control
// characters, at most 200 bytes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.TrimSpace(s)
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
		case errors.Is(err, errRedirect), errors.Is(err, errTooLarge), badCertificate(err):
			return nil, fmt.Errorf("webhook: POST %s: %w", u, err)
		case err != nil:
			why = describeNetErr(err)
		case resp.status == http.StatusRequestTimeout || resp.status == http.StatusTooManyRequests || resp.status >= 500:
			why = resp.describe()
			if ra, ok := retryAfter(resp.header.Get("Retry-After"), time.Now()); ok {
				if ra > b.opts.MaxRetryWait {
					return nil, fmt.Errorf("%w: webhook: POST %s: %s; Retry-After %s exceeds the %s this backend waits",
						action.ErrTransient, u, why, ra.Round(time.Second), b.opts.MaxRetryWait)
				}
				wait = ra
			}
		case resp.status >= 300 && resp.status < 400:
			// Not followed (CheckRedirect); a 3xx without Location lands here.
			return nil, fmt.Errorf("webhook: POST %s: %s: %w", u, resp.describe(), errRedirect)
		default:
			return resp, nil
		}
		if attempt >= b.opts.Retries {
			return nil, fmt.Errorf("%w: webhook: POST %s: %s after %d attempts", action.ErrTransient, u, why, attempt+1)
		}
		if wait == 0 {
			wait = b.opts.RetryBase << attempt
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
	data, err := io.ReadAll(io.LimitReader(res.Body, b.opts.MaxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > b.opts.MaxResponseBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, b.opts.MaxResponseBytes)
	}
	b.opts.Logger.DebugContext(ctx, "webhook request", slog.String("backend", b.opts.Name),
		slog.String("url", u), slog.Int("status", res.StatusCode), slog.String("idempotency_key", key))
	return &response{status: res.StatusCode, header: res.Header, body: data}, nil
}

// badCertificate reports a TLS verification failure: a configuration
// problem that retrying does not fix.
func badCertificate(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

// describeNetErr names a transport failure without repeating the request.
func describeNetErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// retryAfter parses a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
