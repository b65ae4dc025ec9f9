package audit

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// WitnessHealth is what a witness last did with the log's checkpoints.
type WitnessHealth struct {
	// Witness is the witness's configured name.
	Witness string
	// Attempted: a checkpoint was sent to it in this process.
	Attempted bool
	// OK: it cosigned the last checkpoint sent to it.
	OK bool
	// Refusal is why it refuses the log's checkpoints (a Refused
	// constant); empty unless it answered with a refusal last.
	Refusal string
	// CosignedSize is the size of the largest tree it is known to have
	// cosigned (in this process, or recorded in the database before);
	// meaningful when LastCosigned is not zero.
	CosignedSize uint64
	// LastCosigned is the time its newest known cosignature carries; zero:
	// none known.
	LastCosigned time.Time
	// Cosigned counts the checkpoints it cosigned in this process.
	Cosigned uint64
	// LastError is the last failure's message, empty when OK.
	LastError string
	// FailingSince is the first failure of the current run of failures;
	// zero when OK.
	FailingSince time.Time
}

// state is the kind of a witness's health: what an audit event is
// recorded on a change of.
func (h WitnessHealth) state() string {
	switch {
	case !h.Attempted:
		return ""
	case h.OK:
		return "ok"
	case h.Refusal != "":
		return "refused " + h.Refusal
	}
	return "failing"
}

// WitnessMonitor keeps each witness's health, for metrics and readiness.
// Its methods are safe for concurrent use.
type WitnessMonitor struct {
	observe func(WitnessHealth)
	// Now is the clock. Default time.Now.
	Now func() time.Time

	mu    sync.Mutex
	order []string
	state map[string]*WitnessHealth
}

// NewWitnessMonitor returns a monitor that calls observe (when not nil)
// with a witness's health after each of its outcomes, e.g. to set metrics.
func NewWitnessMonitor(observe func(WitnessHealth)) *WitnessMonitor {
	return &WitnessMonitor{observe: observe, Now: time.Now, state: map[string]*WitnessHealth{}}
}

// Track lists witnesses before any outcome, so readiness names them on a
// replica that has not sent anything (a follower).
func (m *WitnessMonitor) Track(ws ...*Witness) {
	for _, w := range ws {
		m.add(w.Name())
	}
}

func (m *WitnessMonitor) add(name string) *WitnessHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addLocked(name)
}

func (m *WitnessMonitor) addLocked(name string) *WitnessHealth {
	h, ok := m.state[name]
	if !ok {
		h = &WitnessHealth{Witness: name}
		m.state[name] = h
		m.order = append(m.order, name)
	}
	return h
}

// known notes a cosignature found in the database, made before this
// process sent anything.
func (m *WitnessMonitor) known(name string, size uint64, at time.Time) {
	m.mu.Lock()
	h := m.addLocked(name)
	if h.LastCosigned.IsZero() || size > h.CosignedSize {
		h.CosignedSize, h.LastCosigned = size, at
	}
	snap := *h
	m.mu.Unlock()
	if m.observe != nil {
		m.observe(snap)
	}
}

// record sets a witness's outcome for one checkpoint sent: its
// cosignatures, or err. It returns the health before and after.
func (m *WitnessMonitor) record(name string, cs []Cosignature, err error) (before, after WitnessHealth) {
	now := m.Now()
	m.mu.Lock()
	h := m.addLocked(name)
	before = *h
	h.Attempted = true
	if err == nil {
		h.OK, h.Refusal, h.LastError, h.FailingSince = true, "", "", time.Time{}
		h.Cosigned++
		for _, c := range cs {
			if h.LastCosigned.IsZero() || c.Size >= h.CosignedSize {
				h.CosignedSize, h.LastCosigned = c.Size, c.Time
			}
		}
	} else {
		if h.OK || h.FailingSince.IsZero() {
			h.FailingSince = now
		}
		h.OK, h.Refusal, h.LastError = false, "", err.Error()
		var we *WitnessError
		if errors.As(err, &we) {
			h.Refusal = we.Refusal
		}
	}
	after = *h
	m.mu.Unlock()
	if m.observe != nil {
		m.observe(after)
	}
	return before, after
}

// Health returns every witness's health, in the order they were first
// seen.
func (m *WitnessMonitor) Health() []WitnessHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]WitnessHealth, 0, len(m.order))
	for _, n := range m.order {
		out = append(out, *m.state[n])
	}
	return out
}

// Readiness is the /readyz detail of the witnesses. It never fails the
// check: a witness is a third party, reached over a network writ does not
// control, and its refusal cannot be checked by writ (the witness does not
// hand over the checkpoint it holds), so neither an unreachable witness
// nor one that refuses may take the server out of service; the database
// and the sinks still get every checkpoint, and the witness is retried.
// A refusal is loud instead: an ERROR log line, an audit event
// (audit.witness_refused), the metric writ_audit_witness_refusing and this
// detail.
func (m *WitnessMonitor) Readiness() (string, error) {
	hs := m.Health()
	if len(hs) == 0 {
		return "no witnesses", nil
	}
	parts := make([]string, 0, len(hs))
	for _, h := range hs {
		cosigned := "none known"
		if !h.LastCosigned.IsZero() {
			cosigned = fmt.Sprintf("size %d at %s", h.CosignedSize, h.LastCosigned.UTC().Format(time.RFC3339))
		}
		switch {
		case !h.Attempted:
			parts = append(parts, fmt.Sprintf("%s: nothing sent by this replica yet (cosigned %s)", h.Witness, cosigned))
		case h.OK:
			parts = append(parts, fmt.Sprintf("%s: ok, cosigned %s", h.Witness, cosigned))
		case h.Refusal != "":
			parts = append(parts, fmt.Sprintf("%s: REFUSES (%s) since %s (cosigned %s): %s", h.Witness, h.Refusal,
				h.FailingSince.UTC().Format(time.RFC3339), cosigned, h.LastError))
		default:
			parts = append(parts, fmt.Sprintf("%s: degraded since %s (cosigned %s): %s", h.Witness,
				h.FailingSince.UTC().Format(time.RFC3339), cosigned, h.LastError))
		}
	}
	return strings.Join(parts, "; "), nil
}
