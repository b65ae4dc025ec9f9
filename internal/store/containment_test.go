package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// world records playbooks, their operations and outcomes through the
// store functions the reconciler uses, in the order it uses them.
type world struct {
	t      testing.TB
	ctx    context.Context
	st     *store.Store
	commit int
}

type spec struct {
	name, action, env, ticket, expiresAfter string
	targets                                 []string
}

func (s spec) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: %s\n", s.name)
	if s.ticket != "" {
		fmt.Fprintf(&b, "  ticket: %q\n", s.ticket)
	}
	fmt.Fprintf(&b, "spec:\n  action: %s\n  environment: %s\n  severity: high\n  justification: test\n  targets:\n", s.action, s.env)
	for _, t := range s.targets {
		fmt.Fprintf(&b, "    - %q\n", t)
	}
	if s.expiresAfter != "" {
		fmt.Fprintf(&b, "  expiresAfter: %s\n", s.expiresAfter)
	}
	return b.String()
}

func (w *world) nextCommit() string {
	w.commit++
	return fmt.Sprintf("%040x", w.commit)
}

// merge records a version of a playbook as merged and in force, with the
// apply it intends (waiting for its judgement).
func (w *world) merge(s spec) (*store.PlaybookVersion, *store.Execution) {
	w.t.Helper()
	if s.action == "" {
		s.action = "block_ip"
	}
	if s.env == "" {
		s.env = "production"
	}
	content := s.yaml()
	commit := w.nextCommit()
	v, _, err := w.st.EnsurePlaybookVersion(w.ctx, store.PlaybookVersion{
		Name: s.name, Path: "playbooks/" + s.name + ".yaml", Digest: digestOf(content), Content: []byte(content),
		Action: s.action, Environment: s.env, Severity: "high", CommitSHA: commit,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.st.SetActive(w.ctx, store.ActivePlaybook{Path: v.Path, Name: v.Name, VersionID: v.ID, SinceCommit: commit}); err != nil {
		w.t.Fatal(err)
	}
	e := w.intend(v, "apply", "merge", "create", s.targets, commit)
	return v, e
}

func (w *world) intend(v *store.PlaybookVersion, op, trigger, change string, targets []string, commit string) *store.Execution {
	w.t.Helper()
	e, created, err := w.st.CreateExecution(w.ctx, store.Execution{
		VersionID: v.ID, Name: v.Name, Digest: v.Digest, Path: v.Path, Action: v.Action, Environment: v.Environment,
		Operation: op, CommitSHA: commit, Targets: targets, Trigger: trigger, ChangeType: change,
		State: store.ExecWaiting, ReasonCode: "intended", Reason: "recorded; judging",
	})
	if err != nil || !created {
		w.t.Fatalf("intend %s of %s: %v (created %v)", op, v.Name, err, created)
	}
	return e
}

// restore records the content of an earlier version merged again: the
// same version row, in force again, its apply not repeated.
func (w *world) restore(v *store.PlaybookVersion) string {
	w.t.Helper()
	commit := w.nextCommit()
	again, created, err := w.st.EnsurePlaybookVersion(w.ctx, store.PlaybookVersion{Name: v.Name, Path: v.Path, Digest: v.Digest,
		Content: v.Content, Action: v.Action, Environment: v.Environment, Severity: v.Severity, CommitSHA: commit})
	if err != nil || created || again.ID != v.ID {
		w.t.Fatalf("restore %s: %+v created %v: %v", v.Name, again, created, err)
	}
	if _, created, err := w.st.CreateExecution(w.ctx, store.Execution{VersionID: v.ID, Name: v.Name, Digest: v.Digest,
		Operation: "apply", Trigger: "merge", ChangeType: "update"}); err != nil || created {
		w.t.Fatalf("the apply of restored content was created again (%v): %v", created, err)
	}
	if err := w.st.SetActive(w.ctx, store.ActivePlaybook{Path: v.Path, Name: v.Name, VersionID: v.ID, SinceCommit: commit}); err != nil {
		w.t.Fatal(err)
	}
	return commit
}

// remove records a playbook leaving the branch: no longer in force, its
// revert intended.
func (w *world) remove(v *store.PlaybookVersion, targets []string) *store.Execution {
	w.t.Helper()
	commit := w.nextCommit()
	if err := w.st.RemoveActive(w.ctx, v.Path); err != nil {
		w.t.Fatal(err)
	}
	return w.intend(v, "revert", "delete", "delete", targets, commit)
}

type verdict struct {
	proposer string
	counted  []string
}

// run judges an operation ready (with the verdict its statements got),
// claims it, records what the backend did to each target and finishes it:
// failed when any target failed, else completed.
func (w *world) run(e *store.Execution, vd verdict, results ...store.TargetResult) {
	w.t.Helper()
	vj, _ := json.Marshal(map[string]any{"quorum_met": true, "proposer": vd.proposer, "counted": append([]string{}, vd.counted...)})
	if _, err := w.st.RecordJudgement(w.ctx, e.ID, store.Judged{State: store.ExecPending, ReasonCode: "ready", Reason: "ready", Verdict: vj}); err != nil {
		w.t.Fatal(err)
	}
	c, err := w.st.ClaimExecution(w.ctx, time.Now().Add(time.Second))
	if err != nil || c.ID != e.ID {
		w.t.Fatalf("claimed %+v, %v; want execution %d", c, err, e.ID)
	}
	if err := w.st.SaveTargetResults(w.ctx, e.ID, results); err != nil {
		w.t.Fatal(err)
	}
	state, status := store.ExecCompleted, store.StatusCompleted
	for _, r := range results {
		if r.Result == "failed" {
			state, status = store.ExecFailed, store.StatusFailed
		}
	}
	if err := w.st.FinishExecution(w.ctx, e.ID, state, "", "done", "finished"); err != nil {
		w.t.Fatal(err)
	}
	if e.Operation == "revert" && state == store.ExecCompleted {
		status = store.StatusReverted
		if e.Trigger == "expiry" {
			status = store.StatusExpired
		}
	}
	if e.Operation == "revert" && e.Trigger == "update" {
		return // the update's version carries the status
	}
	if err := w.st.SetPlaybookStatus(w.ctx, e.VersionID, status, "finished", e.CommitSHA); err != nil {
		w.t.Fatal(err)
	}
}

func changed(targets ...string) []store.TargetResult {
	return results("changed", targets...)
}

func results(result string, targets ...string) []store.TargetResult {
	out := make([]store.TargetResult, len(targets))
	for i, t := range targets {
		out[i] = store.TargetResult{Target: t, Planned: "would_" + result, Result: result}
	}
	return out
}

// key names a contained target as playbook|target.
func keys(list []store.ContainedTarget) []string {
	out := make([]string, len(list))
	for i, c := range list {
		out[i] = c.Playbook + "|" + c.Target
	}
	return out
}

func sortedKeys(list []store.ContainedTarget) []string {
	out := keys(list)
	slices.Sort(out)
	return out
}

// fixture builds the states a containment page meets.
type fixture struct {
	w                  *world
	a, e2, h3, users   *store.PlaybookVersion
	aApply, gApply     *store.Execution
	expiresA, expiresG time.Time
}

func newFixture(t *testing.T) *fixture {
	ctx := context.Background()
	st := dbtest.Store(t)
	w := &world{t: t, ctx: ctx, st: st}
	f := &fixture{w: w}
	ok := verdict{proposer: "alice", counted: []string{"bob", "carol"}}

	// Statements as stored: dave's approval is on record but did not
	// count (the verdict says which did); it must not show.
	// block-a: applied, with a ticket, an expiry, an IPv4 /24, an address
	// and IPv6 (one written in capitals).
	f.a, f.aApply = w.merge(spec{name: "block-a", ticket: "INC-1", expiresAfter: "24h",
		targets: []string{"192.0.2.0/24", "198.51.100.7", "2001:db8::/48", "2001:DB8:1::BAD"}})
	for i, who := range []struct{ name, decision string }{{"alice", "propose"}, {"bob", "approve"}, {"carol", "approve"}, {"dave", "approve"}} {
		env := fmt.Sprintf("envelope-%d", i)
		if _, _, err := st.InsertApproval(ctx, store.Approval{
			Envelope: []byte(env), EnvelopeSHA256: digestOf(env), StatementSHA256: digestOf("statement " + env), Decision: who.decision, Approver: who.name,
			Repository: "acme/secops", IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), Source: store.ApprovalSourceAPI,
			Subjects: []store.ApprovalSubject{{Digest: f.a.Digest, Name: f.a.Path}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	w.run(f.aApply, ok, changed("192.0.2.0/24", "198.51.100.7", "2001:db8::/48", "2001:DB8:1::BAD")...)
	f.expiresA = time.Now().Add(24 * time.Hour).UTC().Truncate(time.Microsecond)
	if err := st.SetPlaybookExpiry(ctx, f.a.ID, &f.expiresA); err != nil {
		t.Fatal(err)
	}

	// block-b: one target failed (not contained), the other held.
	_, bApply := w.merge(spec{name: "block-b", targets: []string{"203.0.113.9", "203.0.113.10"}})
	w.run(bApply, ok, append(results("failed", "203.0.113.9"), changed("203.0.113.10")...)...)

	// block-c: applied, removed from the branch, its revert done.
	c, cApply := w.merge(spec{name: "block-c", targets: []string{"203.0.113.20"}})
	w.run(cApply, ok, changed("203.0.113.20")...)
	w.run(w.remove(c, []string{"203.0.113.20"}), ok, changed("203.0.113.20")...)

	// block-c2: released by hand before its revert, which found it
	// unchanged: not contained either.
	c2, c2Apply := w.merge(spec{name: "block-c2", targets: []string{"203.0.113.21"}})
	w.run(c2Apply, ok, changed("203.0.113.21")...)
	w.run(w.remove(c2, []string{"203.0.113.21"}), ok, results("unchanged", "203.0.113.21")...)

	// block-d: applied, removed, its revert waiting for approvals: still
	// contained, no longer in force.
	d, dApply := w.merge(spec{name: "block-d", targets: []string{"203.0.113.30"}})
	w.run(dApply, ok, changed("203.0.113.30")...)
	w.remove(d, []string{"203.0.113.30"})

	// block-e: an update keeps 10.1.0.1, drops 10.1.0.2 (reverted), adds
	// 10.1.0.3.
	e1, e1Apply := w.merge(spec{name: "block-e", targets: []string{"10.1.0.1", "10.1.0.2"}})
	w.run(e1Apply, ok, changed("10.1.0.1", "10.1.0.2")...)
	e2, e2Apply := w.merge(spec{name: "block-e", ticket: "INC-2", targets: []string{"10.1.0.1", "10.1.0.3"}})
	f.e2 = e2
	drop := w.intend(e1, "revert", "update", "update", []string{"10.1.0.2"}, e2.CommitSHA)
	w.run(e2Apply, ok, append(results("unchanged", "10.1.0.1"), changed("10.1.0.3")...)...)
	w.run(drop, ok, changed("10.1.0.2")...)

	// block-f: expired, its expiry revert done.
	fv, fApply := w.merge(spec{name: "block-f", expiresAfter: "1h", targets: []string{"10.2.0.1"}})
	w.run(fApply, ok, changed("10.2.0.1")...)
	past := time.Now().Add(-time.Minute)
	if err := st.SetPlaybookExpiry(ctx, fv.ID, &past); err != nil {
		t.Fatal(err)
	}
	w.run(w.intend(fv, "revert", "expiry", "expiry", []string{"10.2.0.1"}, fv.CommitSHA), verdict{}, changed("10.2.0.1")...)

	// block-g in staging holds the address block-a holds in production.
	g, gApply := w.merge(spec{name: "block-g", env: "staging", expiresAfter: "2h", targets: []string{"198.51.100.7"}})
	f.gApply = gApply
	w.run(gApply, verdict{proposer: "erin"}, changed("198.51.100.7")...)
	f.expiresG = time.Now().Add(2 * time.Hour).UTC().Truncate(time.Microsecond)
	if err := st.SetPlaybookExpiry(ctx, g.ID, &f.expiresG); err != nil {
		t.Fatal(err)
	}

	// block-h: 10.3.0.1 dropped by v2 (its revert waits), added back by
	// v3; v1's revert then runs and finds it held by v3: contained.
	h1, h1Apply := w.merge(spec{name: "block-h", targets: []string{"10.3.0.1"}})
	w.run(h1Apply, ok, changed("10.3.0.1")...)
	h2, h2Apply := w.merge(spec{name: "block-h", targets: []string{"10.3.0.2"}})
	h1Revert := w.intend(h1, "revert", "update", "update", []string{"10.3.0.1"}, h2.CommitSHA)
	w.run(h2Apply, ok, changed("10.3.0.2")...)
	h3, h3Apply := w.merge(spec{name: "block-h", targets: []string{"10.3.0.1", "10.3.0.2"}})
	f.h3 = h3
	w.run(h3Apply, ok, append(results("unchanged", "10.3.0.1"), results("unchanged", "10.3.0.2")...)...)
	w.run(h1Revert, ok, store.TargetResult{Target: "10.3.0.1", Result: "unchanged", Detail: "still held by another playbook in force"})

	// block-n: 10.6.0.1 dropped by v2 and released, added back by v3: the
	// release came before the new apply.
	n1, n1Apply := w.merge(spec{name: "block-n", targets: []string{"10.6.0.1"}})
	w.run(n1Apply, ok, changed("10.6.0.1")...)
	n2, n2Apply := w.merge(spec{name: "block-n", targets: []string{"10.6.0.2"}})
	n1Drop := w.intend(n1, "revert", "update", "update", []string{"10.6.0.1"}, n2.CommitSHA)
	w.run(n2Apply, ok, changed("10.6.0.2")...)
	w.run(n1Drop, ok, changed("10.6.0.1")...)
	_, n3Apply := w.merge(spec{name: "block-n", targets: []string{"10.6.0.1", "10.6.0.2"}})
	w.run(n3Apply, ok, append(changed("10.6.0.1"), results("unchanged", "10.6.0.2")...)...)

	// block-m moves from production to staging keeping its target: the
	// production block is never released (no revert there); the staging
	// one is, when the playbook is removed.
	_, m1Apply := w.merge(spec{name: "block-m", targets: []string{"10.4.0.1"}})
	w.run(m1Apply, ok, changed("10.4.0.1")...)
	m2, m2Apply := w.merge(spec{name: "block-m", env: "staging", targets: []string{"10.4.0.1"}})
	w.run(m2Apply, ok, changed("10.4.0.1")...)
	w.run(w.remove(m2, []string{"10.4.0.1"}), ok, changed("10.4.0.1")...)

	// block-r: v2 adds 10.5.0.2 to v1's 10.5.0.1; the content goes back to
	// v1 (the same version row: its apply is not repeated, v2's addition
	// is reverted); then v1 is removed and its revert releases 10.5.0.1,
	// which v2 applied last.
	r1spec := spec{name: "block-r", targets: []string{"10.5.0.1"}}
	r1, r1Apply := w.merge(r1spec)
	w.run(r1Apply, ok, changed("10.5.0.1")...)
	r2, r2Apply := w.merge(spec{name: "block-r", targets: []string{"10.5.0.1", "10.5.0.2"}})
	w.run(r2Apply, ok, append(results("unchanged", "10.5.0.1"), changed("10.5.0.2")...)...)
	back := w.restore(r1)
	w.run(w.intend(r2, "revert", "update", "update", []string{"10.5.0.2"}, back), ok, changed("10.5.0.2")...)
	w.run(w.remove(r1, []string{"10.5.0.1"}), ok, changed("10.5.0.1")...)

	// A user and a host playbook, and a team action whose free-text
	// targets only look like addresses.
	users, uApply := w.merge(spec{name: "suspend-mallory", action: "suspend_user", targets: []string{"Mallory@Example.com", "mallet"}})
	f.users = users
	w.run(uApply, ok, changed("Mallory@Example.com", "mallet")...)
	_, hApply := w.merge(spec{name: "isolate-web", action: "isolate_host", targets: []string{"web-01", "web-02", "db-01"}})
	w.run(hApply, ok, changed("web-01", "web-02", "db-01")...)
	_, tApply := w.merge(spec{name: "team-thing", action: "quarantine_mail", targets: []string{"999.1.1.1", ":::", "zz:top", "10.0.0.0/99"}})
	w.run(tApply, ok, changed("999.1.1.1", ":::", "zz:top", "10.0.0.0/99")...)

	// block-w: waiting for approvals; never ran.
	w.merge(spec{name: "block-w", targets: []string{"203.0.113.99"}})
	return f
}

func TestContainment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, st := f.w.ctx, f.w.st

	list := func(flt store.ContainmentFilter) []store.ContainedTarget {
		t.Helper()
		out, err := st.Containment(ctx, flt)
		if err != nil {
			t.Fatalf("Containment(%+v): %v", flt, err)
		}
		return out
	}
	all := list(store.ContainmentFilter{})
	want := []string{
		"block-a|192.0.2.0/24", "block-a|198.51.100.7", "block-a|2001:DB8:1::BAD", "block-a|2001:db8::/48",
		"block-b|203.0.113.10",
		"block-d|203.0.113.30",
		"block-e|10.1.0.1", "block-e|10.1.0.3",
		"block-g|198.51.100.7",
		"block-h|10.3.0.1", "block-h|10.3.0.2",
		"block-m|10.4.0.1",
		"block-n|10.6.0.1", "block-n|10.6.0.2",
		"isolate-web|db-01", "isolate-web|web-01", "isolate-web|web-02",
		"suspend-mallory|Mallory@Example.com", "suspend-mallory|mallet",
		"team-thing|10.0.0.0/99", "team-thing|999.1.1.1", "team-thing|:::", "team-thing|zz:top",
	}
	if got := sortedKeys(all); !slices.Equal(got, want) {
		t.Fatalf("contained:\n got %v\nwant %v", got, want)
	}
	// Newest first, then by target: the last apply comes first, its
	// targets (recorded together) in order.
	for i := 1; i < len(all); i++ {
		p, c := all[i-1], all[i]
		if p.Since.Before(c.Since) || p.Since.Equal(c.Since) && p.Target > c.Target {
			t.Fatalf("order: %s (%v) before %s (%v)", p.Target, p.Since, c.Target, c.Since)
		}
	}
	if got := keys(all[:4]); !slices.Equal(got, []string{"team-thing|10.0.0.0/99", "team-thing|999.1.1.1", "team-thing|:::", "team-thing|zz:top"}) {
		t.Fatalf("newest first: %v", got)
	}

	// Every field of one target.
	byKey := map[string]store.ContainedTarget{}
	for _, c := range all {
		byKey[c.Playbook+"|"+c.Target] = c
	}
	a := byKey["block-a|192.0.2.0/24"]
	if a.Action != "block_ip" || a.VersionID != f.a.ID || a.ExecutionID != f.aApply.ID || a.Ticket != "INC-1" ||
		a.Environment != "production" || a.CommitSHA != f.a.CommitSHA || !a.InForce ||
		a.Expires == nil || !a.Expires.Equal(f.expiresA) ||
		!slices.Equal(a.ProposedBy, []string{"alice"}) || !slices.Equal(a.ApprovedBy, []string{"bob", "carol"}) || a.Since.IsZero() {
		t.Fatalf("block-a target: %+v", a)
	}
	// The update's targets belong to the version that applied them last.
	for _, k := range []string{"block-e|10.1.0.1", "block-e|10.1.0.3"} {
		if c := byKey[k]; c.VersionID != f.e2.ID || c.Ticket != "INC-2" || !c.InForce {
			t.Fatalf("%s: %+v", k, c)
		}
	}
	if c := byKey["block-h|10.3.0.1"]; c.VersionID != f.h3.ID {
		t.Fatalf("re-added target: %+v (want version %d)", c, f.h3.ID)
	}
	// Removed, revert waiting: contained, not in force.
	if c := byKey["block-d|203.0.113.30"]; c.InForce {
		t.Fatalf("removed playbook's target in force: %+v", c)
	}
	if c := byKey["block-m|10.4.0.1"]; c.Environment != "production" || c.InForce {
		t.Fatalf("block-m: %+v", c)
	}
	if c := byKey["block-b|203.0.113.10"]; c.Expires != nil || c.Ticket != "" {
		t.Fatalf("block-b: %+v", c)
	}
	if c := byKey["block-g|198.51.100.7"]; !slices.Equal(c.ProposedBy, []string{"erin"}) || len(c.ApprovedBy) != 0 || c.ApprovedBy == nil {
		t.Fatalf("block-g's statements: %+v", c)
	}

	search := func(q string, flt ...store.ContainmentFilter) []string {
		t.Helper()
		var fl store.ContainmentFilter
		if len(flt) > 0 {
			fl = flt[0]
		}
		fl.Query = q
		return sortedKeys(list(fl))
	}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		// an address: exact, and every prefix covering it
		{"192.0.2.77", []string{"block-a|192.0.2.0/24"}},
		{" 198.51.100.7 ", []string{"block-a|198.51.100.7", "block-g|198.51.100.7"}},
		{"10.3.0.1", []string{"block-h|10.3.0.1"}},
		{"10.1.0.2", nil}, // dropped and reverted
		{"10.4.0.1", []string{"block-m|10.4.0.1"}},
		{"10.5.0.1", nil},
		{"10.6.0.1", []string{"block-n|10.6.0.1"}},
		{"10.5.0.2", nil},
		{"203.0.113.9", nil},
		{"203.0.113.20", nil},
		{"203.0.113.21", nil},
		{"10.2.0.1", nil},
		{"203.0.113.99", nil}, // never ran
		{"192.0.2.99", []string{"block-a|192.0.2.0/24"}},
		{"::ffff:192.0.2.1", []string{"block-a|192.0.2.0/24"}},
		// IPv6, whatever the case and compression
		{"2001:db8:0:ffff::1", []string{"block-a|2001:db8::/48"}},
		{"2001:db8:1:0::bad", []string{"block-a|2001:DB8:1::BAD"}},
		{"2001:db9::1", nil},
		// a prefix: what lies inside or equals it
		{"198.51.100.0/24", []string{"block-a|198.51.100.7", "block-g|198.51.100.7"}},
		{"10.0.0.0/8", []string{"block-e|10.1.0.1", "block-e|10.1.0.3", "block-h|10.3.0.1", "block-h|10.3.0.2", "block-m|10.4.0.1",
			"block-n|10.6.0.1", "block-n|10.6.0.2"}},
		{"192.0.2.0/24", []string{"block-a|192.0.2.0/24"}},
		{"192.0.2.0/25", nil},
		{"2001:db8::/32", []string{"block-a|2001:DB8:1::BAD", "block-a|2001:db8::/48"}},
		// names: case-insensitive, exact or prefix
		{"mallory", []string{"suspend-mallory|Mallory@Example.com"}},
		{"MALLET", []string{"suspend-mallory|mallet"}},
		{"mal", []string{"suspend-mallory|Mallory@Example.com", "suspend-mallory|mallet"}},
		{"allory", nil},
		{"web-0", []string{"isolate-web|web-01", "isolate-web|web-02"}},
		{"DB-01", []string{"isolate-web|db-01"}},
		{"web-01x", nil},
		{"zz:", []string{"team-thing|zz:top"}},
		{"100%", nil},
		{"_", nil},
		{"10.1.0.", []string{"block-e|10.1.0.1", "block-e|10.1.0.3"}},
	} {
		if got := search(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("search %q = %v; want %v", tc.q, got, tc.want)
		}
	}

	// Filters.
	if got := search("198.51.100.7", store.ContainmentFilter{Environment: "staging"}); !slices.Equal(got, []string{"block-g|198.51.100.7"}) {
		t.Errorf("staging: %v", got)
	}
	if got := search("", store.ContainmentFilter{Environment: "nowhere"}); len(got) != 0 {
		t.Errorf("unknown environment: %v", got)
	}
	soon := time.Now().Add(3 * time.Hour)
	if got := search("", store.ContainmentFilter{ExpiresBefore: &soon}); !slices.Equal(got, []string{"block-g|198.51.100.7"}) {
		t.Errorf("expiring within 3h: %v", got)
	}
	later := time.Now().Add(48 * time.Hour)
	expiring := search("", store.ContainmentFilter{ExpiresBefore: &later})
	if len(expiring) != 5 || expiring[0] != "block-a|192.0.2.0/24" {
		t.Errorf("expiring within 48h: %v", expiring)
	}
	never := search("", store.ContainmentFilter{NoExpiry: true})
	if len(never) != len(all)-5 || slices.Contains(never, "block-g|198.51.100.7") || slices.Contains(never, "block-a|198.51.100.7") {
		t.Errorf("never expiring: %v", never)
	}
	if got := keys(list(store.ContainmentFilter{Limit: 3})); !slices.Equal(got, keys(all[:3])) {
		t.Errorf("limit 3: %v; want %v", got, keys(all[:3]))
	}
	if got := list(store.ContainmentFilter{Query: "198.51.100.0/24", Limit: 1}); len(got) != 1 || got[0].Playbook != "block-g" {
		t.Errorf("limit 1 of a search: %v (block-g ran last)", keys(got))
	}
}

func TestContainmentRefusesBadInput(t *testing.T) {
	t.Parallel()
	st := dbtest.Store(t)
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		f     store.ContainmentFilter
		field string
	}{
		{store.ContainmentFilter{Query: "10.0.0.0/99"}, "Query"},
		{store.ContainmentFilter{Query: "10.0.0/24"}, "Query"},
		{store.ContainmentFilter{Query: "10.0.0.5/24"}, "Query"},
		{store.ContainmentFilter{Query: "2001:db8::/129"}, "Query"},
		{store.ContainmentFilter{Query: "fe80::1%eth0"}, "Query"},
		{store.ContainmentFilter{Query: "ali\x00ce"}, "Query"},
		{store.ContainmentFilter{Query: "alice\n"}, "Query"},
		{store.ContainmentFilter{Query: "\xff\xfe"}, "Query"},
		{store.ContainmentFilter{Query: strings.Repeat("a", 257)}, "Query"},
		{store.ContainmentFilter{Environment: "prod\x00"}, "Environment"},
		{store.ContainmentFilter{Environment: strings.Repeat("e", 300)}, "Environment"},
		{store.ContainmentFilter{Limit: -1}, "Limit"},
		{store.ContainmentFilter{NoExpiry: true, ExpiresBefore: &now}, "ExpiresBefore"},
	} {
		_, err := st.Containment(ctx, tc.f)
		if !errors.Is(err, store.ErrInvalidFilter) || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("Containment(%+q) = %v; want ErrInvalidFilter naming %s", tc.f.Query, err, tc.field)
		}
		if err != nil && strings.ContainsRune(err.Error(), 0) {
			t.Errorf("the message carries a NUL byte: %q", err)
		}
	}
	// At the limit, and names with a slash that are not addresses, are
	// searched.
	for _, q := range []string{strings.Repeat("a", 256), "team/thing", "cafe.be/x"} {
		if got, err := st.Containment(ctx, store.ContainmentFilter{Query: q}); err != nil || len(got) != 0 {
			t.Errorf("Containment(%q) = %v, %v; want none, nil", q, got, err)
		}
	}
}
