package siem

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

func newSyslog(t testing.TB, r *rsyslog, p *pki, mod func(*SyslogOptions)) *Syslog {
	t.Helper()
	o := SyslogOptions{Name: "soc", Address: r.addr(), CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey,
		AppName: recvAppName, Hostname: "writ-1", AckTimeout: 10 * time.Second}
	if mod != nil {
		mod(&o)
	}
	s, err := NewSyslog(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newForwarder(t testing.TB, st *store.Store, d Destination) *Forwarder {
	t.Helper()
	f, err := New(Options{Store: st, Destination: d, PollInterval: 10 * time.Millisecond, IdleSync: 50 * time.Millisecond,
		CheckInterval: 100 * time.Millisecond, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The entries arrive in rsyslog as writ stored them: every seq, in order,
// each chaining to the one before, structured data and header as RFC 5424
// says; rsyslog stopped mid-stream and started again loses none (some may
// come twice); a forwarder started again resumes from its cursor.
func TestSyslogToRsyslog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKI(t)
	r := startRsyslog(t, p, rsyslogOptions{driver: "gtls", authMode: "x509/name"})
	st, l := setup(t)
	appendEntries(t, l, 0, 200, 50)
	f := newForwarder(t, st, newSyslog(t, r, p, func(o *SyslogOptions) { o.SessionEntries = 500 }))
	stop := run(t, f)
	eventually(t, "200 entries in rsyslog and acknowledged", func() bool { return f.Status().Acked == 200 && has(r.messages(), 200) })
	ms := r.messages()
	checkStream(t, ms, 200)
	if len(ms) != 200 {
		t.Fatalf("%d messages for 200 entries with rsyslog up all along", len(ms))
	}
	stored, err := st.AuditEntries(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		e := stored[i]
		pri := 13*8 + 6 // log audit, informational
		if i%7 == 3 {
			pri = 13*8 + 5 // a failure: notice
		}
		if m.seq != e.Seq || string(m.msg) != string(e.Entry) || m.hash != hex.EncodeToString(e.Hash) || m.event != "approval.accepted" ||
			m.key != e.KeyID || m.sig != base64.StdEncoding.EncodeToString(e.Signature) || m.pri != strconv.Itoa(pri) {
			t.Fatalf("message %d as rsyslog parsed it:\n%s\nstored: seq %d hash %x key %s\n%s", i, m.line, e.Seq, e.Hash, e.KeyID, e.Entry)
		}
		if m.hostname != "writ-1" || m.appName != recvAppName || m.procID != "-" || m.msgID != "audit" {
			t.Fatalf("header of message %d: %s", i, m.line)
		}
		at, err := time.Parse(time.RFC3339Nano, m.ts)
		if err != nil || !at.Equal(e.At) {
			t.Fatalf("timestamp of message %d: %q (%v), stored %s", i, m.ts, err, e.At)
		}
	}
	if i := strings.Index(string(ms[1].msg), "ünïcödé"); i < 0 {
		t.Fatalf("text outside ASCII changed: %s", ms[1].msg)
	}

	// rsyslog goes away in the middle of a stream and comes back: every
	// entry arrives intact, some perhaps twice.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		appendEntries(t, l, 200, 3000, 25)
	}()
	eventually(t, "the stream under way", func() bool { return len(r.messages()) > 600 })
	r.stop(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond) // writ finds the port closed, and retries
	r.start()
	wg.Wait()
	eventually(t, "3200 entries in rsyslog and acknowledged", func() bool { return f.Status().Acked == 3200 && has(r.messages(), 3200) })
	ms = r.messages()
	checkStream(t, ms, 3200)
	t.Logf("after a restart of rsyslog: %d messages for 3200 entries (%d intact copies); forwarder: %+v", len(ms), countOK(ms), f.Status())
	if s := f.Status(); s.LastError == "" {
		t.Fatal("rsyslog's restart went unnoticed")
	}
	c, err := st.SIEMCursor(ctx, "soc")
	if err != nil || c.Next != 3200 || hex.EncodeToString(c.LastHash) != ms[len(ms)-1].hash {
		t.Fatalf("cursor %+v %v", c, err)
	}

	// The forwarder stops; the log grows; a new forwarder resumes at the
	// cursor: nothing before it is sent again.
	stop()
	before := len(ms)
	appendEntries(t, l, 3200, 100, 10)
	f2 := newForwarder(t, st, newSyslog(t, r, p, nil))
	run(t, f2)
	eventually(t, "3300 entries", func() bool { return f2.Status().Acked == 3300 && has(r.messages(), 3300) })
	ms = r.messages()
	checkStream(t, ms, 3300)
	for _, m := range ms[before:] {
		if m.seq < 3200 {
			t.Fatalf("seq %d sent again by the restarted forwarder", m.seq)
		}
	}
	if len(ms)-before != 100 {
		t.Fatalf("%d messages for the 100 new entries", len(ms)-before)
	}
}

func countOK(ms []received) int {
	n := 0
	for _, m := range ms {
		if m.ok {
			n++
		}
	}
	return n
}

// The OpenSSL driver with anonymous senders takes the stream too; a
// receiver whose certificate does not verify (another CA, another name)
// gets nothing and the cursor stays.
func TestSyslogTLSVerification(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKI(t)
	r := startRsyslog(t, p, rsyslogOptions{driver: "ossl", authMode: "anon"})
	st, l := setup(t)
	appendEntries(t, l, 0, 20, 20)
	for name, mod := range map[string]func(*SyslogOptions){
		"wrong-ca":   func(o *SyslogOptions) { o.CAFile = p.otherCAFile },
		"wrong-name": func(o *SyslogOptions) { o.ServerName = "siem.example.com" },
	} {
		f := newForwarder(t, st, newSyslog(t, r, p, func(o *SyslogOptions) { o.Name = name; mod(o) }))
		stop := run(t, f)
		eventually(t, name+" refused", func() bool { return strings.Contains(f.Status().LastError, "certificate") })
		stop()
		if c, err := st.SIEMCursor(ctx, name); err != nil || c.Next != 0 {
			t.Fatalf("%s: cursor %+v %v", name, c, err)
		}
	}
	if ms := r.messages(); len(ms) != 0 {
		t.Fatalf("%d messages reached a receiver writ did not verify", len(ms))
	}
	f := newForwarder(t, st, newSyslog(t, r, p, func(o *SyslogOptions) { o.CertFile, o.KeyFile = "", "" }))
	run(t, f)
	eventually(t, "20 entries", func() bool { return f.Status().Acked == 20 && has(r.messages(), 20) })
	checkStream(t, r.messages(), 20)
}

// Options are checked when the destination is made.
func TestSyslogOptions(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	for _, o := range []SyslogOptions{
		{Name: "Bad Name", Address: "localhost:6514"},
		{Name: "a", Address: "localhost"},
		{Name: "a", Address: "localhost:6514", AppName: "has space"},
		{Name: "a", Address: "localhost:6514", CertFile: p.clientCert},
		{Name: "a", Address: "localhost:6514", CAFile: p.clientKey},
	} {
		if _, err := NewSyslog(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := NewSyslog(SyslogOptions{Name: "a", Address: "localhost:6514", CAFile: p.caFile}); err != nil {
		t.Fatal(err)
	}
}

// A receiver that authenticates senders (x509/name) and refuses writ
// without a client certificate acknowledges nothing: the cursor stays.
func TestSyslogClientCertificateRequired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKI(t)
	r := startRsyslog(t, p, rsyslogOptions{driver: "gtls", authMode: "x509/name"})
	st, l := setup(t)
	appendEntries(t, l, 0, 20, 20)
	f := newForwarder(t, st, newSyslog(t, r, p, func(o *SyslogOptions) { o.CertFile, o.KeyFile = "", "" }))
	stop := run(t, f)
	eventually(t, "a refused attempt", func() bool { return f.Status().LastError != "" })
	first := f.Status().LastErrorAt
	eventually(t, "another refused attempt", func() bool { return f.Status().LastErrorAt.After(first) })
	stop()
	if c, err := st.SIEMCursor(ctx, "soc"); err != nil || c.Next != 0 {
		t.Fatalf("cursor %+v %v; last error %s", c, err, f.Status().LastError)
	}
	if ms := r.messages(); len(ms) != 0 {
		t.Fatalf("%d messages from a sender rsyslog refused", len(ms))
	}
	t.Logf("refused: %s", f.Status().LastError)
}
