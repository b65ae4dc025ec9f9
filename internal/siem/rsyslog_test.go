package siem

// A real rsyslog from Debian (packages rsyslog and rsyslog-gnutls or
// rsyslog-openssl; .ci/run installs them) receives what the syslog
// destination sends: imtcp with TLS, mmpstrucdata to parse the structured
// data, omfile writing what rsyslog parsed, one message a line.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rsyslogd finds the daemon; a missing one fails the test.
func rsyslogd(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("rsyslogd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("rsyslogd not found: install Debian's rsyslog, rsyslog-gnutls and rsyslog-openssl (apt-get install rsyslog rsyslog-gnutls rsyslog-openssl; .ci/run does)")
	return ""
}

// rsyslogOptions choose the TLS driver and how rsyslog authenticates writ.
type rsyslogOptions struct {
	driver   string // gtls or ossl
	authMode string // anon, or x509/name (with PermittedPeer writ-client)
}

// rsyslog is one receiver, restartable on the same port.
type rsyslog struct {
	t        testing.TB
	bin      string
	dir      string
	conf     string
	out      string
	port     int
	cmd      *exec.Cmd
	exited   chan struct{}
	starts   int
	stderrOf string
}

// recvAppName marks writ's messages in rsyslog (its own go elsewhere).
const recvAppName = "writ-test"

func startRsyslog(t testing.TB, p *pki, o rsyslogOptions) *rsyslog {
	t.Helper()
	r := &rsyslog{t: t, bin: rsyslogd(t), dir: t.TempDir()}
	r.out = filepath.Join(r.dir, "received.log")
	r.port = freePort(t)
	work := filepath.Join(r.dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	peers := ""
	if o.authMode == "x509/name" {
		peers = ` PermittedPeer=["writ-client"]`
	}
	sd := "$!rfc5424-sd!" + SDID + "!"
	conf := fmt.Sprintf(`global(
  maxMessageSize="2m"
  workDirectory=%q
  defaultNetstreamDriverCAFile=%q
  defaultNetstreamDriverCertFile=%q
  defaultNetstreamDriverKeyFile=%q)
module(load="imtcp" StreamDriver.Name=%q StreamDriver.Mode="1" StreamDriver.AuthMode=%q%s)
module(load="mmpstrucdata")
input(type="imtcp" address="127.0.0.1" port="%d")
template(name="writ" type="string"
  string="%%%sseq%%|%%%shash%%|%%%sprev%%|%%%sevent%%|%%%skey%%|%%%ssig%%|%%pri%%|%%hostname%%|%%app-name%%|%%procid%%|%%msgid%%|%%timereported:::date-rfc3339%%|%%msg%%\n")
if $app-name == %q then {
  action(type="mmpstrucdata")
  action(type="omfile" file=%q template="writ")
} else {
  action(type="omfile" file=%q)
}
`, work, p.caFile, p.serverCert, p.serverKey, o.driver, o.authMode, peers, r.port,
		sd, sd, sd, sd, sd, sd, recvAppName, r.out, filepath.Join(r.dir, "rsyslog-own.log"))
	r.conf = filepath.Join(r.dir, "rsyslog.conf")
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(r.bin, "-N1", "-f", r.conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 refuses the test configuration: %v\n%s", err, out)
	}
	r.start()
	t.Cleanup(func() { r.stop(syscall.SIGTERM) })
	return r
}

// freePort is a loopback port free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (r *rsyslog) addr() string { return net.JoinHostPort("localhost", strconv.Itoa(r.port)) }

// start runs rsyslogd in the foreground and waits for its port.
func (r *rsyslog) start() {
	r.t.Helper()
	r.starts++
	pid := filepath.Join(r.dir, "rsyslogd.pid")
	_ = os.Remove(pid)
	r.stderrOf = filepath.Join(r.dir, fmt.Sprintf("stderr-%d.log", r.starts))
	stderr, err := os.Create(r.stderrOf)
	if err != nil {
		r.t.Fatal(err)
	}
	defer stderr.Close()
	r.cmd = exec.Command(r.bin, "-n", "-f", r.conf, "-i", pid)
	r.cmd.Stdout, r.cmd.Stderr = stderr, stderr
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start rsyslogd: %v", err)
	}
	r.exited = make(chan struct{})
	cmd, exited := r.cmd, r.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(r.stderrOf)
			r.t.Fatalf("rsyslogd exited at start: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd does not listen on port %d: %v", r.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop signals rsyslogd and waits for it to exit.
func (r *rsyslog) stop(sig syscall.Signal) {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

// received is one message as rsyslog parsed it.
type received struct {
	seq                                       int64
	hash, prev, event, key, sig               string
	pri, hostname, appName, procID, msgID, ts string
	msg                                       []byte
	ok                                        bool // hash = SHA-256(prev || msg), as a SIEM checks
	line                                      string
}

// messages reads what rsyslog wrote so far.
func (r *rsyslog) messages() []received {
	r.t.Helper()
	f, err := os.Open(r.out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	var out []received
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		line := sc.Text()
		parts := strings.SplitN(line, "|", 13)
		if len(parts) != 13 {
			out = append(out, received{line: line})
			continue
		}
		m := received{hash: parts[1], prev: parts[2], event: parts[3], key: parts[4], sig: parts[5], pri: parts[6],
			hostname: parts[7], appName: parts[8], procID: parts[9], msgID: parts[10], ts: parts[11], msg: []byte(parts[12]), line: line}
		seq, serr := strconv.ParseInt(parts[0], 10, 64)
		m.seq = seq
		prev, perr := hex.DecodeString(m.prev)
		sum := sha256.Sum256(append(prev, m.msg...))
		m.ok = serr == nil && perr == nil && len(prev) == 32 && hex.EncodeToString(sum[:]) == m.hash
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// verified are the messages that check, by seq (the first copy).
func verified(ms []received) map[int64]received {
	out := map[int64]received{}
	for _, m := range ms {
		if _, dup := out[m.seq]; m.ok && !dup {
			out[m.seq] = m
		}
	}
	return out
}

// has reports whether every seq below n arrived verified.
func has(ms []received, n int64) bool {
	v := verified(ms)
	for s := range n {
		if _, ok := v[s]; !ok {
			return false
		}
	}
	return true
}

// checkStream holds the messages to what a SIEM checks: every verified
// message of seq s > 0 chains to the verified copy of s-1, copies of one
// seq are the same entry, seqs below n are all there.
func checkStream(t testing.TB, ms []received, n int64) {
	t.Helper()
	v := verified(ms)
	for s := range n {
		m, ok := v[s]
		if !ok {
			t.Fatalf("seq %d never arrived intact (%d messages)", s, len(ms))
		}
		if s > 0 && m.prev != v[s-1].hash {
			t.Fatalf("seq %d: prev %s, but seq %d has hash %s", s, m.prev, s-1, v[s-1].hash)
		}
	}
	for _, m := range ms {
		if m.ok && !bytes.Equal(m.msg, v[m.seq].msg) {
			t.Fatalf("two different copies of seq %d", m.seq)
		}
	}
}
