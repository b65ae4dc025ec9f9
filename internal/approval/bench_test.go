package approval

import (
	"fmt"
	"testing"

	"github.com/writ-sec/writ/internal/keys"
)

// BenchmarkVerify1000 verifies 1,000 ed25519 envelopes (one proposal and
// 999 approvals by 99 approvers, ten or so each) against a keyring of 100
// people. Target: under 200 ms per operation.
func BenchmarkVerify1000(b *testing.B) {
	people := make([]testPerson, 100)
	people[0] = testPerson{id: "analyst", roles: []string{RoleAnalyst}}
	for i := 1; i < len(people); i++ {
		people[i] = testPerson{id: fmt.Sprintf("approver-%02d", i), roles: []string{RoleApprover}}
	}
	f := newFixture(b, people)
	envs := [][]byte{f.propose(b, "analyst")}
	for i := 1; len(envs) < 1000; i++ {
		envs = append(envs, f.approve(b, people[1+i%99].id))
	}
	in := baseInput(f, submitted(envs...))
	in.ApprovalsRequired = 99
	if v := Verify(in); !v.QuorumMet || len(v.Counted) != 99 || len(v.NotCounted) != 1000-100 {
		b.Fatalf("counted %d, not counted %d, met %v", len(v.Counted), len(v.NotCounted), v.QuorumMet)
	}
	b.ReportAllocs()
	reportCPU(b, func() { Verify(in) })
}

// BenchmarkVerifyOne is one playbook's usual case: a proposal and two
// approvals.
func BenchmarkVerifyOne(b *testing.B) {
	f := newFixture(b, testPeople)
	in := baseInput(f, submitted(f.propose(b, "alice"), f.approve(b, "bob"), f.approve(b, "hank")))
	b.ReportAllocs()
	for b.Loop() {
		if v := Verify(in); !v.QuorumMet {
			b.Fatal("not met")
		}
	}
}

// BenchmarkVerify1000SSH is BenchmarkVerify1000 with SSH keys: 1,000
// envelopes signed as SSHSIGs (one proposal, 999 approvals by 99
// approvers; half the approvers ed25519, half ecdsa-p256 SSH keys)
// against a keyring of 200 people, half of them with PEM keys. Target:
// under 200 ms per operation.
func BenchmarkVerify1000SSH(b *testing.B) {
	people := make([]testPerson, 200)
	people[0] = testPerson{id: "analyst", roles: []string{RoleAnalyst}, ssh: true}
	for i := 1; i < len(people); i++ {
		p := testPerson{id: fmt.Sprintf("approver-%03d", i), roles: []string{RoleApprover}}
		if i < 100 {
			p.ssh = true
			if i%2 == 0 {
				p.alg = keys.ECDSAP256
			}
		}
		people[i] = p
	}
	f := newFixture(b, people)
	envs := [][]byte{f.propose(b, "analyst")}
	for i := 1; len(envs) < 1000; i++ {
		envs = append(envs, f.approve(b, people[1+i%99].id))
	}
	in := baseInput(f, submitted(envs...))
	in.ApprovalsRequired = 99
	if v := Verify(in); !v.QuorumMet || len(v.Counted) != 99 || len(v.NotCounted) != 1000-100 {
		b.Fatalf("counted %d, not counted %d, met %v", len(v.Counted), len(v.NotCounted), v.QuorumMet)
	}
	b.ReportAllocs()
	reportCPU(b, func() { Verify(in) })
}

// BenchmarkVerify1000WebAuthn is BenchmarkVerify1000 with passkeys: 1,000
// envelopes signed as WebAuthn assertions (one proposal, 999 approvals by
// 99 approvers; half of them ES256, half Ed25519 passkeys) against a
// keyring of 200 people, half of them with PEM keys. Target: under 200 ms
// per operation.
func BenchmarkVerify1000WebAuthn(b *testing.B) {
	people := make([]testPerson, 200)
	people[0] = testPerson{id: "analyst", roles: []string{RoleAnalyst}, passkey: "es256"}
	for i := 1; i < len(people); i++ {
		p := testPerson{id: fmt.Sprintf("approver-%03d", i), roles: []string{RoleApprover}}
		if i < 100 {
			p.passkey = "es256"
			if i%2 == 0 {
				p.passkey = "ed25519"
			}
		}
		people[i] = p
	}
	f := newFixture(b, people)
	envs := [][]byte{f.propose(b, "analyst")}
	for i := 1; len(envs) < 1000; i++ {
		envs = append(envs, f.approve(b, people[1+i%99].id))
	}
	in := baseInput(f, submitted(envs...))
	in.ApprovalsRequired = 99
	if v := Verify(in); !v.QuorumMet || len(v.Counted) != 99 || len(v.NotCounted) != 1000-100 {
		b.Fatalf("counted %d, not counted %d, met %v", len(v.Counted), len(v.NotCounted), v.QuorumMet)
	}
	b.ReportAllocs()
	reportCPU(b, func() { Verify(in) })
}
