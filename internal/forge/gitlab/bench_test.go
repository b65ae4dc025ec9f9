package gitlab

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/forge/gitlab/gitlabfake"
)

// BenchmarkWebhookToStatus measures, for a merge request with 20
// playbooks, the time from a Merge Request Hook (update, POSTed over
// loopback) to the completed commit status on the fake GitLab: check the
// token, store, claim, read the merge request and its notes, fetch,
// evaluate (20 policy decisions and dry-runs against the blocklist
// backend), edit the report note, set the status. It reports p50 and p99
// in milliseconds.
func BenchmarkWebhookToStatus(b *testing.B) {
	e := newEnv(b)
	files := map[string]string{}
	for i := range 20 {
		name := fmt.Sprintf("block-%02d", i)
		files[pbPath(name)] = playbookYAML(name, "INC-1", fmt.Sprintf("203.0.113.%d", i+1), "high", "production")
	}
	m := e.openMR(20, "alice.gl", "", files)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	e.waitStatus(b, m.head)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		e.repo.Checkout(m.branch)
		e.repo.Write(pbPath("block-00"), playbookYAML("block-00", fmt.Sprintf("INC-%d", i+2), "203.0.113.1", "high", "production"))
		m.head = e.repo.Commit(fmt.Sprintf("revision %d", i))
		e.repo.PushRef("refs/merge-requests/20/head")
		e.repo.Checkout("main")
		e.gl.SetHead(20, m.head)
		b.StartTimer()
		t0 := time.Now()
		e.deliver(gitlabfake.EventMergeRequest, e.gl.MergeRequestHook(20, "update", "alice.gl"))
		e.waitStatus(b, m.head)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}

// waitStatus waits for a completed writ status on a head commit.
func (e *env) waitStatus(b *testing.B, head string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st, ok := e.gl.LatestStatus(head, DefaultStatusName); ok && st.State != "pending" && st.State != "running" {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("no completed status on %.12s within 30s", head)
}
