package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// drift are the drift check's collectors (internal/reconcile/drift.go).
type drift struct {
	targets   *prometheus.GaugeVec
	errors    *prometheus.GaugeVec
	lastCheck prometheus.Gauge

	mu sync.Mutex
}

func (d *drift) register(reg *prometheus.Registry) {
	d.targets = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "drift_targets",
		Help: "Targets whose live state differs from the desired state at the last drift check, by environment, action and kind (missing, unexpected, changed)."},
		[]string{"environment", "action", "kind"})
	d.errors = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "drift_check_errors",
		Help: "1 when the last drift check could not read the live state of an environment and action's backend."},
		[]string{"environment", "action"})
	d.lastCheck = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "writ", Name: "drift_last_check_timestamp_seconds",
		Help: "When the last drift check ran (Unix time)."})
	reg.MustRegister(d.targets, d.errors, d.lastCheck)
}

// DriftGroup is what one drift check found for an environment and action.
type DriftGroup struct {
	Environment, Action string
	// Counts by kind of drift (missing, unexpected, changed).
	Counts map[string]int
	Failed bool
}

// DriftChecked records a drift check: every group it checked (a kind not
// counted is 0; a group no longer checked is dropped).
func (m *Metrics) DriftChecked(at time.Time, groups []DriftGroup) {
	if m == nil {
		return
	}
	d := &m.drift
	d.mu.Lock()
	defer d.mu.Unlock()
	d.targets.Reset()
	d.errors.Reset()
	for _, g := range groups {
		for _, kind := range []string{"missing", "unexpected", "changed"} {
			d.targets.WithLabelValues(g.Environment, g.Action, kind).Set(float64(g.Counts[kind]))
		}
		failed := 0.0
		if g.Failed {
			failed = 1
		}
		d.errors.WithLabelValues(g.Environment, g.Action).Set(failed)
	}
	d.lastCheck.Set(float64(at.Unix()))
}
