package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// The containment benchmarks fill a database with benchPlaybooks playbooks
// in force holding benchPerPlaybook targets each (10,000 contained
// targets: IPv4 addresses, IPv4 prefixes, IPv6 addresses and prefixes,
// users and hosts), plus the history a real one has: benchRemoved
// playbooks removed and reverted, and benchUpdated playbooks updated once
// (their first version's dropped targets reverted). Run with enough
// iterations for a p99, e.g.
//
//	go test -run '^$' -bench Containment -benchtime 300x ./internal/store/
const (
	benchPlaybooks   = 500
	benchPerPlaybook = 20
	benchRemoved     = 100
	benchUpdated     = 100
)

// benchTargets are the targets of playbook i (version v), by kind: i%10 0-3
// IPv4 addresses, 4-5 IPv4 /24 prefixes, 6 IPv6, 7-8 users, 9 hosts.
func benchTargets(i, v int) (action string, targets []string) {
	targets = make([]string, benchPerPlaybook)
	for j := range targets {
		n := i*benchPerPlaybook + j + v*100000
		switch i % 10 {
		case 0, 1, 2, 3:
			action, targets[j] = "block_ip", fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
		case 4, 5:
			action, targets[j] = "block_ip", fmt.Sprintf("172.%d.%d.0/24", 16+n>>8&15, n&255)
		case 6:
			action = "block_ip"
			if j%2 == 0 {
				targets[j] = fmt.Sprintf("2001:db8:%x::%x", n>>8, n&255)
			} else {
				targets[j] = fmt.Sprintf("2001:db8:%x:%x::/64", 0x1000+n>>8, n&255)
			}
		case 7, 8:
			action, targets[j] = "suspend_user", fmt.Sprintf("user%05d@example.com", n)
		default:
			action, targets[j] = "isolate_host", fmt.Sprintf("host-%05d", n)
		}
	}
	return action, targets
}

func fillContainment(b *testing.B) *store.Store {
	b.Helper()
	start := time.Now()
	ctx := context.Background()
	st := dbtest.Store(b)
	w := &world{t: b, ctx: ctx, st: st}
	ok := verdict{proposer: "alice", counted: []string{"bob", "carol"}}
	envs := []string{"production", "staging"}
	for i := range benchPlaybooks + benchRemoved {
		action, targets := benchTargets(i, 0)
		s := spec{name: fmt.Sprintf("pb-%04d", i), action: action, env: envs[i%7/6], ticket: fmt.Sprintf("INC-%d", i), targets: targets}
		if i%3 == 0 {
			s.expiresAfter = "720h"
		}
		v, apply := w.merge(s)
		w.run(apply, ok, changed(targets...)...)
		if s.expiresAfter != "" {
			at := time.Now().Add(time.Duration(i) * time.Hour)
			if err := st.SetPlaybookExpiry(ctx, v.ID, &at); err != nil {
				b.Fatal(err)
			}
		}
		switch {
		case i >= benchPlaybooks: // removed and reverted
			w.run(w.remove(v, targets), ok, changed(targets...)...)
		case i < benchUpdated: // updated once: half the targets replaced
			_, next := benchTargets(i, 1)
			next = append(next[:benchPerPlaybook/2], targets[benchPerPlaybook/2:]...)
			s.targets = next
			s.ticket += "-2"
			v2, apply2 := w.merge(s)
			var dropped []string
			for _, t := range targets {
				if !slices.Contains(next, t) {
					dropped = append(dropped, t)
				}
			}
			drop := w.intend(v, "revert", "update", "update", dropped, v2.CommitSHA)
			res := changed(next[:benchPerPlaybook/2]...)
			res = append(res, results("unchanged", next[benchPerPlaybook/2:]...)...)
			w.run(apply2, ok, res...)
			w.run(drop, ok, changed(dropped...)...)
		}
	}
	if _, err := st.DB().Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	filled := time.Since(start)
	// The first list parses every version's ticket (cached after).
	start = time.Now()
	all, err := st.Containment(ctx, store.ContainmentFilter{})
	if err != nil || len(all) != benchPlaybooks*benchPerPlaybook {
		b.Fatalf("%d contained, %v; want %d", len(all), err, benchPlaybooks*benchPerPlaybook)
	}
	b.Logf("filled %d playbooks (%d contained targets) in %v; first list %v", benchPlaybooks+benchRemoved, len(all),
		filled.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return st
}

// measure runs Containment with the filters in turn and reports latency
// percentiles.
func measure(b *testing.B, st *store.Store, want func(int) bool, filters ...store.ContainmentFilter) {
	ctx := context.Background()
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := filters[i%len(filters)]
		t0 := time.Now()
		got, err := st.Containment(ctx, f)
		times = append(times, time.Since(t0))
		if err != nil || !want(len(got)) {
			b.Fatalf("Containment(%+v): %d, %v", f, len(got), err)
		}
	}
	b.StopTimer()
	slices.Sort(times)
	at := func(q float64) float64 {
		return float64(times[min(len(times)-1, int(q*float64(len(times))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
}

// dropSearchIndexes removes migration 010's indexes, to measure without.
func dropSearchIndexes(b *testing.B, st *store.Store) {
	b.Helper()
	if _, err := st.DB().Exec(context.Background(), `DROP INDEX execution_targets_inet_idx; DROP INDEX execution_targets_lower_idx; ANALYZE execution_targets`); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkContainmentAll(b *testing.B) {
	st := fillContainment(b)
	b.Run("all", func(b *testing.B) {
		measure(b, st, func(n int) bool { return n == benchPlaybooks*benchPerPlaybook }, store.ContainmentFilter{})
	})
}

// BenchmarkContainmentSearchAddress searches one address at a time:
// IPv4 and IPv6 addresses held exactly, addresses covered by a /24 and a
// /64, and addresses held by nothing.
func BenchmarkContainmentSearchAddress(b *testing.B) {
	st := fillContainment(b)
	var queries []store.ContainmentFilter
	for _, i := range []int{101, 213, 333} { // IPv4 addresses, exact
		_, ts := benchTargets(i, 0)
		queries = append(queries, store.ContainmentFilter{Query: ts[i%benchPerPlaybook]})
	}
	for _, i := range []int{104, 255} { // inside a /24
		_, ts := benchTargets(i, 0)
		queries = append(queries, store.ContainmentFilter{Query: strings.TrimSuffix(ts[3], "0/24") + "77"})
	}
	_, v6 := benchTargets(106, 0)
	queries = append(queries,
		store.ContainmentFilter{Query: v6[0]},                                        // IPv6, exact
		store.ContainmentFilter{Query: strings.TrimSuffix(v6[1], "::/64") + ":5::1"}, // inside a /64
		store.ContainmentFilter{Query: "192.0.2.1"},                                  // nothing
		store.ContainmentFilter{Query: "2001:db8:ffff::1"})                           // nothing
	hits := 0
	for _, q := range queries {
		got, err := st.Containment(context.Background(), q)
		if err != nil {
			b.Fatalf("%s: %v", q.Query, err)
		}
		b.Logf("%-24s %d found", q.Query, len(got))
		if len(got) > 0 {
			hits++
		}
	}
	if hits != len(queries)-2 {
		b.Fatalf("%d of %d searches found something; want %d", hits, len(queries), len(queries)-2)
	}
	ok := func(n int) bool { return n <= 3 }
	b.Run("indexed", func(b *testing.B) { measure(b, st, ok, queries...) })
	dropSearchIndexes(b, st)
	b.Run("no_index", func(b *testing.B) { measure(b, st, ok, queries...) })
}

// BenchmarkContainmentSearchName searches users and hosts by name prefix.
func BenchmarkContainmentSearchName(b *testing.B) {
	st := fillContainment(b)
	queries := []store.ContainmentFilter{{Query: "user01500"}, {Query: "USER0150"}, {Query: "host-0190"}, {Query: "nobody"}}
	ok := func(n int) bool { return n <= 20 }
	b.Run("indexed", func(b *testing.B) { measure(b, st, ok, queries...) })
	dropSearchIndexes(b, st)
	b.Run("no_index", func(b *testing.B) { measure(b, st, ok, queries...) })
}
