package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/config"
)

// mailer sends email over SMTP with the standard library's net/smtp: the
// protocol writ needs (EHLO, STARTTLS, AUTH PLAIN, one message to a few
// recipients) is what it implements, maintained with Go, and it adds no
// dependency. STARTTLS is required unless allowPlaintext, which the
// configuration allows only for a server on loopback; net/smtp's PLAIN
// auth itself refuses to send a password unencrypted to another host.
type mailer struct {
	addr     string
	host     string
	from     *mail.Address
	username string
	password string
	tls      *tls.Config
	plain    bool
	timeout  time.Duration
}

func newEmail(c *config.EmailChannel, opts Options) (*mailer, error) {
	host, _, err := net.SplitHostPort(c.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", c.Address, err)
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("from %q: %w", c.From, err)
	}
	if c.AllowPlaintext && !config.Loopback(host) {
		return nil, fmt.Errorf("allowPlaintext is only for a server on loopback, not %q", host)
	}
	pw, err := config.ResolveSecret(opts.Getenv, c.PasswordEnv, c.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("password: %w", err)
	}
	serverName := c.ServerName
	if serverName == "" {
		serverName = host
	}
	tlsCfg, err := tlsConfig(c.CAFile, serverName)
	if err != nil {
		return nil, err
	}
	return &mailer{addr: c.Address, host: host, from: from, username: c.Username, password: pw.Value(), tls: tlsCfg,
		plain: c.AllowPlaintext, timeout: opts.Timeout}, nil
}

func (m *mailer) send(ctx context.Context, o *outgoing) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return classify("greeting", err)
	}
	defer c.Close()
	if err := c.Hello("writ.localhost"); err != nil {
		return classify("EHLO", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(m.tls); err != nil {
			return fmt.Errorf("smtp: STARTTLS: %w", err)
		}
	} else if !m.plain {
		return fmt.Errorf("smtp: %s offers no STARTTLS; writ sends mail only encrypted", m.addr)
	}
	if m.username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.username, m.password, m.host)); err != nil {
			return classify("AUTH", err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return classify("MAIL FROM", err)
	}
	var accepted []string
	var refused error
	for _, to := range o.to {
		if err := c.Rcpt(to); err != nil {
			var te *textproto.Error
			if errors.As(err, &te) && te.Code >= 500 {
				refused = errors.Join(refused, fmt.Errorf("%s: %w", to, err))
				continue // refused for good: the others still get it
			}
			return classify("RCPT TO", err)
		}
		accepted = append(accepted, to)
	}
	if len(accepted) == 0 {
		return permanent(fmt.Errorf("smtp: every recipient refused: %w", refused))
	}
	w, err := c.Data()
	if err != nil {
		return classify("DATA", err)
	}
	if _, err := w.Write(m.message(o, accepted)); err != nil {
		return fmt.Errorf("smtp: write message: %w", err)
	}
	if err := w.Close(); err != nil {
		return classify("end of DATA", err)
	}
	_ = c.Quit()
	return nil
}

// classify marks an SMTP 5xx reply permanent; everything else (4xx, a
// dropped connection) is retried.
func classify(step string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanent(fmt.Errorf("smtp: %s: %w", step, err))
	}
	return fmt.Errorf("smtp: %s: %w", step, err)
}

// message is the RFC 5322 message: a subject saying what happened, a
// plain-text body with what to do next, quoted-printable. Its Message-ID
// is the same for every attempt at the same entry on the same channel, so
// a receiver can drop a copy delivery at least once may make.
func (m *mailer) message(o *outgoing, to []string) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", m.from.String())
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", oneLine("[writ] "+o.desc.Summary)))
	h("Date", time.Now().UTC().Format(time.RFC1123Z))
	sum := sha256.Sum256([]byte(o.channel))
	h("Message-ID", fmt.Sprintf("<writ.%d.%s@%s>", o.entry.Seq, hex.EncodeToString(sum[:6]), domainOf(m.from.Address)))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	h("X-Writ-Event", string(o.entry.Event))
	h("X-Writ-Seq", fmt.Sprint(o.entry.Seq))
	b.WriteString("\r\n")
	body := plainText(o.desc) + fmt.Sprintf("\n-- \nwrit audit entry %d (%s) at %s\n", o.entry.Seq, o.entry.Event, o.entry.Time.UTC().Format(time.RFC3339))
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return "writ.invalid"
}
