package gitlab

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/forge/gitlab/gitlabfake"
	"github.com/writ-sec/writ/internal/store"
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

// BenchmarkWebhookAccept measures Merge Request Hook deliveries accepted
// per second by the receiver over loopback (token check, body limit,
// commit to PostgreSQL, 202), with concurrent senders, and checks that
// every delivery is stored: none lost. Each body differs (a body stored
// before is a replay).
func BenchmarkWebhookAccept(b *testing.B) {
	e := newEnv(b)
	e.gl.AddMergeRequest(gitlabfake.MergeRequest{IID: 1, Title: "TITLE-PLACEHOLDER", Author: "alice.gl", SourceBranch: "x", TargetBranch: "main",
		SHA: strings.Repeat("c", 40)})
	tmpl := string(e.gl.MergeRequestHook(1, "update", "alice.gl"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var n, refused atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			payload := strings.Replace(tmpl, "TITLE-PLACEHOLDER", fmt.Sprintf("title %d", n.Add(1)), 1)
			a, err := gitlabfake.Deliver(e.ctx, client, e.hook.URL+WebhookPath, testSecret,
				gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: []byte(payload)})
			if err != nil || a.Status != http.StatusAccepted {
				refused.Add(1)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	counts, err := e.st.DeliveryCounts(e.ctx, "gitlab")
	if err != nil {
		b.Fatal(err)
	}
	if refused.Load() != 0 || counts[store.DeliveryQueued] != int64(b.N) {
		b.Fatalf("%d refused, %d stored of %d sent", refused.Load(), counts[store.DeliveryQueued], b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
}
