package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/pgembed"
	"github.com/writ-sec/writ/internal/store"
)

// BenchmarkAppendOne: one entry per Append on the pool (its own
// transaction), on the test cluster (fsync off).
func BenchmarkAppendOne(b *testing.B) {
	l, _ := newLog(b)
	ctx := context.Background()
	e := testEntry(1)
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(ctx, l.Store(), e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendOneParallel: as BenchmarkAppendOne from GOMAXPROCS*4
// goroutines contending for the append lock.
func BenchmarkAppendOneParallel(b *testing.B) {
	l, _ := newLog(b)
	ctx := context.Background()
	e := testEntry(1)
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, l.Store(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchLog is a log of n entries, appended in batches of 1000.
func benchLog(b *testing.B, n int) (*Log, *KeySet) {
	b.Helper()
	l, _ := newLog(b)
	appendN(b, l, n, 1000)
	return l, trustOnly(b, l.Key())
}

func benchVerify(b *testing.B, skipSigs bool) {
	const n = 50000
	l, trusted := benchLog(b, n)
	ctx := context.Background()
	// gc=400 is what the writ binary runs with (cmd/writ/main.go).
	for _, gc := range []int{100, 400} {
		b.Run(fmt.Sprintf("gc=%d", gc), func(b *testing.B) {
			defer debug.SetGCPercent(debug.SetGCPercent(gc))
			for b.Loop() {
				rep, err := VerifyDatabase(ctx, l.Store(), VerifyOptions{Trusted: trusted, SkipSignatures: skipSigs})
				if err != nil || rep.Bad != nil || rep.Entries != n {
					b.Fatalf("%v %+v", err, rep)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkVerifyDatabase: hashes, chain, canonical decoding and tree,
// reading from PostgreSQL.
func BenchmarkVerifyDatabase(b *testing.B) { benchVerify(b, true) }

// BenchmarkVerifyDatabaseSignatures: as above, and every signature.
func BenchmarkVerifyDatabaseSignatures(b *testing.B) { benchVerify(b, false) }

// durableStore starts a private cluster with PostgreSQL's durable defaults
// (fsync on, synchronous_commit on), unlike the test cluster, for the
// benchmarks whose figures the issue asks for.
func durableStore(b *testing.B) *store.Store {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "writ-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil { // PostgreSQL may run as another user
		b.Fatal(err)
	}
	c, err := pgembed.Start(ctx, pgembed.Options{Dir: filepath.Join(dir, "pg"), Ephemeral: false, Port: 5433})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.Stop(ctx)
	})
	st, err := store.Open(ctx, store.Options{URL: c.URL()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	var sc, fs string
	st.Pool().QueryRow(ctx, "SHOW synchronous_commit").Scan(&sc)
	st.Pool().QueryRow(ctx, "SHOW fsync").Scan(&fs)
	if sc != "on" || fs != "on" {
		b.Fatalf("cluster is not durable: synchronous_commit=%s fsync=%s", sc, fs)
	}
	return st
}

func runAppender(b *testing.B, l *Log, opts AppenderOptions) *Appender {
	b.Helper()
	opts.Log = l
	a, err := NewAppender(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	b.Cleanup(func() { stop(); <-done })
	return a
}

// BenchmarkAppenderDurable: entries acknowledged per second through the
// group-commit appender, each signed (ed25519), on a durable cluster, with
// 256 writers waiting for their acknowledgements.
func BenchmarkAppenderDurable(b *testing.B) {
	st := durableStore(b)
	l, err := NewLog(LogOptions{Store: st, Key: newKey(b)})
	if err != nil {
		b.Fatal(err)
	}
	a := runAppender(b, l, AppenderOptions{})
	e := testEntry(1)
	ctx := context.Background()
	b.SetParallelism(256)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Append(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(a.rebuilds.Load()), "rebuilds")
}

// BenchmarkAppenderLatency offers 5,000 entries/s to the appender on a
// durable cluster for ten seconds (open loop: each entry is sent at its
// scheduled time whatever the ones before it are doing, and its latency is
// counted from that time) and reports acknowledgement latency percentiles.
func BenchmarkAppenderLatency(b *testing.B) {
	const rate = 5000
	duration := 10 * time.Second
	st := durableStore(b)
	l, err := NewLog(LogOptions{Store: st, Key: newKey(b)})
	if err != nil {
		b.Fatal(err)
	}
	a := runAppender(b, l, AppenderOptions{})
	e := testEntry(1)
	ctx := context.Background()
	for b.Loop() {
		total := int(duration.Seconds() * rate)
		lat := make([]time.Duration, total)
		var failed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for i := range total {
			at := start.Add(time.Duration(i) * time.Second / rate)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			wg.Go(func() {
				if _, err := a.Append(ctx, e); err != nil {
					failed.Add(1)
				}
				lat[i] = time.Since(at)
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			b.Fatalf("%d appends failed", failed.Load())
		}
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[int(float64(len(lat)-1)*p)] }
		b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "entries/s")
		fmt.Fprintf(os.Stderr, "latency at %d/s offered: p50 %v p99 %v max %v\n", rate, pct(0.5), pct(0.99), lat[len(lat)-1])
	}
}

// BenchmarkVerifyExport: offline verification of an NDJSON export
// (hashes, chain, decoding and tree; the export read from memory).
func BenchmarkVerifyExport(b *testing.B) {
	const n = 50000
	l, trusted := benchLog(b, n)
	var buf bytes.Buffer
	if _, err := Export(context.Background(), l.Store(), &buf, ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		rep, err := VerifyExport(ctx, bytes.NewReader(buf.Bytes()), VerifyOptions{Trusted: trusted, SkipSignatures: true})
		if err != nil || rep.Bad != nil || rep.Entries != n {
			b.Fatalf("%v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkAppendThroughput: entries committed per second by Log.Append,
// the path the server writes with (the reconciler, the console, the
// authenticator: the caller's transaction, or one of its own from the
// pool), on a durable cluster, each entry signed (ed25519). batch is how
// many entries one Append carries, i.e. one transaction and one commit
// flush; one writer, since concurrent writers serialize on the append
// lock anyway.
func BenchmarkAppendThroughput(b *testing.B) {
	st := durableStore(b)
	l, err := NewLog(LogOptions{Store: st, Key: newKey(b)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, batch := range []int{1, 16, 256, 1024} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			es := make([]Entry, batch)
			for i := range es {
				es[i] = testEntry(i)
			}
			for b.Loop() {
				recs, err := l.Append(ctx, st, es...)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) != batch {
					b.Fatalf("%d receipts for %d entries", len(recs), batch)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
