package reconcile

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/notify"
	"github.com/writ-sec/writ/internal/notify/mailtest"
)

// signedReceiver is writ's signed webhook at a receiver that checks every
// signature.
type signedReceiver struct {
	secret  string
	mu      sync.Mutex
	got     []notify.Message
	badSigs int
}

func (rc *signedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, _ := strconv.ParseInt(r.Header.Get("X-Writ-Timestamp"), 10, 64)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !hmac.Equal([]byte(r.Header.Get("X-Writ-Signature-256")), []byte(notify.Sign(rc.secret, ts, body))) {
		rc.badSigs++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m notify.Message
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.got = append(rc.got, m)
}

func (rc *signedReceiver) events() map[string][]notify.Message {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]notify.Message{}
	for _, m := range rc.got {
		out[m.Writ.Event] = append(out[m.Writ.Event], m)
	}
	return out
}

// Real reconcile passes over a real repository produce an operation
// waiting for approvals, a denial, a rejection and an invalid merge; the
// notifier, reading the audit log they wrote, mails the approvers in force
// (never the analyst) what to sign and how, mails the SOC leads the
// denial, the rejection and the invalid file, and posts every one of them
// to a signed webhook. The invalid file is recorded with its located
// problems until a later commit fixes it, and again until one deletes it.
func TestNotificationsFromRealPasses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("incident", map[string]string{
		pbPath("block-loopback"): playbookYAML("block-loopback", "INC-3", "127.0.0.1", "low", "staging", ""),
		pbPath("block-prod"):     playbookYAML("block-prod", "INC-5", "203.0.113.50", "high", "production", ""),
		pbPath("block-reject"):   playbookYAML("block-reject", "INC-4", "203.0.113.9", "high", "production", ""),
		pbPath("broken"):         "apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: broken\n  ticket: INC-6\nspec:\n  action: block_ip\n  targetz: [203.0.113.1]\n",
	})
	e.pass()
	e.approveVersion("block-reject", "apply", map[string]string{"alice": "propose", "carol": "reject"})
	e.pass()

	bad, err := e.st.InvalidPlaybooks(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var problems []diag.Problem
	if len(bad) == 1 {
		_ = json.Unmarshal(bad[0].Problems, &problems)
	}
	if len(bad) != 1 || bad[0].Path != pbPath("broken") || len(problems) == 0 || problems[0].Line == 0 || problems[0].Path != pbPath("broken") {
		t.Fatalf("invalid playbooks %+v (problems %+v)", bad, problems)
	}

	mail := mailtest.Start(t, mailtest.Options{Users: map[string]string{"writ": "pw"}})
	hook := &signedReceiver{secret: "hook-secret"}
	srv := httptest.NewTLSServer(hook)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"SMTP_PW": "pw", "HOOK_SECRET": "hook-secret"}
	n, err := notify.New(notify.Options{Store: e.st, Getenv: func(k string) string { return secrets[k] }, Keyring: e.rec.KeyringInForce,
		ConsoleURL: "https://writ.soc.example", PollInterval: 10 * time.Millisecond, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
		Channels: []config.NotificationChannel{
			{Name: "mail", Email: &config.EmailChannel{Address: mail.Addr, From: "writ@soc.example", Username: "writ", PasswordEnv: "SMTP_PW", CAFile: mail.CAFile}},
			{Name: "soc-hook", Webhook: &config.WebhookChannel{URL: srv.URL + "/writ", SecretEnv: "HOOK_SECRET", CAFile: ca}},
		},
		Routes: []config.NotificationRoute{
			{Events: []string{"waiting", "hold"}, Channels: []string{"mail"}, To: &config.Recipients{MustAct: true}},
			{Events: []string{"denied", "rejected", "invalid_merge"}, Channels: []string{"mail"}, To: &config.Recipients{Addresses: []string{"soc-leads@soc.example"}}},
			{Events: []string{"waiting", "denied", "rejected", "invalid_merge", "failed", "hold"}, Channels: []string{"soc-hook"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	want := func() bool {
		ev := hook.events()
		return len(ev["execution.waiting"]) >= 1 && len(ev["execution.denied"]) == 1 && len(ev["execution.rejected"]) == 1 &&
			len(ev["playbook.invalid"]) == 1 && len(mail.To("soc-leads@soc.example")) == 3 && len(mail.To("bob@soc.example")) >= 1
	}
	for t0 := time.Now(); !want(); time.Sleep(10 * time.Millisecond) {
		if time.Since(t0) > time.Minute {
			t.Fatalf("notifications did not arrive: hook %v, %d mails", hook.events(), len(mail.Messages()))
		}
	}
	cancel()
	<-done

	// Waiting reaches the approvers in force (bob, carol), never the
	// analysts (alice, mallory) nor the admins (not asked for).
	var approvers []string
	for _, m := range mail.Messages() {
		if m.Header.Get("X-Writ-Event") == "execution.waiting" {
			approvers = append(approvers, m.To...)
			if !strings.Contains(m.Body, "`writ approve op-") || !strings.Contains(m.Body, "https://writ.soc.example/pending/op-") ||
				!strings.Contains(m.Subject, "Approval needed for block-") || !m.TLS || m.User != "writ" {
				t.Fatalf("waiting mail %q:\n%s", m.Subject, m.Body)
			}
		}
	}
	slices.Sort(approvers)
	approvers = slices.Compact(approvers)
	if !slices.Equal(approvers, []string{"bob@soc.example", "carol@soc.example"}) {
		t.Fatalf("waiting went to %v", approvers)
	}
	var leads []string
	for _, m := range mail.To("soc-leads@soc.example") {
		leads = append(leads, m.Header.Get("X-Writ-Event"))
	}
	slices.Sort(leads)
	if !slices.Equal(leads, []string{"execution.denied", "execution.rejected", "playbook.invalid"}) {
		t.Fatalf("the SOC leads got %v", leads)
	}
	ev := hook.events()
	if d := ev["execution.denied"][0]; d.Writ.Subject.Name != "block-loopback" || !strings.Contains(d.Text, "Policy denied block-loopback") || d.Writ.Next == "" {
		t.Fatalf("denied: %+v", d)
	}
	if inv := ev["playbook.invalid"][0]; !strings.Contains(inv.Text, "playbooks/broken.yaml on the branch is not a valid playbook") ||
		!strings.Contains(inv.Text, "targetz") || !strings.Contains(inv.Writ.Next, "Fix or delete it") {
		t.Fatalf("invalid: %+v", inv)
	}
	if r := ev["execution.rejected"][0]; !strings.Contains(r.Text, "block-reject was rejected") {
		t.Fatalf("rejected: %+v", r)
	}
	if hook.badSigs != 0 || len(ev["execution.completed"]) != 0 {
		t.Fatalf("bad signatures %d; unrouted events %v", hook.badSigs, ev["execution.completed"])
	}

	// A commit fixing the file clears it; a new broken file is recorded,
	// and deleting it clears it too.
	e.merge("fix", map[string]string{pbPath("broken"): playbookYAML("broken", "INC-6", "203.0.113.1", "low", "staging", "")})
	e.pass()
	if bad, _ := e.st.InvalidPlaybooks(e.ctx); len(bad) != 0 {
		t.Fatalf("after the fix: %+v", bad)
	}
	e.merge("again", map[string]string{pbPath("worse"): "not: [a playbook\n"})
	e.pass()
	if bad, _ := e.st.InvalidPlaybooks(e.ctx); len(bad) != 1 || bad[0].Path != pbPath("worse") {
		t.Fatalf("second invalid file: %+v", bad)
	}
	e.merge("remove", nil, pbPath("worse"))
	e.pass()
	if bad, _ := e.st.InvalidPlaybooks(e.ctx); len(bad) != 0 {
		t.Fatalf("after the deletion: %+v", bad)
	}
	e.verifyAudit()
}
