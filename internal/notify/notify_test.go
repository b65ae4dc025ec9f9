package notify

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/notify/mailtest"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

const secret = "notify-s3cret-value"

// receiver is a webhook receiver: writ's signed webhook (checks the
// signature) or a Slack-compatible one (text only).
type receiver struct {
	slack    bool
	mu       sync.Mutex
	got      []Message
	failures atomic.Int64 // answer 503 this many more times
	refuse   atomic.Bool  // answer 400 (for good)
	badSigs  atomic.Int64
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !rc.slack {
		ts, _ := strconv.ParseInt(r.Header.Get("X-Writ-Timestamp"), 10, 64)
		if !hmac.Equal([]byte(r.Header.Get("X-Writ-Signature-256")), []byte(Sign(secret, ts, body))) {
			rc.badSigs.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
	}
	if rc.failures.Load() > 0 {
		rc.failures.Add(-1)
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if rc.refuse.Load() {
		http.Error(w, "no", http.StatusBadRequest)
		return
	}
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, m)
	rc.mu.Unlock()
}

func (rc *receiver) messages() []Message {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Message(nil), rc.got...)
}

// tlsReceiver serves rc over TLS and returns its URL and a CA file that
// verifies it.
func tlsReceiver(t *testing.T, rc *receiver) (string, string) {
	t.Helper()
	srv := httptest.NewTLSServer(rc)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, ca
}

func setup(t *testing.T) (*store.Store, *audit.Log) {
	t.Helper()
	st := dbtest.Store(t)
	k, _ := keys.Generate(keys.Ed25519)
	sk, err := audit.NewSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(audit.LogOptions{Store: st, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	return st, l
}

func entry(event audit.Event, name, reason string) audit.Entry {
	payload := map[string]any{"reason": reason, "action": "block_ip", "environment": "production",
		"operation": "apply", "targets": []string{"203.0.113.7"}, "execution": 12}
	// The reconciler's reason codes (the notifier reads the code, never
	// the text).
	switch {
	case strings.HasPrefix(reason, "awaiting approval"):
		payload["reason_code"] = "awaiting_approval"
		payload["decision"] = map[string]any{"outcome": "require_approval", "approvals_required": 1, "approver_roles": []string{"approver"}}
	case strings.HasPrefix(reason, "cannot plan"):
		payload["reason_code"] = "no_plan"
	}
	return audit.Entry{Actor: audit.SystemActor, Event: event, Success: event != "execution.failed",
		Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: name, Digest: strings.Repeat("a", 64)},
		Payload: audit.MustJSON(payload)}
}

func fast(o Options) Options {
	o.RetryBase, o.RetryMax, o.PollInterval, o.Timeout = time.Millisecond, 20*time.Millisecond, 10*time.Millisecond, 10*time.Second
	return o
}

func channelNamed(t *testing.T, n *Notifier, name string) *channel {
	t.Helper()
	for _, c := range n.channels {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no channel %s", name)
	return nil
}

// The single-webhook shorthand of earlier versions still works: its
// channel "default" starts where the old cursor stood, retries a busy
// receiver, resumes after a restart without resending, and gives up only
// a message the receiver refuses for good.
func TestShorthandWebhookFromTheAuditLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, log := setup(t)
	rc := &receiver{}
	url, ca := tlsReceiver(t, rc)
	_, err := log.Append(ctx, st,
		entry("execution.completed", "before-upgrade", ""), // the old notifier sent it
		entry("execution.waiting", "block-a", "awaiting approval: not approved: 0 of 1 approval"),
		entry("execution.waiting", "block-b", "cannot plan yet: no backend"), // not about approvals: silent
		entry("playbook.merged", "block-a", ""),                              // not a notified event
		entry("execution.completed", "block-a", "applied: 1 changed, 0 unchanged"),
		entry("execution.failed", "block-c", "failed: timeout"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetNotificationCursor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Notifications{URL: url + "/hooks/T000/B000/XXXX", SecretEnv: "HOOK_SECRET", CAFile: ca}
	chans, routes := cfg.Normalized(DefaultEvents)
	getenv := func(k string) string {
		if k == "HOOK_SECRET" {
			return secret
		}
		return ""
	}
	opts := fast(Options{Store: st, Channels: chans, Routes: routes, Getenv: getenv})
	rc.failures.Store(2) // the receiver is down for two attempts: retried
	n, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.once(ctx, channelNamed(t, n, "default")); err != nil {
		t.Fatal(err)
	}
	got := rc.messages()
	if len(got) != 3 || rc.badSigs.Load() != 0 {
		t.Fatalf("%d messages (%d bad signatures): %+v", len(got), rc.badSigs.Load(), got)
	}
	if !strings.Contains(got[0].Text, "Approval needed for block-a") || got[1].Writ.Event != "execution.completed" ||
		!strings.Contains(got[2].Text, "block-c failed") || !strings.Contains(got[2].Writ.Next, "`writ retry 12`") {
		t.Fatalf("messages %+v", got)
	}
	// A restart resumes from the cursor: nothing is sent twice.
	n2, _ := New(opts)
	if err := n2.once(ctx, channelNamed(t, n2, "default")); err != nil {
		t.Fatal(err)
	}
	if len(rc.messages()) != 3 {
		t.Fatalf("resent after restart: %d", len(rc.messages()))
	}
	// A receiver that refuses a message for good (400) is given up on
	// after the attempts: the cursor moves, later notifications go out.
	rc.refuse.Store(true)
	if _, err := log.Append(ctx, st, entry("execution.completed", "block-d", "")); err != nil {
		t.Fatal(err)
	}
	if err := n2.once(ctx, channelNamed(t, n2, "default")); err != nil {
		t.Fatal(err)
	}
	rc.refuse.Store(false)
	if _, err := log.Append(ctx, st, entry("execution.completed", "block-e", "")); err != nil {
		t.Fatal(err)
	}
	if err := n2.once(ctx, channelNamed(t, n2, "default")); err != nil {
		t.Fatal(err)
	}
	last := rc.messages()
	if len(last) != 4 || last[3].Writ.Subject.Name != "block-e" {
		t.Fatalf("after a refused notification: %+v", last)
	}
}

func TestOptionsAndRedaction(t *testing.T) {
	t.Parallel()
	st := &store.Store{}
	for _, u := range []string{"ftp://x", "http://example.com/hook", "not a url"} {
		if _, err := New(Options{Store: st, Channels: []config.NotificationChannel{{Name: "a", Webhook: &config.WebhookChannel{URL: u}}}}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	if _, err := New(Options{Store: st, Channels: []config.NotificationChannel{{Name: "a", Webhook: &config.WebhookChannel{URL: "http://127.0.0.1:1/hook", AllowInsecureHTTP: true}}}}); err != nil {
		t.Fatal(err)
	}
	// Plaintext SMTP only on loopback; a Slack URL from an unset variable
	// is an error that does not print a value.
	if _, err := New(Options{Store: st, Channels: []config.NotificationChannel{{Name: "m", Email: &config.EmailChannel{Address: "mail.example.com:25", From: "writ@example.com", AllowPlaintext: true}}}}); err == nil {
		t.Error("plaintext SMTP to another host accepted")
	}
	if _, err := New(Options{Store: st, Channels: []config.NotificationChannel{{Name: "s", Slack: &config.SlackChannel{URLEnv: "SLACK_URL"}}}}); err == nil || !strings.Contains(err.Error(), "SLACK_URL") {
		t.Errorf("unset slack URL: %v", err)
	}
	// A Slack-style URL carries its credential in the path: errors omit it.
	p, err := newPoster("http://127.0.0.1:1/services/T0/B0/secretpart", "", true, "", true, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = p.post(context.Background(), []byte("{}"), 1)
	if err == nil || strings.Contains(err.Error(), "secretpart") {
		t.Fatalf("error %v", err)
	}
}

// keyring is an approvers file: bob and carol approve, alice is an
// analyst, dave an admin, erin an executor; zoe approves but has no email
// and yann is disabled.
func keyring(t *testing.T) *approval.Keyring {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	for _, p := range []struct{ id, roles, extra string }{
		{"alice", "analyst", "    email: alice@soc.example\n"}, {"bob", "approver", "    email: bob@soc.example\n"},
		{"carol", "approver, admin", "    email: carol@soc.example\n"}, {"dave", "admin", "    email: dave@soc.example\n"},
		{"erin", "executor", "    email: erin@soc.example\n"}, {"zoe", "approver", ""},
		{"yann", "approver", "    email: yann@soc.example\n    disabled: true\n"},
	} {
		k, _ := keys.Generate(keys.Ed25519)
		pub, _ := keys.MarshalPublic(k.Public())
		fmt.Fprintf(&b, "  - id: %s\n%s    roles: [%s]\n    keys:\n      - |\n", p.id, p.extra, p.roles)
		for _, l := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
			b.WriteString("        " + l + "\n")
		}
	}
	kr, problems := approval.ParseKeyring(".writ/approvers.yaml", []byte(b.String()))
	if problems != nil {
		t.Fatalf("approvers file: %v\n%s", problems, b.String())
	}
	return kr
}

// Email over a real SMTP server on loopback: STARTTLS verified with a
// test CA, AUTH PLAIN, and routing by the approvers file in force —
// waiting goes to the holders of the roles its decision asks for (never
// the analyst), a hold to the admins, a denial to the address given; the
// Slack channel gets every routed event; the messages say what to do
// next and carry no control or bidi characters from the repository.
func TestEmailRoutingToPeopleAndRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, log := setup(t)
	mail := mailtest.Start(t, mailtest.Options{Users: map[string]string{"writ": "mail-pw"}})
	slack := &receiver{slack: true}
	slackURL, slackCA := tlsReceiver(t, slack)
	kr := keyring(t)
	getenv := func(k string) string {
		return map[string]string{"SMTP_PASSWORD": "mail-pw", "SLACK_URL": slackURL + "/services/T/B/secret"}[k]
	}
	channels := []config.NotificationChannel{
		{Name: "mail", Email: &config.EmailChannel{Address: mail.Addr, From: "writ@soc.example", Username: "writ", PasswordEnv: "SMTP_PASSWORD", CAFile: mail.CAFile}},
		{Name: "chat", Slack: &config.SlackChannel{URLEnv: "SLACK_URL", CAFile: slackCA}},
	}
	routes := []config.NotificationRoute{
		{Events: []string{"waiting", "hold", "failed"}, Channels: []string{"mail"}, To: &config.Recipients{MustAct: true}},
		{Events: []string{"denied", "invalid_merge"}, Channels: []string{"mail"}, To: &config.Recipients{Addresses: []string{"soc-leads@soc.example"}, People: []string{"alice"}}},
		{Events: []string{"waiting", "rejected", "denied", "invalid_merge", "failed", "drift", "hold", "breakglass", "override"}, Channels: []string{"chat"}},
	}
	waiting := entry("execution.waiting", "block-\u202eevil", "awaiting approval: not approved: 0 of 1 approval")
	denied := entry("execution.denied", "block-lo", "denied: 127.0.0.1 is reserved")
	held := audit.Entry{Actor: audit.SystemActor, Event: audit.EventPolicyChangeHeld, Subject: audit.Subject{Kind: audit.SubjectConfig, Name: "policies"},
		Payload: audit.MustJSON(map[string]any{"commit": strings.Repeat("d", 40), "hold": 7})}
	invalid := audit.Entry{Actor: audit.SystemActor, Event: audit.EventPlaybookInvalid, Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: "playbooks/bad.yaml"},
		Payload: audit.MustJSON(map[string]any{"commit": strings.Repeat("e", 40), "path": "playbooks/bad.yaml", "problems": "playbooks/bad.yaml:3:7: unknown field \"spek\""})}
	drift := audit.Entry{Actor: audit.SystemActor, Event: audit.EventDriftDetected, Subject: audit.Subject{Kind: audit.SubjectEnvironment, Name: "production"},
		Payload: audit.MustJSON(map[string]any{"environment": "production", "action": "block_ip", "backend": "edge-nft", "mode": "report", "counts": map[string]int{"missing": 1}})}
	glass := audit.Entry{Actor: audit.Actor{ID: "bob", Role: "approver"}, Event: audit.EventBreakGlassInvoked, Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: "block-now"},
		Payload: audit.MustJSON(map[string]any{"execution": 30, "operation": "apply", "action": "block_ip", "environment": "production", "signer": "bob",
			"deadline": "2026-12-06T18:00:00Z", "decision": map[string]any{"approver_roles": []string{"approver"}}})}
	adoptedPlain := audit.Entry{Actor: audit.SystemActor, Event: audit.EventPolicyChangeAdopted, Payload: audit.MustJSON(map[string]any{"commit": strings.Repeat("f", 40), "how": "2 admins"})}
	adoptedRecovery := audit.Entry{Actor: audit.SystemActor, Event: audit.EventPolicyChangeAdopted, Payload: audit.MustJSON(map[string]any{"commit": strings.Repeat("f", 40), "how": "recovery keys", "recovery": true})}
	if _, err := log.Append(ctx, st, waiting, denied, held, invalid, drift, glass, adoptedPlain, adoptedRecovery); err != nil {
		t.Fatal(err)
	}
	n, err := New(fast(Options{Store: st, Channels: channels, Routes: routes, Getenv: getenv, ConsoleURL: "https://writ.soc.example/",
		Keyring: func(context.Context) (*approval.Keyring, error) { return kr, nil }}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.channels {
		if err := n.once(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	subjects := func(addr string) []string {
		var out []string
		for _, m := range mail.To(addr) {
			out = append(out, m.Subject)
		}
		return out
	}
	// Waiting: the approvers (bob, carol), not the analyst, not zoe (no
	// email) nor yann (disabled). Hold: the admins (carol, dave).
	if got := subjects("bob@soc.example"); len(got) != 1 || !strings.Contains(got[0], "Approval needed for block-") {
		t.Fatalf("bob got %q", got)
	}
	if got := subjects("carol@soc.example"); len(got) != 2 {
		t.Fatalf("carol (approver and admin) got %q", got)
	}
	if got := subjects("dave@soc.example"); len(got) != 1 || !strings.Contains(got[0], "lacks its admin approvals") {
		t.Fatalf("dave (admin) got %q", got)
	}
	if got := subjects("alice@soc.example"); len(got) != 2 || !strings.Contains(got[0], "Policy denied block-lo") || !strings.Contains(got[1], "not a valid playbook") {
		t.Fatalf("alice (analyst) got %q: she gets what her route names, never waiting", got)
	}
	if got := subjects("yann@soc.example"); len(got) != 0 {
		t.Fatalf("disabled yann got %q", got)
	}
	if got := subjects("soc-leads@soc.example"); len(got) != 2 {
		t.Fatalf("soc-leads got %q", got)
	}
	// Every mail came over STARTTLS after AUTH; the waiting one says how to
	// sign, with the console link, and shows the bidi override escaped.
	msgs := mail.Messages()
	if len(msgs) != 4 { // waiting, denied, held, invalid
		t.Fatalf("%d mails", len(msgs))
	}
	for _, m := range msgs {
		if !m.TLS || m.User != "writ" || m.From != "writ@soc.example" || m.Header.Get("Auto-Submitted") != "auto-generated" {
			t.Fatalf("mail %q: TLS %v user %q from %q", m.Subject, m.TLS, m.User, m.From)
		}
	}
	w := mail.To("bob@soc.example")[0]
	if !strings.Contains(w.Body, "What to do next:\nAn approver (roles: approver) review and sign it: `writ approve op-12` or in the console: https://writ.soc.example/pending/op-12") ||
		strings.ContainsRune(w.Body+w.Subject, '\u202e') || !strings.Contains(w.Subject, `block-\u202eevil`) {
		t.Fatalf("waiting mail: %q\n%s", w.Subject, w.Body)
	}
	inv := mail.To("alice@soc.example")[1]
	if !strings.Contains(inv.Body, `playbooks/bad.yaml:3:7: unknown field "spek"`) || !strings.Contains(inv.Body, "Fix or delete it in a new commit") {
		t.Fatalf("invalid mail:\n%s", inv.Body)
	}
	// Slack got every routed event but the plain adoption (override takes
	// only a recovery adoption).
	var events []string
	for _, m := range slack.messages() {
		events = append(events, strings.SplitN(m.Text, " ", 2)[0])
	}
	got := slack.messages()
	if len(got) != 7 || !strings.Contains(got[4].Text, "Drift on block_ip in production (edge-nft)") ||
		!strings.Contains(got[5].Text, "sign its normal quorum before 2026-12-06T18:00:00Z or it is reverted: `writ approve op-30`") ||
		!strings.Contains(got[6].Text, "RECOVERY keys") {
		t.Fatalf("slack: %d messages %v\n%+v", len(got), events, got)
	}
	if got[0].Writ.Event != "" {
		t.Fatalf("a Slack message carries only text: %+v", got[0])
	}
}

// A mail server that is down delays only its own channel: the Slack
// channel keeps delivering; once the server is back, every mail arrives,
// each once.
func TestEmailServerDownThenBack(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, log := setup(t)
	mail := mailtest.Start(t, mailtest.Options{})
	mail.Stop()
	slack := &receiver{slack: true}
	slackURL, slackCA := tlsReceiver(t, slack)
	n, err := New(fast(Options{Store: st, Getenv: func(string) string { return slackURL },
		Channels: []config.NotificationChannel{
			{Name: "mail", Email: &config.EmailChannel{Address: mail.Addr, From: "writ@soc.example", CAFile: mail.CAFile}},
			{Name: "chat", Slack: &config.SlackChannel{URLEnv: "SLACK_URL", CAFile: slackCA}},
		},
		Routes: []config.NotificationRoute{
			{Events: []string{"failed"}, Channels: []string{"mail"}, To: &config.Recipients{Addresses: []string{"oncall@soc.example"}}},
			{Events: []string{"failed"}, Channels: []string{"chat"}},
		}}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	for i := range 3 {
		if _, err := log.Append(ctx, st, entry("execution.failed", fmt.Sprintf("block-%d", i), "failed: timeout")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the Slack channel's 3 messages while mail is down", func() bool { return len(slack.messages()) == 3 })
	if len(mail.Messages()) != 0 {
		t.Fatal("mail while down")
	}
	if c, _ := st.ChannelCursor(ctx, "mail"); c != 0 {
		t.Fatalf("the mail cursor moved past an undelivered message: %d", c)
	}
	mail.Restart()
	waitFor(t, "the 3 mails after the server came back", func() bool { return len(mail.Messages()) >= 3 })
	cancel()
	<-done
	var subjects []string
	for _, m := range mail.Messages() {
		subjects = append(subjects, m.Subject)
	}
	if !slices.Equal(subjects, []string{"[writ] block-0 failed: apply block_ip on production (203.0.113.7)",
		"[writ] block-1 failed: apply block_ip on production (203.0.113.7)", "[writ] block-2 failed: apply block_ip on production (203.0.113.7)"}) {
		t.Fatalf("mails %q", subjects)
	}
	if !strings.Contains(mail.Messages()[0].Body, "`writ retry 12`") {
		t.Fatalf("body: %s", mail.Messages()[0].Body)
	}
}

// STARTTLS is required: a server that does not offer it gets nothing
// (retried, not sent in the clear), unless plaintext was allowed for a
// loopback relay; a certificate from another CA is refused.
func TestEmailRequiresVerifiedSTARTTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plainSrv := mailtest.Start(t, mailtest.Options{NoTLS: true})
	tlsSrv := mailtest.Start(t, mailtest.Options{})
	other := mailtest.Start(t, mailtest.Options{}) // its CA is not tlsSrv's
	m := &outgoing{entry: entry("execution.failed", "x", "boom"), channel: "mail", to: []string{"a@soc.example", "b@refused.example"}}
	m.desc = Describe(m.entry, "", nil)
	send := func(c config.EmailChannel) error {
		mailer, err := newEmail(&c, fast(Options{}))
		if err != nil {
			t.Fatal(err)
		}
		return mailer.send(ctx, m)
	}
	if err := send(config.EmailChannel{Address: plainSrv.Addr, From: "writ@soc.example"}); err == nil || !strings.Contains(err.Error(), "offers no STARTTLS") {
		t.Fatalf("no STARTTLS: %v", err)
	}
	if err := send(config.EmailChannel{Address: tlsSrv.Addr, From: "writ@soc.example", CAFile: other.CAFile}); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	if len(plainSrv.Messages())+len(tlsSrv.Messages()) != 0 {
		t.Fatal("sent anyway")
	}
	if err := send(config.EmailChannel{Address: plainSrv.Addr, From: "writ@soc.example", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	// A refused recipient does not stop the others.
	if err := send(config.EmailChannel{Address: tlsSrv.Addr, From: "writ@soc.example", CAFile: tlsSrv.CAFile}); err != nil {
		t.Fatal(err)
	}
	if got := tlsSrv.Messages(); len(got) != 1 || !slices.Equal(got[0].To, []string{"a@soc.example"}) || !got[0].TLS {
		t.Fatalf("got %+v", got)
	}
	// Wrong AUTH password: refused for good (5xx), never retried forever.
	authSrv := mailtest.Start(t, mailtest.Options{Users: map[string]string{"writ": "right"}})
	mailer, err := newEmail(&config.EmailChannel{Address: authSrv.Addr, From: "writ@soc.example", Username: "writ", PasswordEnv: "PW", CAFile: authSrv.CAFile},
		fast(Options{Getenv: func(string) string { return "wrong" }}))
	if err != nil {
		t.Fatal(err)
	}
	var perm *permanentError
	if err := mailer.send(ctx, m); err == nil || !errors.As(err, &perm) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("bad password: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for t0 := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(t0) > time.Minute {
			t.Fatalf("%s did not happen within a minute", what)
		}
	}
}

// A refused commit and a hold on malformed policies notify, and what the
// pusher wrote (a file name) cannot become Slack markup.
func TestTextOfMalformedContent(t *testing.T) {
	t.Parallel()
	if !slices.Contains(DefaultEvents, "commit.refused") {
		t.Fatal("commit.refused is not notified by default")
	}
	refused := Text(audit.Entry{Event: "commit.refused", Payload: audit.MustJSON(map[string]any{
		"commit": strings.Repeat("c", 40), "problem": "unsafe_name", "path": "playbooks/<!channel>", "reason": `".." names a directory itself or its parent`})})
	if !strings.Contains(refused, "refused commit cccccccccccc") || !strings.Contains(refused, "unsafe_name") ||
		strings.Contains(refused, "<!channel>") || !strings.Contains(refused, "&lt;!channel&gt;") {
		t.Fatalf("refusal: %s", refused)
	}
	held := Text(audit.Entry{Event: "policy.change_held", Payload: audit.MustJSON(map[string]any{
		"commit": strings.Repeat("d", 40), "malformed": map[string]string{"problem": "duplicate_name", "path": "policies/a.rego"}})})
	if !strings.Contains(held, "policies/ or .writ/ at dddddddddddd is malformed (duplicate_name at \"policies/a.rego\")") {
		t.Fatalf("hold: %s", held)
	}
	plain := Text(audit.Entry{Event: "policy.change_held", Payload: audit.MustJSON(map[string]any{"commit": strings.Repeat("d", 40), "hold": 7})})
	if !strings.Contains(plain, "lacks its admin approvals") || !strings.Contains(plain, "`writ approve trust-7`") {
		t.Fatalf("plain hold: %s", plain)
	}
	// Approvers are told the exact command that signs.
	waiting := Text(audit.Entry{Event: "execution.waiting", Subject: audit.Subject{Name: "block-a"}, Payload: audit.MustJSON(map[string]any{
		"execution": 12, "operation": "revert", "action": "block_ip", "environment": "production", "reason_code": "awaiting_approval",
		"reason": "not approved: 0 of 1 approval."})})
	if !strings.Contains(waiting, "Approval needed for block-a: revert block_ip on production") || !strings.Contains(waiting, "`writ approve op-12`") {
		t.Fatalf("waiting: %s", waiting)
	}
	// An executor's retry of a partly applied playbook says what is left.
	if !slices.Contains(DefaultEvents, "execution.retry_requested") {
		t.Fatal("execution.retry_requested is not notified by default")
	}
	retried := Text(audit.Entry{Event: "execution.retry_requested", Actor: audit.Actor{ID: "erin", Role: "executor"}, Subject: audit.Subject{Name: "isolate-fin"},
		Payload: audit.MustJSON(map[string]any{"execution": 9, "operation": "apply", "action": "isolate_host", "environment": "production",
			"targets": []string{"fin-ws-12", "fin-ws-13"}, "applied": []string{"fin-ws-12"}, "remaining": []string{"fin-ws-13"}})})
	if !strings.Contains(retried, "erin asked to retry isolate-fin: apply isolate_host on production (fin-ws-12, fin-ws-13); only fin-ws-13 (the others were applied)") {
		t.Fatalf("retry: %s", retried)
	}
	// Control characters from the repository never reach a message.
	rejected := Text(audit.Entry{Event: "execution.rejected", Subject: audit.Subject{Name: "a\x1b[31mb"}, Payload: audit.MustJSON(map[string]any{"reason": "no\u200b"})})
	if strings.ContainsAny(rejected, "\x1b\u200b") || !strings.Contains(rejected, `a\u001b[31mb was rejected`) {
		t.Fatalf("rejected: %q", rejected)
	}
}
