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
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
)

// Message is what the signed webhook receives: Slack's "text" plus the
// event, for receivers that want structure.
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
	// Next is what to do next, in plain text ("" when nothing).
	Next string `json:"next,omitempty"`
}

// poster posts JSON to one URL: the signed webhook (secret set) or a
// Slack-compatible incoming webhook (text only).
type poster struct {
	url    string
	secret string
	slack  bool
	client *http.Client
}

func newWebhook(c *config.WebhookChannel, opts Options) (*poster, error) {
	u := c.URL
	if c.URLEnv != "" {
		s, err := config.ResolveSecret(opts.Getenv, c.URLEnv, "")
		if err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		u = s.Value()
	}
	secret, err := config.ResolveSecret(opts.Getenv, c.SecretEnv, c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return newPoster(u, secret.Value(), false, c.CAFile, c.AllowInsecureHTTP, opts.Timeout)
}

func newSlack(c *config.SlackChannel, opts Options) (*poster, error) {
	s, err := config.ResolveSecret(opts.Getenv, c.URLEnv, c.URLFile)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	return newPoster(s.Value(), "", true, c.CAFile, c.AllowInsecureHTTP, opts.Timeout)
}

func newPoster(raw, secret string, slack bool, caFile string, allowHTTP bool, timeout time.Duration) (*poster, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, errors.New("the URL is not a URL") // never the value: it may be a credential
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	default:
		return nil, fmt.Errorf("%s://%s: https only (or allow http explicitly)", u.Scheme, u.Host)
	}
	tlsCfg, err := tlsConfig(caFile, "")
	if err != nil {
		return nil, err
	}
	return &poster{url: raw, secret: secret, slack: slack, client: &http.Client{
		Timeout:       timeout,
		Transport:     &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// tlsConfig verifies servers with the system's roots or caFile's.
func tlsConfig(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func (p *poster) send(ctx context.Context, m *outgoing) error {
	var body []byte
	if p.slack {
		body, _ = json.Marshal(struct {
			Text string `json:"text"`
		}{m.slack})
	} else {
		e := m.entry
		body, _ = json.Marshal(Message{Text: m.slack, Writ: Event{Seq: e.Seq, Time: e.Time, Event: string(e.Event), Subject: e.Subject,
			Success: e.Success, Payload: e.Payload, Next: m.desc.Next}})
	}
	return p.post(ctx, body, m.entry.Seq)
}

// Sign computes the signature header value of a body at a timestamp.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", ts)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (p *poster) post(ctx context.Context, body []byte, seq uint64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return permanent(errors.New("post notification: bad request"))
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "writ-notify")
	if !p.slack {
		req.Header.Set("X-Writ-Timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("Idempotency-Key", fmt.Sprintf("writ-audit-%d", seq))
		if p.secret != "" {
			req.Header.Set("X-Writ-Signature-256", Sign(p.secret, ts, body))
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("post notification: %w", redact(err, p.url))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch c := resp.StatusCode; {
	case c >= 200 && c <= 299:
		return nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return fmt.Errorf("post notification: HTTP %d", c)
	default:
		return permanent(fmt.Errorf("post notification: HTTP %d", c))
	}
}

// redact keeps a webhook URL's secret path (Slack puts the credential in
// it) out of errors.
func redact(err error, raw string) error {
	u, perr := url.Parse(raw)
	if perr != nil {
		return errors.New("a request to the notification URL failed")
	}
	short := u.Scheme + "://" + u.Host + "/…"
	return errors.New(strings.ReplaceAll(err.Error(), raw, short))
}
