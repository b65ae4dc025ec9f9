package main

import (
	"crypto/hmac"
	"encoding/json"
	"encoding/pem"
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
	"testing"

	"github.com/writ-sec/writ/internal/notify"
	"github.com/writ-sec/writ/internal/notify/mailtest"
)

// notifyRig is a signed-webhook receiver and an SMTP server (STARTTLS,
// AUTH) on loopback, and a writ.yaml routing to both.
type notifyRig struct {
	mail   *mailtest.Server
	mu     sync.Mutex
	hooked []notify.Message
	bad    int
	cfg    string
}

func newNotifyRig(t *testing.T) *notifyRig {
	t.Helper()
	nr := &notifyRig{mail: mailtest.Start(t, mailtest.Options{Users: map[string]string{"writ": "smtp-pw"}})}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get("X-Writ-Timestamp"), 10, 64)
		nr.mu.Lock()
		defer nr.mu.Unlock()
		if !hmac.Equal([]byte(r.Header.Get("X-Writ-Signature-256")), []byte(notify.Sign("hook-secret", ts, body))) {
			nr.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m notify.Message
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		nr.hooked = append(nr.hooked, m)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	files := map[string]string{
		"hook-ca.pem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})),
		"hook.secret": "hook-secret\n", "smtp.password": "smtp-pw\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nr.cfg = filepath.Join(dir, "writ.yaml")
	yaml := fmt.Sprintf(`apiVersion: writ/v1
kind: ServerConfig
backends:
  - name: list
    type: blocklist
    actions: [block_ip]
    blocklist: {path: %s}
notifications:
  consoleURL: https://writ.soc.example
  channels:
    - name: mail
      email: {address: '%s', from: writ@soc.example, username: writ, passwordFile: %s, caFile: %s}
    - name: soc-hook
      webhook: {url: '%s/writ', secretFile: %s, caFile: %s}
  routes:
    - {events: [waiting, hold], channels: [mail], to: {mustAct: true}}
    - {events: [denied, invalid_merge], channels: [mail], to: {addresses: [soc-leads@soc.example]}}
    - {events: [waiting, denied, invalid_merge, hold, failed], channels: [soc-hook]}
`, filepath.Join(dir, "blocklist.txt"), nr.mail.Addr, filepath.Join(dir, "smtp.password"), nr.mail.CAFile,
		srv.URL, filepath.Join(dir, "hook.secret"), filepath.Join(dir, "hook-ca.pem"))
	if err := os.WriteFile(nr.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return nr
}

func (nr *notifyRig) hook() map[string][]notify.Message {
	nr.mu.Lock()
	defer nr.mu.Unlock()
	out := map[string][]notify.Message{}
	for _, m := range nr.hooked {
		out[m.Writ.Event] = append(out[m.Writ.Event], m)
	}
	return out
}

// writ serve, through its reconcile loop over a real repository, tells
// people: an operation waiting for approvals is mailed to the approvers in
// force (never the analyst, never the admin) with the command that signs
// it and the console link; the denial and the invalid merge go to the SOC
// leads; all three reach the signed webhook; and the invalid file is listed
// by the API with its problems.
func TestServeNotifiesPeople(t *testing.T) {
	t.Parallel()
	nr := newNotifyRig(t)
	if code, out, _ := runCLI(t, "config", "check", nr.cfg); code != exitOK {
		t.Fatalf("config check: %d\n%s", code, out)
	}
	people := map[string][]string{"alice": {"analyst"}, "bob": {"approver"}, "carol": {"approver"}, "dave": {"admin"}, "erin": {"admin"}}
	emails := map[string]string{"alice": "alice@soc.example", "bob": "bob@soc.example", "carol": "carol@soc.example", "dave": "dave@soc.example", "erin": "erin@soc.example"}
	r := newTrustRigEmails(t, people, nil, emails, "--config", nr.cfg)
	pb := func(name, target, severity, env string) string {
		return fmt.Sprintf("apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: %s\n  ticket: INC-7\nspec:\n  action: block_ip\n  targets: [%s]\n  justification: C2 beaconing\n  severity: %s\n  environment: %s\n",
			name, target, severity, env)
	}
	r.repo.Write("playbooks/block-prod.yaml", pb("block-prod", "203.0.113.50", "high", "production"))
	r.repo.Write("playbooks/block-loopback.yaml", pb("block-loopback", "127.0.0.1", "low", "staging"))
	r.repo.Write("playbooks/broken.yaml", "apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: broken\nspec:\n  action: block_ip\n  targetz: [203.0.113.1]\n")
	r.repo.Commit("incident INC-7")
	r.repo.Push()
	r.waitForSaying("the notifications", func() bool {
		h := nr.hook()
		return len(h["execution.waiting"]) == 1 && len(h["execution.denied"]) == 1 && len(h["playbook.invalid"]) == 1 &&
			len(nr.mail.To("soc-leads@soc.example")) == 2 && len(nr.mail.To("bob@soc.example")) == 1
	}, func() string { return fmt.Sprintf("hook %v; %d mails", nr.hook(), len(nr.mail.Messages())) })

	var waitingTo []string
	for _, m := range nr.mail.Messages() {
		if !m.TLS || m.User != "writ" {
			t.Fatalf("mail %q without STARTTLS or AUTH", m.Subject)
		}
		if m.Header.Get("X-Writ-Event") == "execution.waiting" {
			waitingTo = append(waitingTo, m.To...)
			if !strings.Contains(m.Subject, "Approval needed for block-prod: apply block_ip on production (203.0.113.50)") ||
				!strings.Contains(m.Body, "review and sign it: `writ approve op-") || !strings.Contains(m.Body, "https://writ.soc.example/pending/op-") {
				t.Fatalf("waiting mail %q:\n%s", m.Subject, m.Body)
			}
		}
	}
	slices.Sort(waitingTo)
	if !slices.Equal(waitingTo, []string{"bob@soc.example", "carol@soc.example"}) {
		t.Fatalf("waiting mailed to %v", waitingTo)
	}
	for _, who := range []string{"alice@soc.example", "dave@soc.example", "erin@soc.example"} {
		if got := nr.mail.To(who); len(got) != 0 {
			t.Fatalf("%s got %d mails (%s)", who, len(got), got[0].Subject)
		}
	}
	var leads []string
	for _, m := range nr.mail.To("soc-leads@soc.example") {
		leads = append(leads, m.Header.Get("X-Writ-Event"))
	}
	slices.Sort(leads)
	if !slices.Equal(leads, []string{"execution.denied", "playbook.invalid"}) {
		t.Fatalf("SOC leads got %v", leads)
	}
	h := nr.hook()
	if d := h["execution.denied"][0]; d.Writ.Subject.Name != "block-loopback" || !strings.Contains(d.Text, "Policy denied block-loopback") {
		t.Fatalf("denied %+v", d)
	}
	if inv := h["playbook.invalid"][0]; !strings.Contains(inv.Text, "playbooks/broken.yaml") || !strings.Contains(inv.Writ.Next, "Fix or delete it") {
		t.Fatalf("invalid %+v", inv)
	}
	nr.mu.Lock()
	bad := nr.bad
	nr.mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d bad signatures", bad)
	}

	// The API lists the invalid file with its located problems.
	viewer := r.token("watcher", "viewer")
	req, _ := http.NewRequest(http.MethodGet, r.base+"/api/v1/playbooks", nil)
	req.Header.Set("Authorization", "Bearer "+viewer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Invalid []struct {
			Path     string `json:"path"`
			Status   string `json:"status"`
			Problems []struct {
				Path    string `json:"path"`
				Line    int    `json:"line"`
				Col     int    `json:"col"`
				Message string `json:"message"`
			} `json:"problems"`
		} `json:"invalid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Invalid) != 1 || list.Invalid[0].Path != "playbooks/broken.yaml" || list.Invalid[0].Status != "invalid" ||
		len(list.Invalid[0].Problems) == 0 || list.Invalid[0].Problems[0].Line == 0 {
		t.Fatalf("invalid playbooks %+v", list.Invalid)
	}
}

// writ config check refuses a bad notifications section, naming
// file:line:col, and never prints a secret.
func TestConfigCheckNotifications(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "writ.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: writ/v1\nkind: ServerConfig\nnotifications:\n  channels:\n    - {name: chat, slack: {urlEnv: WRIT_TEST_SLACK}}\n  routes:\n    - {events: [waiting], channels: [chat, mail]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "config", "check", bad); code != exitFailure || !strings.Contains(out, "writ.yaml:7:44: no notification channel is named \"mail\"") {
		t.Fatalf("bad route: %d\n%s", code, out)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("apiVersion: writ/v1\nkind: ServerConfig\nnotifications:\n  channels:\n    - {name: chat, slack: {urlEnv: WRIT_TEST_SLACK}}\n  routes:\n    - {events: [waiting, hold], channels: [chat]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "config", "check", good); code != exitFailure || !strings.Contains(out, "WRIT_TEST_SLACK") {
		t.Fatalf("slack URL unset: %d\n%s", code, out)
	}
	url := "https://hooks.slack.com/services/T0/B0/very-secret-part"
	if code, out, _ := runCLIEnv(t, map[string]string{"WRIT_TEST_SLACK": url}, "config", "check", good); code != exitOK || strings.Contains(out, "very-secret-part") {
		t.Fatalf("good: %d\n%s", code, out)
	}
}
