package siem

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// SyslogOptions configures a syslog destination: RFC 5424 messages over
// TLS with RFC 5425 octet-counting framing.
type SyslogOptions struct {
	Name string
	// Address is the receiver's host:port (6514 is the registered port).
	Address string
	// CAFile verifies the receiver's certificate (default: the system
	// roots); ServerName is the name it must carry (default: Address's
	// host).
	CAFile     string
	ServerName string
	// CertFile and KeyFile are a client certificate, for receivers that
	// authenticate senders. Read at each connection (renewals apply).
	CertFile, KeyFile string
	// AppName (default "writ") and Hostname (default os.Hostname) fill the
	// header.
	AppName  string
	Hostname string
	// DialTimeout (default 10s) bounds connecting and the handshake,
	// WriteTimeout (default 30s) each batch's writes, AckTimeout (default
	// 30s) the wait for the receiver to close a session after writ closed
	// its side.
	DialTimeout, WriteTimeout, AckTimeout time.Duration
	// A session (one connection) ends, and what it carried is
	// acknowledged, after SessionEntries entries (default 10,000) or
	// SessionDuration (default 5s), whichever comes first, or when the log
	// is quiet (Options.IdleSync).
	SessionEntries  int
	SessionDuration time.Duration
	Logger          *slog.Logger
}

func (o *SyslogOptions) setDefaults() {
	if o.AppName == "" {
		o.AppName = "writ"
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 30 * time.Second
	}
	if o.SessionEntries <= 0 {
		o.SessionEntries = 10000
	}
	if o.SessionDuration <= 0 {
		o.SessionDuration = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Syslog sends entries to a syslog receiver over TLS.
//
// Syslog has no acknowledgement of its own, and a successful write only
// means the bytes reached a local buffer. So entries are sent in sessions:
// one connection carries many batches, then writ closes its side (TLS
// close_notify and TCP FIN) and waits for the receiver to close the
// connection in turn, which it does once it has read everything up to
// writ's close. Only that end of the stream acknowledges the session's
// entries; a connection that fails before (a reset, a timeout) has its
// entries sent again on the next one. A receiver that closes without
// reading everything (it refused writ, it was stopped) makes its kernel
// answer with a reset, not an end of stream, and a receiver that closes
// before writ does is no acknowledgement either.
type Syslog struct {
	opts       SyslogOptions
	hdr        header
	serverName string
	sess       *session
	buf        []byte
}

// session is one connection to the receiver.
type session struct {
	conn    *tls.Conn
	tcp     *net.TCPConn
	bw      *bufio.Writer
	done    chan struct{} // closed when the reader stopped
	readErr error         // why it stopped; read after done
	started time.Time
	entries int
}

// NewSyslog checks the options and the TLS files.
func NewSyslog(opts SyslogOptions) (*Syslog, error) {
	opts.setDefaults()
	if !validName(opts.Name) {
		return nil, fmt.Errorf("siem: destination name %q: lowercase letters, digits and '-'", opts.Name)
	}
	host, _, err := net.SplitHostPort(opts.Address)
	if err != nil || host == "" {
		return nil, fmt.Errorf("siem %s: address %q is not host:port", opts.Name, opts.Address)
	}
	if !validHeaderField(opts.AppName, maxAppName) {
		return nil, fmt.Errorf("siem %s: app name %q: 1 to %d printable ASCII characters", opts.Name, opts.AppName, maxAppName)
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, fmt.Errorf("siem %s: a client certificate needs certFile and keyFile", opts.Name)
	}
	s := &Syslog{opts: opts, serverName: opts.ServerName,
		hdr: header{hostname: headerField(opts.Hostname, maxHostname), appName: opts.AppName, procID: "-", msgID: "audit"}}
	if s.serverName == "" {
		s.serverName = host
	}
	if _, err := s.tlsConfig(); err != nil {
		return nil, err
	}
	return s, nil
}

// Name is the destination's name.
func (s *Syslog) Name() string { return s.opts.Name }

func (s *Syslog) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.serverName}
	if s.opts.CAFile != "" {
		pem, err := os.ReadFile(s.opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("siem %s: CA file: %w", s.opts.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("siem %s: CA file %s holds no certificate", s.opts.Name, s.opts.CAFile)
		}
		cfg.RootCAs = pool
	}
	if s.opts.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.opts.CertFile, s.opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("siem %s: client certificate: %w", s.opts.Name, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// dial opens a session.
func (s *Syslog) dial(ctx context.Context) (*session, error) {
	cfg, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", s.opts.Address)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.opts.Address, err)
	}
	tcp, ok := raw.(*net.TCPConn)
	if !ok {
		raw.Close()
		return nil, fmt.Errorf("connect to %s: not a TCP connection", s.opts.Address)
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", s.opts.Address, err)
	}
	ss := &session{conn: conn, tcp: tcp, bw: bufio.NewWriterSize(conn, 64<<10), done: make(chan struct{}), started: time.Now()}
	go ss.read()
	s.opts.Logger.DebugContext(ctx, "syslog session opened", slog.String("siem", s.opts.Name), slog.String("address", s.opts.Address))
	return ss, nil
}

// read waits for the receiver's end of the stream (it sends nothing
// else).
func (ss *session) read() {
	buf := make([]byte, 512)
	for {
		if _, err := ss.conn.Read(buf); err != nil {
			ss.readErr = err
			close(ss.done)
			return
		}
	}
}

// closedEarly reports a receiver that ended the session before writ did.
func (ss *session) closedEarly() error {
	select {
	case <-ss.done:
		if errors.Is(ss.readErr, io.EOF) {
			return errors.New("the receiver closed the connection")
		}
		return fmt.Errorf("connection: %w", ss.readErr)
	default:
		return nil
	}
}

// Send writes a batch on the current session (opening one), and ends the
// session when it is long enough.
func (s *Syslog) Send(ctx context.Context, batch []store.AuditEntry) (bool, error) {
	if s.sess == nil {
		ss, err := s.dial(ctx)
		if err != nil {
			return false, err
		}
		s.sess = ss
	}
	ss := s.sess
	if err := ss.closedEarly(); err != nil {
		return false, err
	}
	if err := ss.conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); err != nil {
		return false, err
	}
	for _, e := range batch {
		s.buf = appendEntryMessage(s.buf[:0], s.hdr, e)
		var n [20]byte
		if _, err := ss.bw.Write(appendFrameLen(n[:0], len(s.buf))); err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
		if _, err := ss.bw.Write(s.buf); err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
	}
	if err := ss.bw.Flush(); err != nil {
		return false, fmt.Errorf("write: %w", err)
	}
	ss.entries += len(batch)
	if cap(s.buf) > 1<<20 {
		s.buf = nil // one large entry: do not keep its buffer
	}
	if ss.entries >= s.opts.SessionEntries || time.Since(ss.started) >= s.opts.SessionDuration {
		if err := s.Sync(ctx); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// Sync ends the session: writ closes its side and waits for the receiver
// to close the connection after reading everything.
func (s *Syslog) Sync(ctx context.Context) error {
	ss := s.sess
	if ss == nil {
		return nil
	}
	s.sess = nil
	defer ss.conn.Close()
	if err := ss.closedEarly(); err != nil {
		return err
	}
	if err := ss.conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); err != nil {
		return err
	}
	if err := ss.bw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := ss.conn.CloseWrite(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := ss.tcp.CloseWrite(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	t := time.NewTimer(s.opts.AckTimeout)
	defer t.Stop()
	select {
	case <-ss.done:
	case <-t.C:
		return fmt.Errorf("the receiver did not close the connection within %s of writ's close", s.opts.AckTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	if !errors.Is(ss.readErr, io.EOF) {
		return fmt.Errorf("connection: %w", ss.readErr)
	}
	s.opts.Logger.DebugContext(ctx, "syslog session acknowledged", slog.String("siem", s.opts.Name), slog.Int("entries", ss.entries))
	return nil
}

// Reset drops the session without acknowledgement.
func (s *Syslog) Reset() {
	if s.sess != nil {
		s.sess.conn.Close()
		s.sess = nil
	}
}
