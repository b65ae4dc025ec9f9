package approval

import (
	"strings"
	"testing"
	"time"
)

func TestVerifyMeta(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople)
	newPolicies := PolicySetSubject("sha256:" + otherDigest)
	newKeyring := FileSubject(KeyringPath, []byte("apiVersion: writ/v1\n"))
	both := []Subject{newPolicies, newKeyring}

	trusted := strings.Repeat("c", 40)
	replaced := map[string]string{PoliciesSubject: testPolicy, KeyringPath: testDigest}
	transition := func(subjects []Subject) *Transition {
		t := &Transition{TrustedCommit: trusted, Replaces: map[string]string{}}
		for _, s := range subjects {
			t.Replaces[s.Path] = replaced[s.Path]
		}
		return t
	}
	metaPred := func(who, decision string, subjects []Subject) Predicate {
		p := pred(who, decision)
		p.PlanDigest = ""
		p.Transition = transition(subjects)
		return p
	}
	sign := func(who, decision string, subjects []Subject, edit func(p *Predicate)) []byte {
		p := metaPred(who, decision, subjects)
		if edit != nil {
			edit(&p)
		}
		return signWith(t, f.priv[who], NewStatement(subjects, p))
	}
	input := func(changes []Subject, envs ...[]byte) MetaInput {
		return MetaInput{Changes: changes, Transition: *transition(changes), Repository: "acme/secops", PolicyDigest: testPolicy,
			Keyring: f.kr, Envelopes: submitted(envs...), Now: testNow}
	}

	if newPolicies.Path != "policies/" || newPolicies.Digest != otherDigest {
		t.Fatalf("policy set subject %+v", newPolicies)
	}

	t.Run("two admins", func(t *testing.T) {
		t.Parallel()
		v := VerifyMeta(input(both, sign("dave", Approve, both, nil), sign("erin", Approve, both, nil)))
		if !v.QuorumMet || v.Required != 2 || len(v.Counted) != 2 || v.Counted[0].Role != RoleAdmin || v.ProposalMissing {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("one admin is not enough by default", func(t *testing.T) {
		t.Parallel()
		v := VerifyMeta(input(both, sign("dave", Approve, both, nil)))
		if v.QuorumMet || v.Missing != 1 {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("count from the options", func(t *testing.T) {
		t.Parallel()
		in := input(both, sign("dave", Approve, both, nil))
		in.Options.ApprovalsRequired = 1
		if v := VerifyMeta(in); !v.QuorumMet || v.Required != 1 {
			t.Fatalf("verdict %+v", v)
		}
		in.Options.ApprovalsRequired = 3
		in.Envelopes = submitted(sign("dave", Approve, both, nil), sign("erin", Approve, both, nil))
		if v := VerifyMeta(in); v.QuorumMet || v.Missing != 1 {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("approvers do not qualify", func(t *testing.T) {
		t.Parallel()
		v := VerifyMeta(input(both, sign("bob", Approve, both, nil), sign("erin", Approve, both, nil)))
		if v.QuorumMet {
			t.Fatalf("verdict %+v", v)
		}
		if c, msg := codeOf(v, 0); c != CodeRoleNotQualified || !strings.Contains(msg, "admin") {
			t.Fatalf("code %q %q", c, msg)
		}
	})
	t.Run("a statement must cover every change", func(t *testing.T) {
		t.Parallel()
		only := []Subject{newPolicies}
		v := VerifyMeta(input(both, sign("dave", Approve, only, nil), sign("erin", Approve, both, nil)))
		if v.QuorumMet {
			t.Fatalf("verdict %+v", v)
		}
		if c, msg := codeOf(v, 0); c != CodeSubjectMismatch || !strings.Contains(msg, KeyringPath) {
			t.Fatalf("code %q %q", c, msg)
		}
		// Nor more: a statement approves exactly one change.
		v = VerifyMeta(input(only, sign("dave", Approve, both, nil), sign("erin", Approve, only, nil)))
		if c, msg := codeOf(v, 0); v.QuorumMet || c != CodeTransitionMismatch || !strings.Contains(msg, "covers 2 subjects") {
			t.Fatalf("code %q %q; verdict %+v", c, msg, v)
		}
	})
	t.Run("the transition binds", func(t *testing.T) {
		t.Parallel()
		for name, tc := range map[string]struct {
			edit func(p *Predicate)
			msg  string
		}{
			"no transition":          {func(p *Predicate) { p.Transition = nil }, "names no transition"},
			"another trusted commit": {func(p *Predicate) { p.Transition.TrustedCommit = strings.Repeat("d", 40) }, "from trusted commit dddddddddddd"},
			"other content replaced": {func(p *Predicate) { p.Transition.Replaces[KeyringPath] = otherDigest }, "the content in force is"},
			"a subject not described": {func(p *Predicate) {
				delete(p.Transition.Replaces, KeyringPath)
				p.Transition.Replaces["x"] = otherDigest
			}, "does not say what"},
		} {
			v := VerifyMeta(input(both, sign("dave", Approve, both, tc.edit), sign("erin", Approve, both, nil)))
			if c, msg := codeOf(v, 0); v.QuorumMet || c != CodeTransitionMismatch || !strings.Contains(msg, tc.msg) {
				t.Errorf("%s: code %q %q; verdict %+v", name, c, msg, v)
			}
		}
	})
	t.Run("the new policy digest binds", func(t *testing.T) {
		t.Parallel()
		stale := []Subject{PolicySetSubject(testDigest)}
		v := VerifyMeta(input([]Subject{newPolicies}, sign("dave", Approve, stale, nil), sign("erin", Approve, []Subject{newPolicies}, nil)))
		if c, _ := codeOf(v, 0); v.QuorumMet || c != CodeSubjectMismatch {
			t.Fatalf("code %q; verdict %+v", c, v)
		}
	})
	t.Run("the trusted policy digest binds", func(t *testing.T) {
		t.Parallel()
		v := VerifyMeta(input(both, sign("dave", Approve, both, func(p *Predicate) { p.PolicyDigest = otherDigest }), sign("erin", Approve, both, nil)))
		if c, _ := codeOf(v, 0); v.QuorumMet || c != CodePolicyDigestMismatch {
			t.Fatalf("code %q; verdict %+v", c, v)
		}
	})
	t.Run("no plan", func(t *testing.T) {
		t.Parallel()
		v := VerifyMeta(input(both, sign("dave", Approve, both, func(p *Predicate) { p.PlanDigest = testPlan }), sign("erin", Approve, both, nil)))
		if c, msg := codeOf(v, 0); v.QuorumMet || c != CodePlanDigestMismatch || !strings.Contains(msg, "no plan") {
			t.Fatalf("code %q %q; verdict %+v", c, msg, v)
		}
	})
	t.Run("the author may not approve", func(t *testing.T) {
		t.Parallel()
		v := VerifyMeta(input(both, sign("dave", Propose, both, nil), sign("dave", Approve, both, nil), sign("erin", Approve, both, nil)))
		if c, _ := codeOf(v, 1); v.QuorumMet || c != CodeSelfApproval || v.Proposer != "dave" {
			t.Fatalf("code %q; verdict %+v", c, v)
		}
	})
	t.Run("required proposal", func(t *testing.T) {
		t.Parallel()
		in := input(both, sign("dave", Approve, both, nil), sign("erin", Approve, both, nil))
		in.Options.RequireProposal = true
		if v := VerifyMeta(in); v.QuorumMet || !v.ProposalMissing {
			t.Fatalf("verdict %+v", v)
		}
		in.Envelopes = append(in.Envelopes, submitted(sign("ivan", Propose, both, nil))...)
		if v := VerifyMeta(in); !v.QuorumMet || v.Proposer != "ivan" {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("an admin's rejection blocks", func(t *testing.T) {
		t.Parallel()
		v := VerifyMeta(input(both, sign("dave", Approve, both, nil), sign("erin", Approve, both, nil),
			sign("dave", Reject, both, func(p *Predicate) { p.IssuedAt = testNow.Add(-time.Minute); p.Reason = "removes the CDN allow-list" })))
		if v.QuorumMet || len(v.Rejected) != 1 || v.Rejected[0].Reason != "removes the CDN allow-list" {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("input errors", func(t *testing.T) {
		t.Parallel()
		for _, in := range []MetaInput{
			{PolicyDigest: testPolicy, Keyring: f.kr, Now: testNow},
			{Changes: both, Keyring: f.kr, Now: testNow},
			{Changes: both, PolicyDigest: testPolicy, Now: testNow},
			{Changes: []Subject{newPolicies, newPolicies}, PolicyDigest: testPolicy, Keyring: f.kr, Now: testNow},
			{Changes: both, PolicyDigest: testPolicy, Keyring: f.kr},
		} {
			if v := VerifyMeta(in); v.Err == nil || v.QuorumMet {
				t.Fatalf("%+v: verdict %+v", in, v)
			}
		}
	})
}
