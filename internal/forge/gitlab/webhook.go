package gitlab

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/writ-sec/writ/internal/forge/inbox"
	"github.com/writ-sec/writ/internal/store"
)

// handled lists the events (X-Gitlab-Event) and actions writ stores and
// processes; any other is answered 202 and ignored. A push is handled
// only on the tracked branch; a note only on a merge request.
var handled = map[gl.EventType][]string{
	gl.EventTypeMergeRequest: {"open", "reopen", "update", "close", "merge"},
	gl.EventTypeNote:         {"create", "update"},
	gl.EventTypePush:         nil, // pushes have no action
}

// objectKinds is the object_kind each handled event's payload carries,
// and the event name its deliveries are stored under.
var objectKinds = map[gl.EventType]string{
	gl.EventTypeMergeRequest: "merge_request",
	gl.EventTypeNote:         "note",
	gl.EventTypePush:         "push",
}

// uuidRE is the shape of X-Gitlab-Event-UUID (a UUID, any version).
var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Answer is the JSON body of every webhook response.
type Answer = inbox.Answer

// Handler is the webhook receiver (POST /webhooks/gitlab).
//
// A delivery is accepted only with the webhook's secret token in
// X-Gitlab-Token (compared in constant time, as SHA-256 digests so that
// its length does not leak either): missing or wrong is 401 and nothing
// is stored. The body is size-limited (413). The delivery id is
// X-Gitlab-Event-UUID, which GitLab keeps when it resends an event. An
// accepted delivery of an event writ handles is committed to PostgreSQL
// before the 202; a delivery id seen before is answered 200 (duplicate)
// and not stored again; the same body under another id is a replay,
// answered 409 (replayed_delivery) and not stored; events for another
// project, other actions and pushes to other branches are answered 202
// and ignored.
func (s *Service) Handler() http.Handler { return http.HandlerFunc(s.serveWebhook) }

func (s *Service) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, Answer{Status: "method_not_allowed"})
		return
	}
	uuid := r.Header.Get("X-Gitlab-Event-UUID")
	// The token is a header: a request without it is refused before its
	// body is read.
	if !ValidToken(s.opts.WebhookSecret, r.Header.Get("X-Gitlab-Token")) {
		s.log.WarnContext(r.Context(), "webhook delivery refused: missing or wrong secret token",
			slog.String("delivery", logSafe(uuid)), slog.String("remote", r.RemoteAddr))
		answer(w, http.StatusUnauthorized, Answer{Status: "unauthorized", Reason: "missing or wrong X-Gitlab-Token"})
		return
	}
	body, ok := s.inbox.ReadBody(w, r, s.opts.MaxBodyBytes, logSafe(uuid))
	if !ok {
		return
	}
	event := gl.HookEventType(r) // X-Gitlab-Event
	if event == "" || len(event) > 64 || !uuidRE.MatchString(uuid) {
		answer(w, http.StatusBadRequest, Answer{Status: "bad_request", Reason: "missing or invalid X-Gitlab-Event or X-Gitlab-Event-UUID"})
		return
	}
	actions, known := handled[event]
	if !known {
		answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "writ does not handle " + logSafe(string(event)) + " events"})
		return
	}
	m, err := decodeMeta(body)
	if err != nil {
		answer(w, http.StatusBadRequest, Answer{Status: "bad_request", Reason: err.Error()})
		return
	}
	if m.ObjectKind != objectKinds[event] {
		answer(w, http.StatusBadRequest, Answer{Status: "bad_request", Reason: "the payload's object_kind does not match X-Gitlab-Event"})
		return
	}
	if !s.ours(m) {
		answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "not the project writ follows"})
		return
	}
	action := m.ObjectAttributes.Action
	switch event {
	case gl.EventTypeNote:
		if m.ObjectAttributes.NoteableType != "MergeRequest" {
			answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "writ reads notes on merge requests only"})
			return
		}
		if strings.HasPrefix(m.ObjectAttributes.Note, reportMarker) {
			// writ's own report note, written or edited: nothing to read.
			answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "writ's report note"})
			return
		}
		if action == "" { // GitLab before 16.x sends no action: a new note
			action = "create"
		}
	case gl.EventTypePush:
		if m.Ref != "refs/heads/"+s.opts.Source.Branch() {
			answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "not a push to the tracked branch"})
			return
		}
	}
	if actions != nil && !slices.Contains(actions, action) {
		answer(w, http.StatusAccepted, Answer{Status: "ignored", Reason: "writ does not handle " + logSafe(string(event)) + " " + logSafe(action)})
		return
	}
	// Stored under the payload's object_kind (merge_request, note, push):
	// forge_deliveries' event names are lower-case words.
	s.inbox.Accept(w, r, store.Delivery{DeliveryID: strings.ToLower(uuid), Event: objectKinds[event], Action: action, Payload: body}, body)
}

// Wake asks the processor to look for deliveries now. It never blocks.
func (s *Service) Wake() { s.inbox.Wake() }

// ValidToken reports whether header is the secret token. Both are hashed
// first and the digests compared in constant time: neither the token's
// bytes nor its length leak through timing.
func ValidToken(secret []byte, header string) bool {
	if len(secret) == 0 || header == "" {
		return false
	}
	want := sha256.Sum256(secret)
	got := sha256.Sum256([]byte(header))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// meta is what the receiver reads of a payload before storing it.
type meta struct {
	ObjectKind string `json:"object_kind"`
	Ref        string `json:"ref"`
	ProjectID  int64  `json:"project_id"`
	Project    struct {
		ID                int64  `json:"id"`
		PathWithNamespace string `json:"path_with_namespace"`
	} `json:"project"`
	ObjectAttributes struct {
		Action       string `json:"action"`
		NoteableType string `json:"noteable_type"`
		Note         string `json:"note"`
	} `json:"object_attributes"`
}

func decodeMeta(payload []byte) (meta, error) {
	var m meta
	if !json.Valid(payload) {
		return m, errors.New("the payload is not JSON")
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return m, errors.New("the payload is not a JSON object with the fields of a GitLab event")
	}
	if len(m.ObjectAttributes.Action) > 64 || len(m.Ref) > 1024 {
		return m, errors.New("the payload's action or ref is too long")
	}
	return m, nil
}

// ours reports whether a payload is about the project writ follows.
func (s *Service) ours(m meta) bool {
	id := m.Project.ID
	if id == 0 {
		id = m.ProjectID
	}
	if n, err := strconv.ParseInt(s.opts.Project, 10, 64); err == nil {
		return id == n
	}
	return m.Project.PathWithNamespace != "" && strings.EqualFold(m.Project.PathWithNamespace, s.opts.Project)
}

// logSafe is a header value fit for a log line or an answer: printable
// ASCII, at most 64 bytes.
func logSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func answer(w http.ResponseWriter, code int, a Answer) { inbox.Reply(w, code, a) }
