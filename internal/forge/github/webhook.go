package github

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/forge/inbox"
	"github.com/writ-sec/writ/internal/store"
)

// handled lists the events and actions writ stores and processes. Any
// other is answered 202 and ignored.
var handled = map[string][]string{
	"pull_request":              {"opened", "synchronize", "reopened", "closed", "edited", "ready_for_review"},
	"pull_request_review":       {"submitted", "edited", "dismissed"},
	"issue_comment":             {"created", "edited", "deleted"},
	"push":                      nil, // pushes have no action
	"check_run":                 {"rerequested"},
	"check_suite":               {"rerequested"},
	"installation":              {"created", "deleted", "suspend", "unsuspend", "new_permissions_accepted"},
	"installation_repositories": {"added", "removed"},
}

var (
	eventRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z_]{1,64}$`) })
	deliveryRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`) })
)

// Answer is the JSON body of every webhook response.
type Answer = inbox.Answer

// Handler is the webhook receiver (POST /webhooks/github).
//
// A delivery is accepted only with a valid X-Hub-Signature-256 (HMAC-SHA256
// of the exact body with the shared secret, compared in constant time):
// missing or wrong is 401 and nothing is stored. The body is size-limited
// (413). An accepted delivery of an event writ handles is committed to
// PostgreSQL before the 202, so a crash after the acknowledgement loses
// nothing; a delivery id seen before (GitHub's redelivery) is answered 200
// and not stored again; events and actions writ does not handle are
// answered 202 and ignored.
//
// The signature covers the body, not the X-GitHub-Delivery header, so a
// captured delivery could be re-sent under a new delivery id: a body
// already stored under another id is a replay, answered 409
// (replayed_delivery), logged and not stored.
func (s *Service) Handler() http.Handler { return http.HandlerFunc(s.serveWebhook) }

func (s *Service) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, Answer{Status: "method_not_allowed"})
		return
	}
	body, ok := s.inbox.ReadBody(w, r, s.opts.MaxBodyBytes, r.Header.Get("X-GitHub-Delivery"))
	if !ok {
		return
	}
	if !s.validSignature(r.Header.Get("X-Hub-Signature-256"), body) {
		s.log.WarnContext(r.Context(), "webhook delivery refused: missing or invalid signature",
			slog.String("delivery", display.Line(display.Safe(r.Header.Get("X-GitHub-Delivery")), 128)), slog.String("remote", r.RemoteAddr))
		answer(w, http.StatusUnauthorized, Answer{Status: "unauthorized", Reason: "missing or invalid X-Hub-Signature-256"})
		return
	}
	event, guid := r.Header.Get("X-GitHub-Event"), r.Header.Get("X-GitHub-Delivery")
	if !eventRE().MatchString(event) || !deliveryRE().MatchString(guid) {
		answer(w, http.StatusBadRequest, Answer{Status: "bad_request", Reason: "missing or invalid X-GitHub-Event or X-GitHub-Delivery"})
		return
	}
	if event == "ping" {
		answer(w, http.StatusOK, Answer{Status: "pong"})
		return
	}
	actions, known := handled[event]
	if !known {
		answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "writ does not handle " + event + " events"})
		return
	}
	payload, err := payloadOf(r.Header.Get("Content-Type"), body)
	if err != nil {
		answer(w, http.StatusBadRequest, Answer{Status: "bad_request", Reason: err.Error()})
		return
	}
	m, err := decodeMeta(payload)
	if err != nil {
		answer(w, http.StatusBadRequest, Answer{Status: "bad_request", Reason: err.Error()})
		return
	}
	if m.Repository.FullName != "" && !strings.EqualFold(m.Repository.FullName, s.opts.Repository) {
		answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "not the repository writ follows"})
		return
	}
	if actions != nil && !slices.Contains(actions, m.Action) {
		answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "writ does not handle " + event + "." + m.Action})
		return
	}
	// The digest is of the signed body (a form-encoded delivery's payload
	// is what it carries).
	s.inbox.Accept(w, r, store.Delivery{DeliveryID: guid, Event: event, Action: m.Action, Payload: payload}, body)
}

// Wake asks the processor to look for deliveries now. It never blocks.
func (s *Service) Wake() { s.inbox.Wake() }

// validSignature checks X-Hub-Signature-256 in constant time.
func (s *Service) validSignature(header string, body []byte) bool {
	return ValidSignature(s.opts.WebhookSecret, header, body)
}

// ValidSignature reports whether header ("sha256=HEX") is the HMAC-SHA256
// of body with secret.
func ValidSignature(secret []byte, header string, body []byte) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSig) != sha256.Size*2 {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// Sign is the X-Hub-Signature-256 value GitHub sends for body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// payloadOf extracts the JSON payload: the body (application/json) or its
// payload field (application/x-www-form-urlencoded, GitHub's other content
// type). The signature covers the body as sent.
func payloadOf(contentType string, body []byte) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" {
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errors.New("the form body does not parse")
		}
		p := q.Get("payload")
		if p == "" {
			return nil, errors.New("the form body has no payload field")
		}
		return []byte(p), nil
	}
	return body, nil
}

// meta is what the receiver reads of a payload before storing it.
type meta struct {
	Action     string `json:"action"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

func decodeMeta(payload []byte) (meta, error) {
	var m meta
	if !json.Valid(payload) {
		return m, errors.New("the payload is not JSON")
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return m, errors.New("the payload is not a JSON object with the fields of a GitHub event")
	}
	if len(m.Action) > 64 {
		return m, errors.New("the payload's action is too long")
	}
	return m, nil
}

func answer(w http.ResponseWriter, code int, a Answer) { inbox.Reply(w, code, a) }
