package approval

import (
	"bytes"
	"cmp"
	"strings"
	"testing"
	"time"
)

// TestVerifyReasons has one case per reason an envelope is not counted
// (and the near misses that do count). Envelope 0 is always alice's valid
// proposal; the case's envelope is envelope 1.
func TestVerifyReasons(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople)
	with := func(who, decision string, edit func(p *Predicate)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			p := pred(who, decision)
			edit(&p)
			return f.sign(t, who, p)
		}
	}
	approval := func(who string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return f.approve(t, who) }
	}
	signedJSON := func(who string, edit func(m map[string]any)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			return signRaw(t, f.priv[who], statementJSON(t, stmt(pred(who, Approve)), edit))
		}
	}
	noKeyID := func(env []byte) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			return editEnvelope(t, env, func(m map[string]any) {
				m["signatures"].([]any)[0].(map[string]any)["keyid"] = ""
			})
		}
	}
	predicateOf := func(m map[string]any) map[string]any { return m["predicate"].(map[string]any) }

	cases := []struct {
		name  string
		env   func(t *testing.T) []byte
		login string // SourceLogin
		forge string // Source when login is set; default github
		edit  func(in *Input)
		want  Code // "" means counted
		msg   string
	}{
		{name: "valid approval counts", env: approval("bob")},
		{name: "ecdsa approver counts", env: approval("carol")},

		// malformed envelopes and statements
		{name: "not JSON", env: func(*testing.T) []byte { return []byte("LGTM") }, want: CodeMalformed, msg: "DSSE envelope"},
		{name: "empty", env: func(*testing.T) []byte { return nil }, want: CodeMalformed},
		{name: "too large", env: func(*testing.T) []byte { return bytes.Repeat([]byte(" "), MaxEnvelopeBytes+1) }, want: CodeMalformed, msg: "limit"},
		{name: "duplicate key in envelope", env: func(t *testing.T) []byte {
			env := f.approve(t, "bob")
			return bytes.Replace(env, []byte(`{"payloadType":`), []byte(`{"payloadType":"x","payloadType":`), 1)
		}, want: CodeMalformed, msg: `duplicate JSON key "payloadType"`},
		{name: "unknown envelope field", env: func(t *testing.T) []byte {
			return editEnvelope(t, f.approve(t, "bob"), func(m map[string]any) { m["approved"] = true })
		}, want: CodeMalformed, msg: "unknown field"},
		{name: "two signatures", env: func(t *testing.T) []byte {
			return editEnvelope(t, f.approve(t, "bob"), func(m map[string]any) {
				s := m["signatures"].([]any)
				m["signatures"] = append(s, s[0])
			})
		}, want: CodeMalformed, msg: "exactly one"},
		{name: "no signature", env: func(t *testing.T) []byte {
			return editEnvelope(t, f.approve(t, "bob"), func(m map[string]any) { m["signatures"] = []any{} })
		}, want: CodeMalformed, msg: "0 signatures"},
		{name: "wrong payload type", env: func(t *testing.T) []byte {
			return editEnvelope(t, f.approve(t, "bob"), func(m map[string]any) { m["payloadType"] = "text/plain" })
		}, want: CodeMalformed, msg: "payloadType"},
		{name: "payload not base64", env: func(t *testing.T) []byte {
			return editEnvelope(t, f.approve(t, "bob"), func(m map[string]any) { m["payload"] = "%%%" })
		}, want: CodeMalformed, msg: "base64"},
		{name: "duplicate key in statement", env: func(t *testing.T) []byte {
			payload := statementJSON(t, stmt(pred("bob", Approve)), func(map[string]any) {})
			payload = bytes.Replace(payload, []byte(`{"_type":`), []byte(`{"_type":"x","_type":`), 1)
			return signRaw(t, f.priv["bob"], payload)
		}, want: CodeMalformed, msg: `duplicate JSON key "_type"`},
		{name: "unknown predicate field", env: signedJSON("bob", func(m map[string]any) {
			predicateOf(m)["quorum"] = 0
		}), want: CodeMalformed, msg: `unknown field "quorum"`},
		{name: "unknown statement field", env: signedJSON("bob", func(m map[string]any) { m["extra"] = 1 }), want: CodeMalformed, msg: "unknown field"},
		{name: "missing expiresAt", env: signedJSON("bob", func(m map[string]any) {
			delete(predicateOf(m), "expiresAt")
		}), want: CodeMalformed, msg: "expiresAt is missing"},
		{name: "expiresAt before issuedAt", env: signedJSON("bob", func(m map[string]any) {
			predicateOf(m)["expiresAt"] = testNow.Add(-2 * time.Hour).Format(time.RFC3339)
		}), want: CodeMalformed, msg: "not after issuedAt"},
		{name: "unknown decision", env: signedJSON("bob", func(m map[string]any) { predicateOf(m)["decision"] = "lgtm" }), want: CodeMalformed, msg: "decision"},
		{name: "wrong statement type", env: signedJSON("bob", func(m map[string]any) { m["_type"] = "https://in-toto.io/Statement/v9" }), want: CodeMalformed, msg: "_type"},
		{name: "no subject", env: signedJSON("bob", func(m map[string]any) { m["subject"] = []any{} }), want: CodeMalformed, msg: "no subject"},
		{name: "subject digest not hex", env: signedJSON("bob", func(m map[string]any) {
			m["subject"] = []any{map[string]any{"name": testPath, "digest": map[string]any{"sha256": "zz"}}}
		}), want: CodeMalformed, msg: "subject[0]"},
		{name: "control characters in reason", env: signedJSON("bob", func(m map[string]any) { predicateOf(m)["reason"] = "ok\x1b[2Jforged" }), want: CodeMalformed, msg: "control character"},
		{name: "approval without policy digest", env: signedJSON("bob", func(m map[string]any) { delete(predicateOf(m), "policyDigest") }), want: CodeMalformed, msg: "policyDigest is missing"},
		{name: "wrong predicate type", env: signedJSON("bob", func(m map[string]any) {
			m["predicateType"] = "https://slsa.dev/provenance/v1"
		}), want: CodeWrongPredicateType, msg: "slsa.dev"},

		// signatures and keys
		{name: "bad signature: payload altered", env: func(t *testing.T) []byte {
			return editPayload(t, f.approve(t, "bob"), func(st map[string]any) {
				st["predicate"].(map[string]any)["planDigest"] = otherDigest
			})
		}, want: CodeBadSignature, msg: `of "bob"`},
		{name: "bad signature: signature altered", env: func(t *testing.T) []byte {
			return editEnvelope(t, f.approve(t, "bob"), func(m map[string]any) {
				s := m["signatures"].([]any)[0].(map[string]any)
				s["sig"] = strings.Repeat("A", len(s["sig"].(string)))
			})
		}, want: CodeBadSignature},
		{name: "unknown key", env: func(t *testing.T) []byte {
			return signWith(t, f.stranger, stmt(pred("bob", Approve)))
		}, want: CodeUnknownKey, msg: "not in the approvers file"},
		{name: "unknown key without key id", env: func(t *testing.T) []byte {
			return noKeyID(signWith(t, f.stranger, stmt(pred("bob", Approve))))(t)
		}, want: CodeUnknownKey, msg: "no key in the approvers file"},
		{name: "unknown person", env: func(t *testing.T) []byte {
			return signWith(t, f.stranger, stmt(pred("zed", Approve)))
		}, want: CodeUnknownKey},
		{name: "altered without key id", env: func(t *testing.T) []byte {
			env := noKeyID(f.approve(t, "bob"))(t)
			return editPayload(t, env, func(st map[string]any) { st["predicate"].(map[string]any)["reason"] = "changed" })
		}, want: CodeUnknownKey},
		{name: "key id of another format still verifies", env: func(t *testing.T) []byte {
			return editEnvelope(t, f.approve(t, "bob"), func(m map[string]any) {
				m["signatures"].([]any)[0].(map[string]any)["keyid"] = "some-other-key-id-scheme"
			})
		}},
		{name: "writ key id verifies", env: func(t *testing.T) []byte {
			k := f.kr.byID["bob"].Keys[0]
			return editEnvelope(t, f.approve(t, "bob"), func(m map[string]any) {
				m["signatures"].([]any)[0].(map[string]any)["keyid"] = k.ID
			})
		}},
		{name: "no key id (as cosign writes) verifies", env: func(t *testing.T) []byte { return noKeyID(f.approve(t, "bob"))(t) }},
		{name: "key of another person", env: func(t *testing.T) []byte {
			return signWith(t, f.priv["bob"], stmt(pred("carol", Approve)))
		}, want: CodeKeyOfAnotherPerson, msg: `key of "bob"`},
		{name: "key of another person without key id", env: func(t *testing.T) []byte {
			return noKeyID(signWith(t, f.priv["bob"], stmt(pred("carol", Approve))))(t)
		}, want: CodeKeyOfAnotherPerson, msg: `names "carol"`},
		{name: "disabled person", env: approval("gina"), want: CodePersonDisabled},

		// channel
		{name: "forge login of the signer", env: approval("hank"), login: "hank-gh"},
		{name: "forge login of someone else", env: approval("hank"), login: "mallory", want: CodeLoginMismatch, msg: `"Hank-GH"`},
		{name: "forge login for a person without one", env: approval("bob"), login: "bob", want: CodeLoginMismatch, msg: "no github login"},
		{name: "gitlab login of the signer", env: approval("hank"), forge: "gitlab", login: "Hank.Lab"},
		{name: "gitlab note by the signer's github login", env: approval("hank"), forge: "gitlab", login: "hank-gh", want: CodeLoginMismatch, msg: `is GitLab user "hank.lab"`},
		{name: "github review by the signer's gitlab login", env: approval("hank"), login: "hank.lab", want: CodeLoginMismatch, msg: `is GitHub user "Hank-GH"`},
		{name: "gitlab login for a person with only a github one", env: approval("alice"), forge: "gitlab", login: "alice-gh", want: CodeLoginMismatch, msg: "no gitlab login"},

		// content binding
		{name: "other content", env: func(t *testing.T) []byte {
			return signWith(t, f.priv["bob"], NewStatement([]Subject{{Path: testPath, Digest: otherDigest}}, pred("bob", Approve)))
		}, want: CodeSubjectMismatch, msg: testPath},
		{name: "same content at another path", env: func(t *testing.T) []byte {
			return signWith(t, f.priv["bob"], NewStatement([]Subject{{Path: "playbooks/other.yaml", Digest: testDigest}}, pred("bob", Approve)))
		}, want: CodeSubjectMismatch, msg: "playbooks/other.yaml"},
		{name: "base name as cosign writes it", env: func(t *testing.T) []byte {
			return signWith(t, f.priv["bob"], NewStatement([]Subject{{Path: "block-c2-beacon.yaml", Digest: testDigest}}, pred("bob", Approve)))
		}},
		{name: "one of several subjects", env: func(t *testing.T) []byte {
			return signWith(t, f.priv["bob"], NewStatement([]Subject{{Path: "playbooks/x.yaml", Digest: otherDigest}, {Path: testPath, Digest: testDigest}}, pred("bob", Approve)))
		}},
		{name: "other repository", env: with("bob", Approve, func(p *Predicate) { p.Repository = "evil/fork" }), want: CodeRepositoryMismatch, msg: "evil/fork"},
		{name: "no repository named", env: with("bob", Approve, func(p *Predicate) { p.Repository = "" }), want: CodeRepositoryMismatch, msg: "names no repository"},
		{name: "repository in another case", env: with("bob", Approve, func(p *Predicate) { p.Repository = "ACME/SecOps" })},

		// operation binding
		{name: "apply named", env: with("bob", Approve, func(p *Predicate) { p.Operation = OperationApply })},
		{name: "approval of the revert", env: with("bob", Approve, func(p *Predicate) { p.Operation = OperationRevert }), want: CodeOperationMismatch, msg: "the revert of this content, not its apply"},
		{name: "a transition is not about a playbook", env: with("bob", Approve, func(p *Predicate) {
			p.Transition = &Transition{TrustedCommit: strings.Repeat("b", 40), Replaces: map[string]string{testPath: otherDigest}}
		}), want: CodeTransitionMismatch, msg: "not about a playbook"},
		{name: "other policy set", env: with("bob", Approve, func(p *Predicate) { p.PolicyDigest = otherDigest }), want: CodePolicyDigestMismatch},
		{name: "other plan", env: with("bob", Approve, func(p *Predicate) { p.PlanDigest = otherDigest }), want: CodePlanDigestMismatch},
		{name: "no plan", env: with("bob", Approve, func(p *Predicate) { p.PlanDigest = "" }), want: CodePlanDigestMismatch},

		// time
		{name: "expired", env: with("bob", Approve, func(p *Predicate) {
			p.IssuedAt, p.ExpiresAt = testNow.Add(-3*time.Hour), testNow.Add(-time.Minute)
		}), want: CodeExpired, msg: "expired at"},
		{name: "older than the maximum age", env: with("bob", Approve, func(p *Predicate) {
			p.IssuedAt, p.ExpiresAt = testNow.Add(-25*time.Hour), testNow.Add(time.Hour)
		}), want: CodeExpired, msg: "24h0m0s"},
		{name: "longer maximum age", env: with("bob", Approve, func(p *Predicate) {
			p.IssuedAt, p.ExpiresAt = testNow.Add(-25*time.Hour), testNow.Add(time.Hour)
		}), edit: func(in *Input) { in.Options.MaxAge = 48 * time.Hour }},
		{name: "issued in the future", env: with("bob", Approve, func(p *Predicate) {
			p.IssuedAt = testNow.Add(10 * time.Minute)
		}), want: CodeIssuedInFuture, msg: "10m0s in the future"},
		{name: "issued within the clock skew", env: with("bob", Approve, func(p *Predicate) {
			p.IssuedAt = testNow.Add(4 * time.Minute)
		})},

		// people and roles
		{name: "proposer approving their own playbook", env: approval("alice"), want: CodeSelfApproval, msg: "separation of duties"},
		{name: "proposal by someone without the analyst role", env: func(t *testing.T) []byte { return f.propose(t, "bob") }, want: CodeProposerNotAnalyst},
		{name: "viewer approving", env: approval("frank"), want: CodeRoleNotQualified, msg: "approver"},
		{name: "admin when approvers are asked", env: approval("erin"), want: CodeRoleNotQualified},
		{name: "admin when admins qualify", env: approval("erin"), edit: func(in *Input) {
			in.ApproverRoles = []string{RoleApprover, RoleAdmin}
		}},
		{name: "default roles are approvers", env: approval("bob"), edit: func(in *Input) { in.ApproverRoles = nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			subs := submitted(f.propose(t, "alice"), tc.env(t))
			subs[1].SourceLogin = tc.login
			if tc.login != "" {
				subs[1].Source = cmp.Or(tc.forge, ForgeGitHub)
			}
			in := baseInput(f, subs)
			in.ApprovalsRequired = 1
			if tc.edit != nil {
				tc.edit(&in)
			}
			v := Verify(in)
			if v.Err != nil {
				t.Fatalf("input error: %v", v.Err)
			}
			if v.Proposer != "alice" {
				t.Fatalf("proposer = %q; want alice (not counted: %+v)", v.Proposer, v.NotCounted)
			}
			code, msg := codeOf(v, 1)
			if code != tc.want {
				t.Fatalf("code = %q (%s); want %q", code, msg, tc.want)
			}
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not mention %q", msg, tc.msg)
			}
			if tc.want == "" {
				if !v.QuorumMet || len(v.Counted) != 1 || v.Counted[0].EnvelopeIndex != 1 {
					t.Fatalf("verdict %+v; want envelope 1 counted and the quorum met", v)
				}
				return
			}
			if v.QuorumMet || len(v.Counted) != 0 || v.Missing != 1 {
				t.Fatalf("verdict %+v; want nothing counted", v)
			}
			if len(v.NotCounted) != 1 {
				t.Fatalf("not counted: %+v; want only envelope 1", v.NotCounted)
			}
		})
	}
}

func TestQuorum(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople)
	reject := func(who, reason string) []byte {
		p := pred(who, Reject)
		p.Reason = reason
		return f.sign(t, who, p)
	}
	at := func(who, decision string, issued time.Duration) []byte {
		p := pred(who, decision)
		p.IssuedAt = testNow.Add(issued)
		return f.sign(t, who, p)
	}

	t.Run("met", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.approve(t, "bob"), f.approve(t, "carol"))))
		if !v.QuorumMet || v.Missing != 0 || v.Proposer != "alice" || len(v.Counted) != 2 || len(v.NotCounted) != 0 {
			t.Fatalf("verdict %+v", v)
		}
		if v.Counted[0].Approver != "bob" || v.Counted[1].Approver != "carol" || v.Counted[0].Role != RoleApprover {
			t.Fatalf("counted %+v", v.Counted)
		}
		if want := testNow.Add(23 * time.Hour); !v.ValidUntil.Equal(want) {
			t.Fatalf("valid until %s; want %s", v.ValidUntil, want)
		}
		if v.Summary() != "approved by bob, carol (2 approvals, 2 required); proposed by alice" {
			t.Fatalf("summary %q", v.Summary())
		}
	})
	t.Run("one short", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.approve(t, "bob"))))
		if v.QuorumMet || v.Missing != 1 || v.ValidUntil != nil {
			t.Fatalf("verdict %+v", v)
		}
		if v.Summary() != "not approved: 1 of 2 approvals (bob); proposed by alice" {
			t.Fatalf("summary %q", v.Summary())
		}
	})
	t.Run("no proposal", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.approve(t, "bob"), f.approve(t, "carol"))))
		if v.QuorumMet || !v.ProposalMissing || v.Missing != 0 || len(v.Counted) != 2 {
			t.Fatalf("verdict %+v", v)
		}
		if v.Summary() != "not approved: 2 of 2 approvals (bob, carol), no signed proposal" {
			t.Fatalf("summary %q", v.Summary())
		}
	})
	t.Run("relaxing proposals does not apply to playbooks that need approval", func(t *testing.T) {
		t.Parallel()
		in := baseInput(f, submitted(f.approve(t, "bob"), f.approve(t, "carol")))
		in.Options.RelaxProposal = true
		if v := Verify(in); v.QuorumMet || !v.ProposalMissing {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("allowed playbook needs a proposal by default", func(t *testing.T) {
		t.Parallel()
		in := baseInput(f, nil)
		in.ApprovalsRequired = 0
		if v := Verify(in); v.QuorumMet || !v.ProposalMissing {
			t.Fatalf("verdict %+v", v)
		}
		in.Envelopes = submitted(f.propose(t, "alice"))
		v := Verify(in)
		if !v.QuorumMet || v.Proposer != "alice" || !v.ValidUntil.Equal(testNow.Add(23*time.Hour)) {
			t.Fatalf("verdict %+v", v)
		}
		if v.Summary() != "approved: no approvals required; proposed by alice" {
			t.Fatalf("summary %q", v.Summary())
		}
	})
	t.Run("allowed playbook without proposal when relaxed", func(t *testing.T) {
		t.Parallel()
		in := baseInput(f, nil)
		in.ApprovalsRequired = 0
		in.Options.RelaxProposal = true
		if v := Verify(in); !v.QuorumMet || v.ProposalMissing {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("rejection blocks", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.approve(t, "bob"), f.approve(t, "dave"), reject("carol", "198.51.100.0/24 is our CDN"))))
		if v.QuorumMet || len(v.Counted) != 2 || len(v.Rejected) != 1 {
			t.Fatalf("verdict %+v", v)
		}
		r := v.Rejected[0]
		if r.Approver != "carol" || r.Reason != "198.51.100.0/24 is our CDN" || r.EnvelopeIndex != 3 {
			t.Fatalf("rejection %+v", r)
		}
		if v.Summary() != "rejected by carol (198.51.100.0/24 is our CDN); proposed by alice" {
			t.Fatalf("summary %q", v.Summary())
		}
	})
	t.Run("rejection blocks an allowed playbook", func(t *testing.T) {
		t.Parallel()
		in := baseInput(f, submitted(f.propose(t, "alice"), reject("bob", "")))
		in.ApprovalsRequired = 0
		v := Verify(in)
		if v.QuorumMet || len(v.Rejected) != 1 || v.Rejected[0].Reason != "(no reason given)" {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("rejection of other content does not block", func(t *testing.T) {
		t.Parallel()
		p := pred("carol", Reject)
		old := signWith(t, f.priv["carol"], NewStatement([]Subject{{Path: testPath, Digest: otherDigest}}, p))
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.approve(t, "bob"), f.approve(t, "dave"), old)))
		if !v.QuorumMet {
			t.Fatalf("verdict %+v", v)
		}
		if c, _ := codeOf(v, 3); c != CodeSubjectMismatch {
			t.Fatalf("code %q", c)
		}
	})
	t.Run("rejection under another plan still blocks", func(t *testing.T) {
		t.Parallel()
		p := pred("carol", Reject)
		p.PlanDigest, p.PolicyDigest = otherDigest, otherDigest
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.approve(t, "bob"), f.approve(t, "dave"), f.sign(t, "carol", p))))
		if v.QuorumMet || len(v.Rejected) != 1 {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("rejection by an unqualified person does not block", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.approve(t, "bob"), f.approve(t, "carol"), reject("frank", "no"))))
		if !v.QuorumMet || len(v.Rejected) != 0 {
			t.Fatalf("verdict %+v", v)
		}
		if c, _ := codeOf(v, 3); c != CodeRoleNotQualified {
			t.Fatalf("code %q", c)
		}
	})
	t.Run("the author's rejection blocks", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.approve(t, "bob"), f.approve(t, "carol"), reject("alice", "withdrawn"))))
		if v.QuorumMet || len(v.Rejected) != 1 || v.Rejected[0].Approver != "alice" {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("a person counts once", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), at("bob", Approve, -2*time.Hour), at("bob", Approve, -time.Hour))))
		if v.QuorumMet || len(v.Counted) != 1 || v.Counted[0].EnvelopeIndex != 2 {
			t.Fatalf("verdict %+v", v)
		}
		if c, msg := codeOf(v, 1); c != CodeDuplicatePerson || !strings.Contains(msg, "envelope 2") {
			t.Fatalf("code %q %q", c, msg)
		}
	})
	t.Run("a later rejection supersedes the same person's approval", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), at("bob", Approve, -2*time.Hour), at("bob", Reject, -time.Hour), f.approve(t, "carol"))))
		if v.QuorumMet || len(v.Rejected) != 1 || len(v.Counted) != 1 || v.Counted[0].Approver != "carol" {
			t.Fatalf("verdict %+v", v)
		}
		if c, _ := codeOf(v, 1); c != CodeDuplicatePerson {
			t.Fatalf("code %q", c)
		}
	})
	t.Run("a later approval supersedes the same person's rejection", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), at("bob", Approve, -time.Hour), at("bob", Reject, -2*time.Hour), f.approve(t, "carol"))))
		if !v.QuorumMet || len(v.Rejected) != 0 {
			t.Fatalf("verdict %+v", v)
		}
		if c, _ := codeOf(v, 2); c != CodeDuplicatePerson {
			t.Fatalf("code %q", c)
		}
	})
	t.Run("a second proposal by the same person", func(t *testing.T) {
		t.Parallel()
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.propose(t, "alice"), f.approve(t, "bob"), f.approve(t, "carol"))))
		if !v.QuorumMet || len(v.Proposals) != 1 {
			t.Fatalf("verdict %+v", v)
		}
		if c, _ := codeOf(v, 1); c != CodeDuplicatePerson {
			t.Fatalf("code %q", c)
		}
	})
	t.Run("co-authors may not approve", func(t *testing.T) {
		t.Parallel()
		ivan := pred("ivan", Propose)
		ivan.IssuedAt = testNow.Add(-2 * time.Hour)
		alice := pred("alice", Approve)
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.sign(t, "ivan", ivan), f.sign(t, "alice", alice), f.approve(t, "bob"))))
		if v.QuorumMet || v.Proposer != "ivan" || len(v.Proposals) != 2 {
			t.Fatalf("verdict %+v", v)
		}
		if c, _ := codeOf(v, 2); c != CodeSelfApproval {
			t.Fatalf("code %q", c)
		}
	})
	t.Run("an author whose proposal expired still may not approve", func(t *testing.T) {
		t.Parallel()
		old := pred("alice", Propose)
		old.IssuedAt, old.ExpiresAt = testNow.Add(-48*time.Hour), testNow.Add(-24*time.Hour)
		v := Verify(baseInput(f, submitted(f.sign(t, "alice", old), f.propose(t, "ivan"), f.approve(t, "alice"), f.approve(t, "bob"))))
		if v.QuorumMet || v.Proposer != "ivan" {
			t.Fatalf("verdict %+v", v)
		}
		if c, _ := codeOf(v, 0); c != CodeExpired {
			t.Fatalf("code %q", c)
		}
		if c, _ := codeOf(v, 2); c != CodeSelfApproval {
			t.Fatalf("code %q", c)
		}
	})
	t.Run("validity ends with the approvals the quorum needs", func(t *testing.T) {
		t.Parallel()
		early := pred("bob", Approve)
		early.ExpiresAt = testNow.Add(time.Hour)
		late := pred("carol", Approve)
		late.ExpiresAt = testNow.Add(5 * time.Hour)
		mid := pred("dave", Approve)
		mid.ExpiresAt = testNow.Add(3 * time.Hour)
		v := Verify(baseInput(f, submitted(f.propose(t, "alice"), f.sign(t, "bob", early), f.sign(t, "carol", late), f.sign(t, "dave", mid))))
		if !v.QuorumMet || !v.ValidUntil.Equal(testNow.Add(3*time.Hour)) {
			t.Fatalf("valid until %s; verdict %+v", v.ValidUntil, v)
		}
	})
	t.Run("approval age caps validity", func(t *testing.T) {
		t.Parallel()
		p := pred("bob", Approve)
		p.IssuedAt, p.ExpiresAt = testNow.Add(-23*time.Hour), testNow.Add(48*time.Hour)
		in := baseInput(f, submitted(f.propose(t, "alice"), f.sign(t, "bob", p)))
		in.ApprovalsRequired = 1
		v := Verify(in)
		if !v.QuorumMet || !v.ValidUntil.Equal(testNow.Add(time.Hour)) {
			t.Fatalf("valid until %s; verdict %+v", v.ValidUntil, v)
		}
	})
}

// A revert is judged on its own statements: the proposal and approvals of
// the apply of the same content never count for it (and the other way
// round), so deleting a playbook needs a signed proposal of its revert.
func TestOperationBinding(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople)
	revert := func(who, decision string) []byte {
		p := pred(who, decision)
		p.Operation = OperationRevert
		return f.sign(t, who, p)
	}
	judge := func(op string, envs ...[]byte) Verdict {
		in := baseInput(f, submitted(envs...))
		in.ApprovalsRequired, in.Operation = 1, op
		return Verify(in)
	}
	if v := judge(OperationRevert, revert("alice", Propose), revert("bob", Approve)); !v.QuorumMet || v.Proposer != "alice" {
		t.Fatalf("revert with its own statements: %+v", v)
	}
	v := judge(OperationRevert, f.propose(t, "alice"), f.approve(t, "bob"))
	if v.QuorumMet || !v.ProposalMissing || len(v.Counted) != 0 {
		t.Fatalf("revert with the apply's statements: %+v", v)
	}
	for i := range 2 {
		if c, msg := codeOf(v, i); c != CodeOperationMismatch || !strings.Contains(msg, "the apply of this content, not its revert") {
			t.Fatalf("envelope %d: %q %q", i, c, msg)
		}
	}
	if v := judge(OperationApply, revert("alice", Propose), revert("bob", Approve)); v.QuorumMet || !v.ProposalMissing {
		t.Fatalf("apply with the revert's statements: %+v", v)
	}
	// The apply's proposer may approve the revert: authorship is per
	// operation.
	if v := judge(OperationRevert, f.propose(t, "alice"), revert("ivan", Propose), revert("alice", Approve)); !v.QuorumMet || v.Proposer != "ivan" {
		t.Fatalf("the apply's author approving its revert: %+v", v)
	}
}

// A heal is judged on statements naming it and its drift incident: the
// apply's statements never count for it, nor do those of another
// incident's heal; and a statement names an incident exactly when it is
// about a heal.
func TestHealBinding(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople)
	heal := func(who, decision string, incident int64) []byte {
		p := pred(who, decision)
		p.Operation, p.Incident = OperationHeal, incident
		return f.sign(t, who, p)
	}
	judge := func(incident int64, envs ...[]byte) Verdict {
		in := baseInput(f, submitted(envs...))
		in.ApprovalsRequired, in.Operation, in.Incident = 1, OperationHeal, incident
		return Verify(in)
	}
	if v := judge(7, heal("alice", Propose, 7), heal("bob", Approve, 7)); !v.QuorumMet || v.Proposer != "alice" {
		t.Fatalf("heal with its own statements: %+v", v)
	}
	v := judge(8, heal("alice", Propose, 7), heal("bob", Approve, 7))
	if v.QuorumMet || !v.ProposalMissing {
		t.Fatalf("heal with another incident's statements: %+v", v)
	}
	if c, msg := codeOf(v, 0); c != CodeOperationMismatch || !strings.Contains(msg, "incident 7, not of incident 8") {
		t.Fatalf("another incident: %q %q", c, msg)
	}
	if v := judge(7, f.propose(t, "alice"), f.approve(t, "bob")); v.QuorumMet || !v.ProposalMissing {
		t.Fatalf("heal with the apply's statements: %+v", v)
	}
	p := pred("alice", Propose)
	p.Operation = OperationHeal
	st := stmt(p)
	if err := st.Validate(); err == nil || !strings.Contains(err.Error(), "incident") {
		t.Fatalf("a heal statement without its incident: %v", err)
	}
	p.Operation, p.Incident = OperationApply, 3
	st = stmt(p)
	if err := st.Validate(); err == nil || !strings.Contains(err.Error(), "heal only") {
		t.Fatalf("an apply statement naming an incident: %v", err)
	}
}

// With RejectionsDoNotBind (a scheduled expiry's revert, a lapsed
// break-glass's revert) a valid rejection does not block: it is reported
// as not counting, and the quorum is judged without it.
func TestRejectionsDoNotBind(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople)
	revert := func(who, decision string) []byte {
		p := pred(who, decision)
		p.Operation = OperationRevert
		return f.sign(t, who, p)
	}
	in := baseInput(f, submitted(revert("bob", Reject)))
	in.Operation, in.ApprovalsRequired, in.Options.RelaxProposal = OperationRevert, 0, true
	if v := Verify(in); v.QuorumMet || len(v.Rejected) != 1 {
		t.Fatalf("a rejection binds by default: %+v", v)
	}
	in.Options.RejectionsDoNotBind = true
	v := Verify(in)
	if !v.QuorumMet || len(v.Rejected) != 0 {
		t.Fatalf("a rejection held back a revert it does not bind: %+v", v)
	}
	if c, _ := codeOf(v, 0); c != CodeRejectionNotBinding {
		t.Fatalf("the rejection is reported as %q", c)
	}
}

// Break-glass lets only an apply run: asked for a revert or a heal, it
// counts nothing.
func TestBreakGlassOnlyForAnApply(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople)
	for _, c := range []struct {
		op       string
		incident int64
	}{{OperationRevert, 0}, {OperationHeal, 3}, {OperationApply, 3}} {
		in := baseInput(f, nil)
		in.Operation, in.Incident = c.op, c.incident
		if v := VerifyBreakGlass(in); v.QuorumMet || v.Err == nil || !strings.Contains(v.InputError, "only the apply") {
			t.Fatalf("break-glass for a %s (incident %d): %+v", c.op, c.incident, v)
		}
	}
}

func TestVerifyInputErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople[:2])
	cases := []struct {
		name string
		edit func(in *Input)
		want string
	}{
		{"no keyring", func(in *Input) { in.Keyring = nil }, "no keyring"},
		{"no subject path", func(in *Input) { in.Subject.Path = "" }, "no path"},
		{"no repository", func(in *Input) { in.Repository = "" }, "no repository identity"},
		{"bad repository", func(in *Input) { in.Repository = "not a repo" }, "OWNER/NAME"},
		{"bad operation", func(in *Input) { in.Operation = "delete" }, "not apply, revert or heal"},
		{"heal without incident", func(in *Input) { in.Operation = OperationHeal }, "drift incident"},
		{"bad subject digest", func(in *Input) { in.Subject.Digest = "abc" }, "digest"},
		{"negative quorum", func(in *Input) { in.ApprovalsRequired = -1 }, "negative"},
		{"unknown role", func(in *Input) { in.ApproverRoles = []string{"root"} }, "root"},
		{"no policy digest", func(in *Input) { in.PolicyDigest = "" }, "policy digest"},
		{"no plan digest", func(in *Input) { in.PlanDigest = "" }, "plan digest"},
		{"no time", func(in *Input) { in.Now = time.Time{} }, "time"},
		{"negative skew", func(in *Input) { in.Options.ClockSkew = -time.Second }, "skew"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := baseInput(f, submitted(f.propose(t, "alice"), f.approve(t, "bob")))
			in.ApprovalsRequired = 1
			tc.edit(&in)
			v := Verify(in)
			if v.Err == nil || !strings.Contains(v.Err.Error(), tc.want) || v.QuorumMet || len(v.Counted) != 0 {
				t.Fatalf("verdict %+v; want an input error mentioning %q", v, tc.want)
			}
		})
	}
}

// TestVerifyManyParallel checks the parallel path gives the same verdict
// as the serial one.
func TestVerifyManyParallel(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople)
	var envs [][]byte
	envs = append(envs, f.propose(t, "alice"))
	for i := range 3 * parallelThreshold {
		switch i % 3 {
		case 0:
			envs = append(envs, f.approve(t, "bob"))
		case 1:
			envs = append(envs, []byte("junk"))
		default:
			envs = append(envs, f.approve(t, "frank"))
		}
	}
	envs = append(envs, f.approve(t, "carol"))
	v := Verify(baseInput(f, submitted(envs...)))
	if !v.QuorumMet || len(v.Counted) != 2 || len(v.NotCounted) != len(envs)-3 {
		t.Fatalf("counted %+v, %d not counted", v.Counted, len(v.NotCounted))
	}
	for _, n := range v.NotCounted {
		want := map[int]Code{0: CodeDuplicatePerson, 1: CodeMalformed, 2: CodeRoleNotQualified}[(n.EnvelopeIndex-1)%3]
		if n.Code != want {
			t.Fatalf("envelope %d: %s; want %s", n.EnvelopeIndex, n.Code, want)
		}
	}
}
