package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckpointSink(t *testing.T) {
	m := New()
	at := time.Unix(1700000000, 0)
	m.CheckpointSink("directory /d", true, false, at)
	m.CheckpointSink("git /r refs/writ/checkpoints", false, false, time.Time{})
	m.CheckpointSink("git /r refs/writ/checkpoints", false, true, time.Time{})
	out := scrape(t, m)
	for _, want := range []string{
		`writ_audit_checkpoint_sink_up{sink="directory /d"} 1`,
		`writ_audit_checkpoint_sink_up{sink="git /r refs/writ/checkpoints"} 0`,
		`writ_audit_checkpoint_sink_not_contained{sink="directory /d"} 0`,
		`writ_audit_checkpoint_sink_not_contained{sink="git /r refs/writ/checkpoints"} 1`,
		`writ_audit_checkpoint_sink_last_success_timestamp_seconds{sink="directory /d"} 1.7e+09`,
		`writ_audit_checkpoint_sink_failures_total{sink="git /r refs/writ/checkpoints"} 2`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, `writ_audit_checkpoint_sink_last_success_timestamp_seconds{sink="git`) {
		t.Error("a sink that never took a checkpoint has a last success time")
	}
	var nilM *Metrics
	nilM.CheckpointSink("x", true, false, at)
}

func TestAuditWitness(t *testing.T) {
	m := New()
	at := time.Unix(1700000000, 0)
	m.AuditWitness("a", true, true, false, 42, at)
	m.AuditWitness("b", true, false, true, 0, time.Time{})
	m.AuditWitness("c", false, false, false, 7, at) // known from the database, nothing sent yet
	out := scrape(t, m)
	for _, want := range []string{
		`writ_audit_witness_up{witness="a"} 1`,
		`writ_audit_witness_up{witness="b"} 0`,
		`writ_audit_witness_refusing{witness="a"} 0`,
		`writ_audit_witness_refusing{witness="b"} 1`,
		`writ_audit_witness_cosigned_size{witness="a"} 42`,
		`writ_audit_witness_cosigned_size{witness="c"} 7`,
		`writ_audit_witness_last_cosigned_timestamp_seconds{witness="a"} 1.7e+09`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	for _, not := range []string{`writ_audit_witness_up{witness="c"}`, `writ_audit_witness_cosigned_size{witness="b"}`} {
		if strings.Contains(out, not) {
			t.Errorf("unexpected %s", not)
		}
	}
	var nilM *Metrics
	nilM.AuditWitness("x", true, true, false, 1, at)
}
