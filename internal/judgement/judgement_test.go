package judgement

import (
	"context"
	"crypto"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/policies"
)

const repo = "acme/secops"

// fixture is the default policies, a keyring of alice (analyst) and bob
// (approver), and a blocklist backend per environment in a temp dir.
type fixture struct {
	t      *testing.T
	trust  Trust
	reg    *action.Registry
	dir    string
	people map[string]crypto.Signer
	now    time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	set, err := policy.LoadFS(policies.FS, ".", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: t.TempDir(), people: map[string]crypto.Signer{}, now: time.Now().UTC().Truncate(time.Second)}
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	for _, p := range []struct{ id, role string }{{"alice", "analyst"}, {"bob", "approver"}} {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		f.people[p.id] = k
		pub, _ := keys.MarshalPublic(k.Public())
		fmt.Fprintf(&b, "  - id: %s\n    roles: [%s]\n    keys:\n      - |\n", p.id, p.role)
		for _, l := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
			b.WriteString("        " + l + "\n")
		}
	}
	kr, problems := approval.ParseKeyring(approval.KeyringPath, []byte(b.String()))
	if problems != nil {
		t.Fatal(problems)
	}
	f.trust = Trust{Policies: set, Keyring: kr, Repository: repo, Environments: policy.DefaultEnvironments()}
	f.reg = action.NewRegistry()
	f.reg.RegisterFactory("block_ip", func(env string) (action.Backend, error) {
		return blocklist.New(blocklist.Options{Path: filepath.Join(f.dir, env+".txt"), Name: "blocklist:" + env})
	})
	return f
}

func (f *fixture) playbook(targets, environment string) *playbook.Playbook {
	f.t.Helper()
	src := fmt.Sprintf("apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: pb\nspec:\n  action: block_ip\n  targets: [%s]\n"+
		"  justification: test\n  severity: low\n  environment: %s\n", targets, environment)
	pb, problems := playbook.Parse("playbooks/pb.yaml", []byte(src), playbook.Options{})
	if problems != nil {
		f.t.Fatal(problems)
	}
	return pb
}

// sign makes who's statement about op's playbook.
func (f *fixture) sign(who, decision string, op Operation, planDigest string) approval.Submitted {
	f.t.Helper()
	s, err := keys.Signer(f.people[who])
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := approval.Sign(s, approval.NewStatement([]approval.Subject{{Path: op.Playbook.Path, Digest: op.Playbook.Digest}}, approval.Predicate{
		Decision: decision, Approver: who, Operation: string(op.Kind), Repository: repo, PolicyDigest: f.trust.Policies.Digest(),
		PlanDigest: planDigest, IssuedAt: f.now, ExpiresAt: f.now.Add(time.Hour),
	}))
	if err != nil {
		f.t.Fatal(err)
	}
	return approval.Submitted{Envelope: raw}
}

func (f *fixture) judge(op Operation, envs []approval.Submitted, approved *Approved) Judgement {
	return Judge(context.Background(), op, f.trust, Inputs{Planner: f.reg, Envelopes: envs, Now: f.now, Approved: approved})
}

func TestJudgeOutcomes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	staging := Operation{Kind: action.Apply, Trigger: Merge, ChangeType: "create", Playbook: f.playbook("203.0.113.7", "staging")}
	prod := Operation{Kind: action.Apply, Trigger: Merge, ChangeType: "create", Playbook: f.playbook("203.0.113.7", "production")}

	if j := f.judge(Operation{Kind: action.Apply, Trigger: Merge, ChangeType: "create", Playbook: f.playbook("127.0.0.1", "staging")}, nil, nil); j.Outcome != Denied ||
		j.Reason.Code != CodeDenied || j.Plan != nil || j.Verdict != nil {
		t.Fatalf("reserved address: %+v", j)
	}
	j := f.judge(staging, nil, nil)
	if j.Outcome != Waiting || j.Reason.Code != CodeAwaitingApproval || j.Plan == nil || j.Plan.Targets[0].Result != action.WouldBlock {
		t.Fatalf("staging without a proposal: %+v", j)
	}
	if j := f.judge(staging, []approval.Submitted{f.sign("alice", "propose", staging, "")}, nil); j.Outcome != Ready || j.Reason.Code != CodeAllowed ||
		!strings.Contains(j.Reason.Text, "proposed by alice") {
		t.Fatalf("staging with its proposal: %+v", j)
	}
	j = f.judge(prod, []approval.Submitted{f.sign("alice", "propose", prod, "")}, nil)
	if j.Outcome != Waiting || j.Decision.ApprovalsRequired != 1 {
		t.Fatalf("production without an approval: %+v", j)
	}
	envs := []approval.Submitted{f.sign("alice", "propose", prod, ""), f.sign("bob", "approve", prod, j.PlanDigest)}
	if j := f.judge(prod, envs, nil); j.Outcome != Ready || j.Reason.Code != CodeApproved {
		t.Fatalf("production approved: %+v", j)
	}
	// bob changes his mind: his later rejection counts instead.
	f.now = f.now.Add(time.Second)
	rejected := append(envs[:2:2], f.sign("bob", "reject", prod, ""))
	if j := f.judge(prod, rejected, nil); j.Outcome != Rejected || j.Reason.Code != CodeRejected {
		t.Fatalf("rejected: %+v", j)
	}

	// The revert is judged on its own: the apply's statements do not count.
	revert := prod
	revert.Kind, revert.Trigger, revert.ChangeType = action.Revert, Delete, "delete"
	if j := f.judge(revert, envs, nil); j.Outcome != Waiting || j.Verdict.Proposer != "" {
		t.Fatalf("revert with the apply's statements: %+v", j)
	}
	// A scheduled expiry needs neither approvals nor a proposal.
	expiry := revert
	expiry.Trigger, expiry.ChangeType = Expiry, "expiry"
	if j := f.judge(expiry, nil, nil); j.Outcome != Ready || j.Decision.ApprovalsRequired != 0 {
		t.Fatalf("expiry: %+v", j)
	}
	// A revert whose every target is held elsewhere touches nothing.
	held := revert
	held.Targets = []string{}
	if j := f.judge(held, nil, nil); j.Outcome != Ready || j.Reason.Code != CodeNothingToDo || len(j.Plan.Targets) != 0 {
		t.Fatalf("nothing to release: %+v", j)
	}
	// No backend: waiting, judged again later.
	other := Operation{Kind: action.Apply, Trigger: Merge, ChangeType: "create", Playbook: f.playbook("203.0.113.7", "staging")}
	noBackend := Judge(context.Background(), other, f.trust, Inputs{Planner: action.NewRegistry(), Now: f.now})
	if noBackend.Outcome != Waiting || noBackend.Reason.Code != CodeNoPlan {
		t.Fatalf("no backend: %+v", noBackend)
	}
}

// At the moment of use the statements are verified against the approved
// plan, and live state must still be that plan (or, after an interrupted
// attempt, have progressed from it).
func TestJudgeAtUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	prod := Operation{Kind: action.Apply, Trigger: Merge, ChangeType: "create", Playbook: f.playbook("203.0.113.7, 203.0.113.8", "production")}
	first := f.judge(prod, nil, nil)
	envs := []approval.Submitted{f.sign("alice", "propose", prod, ""), f.sign("bob", "approve", prod, first.PlanDigest)}
	approved := &Approved{PlanDigest: first.PlanDigest, Plan: first.Plan}
	if j := f.judge(prod, envs, approved); j.Outcome != Ready {
		t.Fatalf("unchanged: %+v", j)
	}
	// Someone blocks one target by hand.
	b, _ := f.reg.Lookup("block_ip", "production")
	if _, err := b.Apply(context.Background(), action.Request{Playbook: "hand", Digest: strings.Repeat("0", 64), Action: "block_ip",
		Environment: "production", Operation: action.Apply, Targets: []string{"203.0.113.7"}}); err != nil {
		t.Fatal(err)
	}
	j := f.judge(prod, envs, approved)
	if j.Outcome != Waiting || j.Reason.Code != CodePlanChanged || !strings.Contains(j.Reason.Text, "203.0.113.7 would_block → already_blocked") {
		t.Fatalf("changed under it: %+v", j)
	}
	// The same state after an interrupted attempt of its own: progress.
	resuming := *approved
	resuming.Resuming = true
	if j := f.judge(prod, envs, &resuming); j.Outcome != Ready {
		t.Fatalf("resumed: %+v", j)
	}
}

// A denial that only says the policies could not decide is not final.
func TestPolicyFailureWaits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	broken, err := policy.LoadFS(fstestFS("package writ\n\ndecision := 1\n"), ".", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.trust.Policies = broken
	op := Operation{Kind: action.Apply, Trigger: Merge, ChangeType: "create", Playbook: f.playbook("203.0.113.7", "staging")}
	if j := f.judge(op, nil, nil); j.Outcome != Waiting || j.Reason.Code != CodePolicyFailed {
		t.Fatalf("a decision of the wrong shape: %+v", j)
	}
}

func fstestFS(rego string) fstest.MapFS {
	return fstest.MapFS{"decision.rego": &fstest.MapFile{Data: []byte(rego)}}
}
