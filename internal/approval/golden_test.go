package approval

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestGoldenEnvelopes pins the format: envelopes signed by an earlier
// build, and one by cosign attest-blob (testdata/approval/golden), must
// keep verifying.
func TestGoldenEnvelopes(t *testing.T) {
	t.Parallel()
	dir := "../../testdata/approval/golden"
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	kr, problems := ParseKeyring(KeyringPath, read(".writ/approvers.yaml"))
	if problems != nil {
		t.Fatal(problems)
	}
	var subs []Submitted
	for _, name := range []string{"alice", "bob", "carol", "mallory"} {
		subs = append(subs, Submitted{Envelope: read("envelopes/" + name + ".json"), Source: "import"})
	}
	bob, err := Parse(subs[1].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	carol, err := Parse(subs[2].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if carol.Statement.Type != StatementV01 || carol.KeyID != "" || carol.Statement.Subject[0].Name != "block-c2-beacon.yaml" {
		t.Fatalf("cosign envelope: type %s, keyid %q, subject %q", carol.Statement.Type, carol.KeyID, carol.Statement.Subject[0].Name)
	}
	p := bob.Statement.Predicate
	in := Input{
		Subject:           FileSubject("playbooks/network/block-c2-beacon.yaml", read("playbooks/network/block-c2-beacon.yaml")),
		Repository:        "acme/secops",
		ApprovalsRequired: 2,
		ApproverRoles:     []string{RoleApprover},
		PolicyDigest:      p.PolicyDigest,
		PlanDigest:        p.PlanDigest,
		Keyring:           kr,
		Envelopes:         subs,
		Now:               time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC),
	}
	v := Verify(in)
	if !v.QuorumMet || v.Proposer != "alice" || len(v.Counted) != 2 || v.Counted[0].Approver != "bob" || v.Counted[1].Approver != "carol" {
		t.Fatalf("verdict %+v", v)
	}
	if c, _ := codeOf(v, 3); c != CodeUnknownKey {
		t.Fatalf("mallory: %q", c)
	}
	// A day later the approvals have expired; the proposal has not.
	in.Now = in.Now.Add(24 * time.Hour)
	v = Verify(in)
	if v.QuorumMet || v.Proposer != "alice" || len(v.Counted) != 0 {
		t.Fatalf("a day later: %+v", v)
	}
}
