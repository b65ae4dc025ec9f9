package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/webhook"
)

// crashHookSecret signs the crash test's webhook requests; writ serve
// reads it from crashHookSecretEnv.
const (
	crashHookSecret    = "crash test webhook secret, 32 b"
	crashHookSecretEnv = "WRIT_CRASH_HOOK_SECRET"
)

// crashHook is the crash test's backend: a receiver of writ's signed
// webhooks on loopback, in the test process, with what docs/backends.md
// asks of a receiver (signatures checked, one action per idempotency key,
// a repeated key answered with the first answer, a status endpoint). It
// keeps which targets are blocked and records every action it takes, so
// the test counts what reached the backend. Armed, it holds apply
// requests, before acting on them or once it has, until writ serve is
// killed (the request's connection closes): the kill then lands at a point
// the test knows rather than one it hopes for.
type crashHook struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	blocked map[string]bool
	answers map[string][]byte // idempotency key: the first answer
	acted   []string          // "PLAYBOOK block TARGET", per target of each acted request
	mode    string            // "", or the armed gate: before | after
	pass    map[string]bool   // keys the armed gate lets through
	held    chan string       // keys of the requests the armed gate holds
}

func newCrashHook(t *testing.T) *crashHook {
	t.Helper()
	h := &crashHook{t: t, blocked: map[string]bool{}, answers: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /actions", h.action)
	mux.HandleFunc("POST /status", h.status)
	h.srv = httptest.NewUnstartedServer(mux)
	h.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	return h
}

// arm makes the receiver hold every apply request whose key is not in
// pass: mode "before" holds it before acting, "after" once it has acted.
// The keys of held requests come on the returned channel.
func (h *crashHook) arm(mode string, pass map[string]bool) <-chan string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode, h.pass, h.held = mode, pass, make(chan string, 64)
	return h.held
}

// disarm lets every request through again.
func (h *crashHook) disarm() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode, h.pass, h.held = "", nil, nil
}

// request reads and verifies a signed request.
func (h *crashHook) request(w http.ResponseWriter, r *http.Request) (body []byte, req struct {
	Playbook       string   `json:"playbook"`
	Operation      string   `json:"operation"`
	Targets        []string `json:"targets"`
	IdempotencyKey string   `json:"idempotencyKey"`
}, ok bool) {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = webhook.Verify([]byte(crashHookSecret), r.Header.Get(webhook.HeaderSignature), r.Header.Get(webhook.HeaderTimestamp), body, time.Now(), 5*time.Minute)
	}
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, req, false
	}
	return body, req, true
}

func (h *crashHook) action(w http.ResponseWriter, r *http.Request) {
	_, req, ok := h.request(w, r)
	if !ok {
		return
	}
	if req.Operation != string(action.Apply) || req.IdempotencyKey == "" {
		http.Error(w, "the crash test only applies", http.StatusBadRequest)
		return
	}
	hold := func() {
		select {
		case h.held <- req.IdempotencyKey:
		default:
		}
		h.mu.Unlock()
		<-r.Context().Done() // writ serve was killed
	}
	h.mu.Lock()
	if answer, done := h.answers[req.IdempotencyKey]; done {
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
		return
	}
	gated := h.mode != "" && !h.pass[req.IdempotencyKey]
	if gated && h.mode == "before" {
		hold()
		return
	}
	var results []action.TargetResult
	for _, tg := range req.Targets {
		h.acted = append(h.acted, req.Playbook+" block "+tg)
		res := action.Unchanged
		if !h.blocked[tg] {
			h.blocked[tg], res = true, action.Changed
		}
		results = append(results, action.TargetResult{Target: tg, Result: res})
	}
	answer, _ := json.Marshal(map[string]any{"targets": results})
	h.answers[req.IdempotencyKey] = answer
	if gated {
		hold()
		return
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(answer)
}

func (h *crashHook) status(w http.ResponseWriter, r *http.Request) {
	_, req, ok := h.request(w, r)
	if !ok {
		return
	}
	type state struct {
		Target string `json:"target"`
		State  string `json:"state"`
	}
	var out []state
	h.mu.Lock()
	for _, tg := range req.Targets {
		s := webhook.StateNotApplied
		if h.blocked[tg] {
			s = webhook.StateApplied
		}
		out = append(out, state{Target: tg, State: s})
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"targets": out})
}

// counts is how many times the receiver acted on each "PLAYBOOK block
// TARGET", and whether each target is blocked.
func (h *crashHook) counts() (map[string]int, map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	count := map[string]int{}
	for _, a := range h.acted {
		count[a]++
	}
	blocked := map[string]bool{}
	for tg, b := range h.blocked {
		blocked[tg] = b
	}
	return count, blocked
}
