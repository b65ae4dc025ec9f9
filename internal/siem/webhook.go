package siem

import (
	"bytes"
	"context"
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

	"github.com/writ-sec/writ/internal/notify"
	"github.com/writ-sec/writ/internal/store"
)

// WebhookOptions configures a webhook destination.
type WebhookOptions struct {
	Name string
	// URL receives the batches (https).
	URL string
	// Secret signs each body (HMAC-SHA256, as notifications are signed:
	// notify.Sign). Required.
	Secret string
	// CAFile verifies the receiver's certificate (default: the system
	// roots).
	CAFile string
	// Timeout per request. Default 30s.
	Timeout time.Duration
	Client  *http.Client // tests
}

// Webhook posts batches of entries, each acknowledged by a 2xx answer.
type Webhook struct {
	opts   WebhookOptions
	client *http.Client
	buf    bytes.Buffer
}

// WebhookBatch is the body of one request.
type WebhookBatch struct {
	Destination string `json:"destination"`
	// FirstSeq and LastSeq are the seqs of the first and last entries, and
	// PrevHash the chain hash before the first (64 zeros before seq 0): a
	// receiver continues its chain from it.
	FirstSeq int64          `json:"first_seq"`
	LastSeq  int64          `json:"last_seq"`
	PrevHash string         `json:"prev_hash"`
	Entries  []WebhookEntry `json:"entries"`
}

// WebhookEntry is one entry, with the fields of a line of writ audit
// export: Bytes are the canonical bytes the chain hash covers
// (hash = SHA-256(prev_hash || bytes)), Entry the same bytes as JSON
// (absent when they are not JSON: a tampered entry is forwarded as it is).
type WebhookEntry struct {
	Seq       int64           `json:"seq"`
	Event     string          `json:"event"`
	Bytes     []byte          `json:"bytes"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
	KeyID     string          `json:"key_id"`
	Signature []byte          `json:"signature"`
	Entry     json.RawMessage `json:"entry,omitempty"`
}

// NewWebhook checks the options and builds the HTTP client (TLS 1.2 and
// up, verification always on, redirects refused).
func NewWebhook(opts WebhookOptions) (*Webhook, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if !validName(opts.Name) {
		return nil, fmt.Errorf("siem: destination name %q: lowercase letters, digits and '-'", opts.Name)
	}
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" || u.Scheme != "https" {
		return nil, fmt.Errorf("siem %s: the webhook URL must be https://HOST/...", opts.Name)
	}
	if opts.Secret == "" {
		return nil, fmt.Errorf("siem %s: a webhook needs a secret to sign with", opts.Name)
	}
	w := &Webhook{opts: opts, client: opts.Client}
	if w.client == nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("siem %s: CA file: %w", opts.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("siem %s: CA file %s holds no certificate", opts.Name, opts.CAFile)
			}
			cfg.RootCAs = pool
		}
		w.client = &http.Client{
			Timeout:       opts.Timeout,
			Transport:     &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return w, nil
}

// Name is the destination's name.
func (w *Webhook) Name() string { return w.opts.Name }

// Body is the JSON body of a batch.
func Body(destination string, batch []store.AuditEntry) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeBody(&buf, destination, batch); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeBody(buf *bytes.Buffer, destination string, batch []store.AuditEntry) error {
	if len(batch) == 0 {
		return errors.New("an empty batch")
	}
	b := WebhookBatch{Destination: destination, FirstSeq: batch[0].Seq, LastSeq: batch[len(batch)-1].Seq,
		PrevHash: hex.EncodeToString(batch[0].PrevHash), Entries: make([]WebhookEntry, len(batch))}
	for i, e := range batch {
		we := WebhookEntry{Seq: e.Seq, Event: e.Event, Bytes: e.Entry, PrevHash: hex.EncodeToString(e.PrevHash),
			Hash: hex.EncodeToString(e.Hash), KeyID: e.KeyID, Signature: e.Signature}
		if json.Valid(e.Entry) {
			we.Entry = e.Entry
		}
		b.Entries[i] = we
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false) // keep the entries' bytes as they are
	return enc.Encode(b)
}

// Send posts the batch; a 2xx answer acknowledges it.
func (w *Webhook) Send(ctx context.Context, batch []store.AuditEntry) (bool, error) {
	w.buf.Reset()
	if err := writeBody(&w.buf, w.opts.Name, batch); err != nil {
		return false, err
	}
	body := w.buf.Bytes()
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	first, last := batch[0].Seq, batch[len(batch)-1].Seq
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "writ-siem")
	req.Header.Set("X-Writ-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Writ-Signature-256", notify.Sign(w.opts.Secret, ts, body))
	req.Header.Set("X-Writ-First-Seq", strconv.FormatInt(first, 10))
	req.Header.Set("X-Writ-Last-Seq", strconv.FormatInt(last, 10))
	req.Header.Set("Idempotency-Key", fmt.Sprintf("writ-siem-%s-%d-%d", w.opts.Name, first, last))
	resp, err := w.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("post: %w", redact(err, w.opts.URL))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, fmt.Errorf("post: HTTP %d", resp.StatusCode)
	}
	if w.buf.Cap() > 8<<20 {
		w.buf = bytes.Buffer{} // a batch of large entries: do not keep its buffer
	}
	return true, nil
}

// Sync has nothing to do: every batch is acknowledged by its answer.
func (w *Webhook) Sync(context.Context) error { return nil }

// Reset has nothing to drop.
func (w *Webhook) Reset() {}

// redact keeps a URL's path and query (which may carry a token) out of
// errors.
func redact(err error, raw string) error {
	u, perr := url.Parse(raw)
	if perr != nil {
		return err
	}
	short := u.Scheme + "://" + u.Host + "/…"
	return errors.New(strings.ReplaceAll(err.Error(), raw, short))
}
