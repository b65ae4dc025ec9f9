// Package metrics holds writ's Prometheus metrics (client_golang): one
// registry per process, the collectors the engine updates, and gauges read
// at scrape time. Every method is safe on a nil *Metrics, so packages take
// one without caring whether metrics are on.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are writ's collectors.
type Metrics struct {
	reg              *prometheus.Registry
	passSeconds      prometheus.Histogram
	passErrors       prometheus.Counter
	lagSeconds       prometheus.Gauge
	executions       *prometheus.CounterVec
	policySeconds    prometheus.Histogram
	auditSeconds     prometheus.Histogram
	auditEntries     prometheus.Counter
	httpSeconds      *prometheus.HistogramVec
	leading          prometheus.Gauge
	holds            prometheus.Gauge
	notifyDelivered  *prometheus.CounterVec
	notifyFailing    *prometheus.GaugeVec
	timeOfUse        *prometheus.HistogramVec
	sinkUp           *prometheus.GaugeVec
	sinkNotContained *prometheus.GaugeVec
	sinkLastSuccess  *prometheus.GaugeVec
	sinkFailures     *prometheus.CounterVec
	witnessUp        *prometheus.GaugeVec
	witnessRefusing  *prometheus.GaugeVec
	witnessSize      *prometheus.GaugeVec
	witnessLast      *prometheus.GaugeVec
	siemForwarded    *prometheus.CounterVec
	siemLag          *prometheus.GaugeVec
	siemErrors       *prometheus.CounterVec
	siemRewinds      *prometheus.CounterVec
	siemLastAck      *prometheus.GaugeVec
	drift            drift
}

// New makes the collectors and registers them, with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.passSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "writ", Name: "reconcile_pass_seconds", Help: "Duration of reconcile passes.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	})
	m.passErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "writ", Name: "reconcile_pass_errors_total", Help: "Reconcile passes that failed."})
	m.lagSeconds = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "writ", Name: "reconcile_lag_seconds",
		Help: "How long the branch head has waited to be processed (0 when caught up)."})
	m.executions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "writ", Name: "executions_total",
		Help: "Executions finished, by operation and outcome (completed, failed, retry, stopped: sent back by the time-of-use check)."}, []string{"operation", "outcome"})
	m.timeOfUse = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "writ", Name: "time_of_use_check_seconds",
		Help:    "Duration of the check right before a backend call (fresh decision, plan and approvals), by result (ready, stopped).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"result"})
	m.policySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "writ", Name: "policy_evaluation_seconds", Help: "Duration of one policy decision.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	m.auditSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "writ", Name: "audit_append_seconds", Help: "Duration of one audit append (chaining, signing, inserting).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	m.auditEntries = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "writ", Name: "audit_entries_total", Help: "Audit entries appended by this process."})
	m.httpSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "writ", Name: "http_request_seconds", Help: "HTTP requests by route pattern and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"route", "code"})
	m.leading = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "writ", Name: "leader",
		Help: "1 while this replica leads (runs the reconciler, executor and appender)."})
	m.holds = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "writ", Name: "holds",
		Help: "Open holds: rewritten history, or policy changes without their admin approvals."})
	m.notifyDelivered = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "writ", Name: "notifications_total",
		Help: "Outbound notifications, by channel and outcome (delivered; retried: a failed attempt, tried again; failed: given up after a permanent refusal; no_recipients)."},
		[]string{"channel", "outcome"})
	m.notifyFailing = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "notification_channel_failing",
		Help: "1 while a notification channel's current message keeps failing (it is retried; later messages of the channel wait), 0 once delivered."},
		[]string{"channel"})
	m.sinkUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "audit_checkpoint_sink_up",
		Help: "1 when the checkpoint sink holds the last checkpoint offered to it, 0 when that failed (set once this replica offered one)."}, []string{"sink"})
	m.sinkNotContained = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "audit_checkpoint_sink_not_contained",
		Help: "1 when the checkpoint sink holds a checkpoint signed by the log's key that the log does not contain (rolled back, truncated or forked)."}, []string{"sink"})
	m.sinkLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "audit_checkpoint_sink_last_success_timestamp_seconds",
		Help: "When the checkpoint sink last took a checkpoint (Unix time)."}, []string{"sink"})
	m.sinkFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "writ", Name: "audit_checkpoint_sink_failures_total",
		Help: "Checkpoints a sink failed to take."}, []string{"sink"})
	m.reg.MustRegister(m.sinkUp, m.sinkNotContained, m.sinkLastSuccess, m.sinkFailures)
	m.witnessUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "audit_witness_up",
		Help: "1 when the witness cosigned the last checkpoint sent to it, 0 when it failed or refused (set once this replica sent one)."}, []string{"witness"})
	m.witnessRefusing = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "audit_witness_refusing",
		Help: "1 when the witness refuses the log's checkpoints: it says the log forked or rolled back, or it does not know the log or its key."}, []string{"witness"})
	m.witnessSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "audit_witness_cosigned_size",
		Help: "Size of the largest tree the witness is known to have cosigned."}, []string{"witness"})
	m.witnessLast = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "audit_witness_last_cosigned_timestamp_seconds",
		Help: "The time the witness's newest known cosignature carries (Unix time)."}, []string{"witness"})
	m.reg.MustRegister(m.witnessUp, m.witnessRefusing, m.witnessSize, m.witnessLast)
	m.siemForwarded = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "writ", Name: "siem_forwarded_entries_total",
		Help: "Audit entries a SIEM destination acknowledged (counted again when sent again after a failure)."}, []string{"destination"})
	m.siemLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "siem_lag_entries",
		Help: "Audit entries a SIEM destination has not acknowledged yet: the log's size less its cursor (set on the leader)."}, []string{"destination"})
	m.siemErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "writ", Name: "siem_errors_total",
		Help: "Failed attempts to forward audit entries to a SIEM destination (retried from its cursor)."}, []string{"destination"})
	m.siemRewinds = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "writ", Name: "siem_rewinds_total",
		Help: "Times the audit log was found changed under a SIEM destination's cursor (the log is then sent again from its start)."}, []string{"destination"})
	m.siemLastAck = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "writ", Name: "siem_last_ack_timestamp_seconds",
		Help: "When a SIEM destination last acknowledged entries (Unix time)."}, []string{"destination"})
	m.reg.MustRegister(m.siemForwarded, m.siemLag, m.siemErrors, m.siemRewinds, m.siemLastAck)
	m.drift.register(m.reg)
	m.reg.MustRegister(m.passSeconds, m.passErrors, m.lagSeconds, m.executions, m.policySeconds, m.auditSeconds,
		m.auditEntries, m.httpSeconds, m.leading, m.holds, m.notifyDelivered, m.notifyFailing, m.timeOfUse,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, Timeout: 10 * time.Second})
}

// Gauge registers a gauge read at scrape time (e.g. a count from the
// database), bounded by a timeout; a failing read reports -1.
func (m *Metrics) Gauge(name, help string, read func(ctx context.Context) (float64, error)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "writ", Name: name, Help: help}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		v, err := read(ctx)
		if err != nil {
			return -1
		}
		return v
	}))
}

// Pass records one reconcile pass.
func (m *Metrics) Pass(d time.Duration, err error, lag time.Duration) {
	if m == nil {
		return
	}
	m.passSeconds.Observe(d.Seconds())
	if err != nil {
		m.passErrors.Inc()
	}
	m.lagSeconds.Set(lag.Seconds())
}

// Executed records a finished execution.
func (m *Metrics) Executed(operation, outcome string) {
	if m == nil {
		return
	}
	m.executions.WithLabelValues(operation, outcome).Inc()
}

// TimeOfUse records one time-of-use check and whether the operation may
// run.
func (m *Metrics) TimeOfUse(d time.Duration, ready bool) {
	if m == nil {
		return
	}
	result := "stopped"
	if ready {
		result = "ready"
	}
	m.timeOfUse.WithLabelValues(result).Observe(d.Seconds())
}

// PolicyDecision records one policy evaluation.
func (m *Metrics) PolicyDecision(d time.Duration) {
	if m == nil {
		return
	}
	m.policySeconds.Observe(d.Seconds())
}

// AuditAppend records one append of n entries.
func (m *Metrics) AuditAppend(d time.Duration, n int) {
	if m == nil {
		return
	}
	m.auditSeconds.Observe(d.Seconds())
	m.auditEntries.Add(float64(n))
}

// HTTP records one request.
func (m *Metrics) HTTP(route, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.httpSeconds.WithLabelValues(route, code).Observe(d.Seconds())
}

// Leading records whether this replica leads.
func (m *Metrics) Leading(on bool) {
	if m == nil {
		return
	}
	if on {
		m.leading.Set(1)
	} else {
		m.leading.Set(0)
	}
}

// Holds records the number of open holds.
func (m *Metrics) Holds(n int) {
	if m == nil {
		return
	}
	m.holds.Set(float64(n))
}

// Notified records one notification's outcome on a channel.
func (m *Metrics) Notified(channel, outcome string) {
	if m == nil {
		return
	}
	m.notifyDelivered.WithLabelValues(channel, outcome).Inc()
}

// NotificationFailing records whether a channel's current message keeps
// failing.
func (m *Metrics) NotificationFailing(channel string, failing bool) {
	if m == nil {
		return
	}
	v := 0.0
	if failing {
		v = 1
	}
	m.notifyFailing.WithLabelValues(channel).Set(v)
}

// AuditWitness records a witness's state: whether a checkpoint was sent
// to it (attempted) and it cosigned it (ok), whether it refuses the log,
// and its newest known cosignature (lastCosigned zero: none).
func (m *Metrics) AuditWitness(witness string, attempted, ok, refusing bool, cosignedSize uint64, lastCosigned time.Time) {
	if m == nil {
		return
	}
	if attempted {
		m.witnessUp.WithLabelValues(witness).Set(b2f(ok))
		m.witnessRefusing.WithLabelValues(witness).Set(b2f(refusing))
	}
	if !lastCosigned.IsZero() {
		m.witnessSize.WithLabelValues(witness).Set(float64(cosignedSize))
		m.witnessLast.WithLabelValues(witness).Set(float64(lastCosigned.UnixNano()) / 1e9)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// CheckpointSink records one outcome of an audit checkpoint sink: whether
// it holds the checkpoint, whether its content proves the log does not
// contain what it published, and when it last took one (zero: never).
func (m *Metrics) CheckpointSink(sink string, ok, notContained bool, lastSuccess time.Time) {
	if m == nil {
		return
	}
	up, nc := 0.0, 0.0
	if ok {
		up = 1
	} else {
		m.sinkFailures.WithLabelValues(sink).Inc()
	}
	if notContained {
		nc = 1
	}
	m.sinkUp.WithLabelValues(sink).Set(up)
	m.sinkNotContained.WithLabelValues(sink).Set(nc)
	if !lastSuccess.IsZero() {
		m.sinkLastSuccess.WithLabelValues(sink).Set(float64(lastSuccess.UnixNano()) / 1e9)
	}
}

// SIEMForwarded counts entries a SIEM destination acknowledged.
func (m *Metrics) SIEMForwarded(destination string, n int64) {
	if m == nil {
		return
	}
	m.siemForwarded.WithLabelValues(destination).Add(float64(n))
}

// SIEMLag records how many entries a SIEM destination has not
// acknowledged.
func (m *Metrics) SIEMLag(destination string, lag int64) {
	if m == nil {
		return
	}
	m.siemLag.WithLabelValues(destination).Set(float64(max(0, lag)))
}

// SIEMError counts a failed attempt to forward to a SIEM destination.
func (m *Metrics) SIEMError(destination string) {
	if m == nil {
		return
	}
	m.siemErrors.WithLabelValues(destination).Inc()
}

// SIEMRewind counts a SIEM cursor moved back to the log's start.
func (m *Metrics) SIEMRewind(destination string) {
	if m == nil {
		return
	}
	m.siemRewinds.WithLabelValues(destination).Inc()
}

// SIEMAcknowledged records when a SIEM destination last acknowledged.
func (m *Metrics) SIEMAcknowledged(destination string, at time.Time) {
	if m == nil {
		return
	}
	m.siemLastAck.WithLabelValues(destination).Set(float64(at.UnixNano()) / 1e9)
}
