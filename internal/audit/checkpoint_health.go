package audit

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// SinkHealth is what a checkpoint destination last did.
type SinkHealth struct {
	// Sink is the destination's name.
	Sink string
	// Attempted: a checkpoint was offered to it in this process.
	Attempted bool
	// OK: the last checkpoint offered to it is held by it.
	OK bool
	// NotContained: its content proves the log does not contain a
	// checkpoint the log's key signed (rolled back, truncated or forked).
	NotContained bool
	// LastSuccess is when it last held a new checkpoint; zero: never in
	// this process.
	LastSuccess time.Time
	// LastError is the last failure's message, empty when OK.
	LastError string
	// FailingSince is the first failure of the current run of failures;
	// zero when OK.
	FailingSince time.Time
}

// SinkMonitor keeps each checkpoint sink's health, for metrics and
// readiness. Its methods are safe for concurrent use.
type SinkMonitor struct {
	observe func(SinkHealth)
	// Now is the clock. Default time.Now.
	Now func() time.Time

	mu    sync.Mutex
	order []string
	state map[string]*SinkHealth
}

// NewSinkMonitor returns a monitor that calls observe (when not nil) with
// a sink's health after each of its outcomes, e.g. to set metrics.
func NewSinkMonitor(observe func(SinkHealth)) *SinkMonitor {
	return &SinkMonitor{observe: observe, Now: time.Now, state: map[string]*SinkHealth{}}
}

// Track lists sinks before any outcome, so readiness names them on a
// replica that has not published (a follower).
func (m *SinkMonitor) Track(sinks ...Sink) {
	for _, s := range sinks {
		m.add(s.Name())
	}
}

func (m *SinkMonitor) add(sink string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.state[sink]; !ok {
		m.state[sink] = &SinkHealth{Sink: sink}
		m.order = append(m.order, sink)
	}
}

// record sets a sink's outcome (err nil: it holds the checkpoint) and
// reports whether its state changed (healthy to failing, another error,
// back to healthy).
func (m *SinkMonitor) record(sink string, err error) bool {
	m.add(sink)
	now := m.Now()
	m.mu.Lock()
	h := m.state[sink]
	changed := !h.Attempted
	h.Attempted = true
	if err == nil {
		changed = changed || !h.OK
		h.OK, h.NotContained, h.LastError, h.FailingSince, h.LastSuccess = true, false, "", time.Time{}, now
	} else {
		msg := err.Error()
		changed = changed || h.OK || h.LastError != msg
		if h.OK || h.FailingSince.IsZero() {
			h.FailingSince = now
		}
		h.OK, h.NotContained, h.LastError = false, errors.Is(err, ErrNotContained), msg
	}
	snap := *h
	m.mu.Unlock()
	if m.observe != nil {
		m.observe(snap)
	}
	return changed
}

// Health returns every sink's health, in the order they were first seen.
func (m *SinkMonitor) Health() []SinkHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SinkHealth, 0, len(m.order))
	for _, n := range m.order {
		out = append(out, *m.state[n])
	}
	return out
}

// Readiness is the /readyz check of the sinks: a detail naming each
// sink's state, and an error when one proves the log is not what it
// published (the server must not be taken as ready on such a log). A sink
// that merely fails (unreachable, unverifiable content, refusal) is
// degraded: shown in the detail, not an error, since the database and the
// other sinks still receive checkpoints and it is retried every interval.
func (m *SinkMonitor) Readiness() (string, error) {
	hs := m.Health()
	if len(hs) == 0 {
		return "no checkpoint sinks", nil
	}
	var parts, proofs []string
	for _, h := range hs {
		switch {
		case !h.Attempted:
			parts = append(parts, h.Sink+": nothing published by this replica yet")
		case h.OK:
			parts = append(parts, fmt.Sprintf("%s: ok, last published %s", h.Sink, h.LastSuccess.UTC().Format(time.RFC3339)))
		default:
			last := "never in this process"
			if !h.LastSuccess.IsZero() {
				last = h.LastSuccess.UTC().Format(time.RFC3339)
			}
			state := "degraded"
			if h.NotContained {
				state = "proves a rollback or fork"
				proofs = append(proofs, h.Sink)
			}
			parts = append(parts, fmt.Sprintf("%s: %s since %s (last published %s): %s", h.Sink, state,
				h.FailingSince.UTC().Format(time.RFC3339), last, h.LastError))
		}
	}
	detail := strings.Join(parts, "; ")
	if len(proofs) > 0 {
		return detail, fmt.Errorf("the audit log does not contain the checkpoint held by %s: it was rolled back, truncated or forked", strings.Join(proofs, ", "))
	}
	return detail, nil
}
