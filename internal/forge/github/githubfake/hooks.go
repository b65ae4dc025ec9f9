package githubfake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Delivery is a webhook delivery as GitHub sends it.
type Delivery struct {
	Event   string // X-GitHub-Event
	GUID    string // X-GitHub-Delivery; a random one when empty
	Payload []byte
	// Signature overrides X-Hub-Signature-256 ("" signs with the secret;
	// "-" sends none).
	Signature string
}

// Answer is the receiver's response.
type Answer struct {
	Status int
	Body   string
	GUID   string
}

// NewGUID is a delivery id in GitHub's format.
func NewGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// Deliver posts a delivery to a webhook receiver with GitHub's headers,
// signed with secret (HMAC-SHA256 of the body).
func Deliver(ctx context.Context, client *http.Client, url string, secret []byte, d Delivery) (Answer, error) {
	if d.GUID == "" {
		d.GUID = NewGUID()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(d.Payload))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/fake")
	req.Header.Set("X-GitHub-Event", d.Event)
	req.Header.Set("X-GitHub-Delivery", d.GUID)
	req.Header.Set("X-GitHub-Hook-ID", "1")
	switch d.Signature {
	case "":
		mac := hmac.New(sha256.New, secret)
		mac.Write(d.Payload)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	case "-":
	default:
		req.Header.Set("X-Hub-Signature-256", d.Signature)
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return Answer{Status: resp.StatusCode, Body: string(body), GUID: d.GUID}, err
}
