package siem

import (
	"crypto/hmac"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/notify"
)

// benchForward forwards a backlog of b.N entries to d and reports the
// throughput, from the forwarder's start to the last acknowledgement.
func benchForward(b *testing.B, newDest func(name string) Destination, arrived func(n int64) bool) {
	st, l := setup(b)
	appendEntries(b, l, 0, b.N, 1000)
	f, err := New(Options{Store: st, Destination: newDest(fmt.Sprintf("bench-%d", b.N)), Batch: 1000,
		PollInterval: time.Millisecond, IdleSync: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	stop := run(b, f)
	for f.Status().Acked < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	if s := f.Status(); s.LastError != "" {
		b.Fatalf("forwarding failed on the way: %s", s.LastError)
	}
	eventually(b, "every entry at the receiver", func() bool { return arrived(int64(b.N)) })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
}

// To rsyslog over TLS (gtls, client certificate), written to a file.
func BenchmarkForwardSyslog(b *testing.B) {
	p := newPKI(b)
	r := startRsyslog(b, p, rsyslogOptions{driver: "gtls", authMode: "x509/name"})
	benchForward(b, func(name string) Destination {
		return newSyslog(b, r, p, func(o *SyslogOptions) { o.Name = name })
	}, func(n int64) bool { return has(r.messages(), n) })
}

// To an HTTPS receiver that checks each batch's signature and reads it.
func BenchmarkForwardWebhook(b *testing.B) {
	var got atomic.Int64
	srv, ca := webhookServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get("X-Writ-Timestamp"), 10, 64)
		if !hmac.Equal([]byte(r.Header.Get("X-Writ-Signature-256")), []byte(notify.Sign(secret, ts, body))) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		last, _ := strconv.ParseInt(r.Header.Get("X-Writ-Last-Seq"), 10, 64)
		got.Store(max(got.Load(), last+1)) // one request at a time
	}))
	benchForward(b, func(name string) Destination { return newWebhook(b, name, srv.URL, ca) },
		func(n int64) bool { return got.Load() >= n })
}
