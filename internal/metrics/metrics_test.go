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
