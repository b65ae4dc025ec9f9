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
// are made every 50ms, with no witness; with a witness that accepts the
// connection and never answers (hung: the Witnesser waits on it the whole
// run, doing no work); and with the reference witness behind a proxy that
// delays every connection by 200ms (slow: a witness far away, cosigning
// each checkpoint it is sent). Witnessing is asynchronous, so the figures
// should match but for the CPU the witness process and the Witnesser's
// work take from a small machine. p50-ns and p99-ns are the appends'
// percentiles, cosignatures how many the witness returned meanwhile.
func BenchmarkAppendWithWitness(b *testing.B) {
	for _, name := range []string{"none", "hung", "slow"} {
		b.Run("witness="+name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l, _ := newLog(b)
			appendN(b, l, 10, 10)
			var recorded func(*Checkpoint)
			var health *WitnessMonitor
			var bg sync.WaitGroup
			if name != "none" {
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
				url := hungServer(b)
				if name == "slow" {
					url = delayProxy(b, ref.URL, 200*time.Millisecond)
				}
				w, err := NewWitness(name, url, ref.VKey)
				if err != nil {
					b.Fatal(err)
				}
				wr, err := NewWitnesser(WitnesserOptions{Log: l, Witnesses: []*Witness{w},
					Client: &http.Client{Timeout: time.Hour, Transport: &http.Transport{DisableKeepAlives: true}}})
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

// hungServer is an http URL on loopback whose server accepts connections
// and never answers, until the benchmark ends.
func hungServer(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	b.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	return "http://" + l.Addr().String()
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
