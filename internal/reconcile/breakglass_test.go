package reconcile

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/webhook/webhooktest"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/notify"
	"github.com/writ-sec/writ/internal/notify/mailtest"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// The approvers of the break-glass tests: the usual roster, and frank, who
// holds only the break-glass role (the on-call responder).
var breakGlassRoster = append(slices.Clone(roster), struct {
	id    string
	roles []string
}{"frank", []string{"break-glass"}})

// emergencyPlaybook is a production block marked emergency: it needs one
// approval (production) and a signed proposal.
func emergencyPlaybook(name, targets string) string {
	return playbookYAML(name, "INC-911", targets, "high", "production", "  emergency: true\n")
}

// signItem signs a pending item's statement as `writ approve ID` would.
func (e *env) signItem(who string, st approval.Statement) []byte {
	e.t.Helper()
	s, err := keys.Signer(e.people[who].signer)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := approval.Sign(s, st)
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

// pendingItem is the pending item of a playbook's apply.
func (e *env) pendingItem(name string) *PendingDetail {
	e.t.Helper()
	ex := e.execution(name, "apply")
	d, err := e.rec.PendingItem(e.ctx, fmt.Sprintf("op-%d", ex.ID))
	if err != nil {
		e.t.Fatalf("pending item of %s: %v", name, err)
	}
	return d
}

// breakGlass has frank invoke break-glass on a playbook's apply through its
// pending item.
func (e *env) breakGlass(name, who string) {
	e.t.Helper()
	d := e.pendingItem(name)
	if d.BreakGlass == nil || d.BreakGlass.Command == "" {
		e.t.Fatalf("%s offers no break-glass: %+v", d.ID, d.Pending)
	}
	st, err := d.BreakGlassStatement(who, "active intrusion: block now", e.clock.Now(), 4*time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	e.submit(e.signItem(who, st))
}

// sign the item's statement of decision by who, and submit it.
func (e *env) signPending(name, who, decision string) {
	e.t.Helper()
	d := e.pendingItem(name)
	st, err := d.Statement(decision, who, decision+" in test", e.clock.Now(), 24*time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	e.submit(e.signItem(who, st))
}

func (e *env) breakGlassOf(name string) *store.BreakGlass {
	e.t.Helper()
	b, err := e.st.BreakGlassOf(e.ctx, e.execution(name, "apply").ID)
	if err != nil {
		e.t.Fatalf("break-glass of %s: %v", name, err)
	}
	return b
}

// An emergency block runs on frank's one break-glass statement, before its
// approval; when its quorum never comes, it is reverted at the deadline,
// every step audited.
func TestBreakGlassRevertedWhenQuorumNeverComes(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, breakGlassRoster, func(o *Options) { o.BreakGlassWindow = 2 * time.Hour })
	e.pass()
	name := "contain-intruder"
	e.merge("intrusion", map[string]string{pbPath(name): emergencyPlaybook(name, "203.0.113.66")})
	e.pass()
	if st, reason := e.status(name); st != store.StatusAwaitingApproval {
		t.Fatalf("before break-glass: %s (%s)", st, reason)
	}
	d := e.pendingItem(name)
	if d.BreakGlass == nil || len(d.BreakGlass.Eligible) != 1 || d.BreakGlass.Eligible[0].ID != "frank" ||
		d.BreakGlass.Command != d.Command+" --break-glass" {
		t.Fatalf("pending item's break-glass: %+v", d.BreakGlass)
	}

	// bob is an approver, not a break-glass holder: his break-glass
	// statement lets nothing run, and does not count as his approval.
	e.breakGlass(name, "bob")
	e.pass()
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("a break-glass statement by a non-holder ran it: %v", got)
	}
	if ex := e.execution(name, "apply"); ex.State != store.ExecWaiting {
		t.Fatalf("after bob's break-glass: %s (%s)", ex.State, ex.Reason)
	}

	invokedAt := e.clock.Now()
	e.breakGlass(name, "frank")
	e.pass()
	if got := e.blocked("production"); !slices.Equal(got, []string{"203.0.113.66"}) {
		t.Fatalf("after frank's break-glass: blocklist %v", got)
	}
	b := e.breakGlassOf(name)
	if b.State != store.BreakGlassOpen || b.Signer != "frank" || !b.Deadline.Equal(invokedAt.Add(2*time.Hour)) {
		t.Fatalf("break-glass record %+v (invoked at %s)", b, invokedAt)
	}
	if n := e.countEvents(audit.EventBreakGlassInvoked); n != 1 {
		t.Fatalf("%d breakglass.invoked entries", n)
	}
	// The item now asks for the approvals that are due.
	d = e.pendingItem(name)
	if d.ReasonCode != string(judgement.CodeBreakGlass) || d.BreakGlass.Deadline == nil || d.BreakGlass.Command != "" ||
		!strings.Contains(d.Reason, "due by") {
		t.Fatalf("item after break-glass: %s %q %+v", d.ReasonCode, d.Reason, d.BreakGlass)
	}
	if _, err := d.BreakGlassStatement("frank", "again", e.clock.Now(), time.Hour); err == nil {
		t.Fatal("a second break-glass statement was offered")
	}

	// Within the window nothing is reverted.
	e.clock.Advance(time.Hour)
	e.pass()
	if got := e.blocked("production"); len(got) != 1 {
		t.Fatalf("reverted before the deadline: %v", got)
	}
	// Past the deadline without approvals: lapsed, reverted with no
	// approval of its own.
	e.clock.Advance(time.Hour + time.Second)
	e.pass()
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("not reverted after the deadline: %v", got)
	}
	b = e.breakGlassOf(name)
	if b.State != store.BreakGlassLapsed || b.RevertID == nil || !strings.Contains(b.Resolution, "did not come") {
		t.Fatalf("after the deadline: %+v", b)
	}
	rv, err := e.st.ExecutionByID(e.ctx, *b.RevertID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.State != store.ExecCompleted || rv.Trigger != string(judgement.BreakGlass) || rv.ChangeType != "breakglass" {
		t.Fatalf("revert %+v", rv)
	}
	if n := e.countEvents(audit.EventBreakGlassLapsed); n != 1 {
		t.Fatalf("%d breakglass.lapsed entries", n)
	}
	// Late approvals are refused at the door: nothing is pending any more.
	st, err := d.Statement(approval.Approve, "bob", "late", e.clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rec.SubmitApproval(e.ctx, e.signItem("bob", st), approval.Submitted{Source: "api"}); err == nil {
		t.Fatal("an approval after the lapse was taken")
	}
	e.verifyAudit()
}

// brokenGlass is an env (breakGlassRoster, opts) where frank broke glass
// on the emergency playbook name, blocking targets (", "-separated) in
// production, and the block ran.
func brokenGlass(t *testing.T, name, targets string, opts ...func(*Options)) *env {
	t.Helper()
	e := newEnvWith(t, breakGlassRoster, opts...)
	e.pass()
	e.merge(name, map[string]string{pbPath(name): emergencyPlaybook(name, targets)})
	e.pass()
	e.breakGlass(name, "frank")
	e.pass()
	if got, want := e.blocked("production"), strings.Split(targets, ", "); len(got) != len(want) {
		t.Fatalf("after break-glass: blocked %v, want %v", got, want)
	}
	return e
}

// When the normal quorum arrives within the window, the block stays in
// force past the deadline; frank's statement never counted toward it.
func TestBreakGlassKeptWhenQuorumComes(t *testing.T) {
	t.Parallel()
	name := "contain-beacon"
	e := brokenGlass(t, name, "198.51.100.23")
	if b := e.breakGlassOf(name); !b.Deadline.Equal(b.InvokedAt.Add(4 * time.Hour)) {
		t.Fatalf("default window: %+v", b)
	}
	// The proposal alone is not the quorum.
	e.signPending(name, "alice", approval.Propose)
	e.pass()
	if b := e.breakGlassOf(name); b.State != store.BreakGlassOpen {
		t.Fatalf("confirmed without an approval: %+v", b)
	}
	e.clock.Advance(3 * time.Hour)
	e.signPending(name, "bob", approval.Approve)
	e.pass()
	b := e.breakGlassOf(name)
	if b.State != store.BreakGlassConfirmed || !strings.Contains(b.Resolution, "bob") {
		t.Fatalf("after bob's approval: %+v", b)
	}
	if n := e.countEvents(audit.EventBreakGlassConfirmed); n != 1 {
		t.Fatalf("%d breakglass.confirmed entries", n)
	}
	e.clock.Advance(2 * time.Hour)
	e.pass()
	if got := e.blocked("production"); len(got) != 1 {
		t.Fatalf("a confirmed break-glass block was reverted: %v", got)
	}
	if st, _ := e.status(name); st != store.StatusCompleted {
		t.Fatalf("status %s", st)
	}
	e.verifyAudit()
}

// A rejection within the window reverts at once.
func TestBreakGlassRejectedRevertsAtOnce(t *testing.T) {
	t.Parallel()
	name := "contain-cdn"
	e := brokenGlass(t, name, "192.0.2.80")
	e.signPending(name, "carol", approval.Reject)
	e.pass()
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("a rejected break-glass block stays: %v", got)
	}
	if b := e.breakGlassOf(name); b.State != store.BreakGlassLapsed || !strings.Contains(b.Resolution, "rejected by carol") {
		t.Fatalf("after the rejection: %+v", b)
	}
	e.verifyAudit()
}

// Break-glass breaks the approval requirement only: a denial stays a
// denial, a playbook not marked emergency waits for its quorum whatever
// frank signs, and frank's ordinary approval counts for nothing.
func TestBreakGlassNeverBreaksADenialOrAnOrdinaryPlaybook(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, breakGlassRoster)
	e.pass()
	e.merge("denied", map[string]string{
		pbPath("reserved"): emergencyPlaybook("reserved", "127.0.0.1"),
		pbPath("ordinary"): playbookYAML("ordinary", "INC-1", "203.0.113.90", "high", "production", ""),
	})
	e.pass()
	if ex := e.execution("reserved", "apply"); ex.State != store.ExecDenied {
		t.Fatalf("reserved: %s (%s)", ex.State, ex.Reason)
	}
	// Signed anyway (by hand, as the pending item offers none), it is
	// refused: the apply is final.
	ex := e.execution("reserved", "apply")
	raw := e.signWith("frank", approval.Predicate{Decision: approval.Approve, BreakGlass: true, PolicyDigest: ex.PolicyDigest, PlanDigest: ex.PlanDigest},
		[]approval.Subject{{Path: ex.Path, Digest: ex.Digest}})
	if _, err := e.rec.SubmitApproval(e.ctx, raw, approval.Submitted{Source: "api"}); err == nil {
		t.Fatal("a break-glass statement for a denied apply was taken")
	}

	if d := e.pendingItem("ordinary"); d.BreakGlass != nil {
		t.Fatalf("an ordinary playbook offers break-glass: %+v", d.BreakGlass)
	}
	ord := e.execution("ordinary", "apply")
	e.submit(e.signWith("frank", approval.Predicate{Decision: approval.Approve, BreakGlass: true, PolicyDigest: ord.PolicyDigest, PlanDigest: ord.PlanDigest},
		[]approval.Subject{{Path: ord.Path, Digest: ord.Digest}}))
	e.signPending("ordinary", "alice", approval.Propose)
	e.signPending("ordinary", "frank", approval.Approve) // frank is no approver
	e.pass()
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("ran without its quorum: %v", got)
	}
	ord = e.execution("ordinary", "apply")
	if ord.State != store.ExecWaiting || ord.ReasonCode != string(judgement.CodeAwaitingApproval) {
		t.Fatalf("ordinary: %s %s (%s)", ord.State, ord.ReasonCode, ord.Reason)
	}
	if !strings.Contains(string(ord.Verdict), string(approval.CodeBreakGlassMismatch)) {
		t.Fatalf("frank's break-glass statement is not reported as not counting: %s", ord.Verdict)
	}
}

// Every break-glass step reaches people: the invocation mails the
// approvers in force with the command that signs the quorum due and the
// deadline; the lapse goes to the webhook with what to do next.
func TestBreakGlassNotified(t *testing.T) {
	t.Parallel()
	name := "contain-wiper"
	e := brokenGlass(t, name, "203.0.113.200", func(o *Options) { o.BreakGlassWindow = time.Hour })
	e.clock.Advance(time.Hour + time.Second)
	e.pass()
	if b := e.breakGlassOf(name); b.State != store.BreakGlassLapsed {
		t.Fatalf("not lapsed: %+v", b)
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
		PollInterval: 10 * time.Millisecond, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
		Channels: []config.NotificationChannel{
			{Name: "mail", Email: &config.EmailChannel{Address: mail.Addr, From: "writ@soc.example", Username: "writ", PasswordEnv: "SMTP_PW", CAFile: mail.CAFile}},
			{Name: "soc-hook", Webhook: &config.WebhookChannel{URL: srv.URL + "/writ", SecretEnv: "HOOK_SECRET", CAFile: ca}},
		},
		Routes: []config.NotificationRoute{
			{Events: []string{"breakglass"}, Channels: []string{"mail"}, To: &config.Recipients{MustAct: true}},
			{Events: []string{"breakglass"}, Channels: []string{"soc-hook"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	for t0 := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		ev := hook.events()
		if len(ev[string(audit.EventBreakGlassInvoked)]) == 1 && len(ev[string(audit.EventBreakGlassLapsed)]) == 1 && len(mail.Messages()) >= 1 {
			break
		}
		if time.Since(t0) > time.Minute {
			t.Fatalf("notifications did not arrive: hook %v, %d mails", hook.events(), len(mail.Messages()))
		}
	}
	cancel()
	<-done

	op := fmt.Sprintf("op-%d", e.execution(name, "apply").ID)
	var to []string
	for _, m := range mail.Messages() {
		if m.Header.Get("X-Writ-Event") != string(audit.EventBreakGlassInvoked) {
			continue
		}
		to = append(to, m.To...)
		if !strings.Contains(m.Body, "writ approve "+op) || !strings.Contains(m.Body, "frank") {
			t.Fatalf("break-glass mail %q:\n%s", m.Subject, m.Body)
		}
	}
	slices.Sort(to)
	if !slices.Equal(slices.Compact(to), []string{"bob@soc.example", "carol@soc.example"}) {
		t.Fatalf("the invocation was mailed to %v, not the approvers in force", to)
	}
	ev := hook.events()
	if l := ev[string(audit.EventBreakGlassLapsed)][0]; !strings.Contains(l.Text, name) || l.Writ.Next == "" {
		t.Fatalf("lapsed: %+v", l)
	}
	if hook.badSigs != 0 {
		t.Fatalf("%d bad signatures", hook.badSigs)
	}
}

// A push inside the window does not keep an emergency block in force
// unapproved: deleted before its quorum came, its deletion's revert (which
// waits for statements of its own) becomes the lapse's at the deadline,
// and releases the block with no approval.
func TestBreakGlassDeletedInsideTheWindowStillLapses(t *testing.T) {
	t.Parallel()
	name := "contain-then-delete"
	e := brokenGlass(t, name, "203.0.113.140, 203.0.113.141", func(o *Options) { o.BreakGlassWindow = time.Hour })
	e.merge("delete", nil, pbPath(name))
	e.pass()
	rv := e.execution(name, "revert")
	if rv.State != store.ExecWaiting || rv.Trigger != "delete" {
		t.Fatalf("the deletion's revert: %s %s (%s)", rv.State, rv.Trigger, rv.Reason)
	}
	if got := e.blocked("production"); len(got) != 2 {
		t.Fatalf("the deletion ran without its statements: %v", got)
	}
	e.clock.Advance(time.Hour + time.Second)
	e.pass()
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("the emergency block outlived its window: %v", got)
	}
	b := e.breakGlassOf(name)
	if b.State != store.BreakGlassLapsed || b.RevertID == nil || *b.RevertID != rv.ID {
		t.Fatalf("lapse %+v (revert %d)", b, rv.ID)
	}
	if rv = e.execution(name, "revert"); rv.State != store.ExecCompleted || rv.Trigger != "breakglass" {
		t.Fatalf("revert after the lapse: %s %s (%s)", rv.State, rv.Trigger, rv.Reason)
	}
	e.verifyAudit()
}

// A heal is an operation of its own (trust rule 7): the break-glass
// statement frank signed for an emergency playbook's apply never lets the
// heal of a drift incident run (a statement cannot even name a heal and
// break glass), and no break-glass window is opened for a heal, whose
// "lapse" would revert a block its quorum had confirmed. The heal waits for the
// statements of its own operation and incident.
func TestBreakGlassNeverRunsAHeal(t *testing.T) {
	t.Parallel()
	name := "contain-heal"
	e := brokenGlass(t, name, "203.0.113.66", func(o *Options) {
		o.Drift = DriftOptions{Modes: map[string]string{"production": DriftModeHeal}}
	})
	e.signPending(name, "alice", approval.Propose)
	e.signPending(name, "bob", approval.Approve)
	e.pass()
	if b := e.breakGlassOf(name); b.State != store.BreakGlassConfirmed {
		t.Fatalf("not confirmed: %+v", b)
	}
	// Someone removes the address from live state by hand: the drift
	// check records an incident and its heal.
	file := filepath.Join(e.dir, "blocklist", "production.txt")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(data), "203.0.113.66\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.checkDrift()
	e.pass()
	heal := e.execution(name, "heal")
	if heal.State != store.ExecWaiting || heal.ReasonCode != string(judgement.CodeAwaitingApproval) {
		t.Fatalf("the heal ran on the apply's break-glass statement: %s %s (%s)", heal.State, heal.ReasonCode, heal.Reason)
	}
	if b, err := e.st.BreakGlassOf(e.ctx, heal.ID); err == nil {
		t.Fatalf("a break-glass window was opened for the heal: %+v", b)
	}
	// No window of the heal lapses: the confirmed apply is never reverted.
	e.clock.Advance(4*time.Hour + time.Second)
	e.pass()
	if b := e.breakGlassOf(name); b.State != store.BreakGlassConfirmed {
		t.Fatalf("the apply's record after the window: %+v", b)
	}
	list, err := e.st.ListExecutions(e.ctx, store.ExecutionFilter{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range list {
		if x.Operation == "revert" {
			t.Fatalf("a revert of the confirmed block was recorded: %s %s (%s)", x.Trigger, x.State, x.Reason)
		}
	}
	// The heal's own statements heal it.
	heal = e.execution(name, "heal")
	e.signHeal(heal, heal.Incident, map[string]string{"alice": approval.Propose, "bob": approval.Approve})
	e.pass()
	if heal = e.execution(name, "heal"); heal.State != store.ExecCompleted {
		t.Fatalf("the heal with its statements: %s %s (%s)", heal.State, heal.ReasonCode, heal.Reason)
	}
	if got := e.blocked("production"); !slices.Equal(got, []string{"203.0.113.66"}) {
		t.Fatalf("after the heal: %v", got)
	}
	e.verifyAudit()
}

// bgEDREnv: isolate_host in production bound to an EDR on loopback, the
// break-glass roster, an emergency playbook isolating fin-ws-12 and
// fin-ws-13 merged and waiting for its approval; a transient error fails
// at once.
func bgEDREnv(t *testing.T, window time.Duration) (*env, *webhooktest.Receiver, string) {
	t.Helper()
	e := newEnvWith(t, breakGlassRoster, func(o *Options) { o.MaxAttempts = 1; o.BreakGlassWindow = window })
	edr := webhooktest.New(t)
	reg := action.NewRegistry()
	reg.Register("isolate_host", "production", edr.Backend("webhook:edr"))
	e.rec.opts.Backends = reg
	e.pass()
	name := "isolate-fin-ws"
	e.merge("isolate", map[string]string{pbPath(name): fmt.Sprintf(isolateTmpl, name, "INC-77", "fin-ws-12, fin-ws-13") + "  emergency: true\n"})
	e.pass()
	return e, edr, name
}

// A confirmed break-glass is closed for good: a retry of the partly
// applied emergency apply whose approvals no longer count (expired here;
// a withdrawal or a disabled approver alike) does not run on frank's
// break-glass statement alone, which would need no new window and so
// never ask for its quorum again. It waits for approvals of the plan it
// would run, and runs on them.
func TestBreakGlassConfirmedNeverRunsOnBreakGlassAgain(t *testing.T) {
	t.Parallel()
	e, edr, name := bgEDREnv(t, 4*time.Hour)
	edr.Fail("fin-ws-13", "the EDR agent on fin-ws-13 is offline")
	e.breakGlass(name, "frank") // valid for 4h
	e.pass()
	ex := e.execution(name, "apply")
	if ex.State != store.ExecFailed || !slices.Equal(edr.Contained(), []string{"fin-ws-12"}) {
		t.Fatalf("partly applied on break-glass: %s %v", ex.State, edr.Contained())
	}
	// The quorum comes, bob's approval valid for 30 minutes.
	e.signPending(name, "alice", approval.Propose)
	d := e.pendingItem(name)
	st, err := d.Statement(approval.Approve, "bob", "ok for now", e.clock.Now(), 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.submit(e.signItem("bob", st))
	e.pass()
	if b := e.breakGlassOf(name); b.State != store.BreakGlassConfirmed {
		t.Fatalf("not confirmed: %+v", b)
	}
	// An hour later bob's approval no longer counts; the EDR is back and
	// an executor retries: stopped at the moment of use.
	e.clock.Advance(time.Hour)
	edr.Fail("fin-ws-13", "")
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
		t.Fatalf("retry: %v", err)
	}
	e.pass()
	ex = e.execution(name, "apply")
	if slices.Contains(edr.Contained(), "fin-ws-13") || ex.State != store.ExecWaiting || ex.ReasonCode != string(judgement.CodeAwaitingApproval) {
		t.Fatalf("the retry ran on the break-glass statement alone: %s %s (%s); contained %v", ex.State, ex.ReasonCode, ex.Reason, edr.Contained())
	}
	if b := e.breakGlassOf(name); b.State != store.BreakGlassConfirmed {
		t.Fatalf("record after the retry: %+v", b)
	}
	if n := e.countEvents(audit.EventBreakGlassInvoked); n != 1 {
		t.Fatalf("%d breakglass.invoked entries", n)
	}
	// Its item offers no break-glass: it would let nothing run.
	if d := e.pendingItem(name); d.BreakGlass != nil {
		t.Fatalf("a confirmed apply offers break-glass again: %+v", d.BreakGlass)
	}
	// A fresh approval of the plan it would run lets it finish.
	e.signPending(name, "bob", approval.Approve)
	e.pass()
	if ex = e.execution(name, "apply"); ex.State != store.ExecCompleted || !slices.Contains(edr.Contained(), "fin-ws-13") {
		t.Fatalf("with its approval: %s %s (%s); contained %v", ex.State, ex.ReasonCode, ex.Reason, edr.Contained())
	}
	e.verifyAudit()
}

// One approver's signed rejection of the revert does not keep a lapsed
// break-glass block in force: the lapse is how the quorum the emergency
// apply never gathered is enforced, so its revert (trigger breakglass) is
// not held back by a rejection, which is reported as not counting.
func TestBreakGlassLapseNotHeldBackByARejectionOfTheRevert(t *testing.T) {
	t.Parallel()
	name := "contain-keep"
	e := brokenGlass(t, name, "203.0.113.150", func(o *Options) { o.BreakGlassWindow = time.Hour })
	ap := e.execution(name, "apply")
	e.submit(e.signWith("carol", approval.Predicate{Decision: approval.Reject, Operation: approval.OperationRevert, Reason: "keep it blocked"},
		[]approval.Subject{{Path: ap.Path, Digest: ap.Digest}}))
	e.clock.Advance(time.Hour + time.Second)
	e.pass()
	if b := e.breakGlassOf(name); b.State != store.BreakGlassLapsed {
		t.Fatalf("not lapsed: %+v", b)
	}
	rv := e.execution(name, "revert")
	if rv.Trigger != string(judgement.BreakGlass) || rv.State != store.ExecCompleted {
		t.Fatalf("the lapse's revert: %s %s (%s)", rv.Trigger, rv.State, rv.Reason)
	}
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("a rejection of the revert kept a lapsed break-glass block in force: %v", got)
	}
	if !strings.Contains(string(rv.Verdict), string(approval.CodeRejectionNotBinding)) {
		t.Fatalf("carol's rejection is not reported as not counting: %s", rv.Verdict)
	}
	e.verifyAudit()
}

// A lapse reverts what the emergency apply applied whatever its state at
// the deadline: partly applied on break-glass (fin-ws-12 isolated,
// fin-ws-13 failed), its retry stopped at the moment of use once frank's
// statement expired and waiting, it is cancelled and the lapse's revert
// releases fin-ws-12. Before, only a completed or failed apply was
// reverted: the host stayed isolated for good, without its quorum, and
// not even removing the playbook released it.
func TestBreakGlassLapseRevertsAPartlyAppliedApplyWhoseRetryWaits(t *testing.T) {
	t.Parallel()
	e, edr, name := bgEDREnv(t, 6*time.Hour)
	edr.Fail("fin-ws-13", "the EDR agent on fin-ws-13 is offline")
	e.breakGlass(name, "frank") // valid for 4h
	e.pass()
	ex := e.execution(name, "apply")
	if ex.State != store.ExecFailed || !slices.Equal(edr.Contained(), []string{"fin-ws-12"}) {
		t.Fatalf("partly applied on break-glass: %s %v", ex.State, edr.Contained())
	}
	edr.Fail("fin-ws-13", "")
	e.clock.Advance(4*time.Hour + time.Second)
	if _, err := e.rec.Retry(e.ctx, ex.ID, executor); err != nil {
		t.Fatalf("retry: %v", err)
	}
	e.pass()
	if ex = e.execution(name, "apply"); ex.State != store.ExecWaiting {
		t.Fatalf("the retry after frank's statement expired: %s %s (%s)", ex.State, ex.ReasonCode, ex.Reason)
	}
	// The window passes with no quorum.
	e.clock.Advance(2 * time.Hour)
	e.pass()
	b := e.breakGlassOf(name)
	if b.State != store.BreakGlassLapsed || b.RevertID == nil {
		t.Fatalf("lapse %+v", b)
	}
	rv, err := e.st.ExecutionByID(e.ctx, *b.RevertID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Trigger != string(judgement.BreakGlass) || !slices.Equal(rv.Targets, []string{"fin-ws-12"}) || rv.State != store.ExecCompleted {
		t.Fatalf("the lapse's revert: %s %s %v (%s)", rv.Trigger, rv.State, rv.Targets, rv.Reason)
	}
	if ex = e.execution(name, "apply"); ex.State != store.ExecCancelled || ex.ReasonCode != string(codeBreakGlassLapsed) {
		t.Fatalf("the apply after the lapse: %s %s (%s)", ex.State, ex.ReasonCode, ex.Reason)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("the lapse left hosts isolated: %v", got)
	}
	e.verifyAudit()
}

// A push inside the window never escapes the lapse, whatever became of
// the revert it recorded: the deletion's revert rejected by one approver
// (final) is still taken over by the lapse, and released the block with
// no approval. Before, only a revert waiting for its first attempt was
// taken over; the record lapsed and the block stayed in force for good.
func TestBreakGlassLapseTakesOverARejectedDeletionRevert(t *testing.T) {
	t.Parallel()
	name := "contain-then-delete"
	e := brokenGlass(t, name, "203.0.113.140", func(o *Options) { o.BreakGlassWindow = time.Hour })
	e.merge("delete", nil, pbPath(name))
	e.pass()
	rv := e.execution(name, "revert")
	e.submit(e.signWith("carol", approval.Predicate{Decision: approval.Reject, Operation: approval.OperationRevert, Reason: "do not unblock at 3 a.m."},
		[]approval.Subject{{Path: rv.Path, Digest: rv.Digest}}))
	e.pass()
	if rv = e.execution(name, "revert"); rv.State != store.ExecRejected || rv.Trigger != "delete" {
		t.Fatalf("the deletion's revert: %s %s (%s)", rv.State, rv.Trigger, rv.Reason)
	}
	e.clock.Advance(time.Hour + time.Second)
	e.pass()
	b := e.breakGlassOf(name)
	if b.State != store.BreakGlassLapsed || b.RevertID == nil || *b.RevertID != rv.ID {
		t.Fatalf("lapse %+v (revert %d)", b, rv.ID)
	}
	if rv = e.execution(name, "revert"); rv.State != store.ExecCompleted || rv.Trigger != string(judgement.BreakGlass) {
		t.Fatalf("the revert after the lapse: %s %s (%s)", rv.State, rv.Trigger, rv.Reason)
	}
	if got := e.blocked("production"); len(got) != 0 {
		t.Fatalf("the emergency block outlived its window: %v", got)
	}
	e.verifyAudit()
}

// A deletion's revert that failed after releasing part of the targets is
// taken over by the lapse too, as the same operation (rule 4): what it
// released is not sent again, the rest is released.
func TestBreakGlassLapseTakesOverAFailedDeletionRevert(t *testing.T) {
	t.Parallel()
	e, edr, name := bgEDREnv(t, 2*time.Hour)
	e.breakGlass(name, "frank")
	e.pass()
	if got := edr.Contained(); len(got) != 2 {
		t.Fatalf("after break-glass: %v", got)
	}
	e.merge("delete", nil, pbPath(name))
	e.pass()
	edr.Fail("fin-ws-13", "the EDR agent on fin-ws-13 is offline")
	e.approveVersion(name, "revert", map[string]string{"alice": approval.Propose, "bob": approval.Approve})
	e.pass()
	rv := e.execution(name, "revert")
	if rv.State != store.ExecFailed || !slices.Equal(edr.Contained(), []string{"fin-ws-13"}) {
		t.Fatalf("the deletion's revert: %s (%s); contained %v", rv.State, rv.Reason, edr.Contained())
	}
	edr.Fail("fin-ws-13", "")
	e.clock.Advance(2*time.Hour + time.Second)
	e.pass()
	if b := e.breakGlassOf(name); b.State != store.BreakGlassLapsed || b.RevertID == nil || *b.RevertID != rv.ID {
		t.Fatalf("lapse %+v (revert %d)", b, rv.ID)
	}
	if rv = e.execution(name, "revert"); rv.State != store.ExecCompleted || rv.Trigger != string(judgement.BreakGlass) {
		t.Fatalf("the revert after the lapse: %s %s (%s)", rv.State, rv.Trigger, rv.Reason)
	}
	if got := edr.Contained(); len(got) != 0 {
		t.Fatalf("the emergency isolation outlived its window: %v", got)
	}
	if n := edr.Count(action.Revert, "fin-ws-12"); n != 1 {
		t.Fatalf("fin-ws-12 was released %d times", n)
	}
	e.verifyAudit()
}

// The deadline holds when the pass comes late (a history hold skipped
// the break-glass step, the leader was down): approvals signed after it
// are refused at the door, ones issued after it that reached the server
// earlier do not count, and the invocation lapses; a quorum that came in
// time still confirms it on the late pass.
func TestBreakGlassDeadlineHoldsWhenThePassComesLate(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, breakGlassRoster, func(o *Options) { o.BreakGlassWindow = time.Hour })
	e.pass()
	e.merge("late", map[string]string{
		pbPath("contain-late"):   emergencyPlaybook("contain-late", "203.0.113.77"),
		pbPath("contain-dated"):  emergencyPlaybook("contain-dated", "203.0.113.78"),
		pbPath("contain-timely"): emergencyPlaybook("contain-timely", "203.0.113.79"),
	})
	e.pass()
	for _, name := range []string{"contain-late", "contain-dated", "contain-timely"} {
		e.breakGlass(name, "frank")
	}
	e.pass()
	if got := e.blocked("production"); len(got) != 3 {
		t.Fatalf("after break-glass: %v", got)
	}
	deadline := e.breakGlassOf("contain-late").Deadline
	// In time: contain-timely's quorum; and statements for contain-dated
	// that claim to be issued two hours after the deadline.
	e.signPending("contain-timely", "alice", approval.Propose)
	e.signPending("contain-timely", "bob", approval.Approve)
	dated := e.pendingItem("contain-dated")
	for who, decision := range map[string]string{"alice": approval.Propose, "bob": approval.Approve} {
		st, err := dated.Statement(decision, who, "dated", deadline.Add(2*time.Hour), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		e.submit(e.signItem(who, st))
	}
	// No pass runs until three hours later.
	e.clock.Advance(3 * time.Hour)
	late := e.pendingItem("contain-late")
	st, err := late.Statement(approval.Approve, "bob", "late", e.clock.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rec.SubmitApproval(e.ctx, e.signItem("bob", st), approval.Submitted{Source: "api"}); !errors.Is(err, ErrRefused) ||
		!strings.Contains(err.Error(), "were due by") {
		t.Fatalf("an approval after the deadline was taken: %v", err)
	}
	e.pass()
	for name, want := range map[string]string{"contain-late": store.BreakGlassLapsed, "contain-dated": store.BreakGlassLapsed, "contain-timely": store.BreakGlassConfirmed} {
		if b := e.breakGlassOf(name); b.State != want {
			t.Fatalf("%s: %s, want %s (%s)", name, b.State, want, b.Resolution)
		}
	}
	if got := e.blocked("production"); !slices.Equal(got, []string{"203.0.113.79"}) {
		t.Fatalf("after the late pass: %v", got)
	}
	e.verifyAudit()
}

// An invocation whose stored playbook no longer parses (its action left
// the server's configuration) cannot be judged for its quorum: it never
// confirms, the passes before its deadline go on without error, and at
// the deadline it lapses with its revert recorded. Before, every pass
// failed on it and it never lapsed: the block stayed in force for good.
func TestBreakGlassLapsesWhenItsPlaybookNoLongerParses(t *testing.T) {
	t.Parallel()
	name := "contain-unreadable"
	e := brokenGlass(t, name, "203.0.113.160", func(o *Options) { o.BreakGlassWindow = time.Hour })
	e.rec.opts.Catalog = playbook.Catalog{"isolate_host": e.rec.opts.Catalog["isolate_host"]}
	e.clock.Advance(30 * time.Minute)
	e.pass()
	if b := e.breakGlassOf(name); b.State != store.BreakGlassOpen {
		t.Fatalf("before its deadline: %+v", b)
	}
	e.clock.Advance(31 * time.Minute)
	e.pass()
	b := e.breakGlassOf(name)
	if b.State != store.BreakGlassLapsed || b.RevertID == nil || !strings.Contains(b.Resolution, "could not be judged") {
		t.Fatalf("at its deadline: %+v", b)
	}
	rv, err := e.st.ExecutionByID(e.ctx, *b.RevertID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Trigger != string(judgement.BreakGlass) || !slices.Equal(rv.Targets, []string{"203.0.113.160"}) {
		t.Fatalf("the lapse's revert: %s %v (%s)", rv.Trigger, rv.Targets, rv.Reason)
	}
	e.verifyAudit()
}
