package reconcile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

// The tests here each reproduce an attack on the trust rules (docs/design.md)
// through the reconciler's loop — real PostgreSQL, real git, the blocklist
// backend — and show it refused, with the legitimate variant beside it.

// approveApply merges nothing; it has alice propose and, when approver is
// set, that approver approve the latest apply of name, a pass after each.
func (e *env) approveApply(name, approver string) {
	e.t.Helper()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	if approver != "" {
		e.approveVersion(name, "apply", map[string]string{approver: "approve"})
		e.pass()
	}
}

func wantBlocked(t *testing.T, e *env, environment string, want ...string) {
	t.Helper()
	if got := e.blocked(environment); !slices.Equal(got, want) {
		t.Fatalf("%s blocklist %v; want %v", environment, got, want)
	}
}

// events lists the audit events written so far.
func (e *env) events() []audit.Entry {
	e.t.Helper()
	rows, err := e.st.AuditEntries(e.ctx, 0, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]audit.Entry, 0, len(rows))
	for _, r := range rows {
		en, err := audit.Decode(r.Entry)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, en)
	}
	return out
}

func (e *env) countEvents(event audit.Event) int {
	n := 0
	for _, en := range e.events() {
		if en.Event == event {
			n++
		}
	}
	return n
}

// 1. An analyst alone cannot unblock a production address by editing an
// approved production playbook into a staging one: the revert of the
// targets the update drops is judged on its own, in production.
func TestUpdateDoesNotReleaseProductionUnapproved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("prod", map[string]string{pbPath("c2"): playbookYAML("c2", "INC-1", "203.0.113.80", "low", "production", "")})
	e.pass()
	e.approveApply("c2", "bob")
	wantBlocked(t, e, "production", "203.0.113.80")

	// The attack: the same playbook, now in staging with another target,
	// merged with only the analyst's proposal of the new content.
	e.merge("move", map[string]string{pbPath("c2"): playbookYAML("c2", "INC-1", "203.0.113.81", "low", "staging", "")})
	e.pass()
	e.approveApply("c2", "")
	wantBlocked(t, e, "staging", "203.0.113.81") // the staging apply is allowed
	wantBlocked(t, e, "production", "203.0.113.80")
	rv := e.execution("c2", "revert")
	if rv.State != store.ExecWaiting || rv.ReasonCode != "awaiting_approval" || rv.Trigger != "update" ||
		!slices.Equal(rv.Targets, []string{"203.0.113.80"}) || !strings.Contains(rv.Reason, "production") && !strings.Contains(rv.Reason, "approval") {
		t.Fatalf("the update's revert: %s %s %v (%s)", rv.State, rv.ReasonCode, rv.Targets, rv.Reason)
	}
	var d struct{ Outcome string }
	if err := json.Unmarshal(rv.Decision, &d); err != nil || d.Outcome != "require_approval" {
		t.Fatalf("the update's revert was not decided as a production change: %s %v", rv.Decision, err)
	}

	// The apply's statements do not count for the revert; its own do.
	e.approveVersion("c2", "revert", map[string]string{"alice": "propose"})
	e.pass()
	wantBlocked(t, e, "production", "203.0.113.80")
	e.approveVersion("c2", "revert", map[string]string{"bob": "approve"})
	e.pass()
	wantBlocked(t, e, "production")
	if rv := e.execution("c2", "revert"); rv.State != store.ExecCompleted {
		t.Fatalf("approved revert: %s (%s)", rv.State, rv.Reason)
	}
	e.verifyAudit()
}

// 3. A playbook approved under the policies in force is judged again when
// the admins adopt stricter ones before it runs: what the new set denies
// never executes; what it allows still does.
func TestAdoptedPoliciesJudgeWhatWaits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("two", map[string]string{
		pbPath("prod-a"):  playbookYAML("prod-a", "INC-2", "203.0.113.90", "low", "production", ""),
		pbPath("stage-b"): playbookYAML("stage-b", "INC-3", "203.0.113.91", "low", "staging", ""),
	})
	e.pass()
	e.approveVersion("prod-a", "apply", map[string]string{"alice": "propose"})
	e.pass()
	if a := e.execution("prod-a", "apply"); a.State != store.ExecWaiting || a.ReasonCode != "awaiting_approval" {
		t.Fatalf("prod-a before: %s %s", a.State, a.ReasonCode)
	}

	// The admins allow-list 203.0.113.90 (a partner's gateway).
	data, err := fs.ReadFile(policies.FS, "data.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stricter := strings.Replace(string(data), "    allowlisted_networks:\n", "    allowlisted_networks:\n      203.0.113.90/32: partner gateway\n", 1)
	if stricter == string(data) {
		t.Fatal("data.yaml has no allowlisted_networks")
	}
	e.merge("allowlist", map[string]string{"policies/data.yaml": stricter})
	e.pass()
	// Before the next pass: prod-a's approval under the old set, stage-b's
	// proposal, and the admins' approval of the new set all arrive.
	e.approveVersion("prod-a", "apply", map[string]string{"bob": "approve"})
	e.approveVersion("stage-b", "apply", map[string]string{"alice": "propose"})
	e.submit(e.signMeta("dave", "approve"))
	e.submit(e.signMeta("erin", "approve"))
	e.pass()

	if st := e.rec.Status(); st.Adopted != st.Processed || len(st.Holds) != 0 {
		t.Fatalf("the new set was not adopted: %+v", st)
	}
	a := e.execution("prod-a", "apply")
	if a.State != store.ExecDenied || a.ReasonCode != "denied_by_policy" || !strings.Contains(a.Reason, "allow-listed") {
		t.Fatalf("prod-a under the adopted set: %s %s (%s)", a.State, a.ReasonCode, a.Reason)
	}
	wantBlocked(t, e, "production")
	wantBlocked(t, e, "staging", "203.0.113.91")
	e.verifyAudit()
}

// 4. Between its judgement and its backend call an operation is checked
// once more: a rejection that arrives while it is pending stops it, and so
// does live state that no longer matches the plan it was approved with.
// An operation nothing changed runs.
func TestCheckedAtTheMomentOfUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("three", map[string]string{
		pbPath("first"):     playbookYAML("first", "INC-4", "203.0.113.100", "low", "production", ""),
		pbPath("rejected"):  playbookYAML("rejected", "INC-5", "203.0.113.101", "low", "production", ""),
		pbPath("z-drifted"): playbookYAML("z-drifted", "INC-6", "203.0.113.102", "low", "production", ""),
	})
	e.pass()
	for _, n := range []string{"first", "rejected", "z-drifted"} {
		e.approveVersion(n, "apply", map[string]string{"alice": "propose"})
	}
	e.pass()
	// While the executor applies "first", a rejection of "rejected" arrives
	// and someone blocks "z-drifted"'s address by hand.
	manual, err := e.blocklist("production")
	if err != nil {
		t.Fatal(err)
	}
	e.setOnApply(func(req action.Request) error {
		if req.Playbook != "first" {
			return nil
		}
		e.setOnApply(nil)
		e.submit(e.signWith("carol", approval.Predicate{Decision: "reject", Reason: "that address is our VPN concentrator",
			PolicyDigest: e.execution("rejected", "apply").PolicyDigest}, []approval.Subject{{Path: pbPath("rejected"), Digest: e.execution("rejected", "apply").Digest}}))
		_, err := manual.Apply(e.ctx, action.Request{Playbook: "by-hand", Digest: strings.Repeat("0", 64), Action: "block_ip",
			Environment: "production", Operation: action.Apply, Targets: []string{"203.0.113.102"}})
		return err
	})
	for _, n := range []string{"first", "rejected", "z-drifted"} {
		e.approveVersion(n, "apply", map[string]string{"bob": "approve"})
	}
	e.pass()

	if x := e.execution("first", "apply"); x.State != store.ExecCompleted {
		t.Fatalf("first: %s (%s)", x.State, x.Reason)
	}
	r := e.execution("rejected", "apply")
	if r.State != store.ExecRejected || r.ReasonCode != "rejected" || !strings.Contains(r.Reason, "stopped at the moment of use") || r.Attempts != 0 {
		t.Fatalf("rejected while pending: %s %s attempts %d (%s)", r.State, r.ReasonCode, r.Attempts, r.Reason)
	}
	d := e.execution("z-drifted", "apply")
	if d.State != store.ExecWaiting || d.ReasonCode != "plan_changed" || !strings.Contains(d.Reason, "already_blocked") {
		t.Fatalf("drifted: %s %s (%s)", d.State, d.ReasonCode, d.Reason)
	}
	if n := e.countEvents(eventStopped); n != 2 {
		t.Fatalf("%d execution.stopped entries; want 2", n)
	}
	journal := e.journal("production")
	if journal["writ:rejected:"+r.Digest+":apply block"] != 0 || journal["writ:z-drifted:"+d.Digest+":apply block"] != 0 {
		t.Fatalf("a stopped operation reached the backend: %v", journal)
	}
	// The approval of the old plan no longer counts for "z-drifted": the
	// approvers approve the plan as it is now.
	e.pass()
	if d := e.execution("z-drifted", "apply"); d.State != store.ExecWaiting || d.ReasonCode != "awaiting_approval" {
		t.Fatalf("drifted after the stop: %s %s (%s)", d.State, d.ReasonCode, d.Reason)
	}
	e.approveVersion("z-drifted", "apply", map[string]string{"bob": "approve"})
	e.pass()
	if d := e.execution("z-drifted", "apply"); d.State != store.ExecCompleted {
		t.Fatalf("drifted re-approved: %s (%s)", d.State, d.Reason)
	}
	wantBlocked(t, e, "production", "203.0.113.100", "203.0.113.102")
	e.verifyAudit()
}

// 4. An approval withdrawn while its operation backs off between retries
// stops it; the operation does not run on the strength of a statement
// that is gone.
func TestWithdrawnWhileBackingOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("p", map[string]string{pbPath("retried"): playbookYAML("retried", "INC-7", "203.0.113.110", "low", "production", "")})
	e.pass()
	e.approveVersion("retried", "apply", map[string]string{"alice": "propose"})
	e.pass()
	x := e.execution("retried", "apply")
	raw := e.signWith("bob", approval.Predicate{Decision: "approve", PolicyDigest: x.PolicyDigest, PlanDigest: x.PlanDigest},
		[]approval.Subject{{Path: x.Path, Digest: x.Digest}})
	if _, err := e.rec.SubmitApproval(e.ctx, raw, approval.Submitted{Source: "github", SourceRef: "review-77"}); err != nil {
		t.Fatal(err)
	}
	e.setOnApply(func(action.Request) error { return fmt.Errorf("edge firewall busy: %w", action.ErrTransient) })
	e.pass()
	if x := e.execution("retried", "apply"); x.State != store.ExecPending || x.ReasonCode != "retry" || x.Attempts != 1 {
		t.Fatalf("after a transient error: %s %s attempts %d", x.State, x.ReasonCode, x.Attempts)
	}
	e.setOnApply(nil)
	// The review is dismissed while the operation backs off.
	if n, err := e.rec.WithdrawApprovals(e.ctx, "github", "review-77", "bob"); err != nil || n != 1 {
		t.Fatalf("withdraw: %d %v", n, err)
	}
	e.clock.Advance(time.Minute)
	e.pass()
	if x := e.execution("retried", "apply"); x.State != store.ExecWaiting || x.ReasonCode != "awaiting_approval" {
		t.Fatalf("after the withdrawal: %s %s (%s)", x.State, x.ReasonCode, x.Reason)
	}
	wantBlocked(t, e, "production")
	// A fresh approval lets it run.
	e.approveVersion("retried", "apply", map[string]string{"carol": "approve"})
	e.pass()
	wantBlocked(t, e, "production", "203.0.113.110")
}

// 4. A withdrawal is of the statement, not of the bytes that carried it:
// the same statement sent again in other bytes (JSON spacing, another key
// id hint, or none: anyone can make them from a
// review's public text, without logging in) is refused at the door and
// counts for nothing; and bytes that came through the API before the
// review was posted are withdrawn with it.
func TestWithdrawnStatementStaysWithdrawn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("p", map[string]string{pbPath("wd"): playbookYAML("wd", "INC-70", "203.0.113.170", "low", "production", "")})
	e.pass()
	e.approveVersion("wd", "apply", map[string]string{"alice": "propose"})
	e.pass()
	x := e.execution("wd", "apply")
	raw := e.signWith("bob", approval.Predicate{Decision: "approve", PolicyDigest: x.PolicyDigest, PlanDigest: x.PlanDigest},
		[]approval.Subject{{Path: x.Path, Digest: x.Digest}})
	// The same bytes reach writ through the API first, then in a review.
	for _, ch := range []approval.Submitted{{Source: "api"}, {Source: "github", SourceRef: "review-99"}} {
		if _, err := e.rec.SubmitApproval(e.ctx, raw, ch); err != nil {
			t.Fatalf("submit through %s: %v", ch.Source, err)
		}
	}
	// The review is dismissed before a pass runs the apply.
	if n, err := e.rec.WithdrawApprovals(e.ctx, "github", "review-99", "maintainer"); err != nil || n != 1 {
		t.Fatalf("withdraw: %d %v", n, err)
	}
	e.pass()
	if x := e.execution("wd", "apply"); x.State != store.ExecWaiting {
		t.Fatalf("after the withdrawal (the bytes came through the API too): %s %s", x.State, x.Reason)
	}
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	reencode := func(change func()) []byte {
		saved := env
		saved.Signatures = slices.Clone(env.Signatures)
		change()
		out, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		env = saved
		return out
	}
	indented := func() []byte {
		out, err := json.MarshalIndent(env, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for what, again := range map[string][]byte{
		"one more space": append(bytes.TrimRight(raw, "\n"), ' '),
		"no key id hint": reencode(func() { env.Signatures[0].KeyID = "" }),
		"another key id": reencode(func() { env.Signatures[0].KeyID = "SHA256:not-the-key" }),
		"indented JSON":  indented(),
	} {
		if bytes.Equal(again, raw) {
			t.Fatalf("%s: the same bytes", what)
		}
		_, err := e.rec.SubmitApproval(e.ctx, again, approval.Submitted{Source: "api"})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "withdrawn") {
			t.Errorf("%s: the withdrawn statement was taken again: %v", what, err)
		}
	}
	e.clock.Advance(time.Minute)
	e.pass()
	if x := e.execution("wd", "apply"); x.State != store.ExecWaiting {
		t.Fatalf("after the replays: %s %s (%s)", x.State, x.ReasonCode, x.Reason)
	}
	wantBlocked(t, e, "production")
	// A new statement of bob's counts.
	e.approveVersion("wd", "apply", map[string]string{"bob": "approve"})
	e.pass()
	wantBlocked(t, e, "production", "203.0.113.170")
}

// 4. An approver disabled in the approvers file adopted meanwhile no longer
// counts for an operation that has not run.
func TestDisabledApproverStopsWhatWaits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("p", map[string]string{pbPath("by-bob"): playbookYAML("by-bob", "INC-8", "203.0.113.120", "low", "production", "")})
	e.pass()
	e.approveVersion("by-bob", "apply", map[string]string{"alice": "propose"})
	e.pass()
	// bob's key is compromised: the admins disable him.
	disabled := strings.Replace(e.approversFile(roster), "  - id: bob\n", "  - id: bob\n    disabled: true\n", 1)
	e.merge("disable-bob", map[string]string{".writ/approvers.yaml": disabled})
	e.pass()
	e.approveVersion("by-bob", "apply", map[string]string{"bob": "approve"})
	e.submit(e.signMeta("dave", "approve"))
	e.submit(e.signMeta("erin", "approve"))
	e.pass()
	x := e.execution("by-bob", "apply")
	if x.State != store.ExecWaiting || x.ReasonCode != "awaiting_approval" || !strings.Contains(string(x.Verdict), "person_disabled") {
		t.Fatalf("approved only by a disabled person: %s %s %s", x.State, x.ReasonCode, x.Verdict)
	}
	wantBlocked(t, e, "production")
	e.approveVersion("by-bob", "apply", map[string]string{"carol": "approve"})
	e.pass()
	wantBlocked(t, e, "production", "203.0.113.120")
}

// 5. An approvers file adopted, reverted and pushed again byte for byte is
// a new change: the admins' stored approvals of the first adoption do not
// count again.
func TestReAdoptionNeedsNewSignatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	k1 := e.approversFile(roster)
	k2 := e.approversFile(append(slices.Clone(roster), struct {
		id    string
		roles []string
	}{"zed", []string{"approver"}}))
	adopt := func(branch, content string) string {
		t.Helper()
		e.merge(branch, map[string]string{".writ/approvers.yaml": content})
		e.pass()
		e.submit(e.signMeta("dave", "approve"))
		e.submit(e.signMeta("erin", "approve"))
		e.pass()
		st := e.rec.Status()
		if st.Adopted != st.Processed {
			t.Fatalf("%s not adopted: %+v", branch, st)
		}
		return st.Adopted
	}
	adopt("add-zed", k2)
	back := adopt("remove-zed", k1)

	e.merge("add-zed-again", map[string]string{".writ/approvers.yaml": k2})
	e.pass()
	st := e.rec.Status()
	if st.Adopted != back || len(st.Holds) != 1 {
		t.Fatalf("re-adopted with the old approvals: %+v", st)
	}
	e.submit(e.signMeta("dave", "approve"))
	e.submit(e.signMeta("erin", "approve"))
	e.pass()
	if st := e.rec.Status(); st.Adopted != st.Processed || len(st.Holds) != 0 {
		t.Fatalf("fresh approvals of the new transition: %+v", st)
	}
	e.verifyAudit()
}

// 6. One admin cannot adopt an unsigned change to the approvers file:
// acknowledging its hold dismisses it, and the people it would add cannot
// approve. The admins' signatures still adopt it.
func TestAcknowledgingDismissesNeverAdopts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	trusted := e.rec.Status().Adopted
	// mallory, an analyst, becomes an approver.
	promoted := make([]struct {
		id    string
		roles []string
	}, len(roster))
	copy(promoted, roster)
	for i := range promoted {
		if promoted[i].id == "mallory" {
			promoted[i].roles = []string{"analyst", "approver"}
		}
	}
	e.merge("promote", map[string]string{".writ/approvers.yaml": e.approversFile(promoted)})
	e.pass()
	holds, err := e.st.OpenHolds(e.ctx)
	if err != nil || len(holds) != 1 {
		t.Fatalf("holds: %v %v", holds, err)
	}
	if err := e.rec.AcknowledgeHold(e.ctx, holds[0].ID, audit.Actor{ID: "root-admin", Role: "admin"}); err != nil {
		t.Fatal(err)
	}
	e.pass()
	st := e.rec.Status()
	if st.Adopted != trusted || len(st.Holds) != 0 {
		t.Fatalf("after the acknowledgement: %+v (trusted %.12s)", st, trusted)
	}
	if e.countEvents(eventMetaDismissed) != 1 || e.countEvents(eventMetaAdopted) != 0 {
		t.Fatal("the acknowledgement was not recorded as a dismissal")
	}
	// mallory's approval of a production playbook does not count.
	e.merge("p", map[string]string{pbPath("mal"): playbookYAML("mal", "INC-9", "203.0.113.130", "low", "production", "")})
	e.pass()
	e.approveVersion("mal", "apply", map[string]string{"alice": "propose"})
	e.pass()
	e.approveVersion("mal", "apply", map[string]string{"mallory": "approve"})
	e.pass()
	if x := e.execution("mal", "apply"); x.State != store.ExecWaiting || !strings.Contains(string(x.Verdict), "role_not_qualified") {
		t.Fatalf("approved by someone the dismissed change promotes: %s %s", x.State, x.Verdict)
	}
	wantBlocked(t, e, "production")
	// The admins sign the change: it is adopted, dismissal or not.
	e.submit(e.signMeta("dave", "approve"))
	e.submit(e.signMeta("erin", "approve"))
	e.pass()
	if st := e.rec.Status(); st.Adopted != st.Processed {
		t.Fatalf("signed by the admins: %+v", st)
	}
	e.pass()
	wantBlocked(t, e, "production", "203.0.113.130")
}

// 6. When the admins' keys are lost, the server operator's recovery keys
// adopt a new approvers file: two of them, signed, audited as recovery.
func TestRecoveryKeysAdopt(t *testing.T) {
	t.Parallel()
	var recovery []approval.RecoveryKey
	signers := map[string]*person{}
	for _, id := range []string{"ops-1", "ops-2"} {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := keys.MarshalPublic(k.Public())
		recovery = append(recovery, approval.RecoveryKey{ID: id, PEM: pub})
		signers[id] = &person{id: id, roles: []string{"admin"}, signer: k}
	}
	kr, err := approval.NewRecoveryKeyring(recovery)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.Recovery = kr })
	for id, p := range signers {
		e.people[id] = p
	}
	e.pass()
	// dave and erin lost their keys: the new file has new ones.
	delete(e.people, "dave")
	delete(e.people, "erin")
	e.merge("new-admin-keys", map[string]string{".writ/approvers.yaml": e.approversFile(roster)})
	e.pass()
	e.submit(e.signMeta("ops-1", "approve"))
	e.pass()
	if st := e.rec.Status(); st.Adopted == st.Processed {
		t.Fatal("one recovery key adopted the change")
	}
	e.submit(e.signMeta("ops-2", "approve"))
	e.pass()
	if st := e.rec.Status(); st.Adopted != st.Processed || len(st.Holds) != 0 {
		t.Fatalf("two recovery keys: %+v", st)
	}
	found := false
	for _, en := range e.events() {
		if en.Event == eventMetaAdopted && strings.Contains(string(en.Payload), `"recovery":true`) {
			found = true
		}
	}
	if !found {
		t.Fatal("the adoption by recovery keys is not on record as such")
	}
	// An approval of a playbook by a recovery key is refused at the door:
	// recovery keys only adopt changes to what decides.
	e.merge("p", map[string]string{pbPath("r"): playbookYAML("r", "INC-10", "203.0.113.140", "low", "production", "")})
	e.pass()
	x := e.execution("r", "apply")
	raw := e.signWith("ops-1", approval.Predicate{Decision: "approve", PolicyDigest: x.PolicyDigest, PlanDigest: x.PlanDigest},
		[]approval.Subject{{Path: x.Path, Digest: x.Digest}})
	if _, err := e.rec.SubmitApproval(e.ctx, raw, approval.Submitted{Source: "api"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("a recovery key approving a playbook: %v", err)
	}
}

// 7. A statement names the repository it is about, and counts nowhere
// else: one made for another repository is refused at the door, and does
// not count even if it reaches the store another way.
func TestStatementsCountOnlyInTheirRepository(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("p", map[string]string{pbPath("here"): playbookYAML("here", "INC-11", "203.0.113.150", "low", "staging", "")})
	e.pass()
	x := e.execution("here", "apply")
	subjects := []approval.Subject{{Path: x.Path, Digest: x.Digest}}
	for name, raw := range map[string][]byte{
		"another repository": e.signWith("alice", approval.Predicate{Decision: "propose", Repository: "other-org/other-repo"}, subjects),
		"no repository":      e.signBare("alice", approval.Predicate{Decision: "propose"}, subjects),
	} {
		if _, err := e.rec.SubmitApproval(e.ctx, raw, approval.Submitted{Source: "api"}); !errors.Is(err, ErrRefused) {
			t.Fatalf("a statement naming %s was accepted: %v", name, err)
		}
		env, err := approval.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		p := env.Statement.Predicate
		if _, _, err := e.st.InsertApproval(e.ctx, store.Approval{Envelope: raw, EnvelopeSHA256: env.SHA256, StatementSHA256: env.StatementSHA256, Decision: p.Decision, Approver: "alice",
			Repository: p.Repository, IssuedAt: p.IssuedAt, ExpiresAt: p.ExpiresAt, Source: "import",
			Subjects: []store.ApprovalSubject{{Digest: x.Digest, Name: x.Path}}}); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(2 * time.Minute) // a full sweep
	e.pass()
	if x := e.execution("here", "apply"); x.State != store.ExecWaiting || !strings.Contains(string(x.Verdict), "repository_mismatch") {
		t.Fatalf("with statements of another repository: %s %s", x.State, x.Verdict)
	}
	e.approveVersion("here", "apply", map[string]string{"alice": "propose"})
	e.pass()
	wantBlocked(t, e, "staging", "203.0.113.150")
}

// signBare signs a predicate exactly as given (no repository filled in).
func (e *env) signBare(who string, pred approval.Predicate, subjects []approval.Subject) []byte {
	e.t.Helper()
	s, err := keys.Signer(e.people[who].signer)
	if err != nil {
		e.t.Fatal(err)
	}
	pred.Approver = who
	pred.IssuedAt = e.clock.Now()
	pred.ExpiresAt = pred.IssuedAt.Add(24 * time.Hour)
	raw, err := approval.Sign(s, approval.NewStatement(subjects, pred))
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

// A waiting operation cancelled because its playbook left the branch keeps
// what it was judged on, and its state is read from its code.
func TestCancelledKeepsItsJudgement(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	e.merge("p", map[string]string{pbPath("gone"): playbookYAML("gone", "INC-12", "203.0.113.160", "low", "production", "")})
	e.pass()
	e.approveVersion("gone", "apply", map[string]string{"alice": "propose"})
	e.pass()
	before := e.execution("gone", "apply")
	if before.State != store.ExecWaiting || len(before.Decision) == 0 || len(before.Verdict) == 0 || before.PlanDigest == "" {
		t.Fatalf("before: %+v", before)
	}
	e.merge("rm", nil, pbPath("gone"))
	e.pass()
	x := e.execution("gone", "apply")
	if x.State != store.ExecCancelled || x.ReasonCode != "removed" || !jsonEqual(x.Decision, before.Decision) ||
		!jsonEqual(x.Verdict, before.Verdict) || x.PlanDigest != before.PlanDigest || x.PolicyDigest != before.PolicyDigest {
		t.Fatalf("cancelled: %s %s decision %s verdict %s plan %s", x.State, x.ReasonCode, x.Decision, x.Verdict, x.PlanDigest)
	}
}
