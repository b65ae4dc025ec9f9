// Package webhooktest is a receiver of writ's signed webhooks for tests: an
// EDR-like service on loopback that keeps which targets are contained,
// answers the status endpoint from that state, checks every request's
// signature, and can be told to fail a target (the agent is offline) or
// to be down altogether (503, a transient error), so that a test sees a
// playbook applied to some targets and not to others.
package webhooktest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/webhook"
	"github.com/writ-sec/writ/internal/config"
)

// Secret is the HMAC key the receiver checks signatures with.
const Secret = "webhooktest shared secret, 32 b"

// Receiver is the EDR.
type Receiver struct {
	srv *httptest.Server
	t   testing.TB

	mu        sync.Mutex
	contained map[string]bool
	failing   map[string]string // target: why the receiver fails it
	gone      map[string]bool   // targets the receiver no longer knows
	down      bool              // every request answers 503
	busy      bool              // apply and revert answer 503
	// Sent lists the targets of every apply and revert request received,
	// in order.
	sent []Request
}

// Request is one apply or revert the receiver got.
type Request struct {
	Operation action.Operation
	Targets   []string
}

// New starts a receiver; it stops with the test.
func New(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{t: t, contained: map[string]bool{}, failing: map[string]string{}, gone: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /status", r.status)
	mux.HandleFunc("POST /actions", r.action)
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the receiver's base URL: apply and revert at URL/actions, the
// status endpoint at URL/status.
func (r *Receiver) URL() string { return r.srv.URL }

// Backend is writ's webhook backend for this receiver, named name.
func (r *Receiver) Backend(name string) *webhook.Backend {
	r.t.Helper()
	secret, err := config.ResolveSecret(func(string) string { return Secret }, "WEBHOOKTEST_SECRET", "")
	if err != nil {
		r.t.Fatal(err)
	}
	b, err := webhook.New(webhook.Options{Name: name, URL: r.srv.URL + "/actions", StatusURL: r.srv.URL + "/status",
		Secret: secret, AllowHTTP: true, Retries: -1, Timeout: 10 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// Fail makes the receiver fail target with detail (empty: stop failing it).
func (r *Receiver) Fail(target, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if detail == "" {
		delete(r.failing, target)
		return
	}
	r.failing[target] = detail
}

// Forget makes the receiver no longer know a target (status not_found).
func (r *Receiver) Forget(target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gone[target] = true
}

// Down makes every request answer 503 (true) or be served again (false).
func (r *Receiver) Down(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// Busy makes apply and revert requests answer 503 while the status
// endpoint still answers (true), or serves them again (false).
func (r *Receiver) Busy(busy bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.busy = busy
}

// Release releases a target behind writ's back.
func (r *Receiver) Release(target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.contained, target)
}

// Contained lists the contained targets, sorted.
func (r *Receiver) Contained() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for t := range r.contained {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Sent lists the apply and revert requests received, in order.
func (r *Receiver) Sent() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// Count is how many requests of an operation named target.
func (r *Receiver) Count(op action.Operation, target string) int {
	n := 0
	for _, s := range r.Sent() {
		if s.Operation == op && slices.Contains(s.Targets, target) {
			n++
		}
	}
	return n
}

// read checks a request's signature and decodes it.
func (r *Receiver) read(w http.ResponseWriter, req *http.Request) (*webhook.Request, bool) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	if err := webhook.Verify([]byte(Secret), req.Header.Get(webhook.HeaderSignature), req.Header.Get(webhook.HeaderTimestamp), body, time.Now(), 5*time.Minute); err != nil {
		r.t.Errorf("webhooktest: a request with a bad signature: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return nil, false
	}
	var in webhook.Request
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	r.mu.Lock()
	down := r.down || r.busy && req.URL.Path == "/actions"
	r.mu.Unlock()
	if down {
		http.Error(w, "the EDR is down for maintenance", http.StatusServiceUnavailable)
		return nil, false
	}
	return &in, true
}

func (r *Receiver) status(w http.ResponseWriter, req *http.Request) {
	in, ok := r.read(w, req)
	if !ok {
		return
	}
	type state struct {
		Target string `json:"target"`
		State  string `json:"state"`
	}
	var out struct {
		Targets []state `json:"targets"`
	}
	r.mu.Lock()
	for _, t := range in.Targets {
		s := webhook.StateNotApplied
		switch {
		case r.gone[t]:
			s = webhook.StateNotFound
		case r.contained[t]:
			s = webhook.StateApplied
		}
		out.Targets = append(out.Targets, state{t, s})
	}
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (r *Receiver) action(w http.ResponseWriter, req *http.Request) {
	in, ok := r.read(w, req)
	if !ok {
		return
	}
	var out struct {
		Targets []action.TargetResult `json:"targets"`
	}
	r.mu.Lock()
	r.sent = append(r.sent, Request{Operation: in.Operation, Targets: slices.Clone(in.Targets)})
	for _, t := range in.Targets {
		res := action.TargetResult{Target: t}
		want := in.Operation == action.Apply
		switch {
		case r.failing[t] != "":
			res.Result, res.Detail = action.Failed, r.failing[t]
		case r.contained[t] == want:
			res.Result = action.Unchanged
		default:
			res.Result = action.Changed
			if want {
				r.contained[t] = true
			} else {
				delete(r.contained, t)
			}
		}
		out.Targets = append(out.Targets, res)
	}
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
