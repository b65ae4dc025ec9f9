package reconcile

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/nftables"
	"github.com/writ-sec/writ/internal/action/nftables/netnstest"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/metrics"
	"github.com/writ-sec/writ/internal/store"
)

// checkDrift runs an on-demand drift check.
func (e *env) checkDrift() *DriftReport {
	e.t.Helper()
	rep, err := e.rec.CheckDrift(e.ctx)
	if err != nil {
		e.t.Fatalf("drift check: %v", err)
	}
	return rep
}

// signHeal has each person sign decision for a heal: its operation and
// incident, and for an approval its plan, as writ approve op-N does.
func (e *env) signHeal(ex *store.Execution, incident int64, decisions map[string]string) {
	e.t.Helper()
	for who, decision := range decisions {
		pred := approval.Predicate{Decision: decision, Operation: approval.OperationHeal, Incident: incident, PolicyDigest: ex.PolicyDigest}
		if decision == approval.Approve {
			pred.PlanDigest = ex.PlanDigest
		}
		e.submit(e.signWith(who, pred, []approval.Subject{{Path: ex.Path, Digest: ex.Digest}}))
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// signOp has each person sign decision for operation op-N as writ
// approve op-N does: the pending item's own statement.
func (e *env) signOp(id int64, decisions map[string]string) {
	e.t.Helper()
	pending, err := e.rec.PendingItem(e.ctx, "op-"+itoa(id))
	if err != nil {
		e.t.Fatal(err)
	}
	for who, decision := range decisions {
		st, err := pending.Statement(decision, who, "heal the hand edit", e.clock.Now(), time.Hour)
		if err != nil {
			e.t.Fatal(err)
		}
		e.submit(e.signItem(who, st))
	}
}

// The drift end to end, with real parts: writ's nftables table in a
// network namespace of the test's own is edited by hand (an address of an
// approved production playbook deleted from the drop set, another added).
// The check finds the first missing and the second unexpected, reports
// them (report, metric, one drift.detected entry, however often it checks)
// and, production healing, records the heal of the incident: an operation
// of its own, judged like any production change, so it waits for a signed
// proposal and approval naming the heal and its incident (the apply's
// statements do not count, nor those of another incident), and nothing is
// blocked again until they arrive. Once signed, the next pass re-applies
// the missing address; the addition is reported and kept.
func TestDriftNftablesHealedOnlyAfterJudgement(t *testing.T) {
	netnstest.NeedRoot(t)
	t.Parallel()
	ns := netnstest.New(t)
	m := metrics.New()
	e := newEnv(t, func(o *Options) {
		o.Drift = DriftOptions{Modes: map[string]string{"production": DriftModeHeal}}
		o.Metrics = m
	})
	nb, err := nftables.New(nftables.Options{NetNS: ns, Name: "nftables:production"})
	if err != nil {
		t.Fatal(err)
	}
	reg := action.NewRegistry()
	reg.Register("block_ip", "production", nb)
	e.rec.opts.Backends = reg
	live := func(target string) bool {
		t.Helper()
		l, err := nb.Inventory(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l.Contains(target)
	}

	e.pass()
	name := "block-c2-beacon"
	e.merge("c2", map[string]string{pbPath(name): playbookYAML(name, "INC-77", "198.51.100.7, 198.51.100.9", "high", "production", "")})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusCompleted {
		t.Fatalf("apply: %s (%s)", st, reason)
	}
	if rep := e.checkDrift(); !rep.InSync || len(rep.Groups) != 1 || rep.Groups[0].Status != DriftInSync || rep.Groups[0].Backend != "nftables:production" {
		t.Fatalf("report before any edit: %+v", rep)
	}

	netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "delete", "element", "inet", "writ", "blocked4", "{ 198.51.100.7 }")
	netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "add", "element", "inet", "writ", "blocked4", "{ 192.0.2.50 }")
	rep := e.checkDrift()
	g := rep.Groups[0]
	if rep.InSync || g.Status != DriftFound || g.Counts != (DriftCounts{Missing: 1, Unexpected: 1}) || g.Mode != DriftModeHeal || g.Since == nil {
		t.Fatalf("report after the edit: %+v", g)
	}
	if f := g.Findings; len(f) != 2 || f[0].Kind != action.DriftMissing || f[0].Target != "198.51.100.7" || f[0].Playbook != name ||
		f[1].Kind != action.DriftUnexpected || f[1].Target != "192.0.2.50" {
		t.Fatalf("findings: %+v", f)
	}
	if latest, err := e.rec.LatestDrift(e.ctx); err != nil || latest.Counts != rep.Counts {
		t.Fatalf("latest report %+v, %v", latest, err)
	}
	scraped := scrape(t, m)
	for _, want := range []string{
		`writ_drift_targets{action="block_ip",environment="production",kind="missing"} 1`,
		`writ_drift_targets{action="block_ip",environment="production",kind="unexpected"} 1`,
		`writ_drift_targets{action="block_ip",environment="production",kind="changed"} 0`,
	} {
		if !strings.Contains(scraped, want) {
			t.Fatalf("metrics lack %s:\n%s", want, scraped)
		}
	}
	detected := e.audited(string(audit.EventDriftDetected))
	if len(detected) != 1 || detected[0]["environment"] != "production" || detected[0]["backend"] != "nftables:production" ||
		detected[0]["mode"] != "heal" || len(detected[0]["missing"].([]any)) != 1 || detected[0]["unexpected"].([]any)[0] != "192.0.2.50" {
		t.Fatalf("drift.detected entries: %v", detected)
	}

	// The heal: an operation of its own, waiting for its own statements.
	if len(g.Heals) != 1 || g.Heals[0].State != string(store.ExecWaiting) {
		t.Fatalf("heals: %+v", g.Heals)
	}
	heal := e.execution(name, "heal")
	if heal.Trigger != "drift" || heal.ChangeType != "drift" || heal.Incident != g.Heals[0].Incident || heal.ReasonCode != "awaiting_approval" ||
		strings.Join(heal.Targets, ",") != "198.51.100.7" || !strings.Contains(string(heal.Plan), "would_block") {
		t.Fatalf("heal: %+v (%s)", heal, heal.Reason)
	}
	// Checking again changes nothing: no second entry, no second heal.
	e.checkDrift()
	e.pass()
	if n := len(e.audited(string(audit.EventDriftDetected))); n != 1 {
		t.Fatalf("%d drift.detected entries after checking again", n)
	}
	if list, _ := e.st.ListExecutions(e.ctx, store.ExecutionFilter{Name: name}); len(list) != 2 {
		t.Fatalf("%d executions after checking again", len(list))
	}
	if live("198.51.100.7") {
		t.Fatal("healed before its judgement allowed it")
	}
	// The apply's statements are there, and count for nothing here; nor
	// do statements naming another incident.
	wrong := *heal
	e.signHeal(&wrong, heal.Incident+1, map[string]string{"alice": approval.Propose, "bob": approval.Approve})
	e.pass()
	if h := e.execution(name, "heal"); h.State != store.ExecWaiting || live("198.51.100.7") {
		t.Fatalf("heal with another incident's statements: %s %s", h.State, h.Reason)
	}
	pending, err := e.rec.PendingItem(e.ctx, "op-"+itoa(heal.ID))
	if err != nil || pending.Kind != PendingHeal || pending.Incident != heal.Incident {
		t.Fatalf("pending heal: %+v, %v", pending, err)
	}
	// Signed as writ approve op-N signs it: the item's own statement.
	e.signOp(heal.ID, map[string]string{"alice": approval.Propose, "carol": approval.Approve})
	e.pass()
	if h := e.execution(name, "heal"); h.State != store.ExecCompleted {
		t.Fatalf("heal after its approvals: %s %s (%s)", h.State, h.ReasonCode, h.Reason)
	}
	if !live("198.51.100.7") || !live("198.51.100.9") || !live("192.0.2.50") {
		t.Fatal("after the heal the drop set lacks the healed address, or lost the addition")
	}
	if st, _ := e.status(name); st != store.StatusCompleted {
		t.Fatalf("playbook status after the heal: %s", st)
	}
	rep = e.checkDrift()
	if g := rep.Groups[0]; g.Counts != (DriftCounts{Unexpected: 1}) || len(g.Heals) != 0 {
		t.Fatalf("report after the heal: %+v", g)
	}
	// The addition is removed by hand: in sync, resolved on record.
	netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "delete", "element", "inet", "writ", "blocked4", "{ 192.0.2.50 }")
	if rep := e.checkDrift(); !rep.InSync {
		t.Fatalf("report after the addition was removed: %+v", rep)
	}
	if n := len(e.audited(string(audit.EventDriftDetected))); n != 2 {
		t.Fatalf("%d drift.detected entries; want 2 (the edit, then what the heal left)", n)
	}
	if r := e.audited(string(audit.EventDriftResolved)); len(r) != 1 || r[0]["since"] == nil {
		t.Fatalf("drift.resolved entries: %v", r)
	}
	e.verifyAudit()
}

// In report mode nothing is applied: a line removed from the blocklist
// file by hand (a backend checked per target through its plan) is found by
// the periodic check, reported and audited, and stays missing however
// many passes run; put back by hand, the drift is resolved on record.
func TestDriftReportModeChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.Drift = DriftOptions{Interval: time.Minute} })
	e.pass()
	name := "block-scanner"
	e.merge("scan", map[string]string{pbPath(name): playbookYAML(name, "INC-8", "203.0.113.10, 203.0.113.11", "low", "staging", "")})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusCompleted {
		t.Fatalf("apply: %s (%s)", st, reason)
	}
	file := filepath.Join(e.dir, "blocklist", "staging.txt")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), "203.0.113.10\n", "", 1)
	if edited == string(data) {
		t.Fatalf("blocklist file:\n%s", data)
	}
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	e.pass() // the interval has not passed since the last check
	if n := len(e.audited(string(audit.EventDriftDetected))); n != 0 {
		t.Fatalf("checked before the interval passed: %d", n)
	}
	e.clock.Advance(time.Minute)
	e.pass()
	detected := e.audited(string(audit.EventDriftDetected))
	if len(detected) != 1 || detected[0]["mode"] != "report" || detected[0]["missing"].([]any)[0] != "203.0.113.10" || len(detected[0]["heal"].([]any)) != 0 {
		t.Fatalf("drift.detected: %v", detected)
	}
	for range 3 {
		e.clock.Advance(time.Minute)
		e.pass()
	}
	if got := e.blocked("staging"); strings.Join(got, ",") != "203.0.113.11" {
		t.Fatalf("report mode changed the file: %v", got)
	}
	if list, _ := e.st.ListExecutions(e.ctx, store.ExecutionFilter{Name: name}); len(list) != 1 {
		t.Fatalf("%d executions in report mode", len(list))
	}
	latest, err := e.rec.LatestDrift(e.ctx)
	if err != nil || latest.Counts != (DriftCounts{Missing: 1}) {
		t.Fatalf("latest: %+v %v", latest, err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.pass()
	if r := e.audited(string(audit.EventDriftResolved)); len(r) != 1 {
		t.Fatalf("drift.resolved: %v", r)
	}
	if n := len(e.audited(string(audit.EventDriftDetected))); n != 1 {
		t.Fatalf("%d drift.detected entries", n)
	}
	e.verifyAudit()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A heal that has not run when its drift goes away (the line put back by
// hand) is cancelled, and the incident is over: drift that comes back is
// a new incident with a heal of its own, whose statements are not the
// first one's. Where the policies ask no approval, the heal still needs
// its own signed proposal, then runs.
func TestDriftHealCancelledWhenResolvedAndNewIncident(t *testing.T) {
	t.Parallel()
	e, name, file, data := scannerHealEnv(t)
	drop := func() {
		t.Helper()
		if err := os.WriteFile(file, []byte(strings.Replace(string(data), "203.0.113.20\n", "", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	drop()
	g := e.checkDrift().Groups
	if len(g) != 1 || g[0].Environment != "staging" || len(g[0].Heals) != 1 {
		t.Fatalf("groups: %+v", g)
	}
	first := e.execution(name, "heal")
	if first.State != store.ExecWaiting || first.ReasonCode != "awaiting_approval" {
		t.Fatalf("first heal: %s %s (%s)", first.State, first.ReasonCode, first.Reason)
	}
	// Its proposal is signed, and the line put back by hand before it ran:
	// the heal is cancelled.
	e.signHeal(first, first.Incident, map[string]string{"alice": approval.Propose})
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if rep := e.checkDrift(); !rep.InSync {
		t.Fatalf("after the line came back: %+v", rep)
	}
	if h := e.execution(name, "heal"); h.State != store.ExecCancelled || h.ReasonCode != string(codeDriftResolved) {
		t.Fatalf("first heal after the drift went away: %s %s", h.State, h.ReasonCode)
	}
	// A statement about it now is refused at the door; the proposal it
	// had does not count for the next incident's heal.
	late := e.signWith("mallory", approval.Predicate{Decision: approval.Propose, Operation: approval.OperationHeal, Incident: first.Incident,
		PolicyDigest: first.PolicyDigest}, []approval.Subject{{Path: first.Path, Digest: first.Digest}})
	if _, err := e.rec.SubmitApproval(e.ctx, late, approval.Submitted{Source: "api"}); err == nil || !strings.Contains(err.Error(), "no longer pending") {
		t.Fatalf("a statement about the cancelled heal: %v", err)
	}
	drop()
	g = e.checkDrift().Groups
	if len(g[0].Heals) != 1 || g[0].Heals[0].Incident == first.Incident || g[0].Heals[0].State != string(store.ExecWaiting) {
		t.Fatalf("second incident: %+v", g[0].Heals)
	}
	second, err := e.st.ExecutionByID(e.ctx, g[0].Heals[0].Execution)
	if err != nil || second.ReasonCode != "awaiting_approval" {
		t.Fatalf("second heal: %+v %v", second, err)
	}
	e.signHeal(second, second.Incident, map[string]string{"alice": approval.Propose})
	e.pass()
	if h, _ := e.st.ExecutionByID(e.ctx, second.ID); h.State != store.ExecCompleted {
		t.Fatalf("second heal: %s %s (%s)", h.State, h.ReasonCode, h.Reason)
	}
	if got := e.blocked("staging"); strings.Join(got, ",") != "203.0.113.20,203.0.113.21" {
		t.Fatalf("after the heal: %v", got)
	}
	if rep := e.checkDrift(); !rep.InSync {
		t.Fatalf("after the heal: %+v", rep)
	}
	e.verifyAudit()
}

// A heal signed when its playbook leaves the branch never runs: judged
// ready in the pass that records the removal, it is cancelled at the
// moment of use, and the removal's revert releases what the playbook
// held.
func TestDriftHealCancelledWhenPlaybookRemoved(t *testing.T) {
	t.Parallel()
	e, name, file, data := scannerHealEnv(t)
	if err := os.WriteFile(file, []byte(strings.Replace(string(data), "203.0.113.20\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if g := e.checkDrift().Groups; len(g) != 1 || len(g[0].Heals) != 1 {
		t.Fatalf("groups: %+v", g)
	}
	heal := e.execution(name, "heal")
	e.signOp(heal.ID, map[string]string{"alice": approval.Propose})
	e.merge("remove", nil, pbPath(name))
	e.pass()
	heal = e.execution(name, "heal")
	if heal.State != store.ExecCancelled || heal.ReasonCode != "removed" {
		t.Fatalf("the heal after the removal: %s %s (%s)", heal.State, heal.ReasonCode, heal.Reason)
	}
	if got := e.blocked("staging"); slices.Contains(got, "203.0.113.20") {
		t.Fatalf("the heal of a removed playbook blocked again: %v", got)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose"})
	e.pass()
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("blocklist after the revert %v", got)
	}
	e.verifyAudit()
}

// scannerHealEnv is a staging environment that heals drift, with a
// playbook blocking two addresses applied: its name, the blocklist file
// and what the file holds.
func scannerHealEnv(t *testing.T) (*env, string, string, []byte) {
	t.Helper()
	e := newEnv(t, func(o *Options) { o.Drift = DriftOptions{Modes: map[string]string{"staging": DriftModeHeal}} })
	e.pass()
	name := "block-scanner"
	e.merge("scan", map[string]string{pbPath(name): playbookYAML(name, "INC-9", "203.0.113.20, 203.0.113.21", "low", "staging", "")})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	file := filepath.Join(e.dir, "blocklist", "staging.txt")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return e, name, file, data
}

// failedHealEnv is scannerHealEnv with the playbook expiring after 2h and
// a heal that failed: 203.0.113.20 removed from the blocklist by hand, the
// heal recorded and proposed, and the backend failing it. It returns the
// failed heal.
func failedHealEnv(t *testing.T) (*env, string, *store.Execution) {
	t.Helper()
	e := newEnv(t, func(o *Options) {
		o.Drift = DriftOptions{Modes: map[string]string{"staging": DriftModeHeal}}
		o.MaxAttempts = 1 // a backend error fails the heal at once
	})
	e.pass()
	name := "block-scanner"
	e.merge("scan", map[string]string{pbPath(name): playbookYAML(name, "INC-9", "203.0.113.20, 203.0.113.21", "low", "staging", "  expiresAfter: 2h\n")})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	file := filepath.Join(e.dir, "blocklist", "staging.txt")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(data), "203.0.113.20\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.checkDrift()
	heal := e.execution(name, "heal")
	e.signHeal(heal, heal.Incident, map[string]string{"alice": approval.Propose})
	e.setOnApply(func(action.Request) error { return errors.New("blocklist host unreachable") })
	e.pass()
	e.setOnApply(nil)
	if heal = e.execution(name, "heal"); heal.State != store.ExecFailed {
		t.Fatalf("heal: %s (%s)", heal.State, heal.Reason)
	}
	return e, name, heal
}

// A failed heal is not retried once its playbook expired: the expiry's
// revert releases everything the version held, and a heal run after it
// would block again what nothing can release any more (the version's
// revert is the expiry's, completed). The retry is refused, and the drift
// check that finds the incident over (nothing in force holds a target
// there any more) makes the failed heal final.
func TestDriftFailedHealNotRetriedAfterExpiry(t *testing.T) {
	t.Parallel()
	e, name, heal := failedHealEnv(t)
	e.clock.Advance(2*time.Hour + time.Minute)
	e.pass()
	if rv := e.execution(name, "revert"); rv.State != store.ExecCompleted || rv.Trigger != "expiry" {
		t.Fatalf("expiry revert: %s %s (%s)", rv.State, rv.Trigger, rv.Reason)
	}
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("after the expiry: %v", got)
	}
	// Before the drift check sees the incident over: refused all the same.
	if _, err := e.rec.Retry(e.ctx, heal.ID, executor); !errors.Is(err, ErrNotRetryable) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("retry of the heal after the expiry: %v", err)
	}
	// The check that finds the incident over (no playbook in force holds
	// anything there now) makes the failed heal final.
	e.checkDrift()
	if inc, err := e.st.IncidentByID(e.ctx, heal.Incident); err != nil || inc.ResolvedAt == nil {
		t.Fatalf("the incident after the expiry: %+v %v", inc, err)
	}
	h := e.execution(name, "heal")
	if h.State != store.ExecCancelled || h.ReasonCode != string(codeDriftResolved) {
		t.Fatalf("the failed heal once its incident is over: %s %s (%s)", h.State, h.ReasonCode, h.Reason)
	}
	if _, err := e.rec.Retry(e.ctx, heal.ID, executor); !errors.Is(err, ErrNotRetryable) {
		t.Fatalf("retry of the cancelled heal: %v", err)
	}
	e.pass()
	if got := e.blocked("staging"); len(got) != 0 {
		t.Fatalf("blocked again after the expiry: %v", got)
	}
	e.verifyAudit()
}

// A retry of a failed heal accepted while it could still run is cancelled
// at the moment of use once its playbook expired, or once its incident
// was resolved: it never blocks again what the expiry released.
func TestDriftHealRetryCancelledAtUse(t *testing.T) {
	t.Parallel()
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		e, name, heal := failedHealEnv(t)
		if _, err := e.rec.Retry(e.ctx, heal.ID, executor); err != nil {
			t.Fatal(err)
		}
		// The retry has not run when the playbook expires (its revert is
		// recorded in the same pass, before the heal's turn).
		e.clock.Advance(2*time.Hour + time.Minute)
		e.pass()
		h := e.execution(name, "heal")
		if h.State != store.ExecCancelled || h.ReasonCode != string(codeDriftResolved) || !strings.Contains(h.Reason, "expired") {
			t.Fatalf("the retried heal after the expiry: %s %s (%s)", h.State, h.ReasonCode, h.Reason)
		}
		if got := e.blocked("staging"); len(got) != 0 {
			t.Fatalf("blocked after the expiry: %v", got)
		}
		e.verifyAudit()
	})
	t.Run("resolved", func(t *testing.T) {
		t.Parallel()
		e, name, heal := failedHealEnv(t)
		if _, err := e.rec.Retry(e.ctx, heal.ID, executor); err != nil {
			t.Fatal(err)
		}
		// The incident is resolved before the retry runs, the heal left
		// as it was (a drift check resolving it cancels a pending heal in
		// the same transaction; the moment of use does not rely on that).
		if err := e.st.ResolveIncident(e.ctx, heal.Incident, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.pass()
		h := e.execution(name, "heal")
		if h.State != store.ExecCancelled || h.ReasonCode != string(codeDriftResolved) || !strings.Contains(h.Reason, "resolved") {
			t.Fatalf("the retried heal after its incident resolved: %s %s (%s)", h.State, h.ReasonCode, h.Reason)
		}
		if got := e.blocked("staging"); slices.Contains(got, "203.0.113.20") {
			t.Fatalf("the heal of a resolved incident ran: %v", got)
		}
	})
}
