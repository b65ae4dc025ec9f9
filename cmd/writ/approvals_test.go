package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/approval/webauthntest"
)

func TestApprovalsVerifyEndToEnd(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst", "bob:approver", "carol:approver", "dave:approver+admin", "frank:viewer")
	proposal := r.approve(t, "alice", "--propose")
	bob := r.approve(t, "bob")

	// The default policies: production, high severity: one approval.
	code, out, errOut := r.verify(t, proposal, bob)
	if code != exitOK {
		t.Fatalf("%d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"policy require_approval: 1 approval from approver",
		"proposal by alice",
		"counted: bob as approver, until ",
		"verdict approved by bob (1 approval, 1 required); proposed by alice",
	} {
		if !strings.Contains(collapseSpaces(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Without the proposal the quorum is not met.
	if code, out, _ := r.verify(t, bob); code != exitFailure || !strings.Contains(out, "no signed proposal") {
		t.Fatalf("no proposal: %d\n%s", code, out)
	}

	// More approvals asked for on the command line; the viewer does not count.
	frank := r.approve(t, "frank")
	code, out, _ = r.verify(t, "--approvals-required", "2", proposal, bob, frank)
	if code != exitFailure || !strings.Contains(out, "not counted: role_not_qualified") || !strings.Contains(out, "not approved: 1 of 2 approvals (bob)") {
		t.Fatalf("two required: %d\n%s", code, out)
	}
	dave := r.approve(t, "dave")
	if code, out, _ := r.verify(t, "--approvals-required", "2", "--approver-roles", "admin", proposal, bob, dave); code != exitFailure || !strings.Contains(out, "1 of 2") {
		t.Fatalf("admins only: %d\n%s", code, out)
	}

	// A rejection blocks, with who and why.
	carol := r.approve(t, "carol", "--reject", "--reason", "198.51.100.0/24 is our CDN")
	code, out, _ = r.verify(t, proposal, bob, carol)
	if code != exitFailure || !strings.Contains(out, "REJECTED by carol: 198.51.100.0/24 is our CDN") {
		t.Fatalf("rejected: %d\n%s", code, out)
	}

	// JSON output.
	code, out, _ = r.verify(t, "--format", "json", proposal, bob, carol)
	var rep verifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFailure {
		t.Fatalf("json: %d %v\n%s", code, err, out)
	}
	if rep.Playbook != testPlaybookPath || rep.Outcome != "require_approval" || rep.Verdict.QuorumMet ||
		len(rep.Verdict.Rejected) != 1 || rep.Envelopes[2].Status != "rejection" || rep.Envelopes[1].Status != "counted" {
		t.Fatalf("report %+v", rep)
	}

	// Changing the playbook voids everything signed before.
	src, _ := os.ReadFile(r.path(testPlaybookPath))
	r.write(t, testPlaybookPath, append(src, []byte("# edited\n")...))
	code, out, _ = r.verify(t, proposal, bob)
	if code != exitFailure || strings.Count(out, "subject_mismatch") != 2 {
		t.Fatalf("edited playbook: %d\n%s", code, out)
	}

	// A playbook the policies deny cannot be approved.
	r.write(t, "playbooks/network/loopback.yaml", []byte(strings.Replace(string(src), "203.0.113.7", "127.0.0.1", 1)))
	code, out, _ = runCLI(t, "--data-dir", r.dataDir, "approvals", "verify", "--approvers", r.path(".writ/approvers.yaml"),
		"--playbook", r.path("playbooks/network/loopback.yaml"), proposal)
	if code != exitFailure || !strings.Contains(out, "denied by the policies") {
		t.Fatalf("denied: %d\n%s", code, out)
	}
}

func TestApprovalsVerifyGolden(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "..", "testdata", "approval", "golden")
	var envs []string
	for _, n := range []string{"alice", "bob", "carol", "mallory"} {
		envs = append(envs, filepath.Join(dir, "envelopes", n+".json"))
	}
	args := append([]string{"--data-dir", t.TempDir(), "approvals", "verify", "--repo-root", dir, "--repo", "acme/secops",
		"--approvers", filepath.Join(dir, ".writ", "approvers.yaml"),
		"--playbook", filepath.Join(dir, "playbooks", "network", "block-c2-beacon.yaml"),
		"--at", "2026-11-23T17:00:00Z",
		"--plan-digest", "eb295d458888f43e8df4edd54ce5b0e87e78e26e9084148d689373a2834f7e27"}, envs...)
	code, out, errOut := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("%d\n%s\n%s", code, out, errOut)
	}
	want, err := os.ReadFile(filepath.Join(dir, "verify.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := collapseSpaces(strings.ReplaceAll(out, dir+string(filepath.Separator), ""))
	if got != collapseSpaces(string(want)) {
		t.Fatalf("output:\n%s\nwant (testdata/approval/golden/verify.txt):\n%s", got, collapseSpaces(string(want)))
	}
}

func TestApprovalsVerifyUsage(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst")
	env := r.approve(t, "alice", "--propose")
	base := []string{"approvals", "verify", "--approvers", r.path(".writ/approvers.yaml"), "--playbook", r.path(testPlaybookPath)}
	badKeyring := filepath.Join(t.TempDir(), "approvers.yaml")
	os.WriteFile(badKeyring, []byte("apiVersion: writ/v1\nkind: Approvers\npeople:\n  - id: x\n    roles: [root]\n    keys: []\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"approvals", "verify", "--playbook", r.path(testPlaybookPath), env}, "--approvers"},
		{[]string{"approvals", "verify", "--approvers", r.path(".writ/approvers.yaml"), env}, "--playbook"},
		{base, "name the envelope files"},
		{append(base, "--format", "xml", env), "--format"},
		{append(base, "--at", "yesterday", env), "--at"},
		{append(base, "--approver-roles", "admin", env), "--approvals-required"},
		{append(base, "--approvals-required", "1", "--approver-roles", "root", env), "root"},
		{append(base, "--approvals-required", "-1", env), "negative"},
		{append(base, "--max-age", "-1h", env), "negative"},
		{append(base, "/no/such/envelope.json"), "envelope"},
		{[]string{"approvals", "verify", "--approvers", badKeyring, "--playbook", r.path(testPlaybookPath), env}, "approvers.yaml:5:13"},
		{[]string{"approvals"}, "verify"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			t.Parallel()
			code, _, errOut := runCLI(t, append([]string{"--data-dir", r.dataDir}, tc.args...)...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) {
				t.Fatalf("code %d, stderr %q; want exit 2 mentioning %q", code, errOut, tc.want)
			}
		})
	}
}

// TestCosignInterop runs cosign v2 both ways: an envelope from cosign
// attest-blob with writ's predicate type counts in writ approvals verify,
// and one from writ approve verifies with cosign verify-blob-attestation.
// It needs the cosign binary (go install
// github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5); the golden cosign
// envelope in testdata/approval/golden covers the first direction without
// it.
func TestCosignInterop(t *testing.T) {
	t.Parallel()
	cosign, err := exec.LookPath("cosign")
	if err != nil {
		if home, herr := os.UserHomeDir(); herr == nil {
			if _, serr := os.Stat(filepath.Join(home, "go", "bin", "cosign")); serr == nil {
				cosign, err = filepath.Join(home, "go", "bin", "cosign"), nil
			}
		}
	}
	if err != nil {
		t.Skip("cosign is not installed: go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5")
	}
	r := newApprovalRepo(t, "alice:analyst", "bob:approver")
	work := t.TempDir()
	run := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cosignEnv := []string{"COSIGN_PASSWORD=interop-pw"}
	run(cosignEnv, "generate-key-pair", "--output-key-prefix", "carol")
	pub, err := os.ReadFile(filepath.Join(work, "carol.pub"))
	if err != nil {
		t.Fatal(err)
	}
	// Register carol's cosign key.
	kr, _ := os.ReadFile(r.path(".writ/approvers.yaml"))
	var b strings.Builder
	b.Write(kr)
	b.WriteString("  - id: carol\n    roles: [approver]\n    keys:\n      - |\n")
	for _, line := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
		b.WriteString("        " + line + "\n")
	}
	r.write(t, ".writ/approvers.yaml", []byte(b.String()))

	proposal := r.approve(t, "alice", "--propose")
	bob := r.approve(t, "bob")
	bobSt := parseEnvelopeFile(t, bob).Statement.Predicate

	// cosign -> writ: carol approves with cosign attest-blob.
	pred := bobSt
	pred.Approver, pred.Reason = "carol", "approved with cosign"
	predJSON, _ := json.Marshal(pred)
	os.WriteFile(filepath.Join(work, "carol.predicate.json"), predJSON, 0o644)
	run(cosignEnv, "attest-blob", "--key", "carol.key", "--type", approval.PredicateType, "--predicate", "carol.predicate.json",
		"--tlog-upload=false", "--yes", "--output-signature", "carol.json", r.path(testPlaybookPath))
	carol := filepath.Join(work, "carol.json")
	code, out, errOut := r.verify(t, "--approvals-required", "2", proposal, bob, carol)
	if code != exitOK || !strings.Contains(out, "counted: carol as approver") {
		t.Fatalf("writ approvals verify of a cosign envelope: %d\n%s\n%s", code, out, errOut)
	}

	// writ -> cosign: bob's envelope verifies with cosign and bob's key.
	bobPub := strings.TrimSuffix(r.keys["bob"], ".key") + ".pub"
	out = run(nil, "verify-blob-attestation", "--offline", "--key", bobPub, "--type", approval.PredicateType,
		"--insecure-ignore-tlog", "--signature", bob, r.path(testPlaybookPath))
	if !strings.Contains(out, "Verified OK") {
		t.Fatalf("cosign verify-blob-attestation: %s", out)
	}
	// ... and fails with another key, or for other content.
	cmd := exec.Command(cosign, "verify-blob-attestation", "--offline", "--key", filepath.Join(work, "carol.pub"), "--type", approval.PredicateType,
		"--insecure-ignore-tlog", "--signature", bob, r.path(testPlaybookPath))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("cosign accepted bob's envelope with carol's key:\n%s", out)
	}
	other := filepath.Join(work, "other.yaml")
	os.WriteFile(other, []byte("not the playbook\n"), 0o644)
	cmd = exec.Command(cosign, "verify-blob-attestation", "--offline", "--key", bobPub, "--type", approval.PredicateType,
		"--insecure-ignore-tlog", "--signature", bob, other)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("cosign accepted bob's envelope for other content:\n%s", out)
	}
}

var spaceRunRE = regexp.MustCompile(`[ \t]+`)

// collapseSpaces makes column alignment irrelevant to comparisons.
func collapseSpaces(s string) string { return spaceRunRE.ReplaceAllString(s, " ") }

// TestApprovalsVerifyWebAuthn: an approval signed with a passkey (a
// software authenticator standing in for the console's browser) counts in
// writ approvals verify like any other, and one made at another origin
// does not, with the reason.
func TestApprovalsVerifyWebAuthn(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst", "bob:approver")
	a, err := webauthntest.NewES256("writ.example.com", "https://writ.example.com")
	if err != nil {
		t.Fatal(err)
	}
	line, err := approval.WebAuthnKeyLine(a.RPID, a.Origin, a.CredentialID, a.COSEKey, "wendy's passkey")
	if err != nil {
		t.Fatal(err)
	}
	r.addSSHPerson(t, "wendy", "approver", line) // any one-line key
	proposal := r.approve(t, "alice", "--propose")

	// The statement wendy signs in the console: the one writ approve makes
	// for bob, naming her.
	st := parseEnvelopeFile(t, r.approve(t, "bob")).Statement
	st.Predicate.Approver = "wendy"
	payload, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(o webauthntest.Options) string {
		t.Helper()
		as, err := a.Get(approval.WebAuthnChallenge(payload), o)
		if err != nil {
			t.Fatal(err)
		}
		env, err := approval.WebAuthnEnvelope(payload, approval.WebAuthnAssertion(as))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "wendy.json")
		if err := os.WriteFile(file, env, 0o644); err != nil {
			t.Fatal(err)
		}
		return file
	}

	code, out, errOut := r.verify(t, proposal, sign(webauthntest.Options{}))
	if code != exitOK {
		t.Fatalf("%d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"counted: wendy as approver, until ", "verdict approved by wendy (1 approval, 1 required); proposed by alice"} {
		if !strings.Contains(collapseSpaces(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = r.verify(t, proposal, sign(webauthntest.Options{Origin: "https://evil.example.net"}))
	if code != exitFailure || !strings.Contains(out, "bad_signature") || !strings.Contains(collapseSpaces(out), `made at origin "https://evil.example.net"`) {
		t.Fatalf("another origin: %d\n%s", code, out)
	}
}
