package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/store"
)

// chromiumPath finds the browser the console tests drive: Debian's
// chromium, which .ci/run installs when it is missing.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: the console's browser tests need it (apt-get install chromium; .ci/run installs it)")
	return ""
}

// browser is a headless Chromium driven through the DevTools protocol.
type browser struct {
	t    testing.TB
	ctx  context.Context
	base string
}

func newBrowser(t testing.TB, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(1280, 860),
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, base: base}
	// The first action starts the browser, on a context without a
	// deadline (a deadline there would stop the browser).
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/login")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// do runs actions, each page step bounded.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func browserValue[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v", err)
	}
	return v
}

// open loads a page and returns its URL and visible text.
func (b *browser) open(path string) (string, string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("main h1")))
	return browserValue(b, chromedp.Location()), b.text("body")
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return browserValue(b, chromedp.Text(chromedp.CSS(sel)))
}

// waitText waits until sel's text contains want, and returns it.
func (b *browser) waitText(sel, want string) string {
	b.t.Helper()
	var s string
	for t0 := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		s = b.text(sel)
		if strings.Contains(s, want) {
			return s
		}
		if time.Since(t0) > 2*time.Minute {
			b.t.Fatalf("%s never said %q; it says %q", sel, want, s)
		}
	}
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(sel)))
}

func (b *browser) signIn(user, password string) string {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+"/login"), chromedp.WaitVisible(chromedp.CSS("#signin")),
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS("#signin")))
	b.waitLoaded()
	return browserValue(b, chromedp.Location())
}

// waitLoaded waits for the page a form submission leads to.
func (b *browser) waitLoaded() {
	b.t.Helper()
	time.Sleep(200 * time.Millisecond)
	b.do(chromedp.WaitReady(chromedp.CSS("main h1")))
}

func (b *browser) signOut() {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(`form.who button`)), chromedp.WaitVisible(chromedp.CSS("#signin")))
}

// screenshot saves the viewport as NAME.png in the directory
// WRIT_SCREENSHOTS names (`make screenshots`: docs/images), else in the
// test's temporary directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := browserValue(b, chromedp.CaptureScreenshot())
	dir := os.Getenv("WRIT_SCREENSHOTS")
	if dir == "" {
		dir = b.t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// virtualAuthenticator gives the browser a platform authenticator with
// user verification (a passkey), through the DevTools protocol.
func (b *browser) virtualAuthenticator() {
	b.t.Helper()
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{
				Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
				Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
				IsUserVerified: true, AutomaticPresenceSimulation: true,
			}})
		return err
	}))
}

// withKey adds a keyring line to a person's keys in an approvers file the
// trust rig wrote.
func withKey(approvers, person, line string) string {
	head := "  - id: " + person + "\n"
	i := strings.Index(approvers, head)
	if i < 0 {
		return approvers
	}
	j := strings.Index(approvers[i:], "    keys:\n")
	k := i + j + len("    keys:\n")
	return approvers[:k] + fmt.Sprintf("      - %q\n", line) + approvers[k:]
}

const consolePlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-c2
  ticket: INC-42
spec:
  action: block_ip
  targets: [203.0.113.77, 198.51.100.0/24]
  justification: C2 beaconing seen by EDR <script>alert(1)</script>
  severity: high
  environment: production
`

const otherPlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-scanner
  ticket: INC-43
spec:
  action: block_ip
  targets: [192.0.2.50]
  justification: a scanner, probably
  severity: medium
  environment: production
`

// emergencyPlaybook may run on one break-glass statement (the default
// emergency.rego allows block_ip).
const emergencyPlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-ransomware
  ticket: INC-44
spec:
  action: block_ip
  targets: [203.0.113.99]
  justification: ransomware C2, spreading now
  severity: high
  environment: production
  emergency: true
`

var oneTimePassword = regexp.MustCompile(`[A-Za-z0-9_-]{16,}`)

// The console in a real browser against a real writ serve: an approver
// signs in, registers a passkey (a virtual authenticator), the admins
// adopt its keyring line like any change to .writ/, he approves a pending
// production block with it and sees it execute, rejects another, finds
// breaks glass on an emergency block with it, finds the blocked address
// (and the prefix covering another) on the containment page; the signature verifies offline with writ approvals
// verify; an admin changes the one-time password and reads the audit log.
func TestConsoleInBrowser(t *testing.T) {
	r := newApproverRig(t)
	// A passkey's relying party is a host name, never an address.
	base := strings.Replace(r.base, "127.0.0.1", "localhost", 1)
	db := []string{"--database", r.dbURL, "--data-dir", r.dataDir}
	if code, _, errOut := runCLIEnv(t, map[string]string{"WRIT_USER_PASSWORD": "bob's long passphrase"},
		append(db, "user", "add", "bob", "--role", "approver", "--password")...); code != exitOK {
		t.Fatalf("user add bob: %s", errOut)
	}
	code, out, errOut := runCLI(t, append(db, "user", "add", "dave", "--role", "admin")...)
	davePassword := oneTimePassword.FindString(out)
	if code != exitOK || davePassword == "" {
		t.Fatalf("user add dave: %d %q %s", code, out, errOut)
	}

	b := newBrowser(t, base)
	// A page needs a session: the browser is sent to the sign-in form and
	// back.
	if loc, _ := b.open("/pending"); !strings.Contains(loc, "/login?next=%2Fpending") {
		t.Fatalf("an anonymous page load went to %s", loc)
	}
	b.screenshot("console-login")
	if loc := b.signIn("bob", "wrong password"); !strings.Contains(loc, "/login") {
		t.Fatalf("a wrong password signed in: %s", loc)
	}
	if msg := b.text(".problem"); !strings.Contains(msg, "Wrong username or password") {
		t.Fatalf("a wrong password says %q", msg)
	}
	b.signIn("bob", "bob's long passphrase")

	// bob registers a passkey; the console shows the keyring line.
	b.virtualAuthenticator()
	b.open("/passkey")
	b.click("#register")
	b.waitText("#register-result", "Passkey registered")
	line := strings.TrimSpace(b.text("#keyline"))
	if !strings.HasPrefix(line, "webauthn ") || !strings.Contains(line, "rp=localhost") || !strings.Contains(line, "origin="+base) {
		t.Fatalf("the keyring line: %q", line)
	}
	b.screenshot("console-passkey")

	// The admins adopt it like any change to the approvers file.
	// bob also holds the break-glass role.
	withBreakGlass := strings.Replace(r.approvers(nil), "  - id: bob\n    roles: [approver]\n", "  - id: bob\n    roles: [approver, break-glass]\n", 1)
	if !strings.Contains(withBreakGlass, "[approver, break-glass]") {
		t.Fatalf("no role line for bob in:\n%s", withBreakGlass)
	}
	adopted := r.push("bob's passkey", map[string]string{".writ/approvers.yaml": withKey(withBreakGlass, "bob", line)})
	tc := r.waitPending("change to .writ/approvers.yaml")
	for _, admin := range []string{"dave", "erin"} {
		if code, _, errOut := r.approve("", tc, admin, "--yes"); code != exitOK {
			t.Fatalf("%s approves bob's passkey: %d %s", admin, code, errOut)
		}
	}
	r.waitFor("bob's passkey adopted", func() bool { return r.state().AdoptedSHA == adopted })

	// A production block waits for its proposal and an approval.
	r.push("block the C2", map[string]string{"playbooks/block-c2.yaml": consolePlaybook})
	apply := r.waitPending("apply of playbooks/block-c2.yaml")
	if code, _, errOut := r.approve("", apply, "alice", "--propose", "--yes"); code != exitOK {
		t.Fatalf("alice proposes: %d %s", code, errOut)
	}
	_, text := b.open("/pending?mine=1")
	if !strings.Contains(text, apply) || !strings.Contains(text, "block-c2") {
		t.Fatalf("bob's queue lacks %s:\n%s", apply, text)
	}
	b.screenshot("console-pending")
	_, text = b.open("/pending/" + apply)
	for _, want := range []string{"+ apiVersion: writ/v1", "203.0.113.77", "<script>alert(1)</script>", "alice", "Approve with passkey"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the item page lacks %q:\n%s", want, text)
		}
	}
	b.screenshot("console-approve")
	b.click("#sign-approve")
	b.waitText("#sign-result", "Signed: approve "+apply+" as bob")
	r.waitFor("the block", func() bool { return strings.Contains(r.blocked(), "203.0.113.77") })

	// Another waits; bob rejects it, saying why.
	r.push("block a scanner", map[string]string{"playbooks/block-scanner.yaml": otherPlaybook})
	other := r.waitPending("apply of playbooks/block-scanner.yaml")
	if code, _, errOut := r.approve("", other, "alice", "--propose", "--yes"); code != exitOK {
		t.Fatalf("alice proposes the scanner block: %d %s", code, errOut)
	}
	b.open("/pending/" + other)
	// What the page's script talks to refuses what it should, as the
	// browser's own requests: no CSRF token, an unknown item, a malformed
	// signature, a statement naming someone else.
	for what, c := range map[string]struct{ js, want string }{
		"no CSRF token": {`fetch("/pending/` + other + `/statement", {method: "POST", headers: {"Content-Type": "application/json",
			"Accept": "application/json"}, body: JSON.stringify({decision: "approve"})})`, "403 csrf"},
		"an unknown item":              {`post("/pending/op-999999/statement", {decision: "approve"})`, "404 not_pending"},
		"a rejection without a reason": {`post("/pending/` + other + `/statement", {decision: "reject", reason: " "})`, "400 bad_request"},
		"break-glass without a reason": {`post("/pending/` + other + `/statement", {decision: "break_glass", reason: ""})`, "400 bad_request"},
		"break-glass of no emergency":  {`post("/pending/` + other + `/statement", {decision: "break_glass", reason: "now"})`, "403 forbidden"},
		"a malformed signature": {`post("/pending/` + other + `/sign", {payload: "e30=", credentialId: "!", authenticatorData: "AA",
			clientDataJSON: "AA", signature: "AA"})`, "400 bad_request"},
		"someone else's statement": {`post("/pending/` + other + `/statement", {decision: "approve"}).then(r => r.json()).then(st => {
			const payload = btoa(atob(st.payload).replace('"approver":"bob"', '"approver":"alice"'));
			return post("/pending/` + other + `/sign", {payload: payload, credentialId: "AA", authenticatorData: "AA", clientDataJSON: "AA", signature: "AA"});
		})`, "403 forbidden"},
	} {
		js := `(() => { const post = (url, body) => fetch(url, {method: "POST", headers: {"Content-Type": "application/json",
			"Accept": "application/json", "X-CSRF-Token": document.body.dataset.csrf}, body: JSON.stringify(body)});
			return ` + c.js + `.then(async r => r.status + " " + (await r.json()).code); })()`
		if got := browserValue(b, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise)); got != c.want {
			t.Errorf("%s: %q, want %q", what, got, c.want)
		}
	}
	b.click("#sign-reject")
	b.waitText("#sign-result", "Say why")
	b.do(chromedp.SendKeys(chromedp.CSS("#reason"), "not our incident"), chromedp.Click(chromedp.CSS("#sign-reject")))
	b.waitText("#sign-result", "Signed: reject "+other+" as bob")
	r.waitFor("the rejected apply to leave the queue", func() bool { _, ok := r.pendingIDs()[other]; return !ok })
	_, text = b.open("/playbooks/block-scanner")
	for _, want := range []string{"rejected", "bob", "not our incident"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the rejected playbook's page lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(r.blocked(), "192.0.2.50") {
		t.Fatal("the rejected block was applied")
	}

	// At 3 a.m. an emergency block waits for its approvals; bob, who
	// holds the break-glass role, breaks glass from its page with his
	// passkey, saying why, and it runs before its approvals. The page then
	// says by whom and until when its approvals are due.
	r.push("contain the ransomware", map[string]string{"playbooks/block-ransomware.yaml": emergencyPlaybook})
	urgent := r.waitPending("apply of playbooks/block-ransomware.yaml")
	_, text = b.open("/pending/" + urgent)
	for _, want := range []string{"an emergency apply", "bob", "Break glass with passkey"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the emergency item's page lacks %q:\n%s", want, text)
		}
	}
	b.click("#sign-break_glass")
	b.waitText("#sign-result", "Say why this cannot wait")
	if strings.Contains(r.blocked(), "203.0.113.99") {
		t.Fatal("the emergency block ran without a statement")
	}
	b.screenshot("console-break-glass")
	b.do(chromedp.SendKeys(chromedp.CSS("#bg-reason"), "ransomware spreading from 203.0.113.99"), chromedp.Click(chromedp.CSS("#sign-break_glass")))
	b.waitText("#sign-result", "Signed: break glass on "+urgent+" as bob")
	r.waitFor("the emergency block", func() bool { return strings.Contains(r.blocked(), "203.0.113.99") })
	_, text = b.open("/pending/" + urgent)
	if facts := b.text("#break-glass"); !strings.Contains(facts, "ran on break-glass by bob") || !strings.Contains(facts, "approvals are due by") {
		t.Fatalf("after break-glass the item says %q", facts)
	}
	if strings.Contains(text, "Break glass with passkey") {
		t.Fatalf("the item still offers to break glass:\n%s", text)
	}
	list, err := r.st.ListApprovals(context.Background(), store.ApprovalFilter{Approver: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	broke := false
	for _, a := range list {
		e, err := approval.Parse(a.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if e.Statement.Subject[0].Name == "playbooks/block-ransomware.yaml" {
			p := e.Statement.Predicate
			broke = p.BreakGlass && p.Decision == approval.Approve && p.Reason == "ransomware spreading from 203.0.113.99" &&
				a.Source == "console" && p.ExpiresAt.Sub(p.IssuedAt) == 4*time.Hour
		}
	}
	if !broke {
		t.Fatalf("bob's statements hold no console break-glass statement for the ransomware block: %+v", list)
	}

	// The containment page finds the address, and the prefix that covers
	// another address.
	_, text = b.open("/?q=" + url.QueryEscape("198.51.100.9"))
	for _, want := range []string{"198.51.100.0/24", "block-c2", "INC-42", "production", "alice", "bob"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the search for 198.51.100.9 lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "203.0.113.77") {
		t.Fatalf("the search for 198.51.100.9 shows 203.0.113.77:\n%s", text)
	}
	_, text = b.open("/?q=203.0.113.77")
	if !strings.Contains(b.text("#count"), "1 target contained") || !strings.Contains(text, "203.0.113.77") {
		t.Fatalf("the search for 203.0.113.77:\n%s", text)
	}
	b.open("/")
	b.screenshot("console-containment")
	if _, text = b.open("/?q=" + url.QueryEscape("10.0.0.0/99")); !strings.Contains(text, "10.0.0.0/99") {
		t.Fatalf("a malformed prefix:\n%s", text)
	}

	// bob's approval verifies offline, like any other signature: with
	// alice's proposal, the quorum of one approval is met.
	dir := t.TempDir()
	var files []string
	var repo, plan string
	for _, who := range []string{"alice", "bob"} {
		list, err := r.st.ListApprovals(context.Background(), store.ApprovalFilter{Approver: who})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range list {
			e, err := approval.Parse(a.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			if e.Statement.Subject[0].Name != "playbooks/block-c2.yaml" {
				continue
			}
			if who == "bob" {
				if a.Source != "console" {
					t.Fatalf("bob's statement came through %q", a.Source)
				}
				repo, plan = e.Statement.Predicate.Repository, e.Statement.Predicate.PlanDigest
			}
			f := filepath.Join(dir, fmt.Sprintf("%s-%d.json", who, a.ID))
			if err := os.WriteFile(f, a.Envelope, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	approvers := filepath.Join(dir, "approvers.yaml")
	if err := os.WriteFile(approvers, []byte(withKey(r.approvers(nil), "bob", line)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, append([]string{"approvals", "verify", "--approvers", approvers, "--approvals-required", "1",
		"--repo", repo, "--plan-digest", plan, "--format", "json", "--playbook", filepath.Join(r.repo.Work, "playbooks", "block-c2.yaml")}, files...)...)
	var report struct {
		Envelopes []struct{ Status, Approver string }
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || code != exitOK {
		t.Fatalf("writ approvals verify: %d %v\n%s\n%s", code, err, out, errOut)
	}
	counted := map[string]string{}
	for _, e := range report.Envelopes {
		counted[e.Approver] = e.Status
	}
	if counted["bob"] != "counted" || counted["alice"] != "proposal" {
		t.Fatalf("writ approvals verify of bob's passkey approval: %v\n%s", counted, out)
	}

	// An admin with a one-time password must change it first, then reads
	// the audit log.
	b.signOut()
	if loc := b.signIn("dave", davePassword); !strings.HasSuffix(loc, "/password") {
		t.Fatalf("a one-time password went to %s", loc)
	}
	if loc, _ := b.open("/audit"); !strings.HasSuffix(loc, "/password") {
		t.Fatalf("before the change, /audit went to %s", loc)
	}
	b.do(chromedp.SendKeys(chromedp.CSS(`input[name="current"]`), davePassword),
		chromedp.SendKeys(chromedp.CSS(`input[name="new"]`), "dave's own long passphrase"),
		chromedp.SendKeys(chromedp.CSS(`input[name="again"]`), "dave's own long passphrase"),
		chromedp.Click(chromedp.CSS("#change")))
	b.waitLoaded()
	_, text = b.open("/audit")
	for _, want := range []string{"approval.", "bob"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the audit page lacks %q:\n%s", want, text)
		}
	}
	b.screenshot("console-audit")
}
