package notify

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

const secret = "notify-s3cret-value"

type receiver struct {
	mu       sync.Mutex
	got      []Message
	failures atomic.Int64 // answer 503 this many more times
	badSigs  atomic.Int64
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, _ := strconv.ParseInt(r.Header.Get("X-Writ-Timestamp"), 10, 64)
	if !hmac.Equal([]byte(r.Header.Get("X-Writ-Signature-256")), []byte(Sign(secret, ts, body))) {
		rc.badSigs.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.failures.Load() > 0 {
		rc.failures.Add(-1)
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, m)
	rc.mu.Unlock()
}

func (rc *receiver) messages() []Message {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Message(nil), rc.got...)
}

func setup(t *testing.T) (*store.Store, *audit.Log) {
	t.Helper()
	st := dbtest.Store(t)
	k, _ := keys.Generate(keys.Ed25519)
	sk, err := audit.NewSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(audit.LogOptions{Store: st, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	return st, l
}

func entry(event audit.Event, name, reason string) audit.Entry {
	payload := map[string]any{"reason": reason, "action": "block_ip", "environment": "production",
		"operation": "apply", "targets": []string{"203.0.113.7"}}
	// The reconciler's reason codes (the notifier reads the code, never
	// the text).
	switch {
	case strings.HasPrefix(reason, "awaiting approval"):
		payload["reason_code"] = "awaiting_approval"
	case strings.HasPrefix(reason, "cannot plan"):
		payload["reason_code"] = "no_plan"
	}
	return audit.Entry{Actor: audit.SystemActor, Event: event, Success: event != "execution.failed",
		Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: name, Digest: strings.Repeat("a", 64)},
		Payload: audit.MustJSON(payload)}
}

func TestNotificationsFromTheAuditLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, log := setup(t)
	rc := &receiver{}
	srv := httptest.NewTLSServer(rc)
	defer srv.Close()
	_, err := log.Append(ctx, st,
		entry("execution.waiting", "block-a", "awaiting approval: not approved: 0 of 1 approval"),
		entry("execution.waiting", "block-b", "cannot plan yet: no backend"), // not about approvals: silent
		entry("playbook.merged", "block-a", ""),                              // not a notified event
		entry("execution.completed", "block-a", "applied: 1 changed, 0 unchanged"),
		entry("execution.failed", "block-c", "failed: timeout"),
	)
	if err != nil {
		t.Fatal(err)
	}
	rc.failures.Store(2) // the receiver is down for two attempts: retried
	n, err := New(Options{Store: st, URL: srv.URL + "/hooks/T000/B000/XXXX", Secret: secret, Client: srv.Client(), RetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.once(ctx); err != nil {
		t.Fatal(err)
	}
	got := rc.messages()
	if len(got) != 3 || rc.badSigs.Load() != 0 {
		t.Fatalf("%d messages (%d bad signatures): %+v", len(got), rc.badSigs.Load(), got)
	}
	if !strings.Contains(got[0].Text, "Approval needed for block-a") || got[1].Writ.Event != "execution.completed" ||
		!strings.Contains(got[2].Text, "block-c failed") {
		t.Fatalf("messages %+v", got)
	}
	// A restart resumes from the cursor: nothing is sent twice.
	n2, _ := New(Options{Store: st, URL: srv.URL + "/x", Secret: secret, Client: srv.Client()})
	if err := n2.once(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rc.messages()) != 3 {
		t.Fatalf("resent after restart: %d", len(rc.messages()))
	}
	// A receiver that never recovers delays, then is given up on: the
	// cursor moves, later notifications still go out.
	rc.failures.Store(1 << 30)
	if _, err := log.Append(ctx, st, entry("execution.completed", "block-d", "")); err != nil {
		t.Fatal(err)
	}
	n3, _ := New(Options{Store: st, URL: srv.URL + "/x", Secret: secret, Client: srv.Client(), Attempts: 2, RetryBase: time.Millisecond})
	if err := n3.once(ctx); err != nil {
		t.Fatal(err)
	}
	rc.failures.Store(0)
	if _, err := log.Append(ctx, st, entry("execution.completed", "block-e", "")); err != nil {
		t.Fatal(err)
	}
	if err := n3.once(ctx); err != nil {
		t.Fatal(err)
	}
	last := rc.messages()
	if len(last) != 4 || last[3].Writ.Subject.Name != "block-e" {
		t.Fatalf("after a lost notification: %+v", last)
	}
}

func TestOptionsAndRedaction(t *testing.T) {
	t.Parallel()
	st := &store.Store{}
	for _, u := range []string{"", "ftp://x", "http://example.com/hook", "not a url"} {
		if _, err := New(Options{Store: st, URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	if _, err := New(Options{Store: st, URL: "http://127.0.0.1:1/hook", AllowHTTP: true}); err != nil {
		t.Fatal(err)
	}
	// A Slack-style URL carries its credential in the path: errors omit it.
	n, _ := New(Options{Store: st, URL: "http://127.0.0.1:1/services/T0/B0/secretpart", AllowHTTP: true, Timeout: time.Second})
	err := n.post(context.Background(), []byte("{}"), 1)
	if err == nil || strings.Contains(err.Error(), "secretpart") {
		t.Fatalf("error %v", err)
	}
}

// A refused commit and a hold on malformed policies notify, and what the
// pusher wrote (a file name) cannot become Slack markup.
func TestTextOfMalformedContent(t *testing.T) {
	t.Parallel()
	if !slices.Contains(DefaultEvents, "commit.refused") {
		t.Fatal("commit.refused is not notified by default")
	}
	refused := Text(audit.Entry{Event: "commit.refused", Payload: audit.MustJSON(map[string]any{
		"commit": strings.Repeat("c", 40), "problem": "unsafe_name", "path": "playbooks/<!channel>", "reason": `".." names a directory itself or its parent`})})
	if !strings.Contains(refused, "refused commit cccccccccccc") || !strings.Contains(refused, "unsafe_name") ||
		strings.Contains(refused, "<!channel>") || !strings.Contains(refused, "&lt;!channel&gt;") {
		t.Fatalf("refusal: %s", refused)
	}
	held := Text(audit.Entry{Event: "policy.change_held", Payload: audit.MustJSON(map[string]any{
		"commit": strings.Repeat("d", 40), "malformed": map[string]string{"problem": "duplicate_name", "path": "policies/a.rego"}})})
	if !strings.Contains(held, "policies/ or .writ/ at dddddddddddd is malformed (duplicate_name at \"policies/a.rego\")") {
		t.Fatalf("hold: %s", held)
	}
	plain := Text(audit.Entry{Event: "policy.change_held", Payload: audit.MustJSON(map[string]any{"commit": strings.Repeat("d", 40), "hold": 7})})
	if !strings.Contains(plain, "lacks its admin approvals") || !strings.Contains(plain, "`writ approve trust-7`") {
		t.Fatalf("plain hold: %s", plain)
	}
	// Approvers are told the exact command that signs.
	waiting := Text(audit.Entry{Event: "execution.waiting", Subject: audit.Subject{Name: "block-a"}, Payload: audit.MustJSON(map[string]any{
		"execution": 12, "operation": "revert", "action": "block_ip", "environment": "production", "reason_code": "awaiting_approval",
		"reason": "not approved: 0 of 1 approval."})})
	if !strings.Contains(waiting, "Approval needed for block-a: revert block_ip on production") || !strings.Contains(waiting, "`writ approve op-12`") {
		t.Fatalf("waiting: %s", waiting)
	}
	// An executor's retry of a partly applied playbook says what is left.
	if !slices.Contains(DefaultEvents, "execution.retry_requested") {
		t.Fatal("execution.retry_requested is not notified by default")
	}
	retried := Text(audit.Entry{Event: "execution.retry_requested", Actor: audit.Actor{ID: "erin", Role: "executor"}, Subject: audit.Subject{Name: "isolate-fin"},
		Payload: audit.MustJSON(map[string]any{"execution": 9, "operation": "apply", "action": "isolate_host", "environment": "production",
			"targets": []string{"fin-ws-12", "fin-ws-13"}, "applied": []string{"fin-ws-12"}, "remaining": []string{"fin-ws-13"}})})
	if !strings.Contains(retried, "erin asked to retry isolate-fin: apply isolate_host on production (fin-ws-12, fin-ws-13); only fin-ws-13 (the others were applied)") {
		t.Fatalf("retry: %s", retried)
	}
}
