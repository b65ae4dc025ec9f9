package github

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/forge/github/githubfake"
	"github.com/writ-sec/writ/internal/store"
)

// BenchmarkWebhookToCheckRun measures, for a pull request with 20
// playbooks, the time from a pull_request.synchronize delivery (POSTed
// over loopback) to the completed check run on the fake GitHub: verify,
// store, claim, fetch, read reviews, evaluate (20 policy decisions and
// dry-runs against the blocklist backend), write the check. It reports
// p50 and p99 in milliseconds.
func BenchmarkWebhookToCheckRun(b *testing.B) {
	e := newEnv(b)
	files := map[string]string{}
	for i := range 20 {
		name := fmt.Sprintf("block-%02d", i)
		files[pbPath(name)] = playbookYAML(name, "INC-1", fmt.Sprintf("203.0.113.%d", i+1), "high", "production")
	}
	p := e.openPR(20, "alice-gh", "", files)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	e.waitCheck(b, p.head)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		e.repo.Checkout(p.branch)
		e.repo.Write(pbPath("block-00"), playbookYAML("block-00", fmt.Sprintf("INC-%d", i+2), "203.0.113.1", "high", "production"))
		p.head = e.repo.Commit(fmt.Sprintf("revision %d", i))
		e.repo.PushRef("refs/pull/20/head")
		e.repo.Checkout("main")
		e.gh.SetHead(20, p.head)
		b.StartTimer()
		t0 := time.Now()
		e.deliverPR(p, "synchronize")
		e.waitCheck(b, p.head)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}

// waitCheck waits for a completed writ check run on a head commit.
func (e *env) waitCheck(b *testing.B, head string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if run, ok := e.gh.LatestCheckRun(head, DefaultCheckName); ok && run.Status == "completed" {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("no completed check run on %.12s within 30s", head)
}

// BenchmarkWebhookAccept measures deliveries accepted per second by the
// receiver over loopback (HMAC check, body limit, commit to PostgreSQL,
// 202), with concurrent senders as GitHub's, and checks that every
// delivery is stored: none lost.
func BenchmarkWebhookAccept(b *testing.B) {
	e := newEnv(b)
	install := e.fixture("installation.created.json")
	delete(install, "repository")
	payload, err := json.Marshal(install)
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var refused atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a, err := githubfake.Deliver(e.ctx, client, e.hook.URL+WebhookPath, testSecret, githubfake.Delivery{Event: "installation", Payload: payload})
			if err != nil || a.Status != http.StatusAccepted {
				refused.Add(1)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	counts, err := e.st.DeliveryCounts(e.ctx, "github")
	if err != nil {
		b.Fatal(err)
	}
	if refused.Load() != 0 || counts[store.DeliveryQueued] != int64(b.N) {
		b.Fatalf("%d refused, %d stored of %d sent", refused.Load(), counts[store.DeliveryQueued], b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
}
