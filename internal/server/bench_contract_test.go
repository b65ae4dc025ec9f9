package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkAPIReads is the API's read load over loopback HTTP with the
// contract in force (every parameter checked against the document): a mix
// of list and detail reads with filters, by 8 clients per CPU. It reports
// requests per second and the latency percentiles; the target is at least
// 1,000 req/s at a p99 under 50 ms.
func BenchmarkAPIReads(b *testing.B) {
	h := newHarness(b, harnessOptions{})
	viewer, admin := h.tokens["viewer"], h.tokens["admin"]
	reads := []struct{ path, cred string }{
		{"/api/v1/playbooks?status=active&limit=50", viewer},
		{"/api/v1/executions?name=block-test-net&limit=20&before=2147483648", viewer},
		{"/api/v1/status", viewer},
		{"/api/v1/approvals?approver=alice&withdrawn=false&limit=10", viewer},
		{"/api/v1/playbooks/block-test-net", viewer},
		{"/api/v1/users/u-viewer", admin},
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		i := 0
		for pb.Next() {
			r := reads[i%len(reads)]
			i++
			req, _ := http.NewRequestWithContext(context.Background(), "GET", h.http.URL+r.path, nil)
			req.Header.Set("Authorization", "Bearer "+r.cred)
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != 200 {
				b.Errorf("%s: %d", r.path, resp.StatusCode)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkContractBody is the contract's cost on one JSON body: the
// token scan, the schema and the strict decoding (POST /api/v1/users).
func BenchmarkContractBody(b *testing.B) {
	op := contractFor("POST /api/v1/users")
	body := []byte(`{"username":"vera","display_name":"Vera V.","roles":["viewer","analyst"],"no_password":false}`)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/api/v1/users", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if err := op.checkParams(r); err != nil {
			b.Fatal(err)
		}
		if err := op.checkBody(r); err != nil {
			b.Fatal(err)
		}
		var req createUserRequest
		if err := decodeJSON(r, &req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkContractParams is the contract's cost on a list read's query.
func BenchmarkContractParams(b *testing.B) {
	op := contractFor("GET /api/v1/approvals")
	r := httptest.NewRequest("GET", "/api/v1/approvals?approver=alice&decision=approve&pull_request=7&withdrawn=true&limit=50&before=2147483648", nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := op.checkParams(r); err != nil {
			b.Fatal(err)
		}
	}
}
