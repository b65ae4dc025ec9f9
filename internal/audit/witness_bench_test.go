package audit

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/witnesstest"
)

// BenchmarkAppendWithWitness: the latency of one append while checkpoints
// are made every 50ms, with no witness, and with the reference witness
// behind a proxy that delays every connection by 200ms (a slow witness far
// away) sent each checkpoint by a running Witnesser. Witnessing is
// asynchronous, so the figures should match; p50-ns and p99-ns are the
// appends' percentiles, cosignatures how many the slow witness returned
// meanwhile (it was busy the whole run).
func BenchmarkAppendWithWitness(b *testing.B) {
	for _, slow := range []bool{false, true} {
		name := "witness=none"
		if slow {
			name = "witness=slow"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l, _ := newLog(b)
			appendN(b, l, 10, 10)
			var recorded func(*Checkpoint)
			var health *WitnessMonitor
			var bg sync.WaitGroup
			if slow {
				origin, err := l.Origin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				pk, err := NewPublicKey(l.Key().Public())
				if err != nil {
					b.Fatal(err)
				}
				vkey, err := VerifierKey(origin, pk)
				if err != nil {
					b.Fatal(err)
				}
				ref := witnesstest.Start(b, "witness.test/bench", witnesstest.Log{Origin: origin, VKey: vkey})
				w, err := NewWitness("slow", delayProxy(b, ref.URL, 200*time.Millisecond), ref.VKey)
				if err != nil {
					b.Fatal(err)
				}
				wr, err := NewWitnesser(WitnesserOptions{Log: l, Witnesses: []*Witness{w},
					Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}})
				if err != nil {
					b.Fatal(err)
				}
				recorded = wr.Notify
				health = wr.Health()
				bg.Go(func() { _ = wr.Run(ctx) })
			}
			c, err := NewCheckpointer(CheckpointerOptions{Log: l, Recorded: recorded})
			if err != nil {
				b.Fatal(err)
			}
			bg.Go(func() {
				t := time.NewTicker(50 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						_, _ = c.Checkpoint(ctx)
					}
				}
			})
			e := testEntry(1)
			var lat []time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				if _, err := l.Append(ctx, l.Store(), e); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			cancel()
			bg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			if health != nil {
				b.ReportMetric(float64(health.Health()[0].Cosigned), "cosignatures")
			}
		})
	}
}

// delayProxy is a TCP proxy on loopback to target's host that holds each
// connection for delay before passing it on: a witness far away.
func delayProxy(b *testing.B, target string, delay time.Duration) string {
	b.Helper()
	host := target[len("http://"):]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				time.Sleep(delay)
				u, err := net.Dial("tcp", host)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); _ = u.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			})
		}
	})
	return "http://" + l.Addr().String()
}
