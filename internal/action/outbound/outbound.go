// Package outbound holds what the backends that call HTTP services (SCIM,
// signed webhooks) share: a client that always verifies TLS and never
// follows redirects, size-limited reads, the retry settings' bounds, and
// how a failure or a remote text is described.
package outbound

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrRedirect refuses redirects: a service that answers elsewhere is
	// misconfigured, and following it would send credentials or a signed
	// containment request somewhere that was not configured.
	ErrRedirect = errors.New("redirect refused")
	// ErrTooLarge is a response over the backend's limit.
	ErrTooLarge = errors.New("response too large")
)

// NewClient makes a client with TLS verification always on (with only the
// CA file's roots when one is given), no redirects and no cookies.
func NewClient(caFile string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return ErrRedirect },
	}, nil
}

// ReadBody reads a response body of at most limit bytes (ErrTooLarge past
// it).
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}

// CheckLimits bounds a backend's timeout, retries, retry waits and
// response size.
func CheckLimits(timeout time.Duration, retries int, retryBase, maxRetryWait time.Duration, maxResponseBytes int64) error {
	switch {
	case timeout < 0 || timeout > 5*time.Minute:
		return fmt.Errorf("timeout %s is outside (0, 5m]", timeout)
	case retries > 10:
		return fmt.Errorf("retries %d is more than 10", retries)
	case retryBase < 0 || maxRetryWait < 0 || maxRetryWait > 10*time.Minute:
		return errors.New("retry waits must be positive and maxRetryWait at most 10m")
	case maxResponseBytes < 1024:
		return fmt.Errorf("maxResponseBytes %d is below 1024", maxResponseBytes)
	}
	return nil
}

// BadCertificate reports a TLS verification failure: a configuration
// problem that retrying does not fix.
func BadCertificate(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

// DescribeNetErr names a transport failure without repeating the request.
func DescribeNetErr(err error) string {
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

// RetryAfter parses a Retry-After header: seconds, or an HTTP date.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
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

// Clean makes remote text safe for one line of a message: no control
// characters, at most 200 bytes.
func Clean(s string) string {
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

// Settings are the transport settings every backend calling an HTTP
// service takes in writ.yaml; backends embed them in their own settings.
type Settings struct {
	CAFile            string `json:"caFile"`
	AllowInsecureHTTP bool   `json:"allowInsecureHTTP"`
	Timeout           string `json:"timeout"`
	Retries           *int   `json:"retries"`
	MaxRetryWait      string `json:"maxRetryWait"`
	MaxResponseBytes  int64  `json:"maxResponseBytes"`
}

// Durations parses timeout and maxRetryWait (zero when absent: the
// backend's default).
func (s Settings) Durations() (timeout, maxRetryWait time.Duration, err error) {
	if timeout, err = positiveDuration("timeout", s.Timeout); err != nil {
		return 0, 0, err
	}
	if maxRetryWait, err = positiveDuration("maxRetryWait", s.MaxRetryWait); err != nil {
		return 0, 0, err
	}
	return timeout, maxRetryWait, nil
}

// RetriesOption maps settings.retries (absent: the default, 0: none) onto
// the options' convention (0: the default, -1: none).
func (s Settings) RetriesOption() int {
	switch {
	case s.Retries == nil:
		return 0
	case *s.Retries == 0:
		return -1
	}
	return *s.Retries
}

func positiveDuration(name, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("settings.%s: %q is not a positive duration such as 10s", name, v)
	}
	return d, nil
}
