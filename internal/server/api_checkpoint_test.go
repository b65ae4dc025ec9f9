package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/metrics"
)

// TestMakeCheckpointWithAFailingSink: a git ref written by another key
// keeps neither the database nor the directory from the checkpoint; the API
// answers 201 naming the failing sink, the metric shows it down, and
// /readyz shows it degraded without taking the server out. A sink proving
// the log rolled back answers 409 and makes the server not ready.
func TestMakeCheckpointWithAFailingSink(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	admin := h.tokens["admin"]
	origin, err := h.alog.Origin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, err := audit.NewSigningKey(other)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := audit.SignCheckpoint(otherKey, origin, 3, bytes.Repeat([]byte{9}, audit.HashSize))
	if err != nil {
		t.Fatal(err)
	}
	git := audit.GitSink{Repo: repo}
	if err := git.Publish(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	dir := audit.DirSink{Dir: filepath.Join(t.TempDir(), "checkpoints")}
	m := metrics.New()
	health := audit.NewSinkMonitor(func(s audit.SinkHealth) { m.CheckpointSink(s.Sink, s.OK, s.NotContained, s.LastSuccess) })
	h.srv.AddCheck("audit checkpoint sinks", func(context.Context) (string, error) { return health.Readiness() })
	cp, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: h.alog, Sinks: []audit.Sink{git, dir}, Health: health})
	if err != nil {
		t.Fatal(err)
	}
	h.api.opts.Checkpointer = cp

	resp, body := h.do("POST", "/api/v1/audit/checkpoints", admin, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("checkpoint %d %s", resp.StatusCode, body)
	}
	made := decode[MadeCheckpoint](t, body)
	if made.Size == 0 || len(made.Sinks) != 2 || made.Sinks[0].Sink != git.Name() || made.Sinks[0].OK || made.Sinks[0].NotContained ||
		!strings.Contains(made.Sinks[0].Error, "not signed by a trusted key") || made.Sinks[1].Sink != dir.Name() || !made.Sinks[1].OK ||
		len(made.Warnings) != 1 {
		t.Fatalf("answer: %s", body)
	}
	if latest, err := os.ReadFile(filepath.Join(dir.Dir, audit.LatestFile)); err != nil || string(latest) != made.Note {
		t.Fatalf("directory: %v %s", err, latest)
	}
	resp, body = h.do("GET", "/api/v1/audit/checkpoints/latest", admin, nil)
	if resp.StatusCode != 200 || decode[CheckpointView](t, body).Note != made.Note {
		t.Fatalf("latest %d %s", resp.StatusCode, body)
	}
	scraped := scrapeMetrics(t, m)
	for _, want := range []string{
		`writ_audit_checkpoint_sink_up{sink="` + git.Name() + `"} 0`,
		`writ_audit_checkpoint_sink_up{sink="` + dir.Name() + `"} 1`,
		`writ_audit_checkpoint_sink_not_contained{sink="` + git.Name() + `"} 0`,
		`writ_audit_checkpoint_sink_last_success_timestamp_seconds{sink="` + dir.Name() + `"}`,
	} {
		if !strings.Contains(scraped, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	resp, body = h.do("GET", "/readyz", "", nil)
	rep := decode[ReadyReport](t, body)
	if c := rep.Checks["audit checkpoint sinks"]; resp.StatusCode != 200 || !c.OK || !strings.Contains(c.Detail, git.Name()+": degraded") {
		t.Fatalf("readyz with a degraded sink: %d %s", resp.StatusCode, body)
	}

	// The log's own key signed a checkpoint larger than the log: a
	// rollback. Nothing is recorded or published, and the server is not
	// ready.
	head, err := h.alog.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	larger, err := audit.SignCheckpoint(h.key, origin, head.Size+100, bytes.Repeat([]byte{4}, audit.HashSize))
	if err != nil {
		t.Fatal(err)
	}
	rolled := audit.DirSink{Dir: t.TempDir()}
	if err := rolled.Publish(ctx, larger); err != nil {
		t.Fatal(err)
	}
	cp2, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: h.alog, Sinks: []audit.Sink{dir, rolled}, Health: health})
	if err != nil {
		t.Fatal(err)
	}
	h.api.opts.Checkpointer = cp2
	resp, body = h.do("POST", "/api/v1/audit/checkpoints", admin, nil)
	if resp.StatusCode != 409 || decode[Problem](t, body).Code != "not_contained" || !strings.Contains(string(body), rolled.Name()) {
		t.Fatalf("checkpoint over a rollback: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(scrapeMetrics(t, m), `writ_audit_checkpoint_sink_not_contained{sink="`+rolled.Name()+`"} 1`) {
		t.Error("the rollback is not in the metrics")
	}
	resp, body = h.do("GET", "/readyz", "", nil)
	rep = decode[ReadyReport](t, body)
	if c := rep.Checks["audit checkpoint sinks"]; resp.StatusCode != 503 || c.OK || !strings.Contains(c.Error, rolled.Name()) {
		t.Fatalf("readyz with a sink proving a rollback: %d %s", resp.StatusCode, body)
	}
}

func scrapeMetrics(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
