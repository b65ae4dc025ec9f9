package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// approverRig is a content repository served by writ serve with a
// blocklist backend, and the people of an approver's day: an analyst,
// two approvers, two admins, with PEM key files.
type approverRig struct {
	*trustRig
	list   string // the blocklist file
	viewer string // a viewer's API token
	// carol signs with an OpenSSH key file (ed25519), erin through a real
	// ssh-agent (ecdsa-sha2-nistp256); the others with PEM keys.
	carolSSH, erinPub, agent string
}

func newApproverRig(t testing.TB) *approverRig {
	t.Helper()
	dir := t.TempDir()
	list, journal := filepath.Join(dir, "prod.txt"), filepath.Join(dir, "prod.journal")
	cfg := filepath.Join(dir, "writ.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `apiVersion: writ/v1
kind: ServerConfig
backends:
  - name: prod-list
    type: blocklist
    actions: [block_ip]
    environments: ["*"]
    blocklist: {path: %s, journal: %s}
`, list, journal), 0o644); err != nil {
		t.Fatal(err)
	}
	carolKey, carolLine := sshKeygenCLI(t, "carol", "ed25519", "")
	erinKey, erinLine := sshKeygenCLI(t, "erin", "ecdsa", "")
	agent := startSSHAgent(t, erinKey)
	tr := newTrustRigSSH(t, map[string][]string{
		"alice": {"analyst"}, "bob": {"approver"}, "carol": {"approver"}, "dave": {"admin"}, "erin": {"admin"},
	}, map[string]string{"carol": carolLine, "erin": erinLine}, "--config", cfg)
	r := &approverRig{trustRig: tr, list: list, carolSSH: carolKey, erinPub: erinKey + ".pub", agent: agent}
	r.viewer = r.token("watcher", "viewer")
	return r
}

// key is how a person signs: --key FILE (PEM), --ssh-key FILE (carol's
// OpenSSH private key) or --ssh-key FILE.pub (erin's, through ssh-agent).
func (r *approverRig) key(id string) []string {
	switch id {
	case "carol":
		return []string{"--ssh-key", r.carolSSH}
	case "erin":
		return []string{"--ssh-key", r.erinPub}
	}
	return []string{"--key", filepath.Join(r.keyDir, id+".key")}
}

// cli runs writ with the rig's server and a viewer's token in the
// environment, input on standard input.
func (r *approverRig) cli(input string, args ...string) (int, string, string) {
	r.t.Helper()
	return runCLIInput(r.t, map[string]string{"WRIT_SERVER": r.base, "WRIT_TOKEN": r.viewer, "SSH_AUTH_SOCK": r.agent}, input, args...)
}

// approve runs writ approve ID signed by who, with more flags.
func (r *approverRig) approve(input, id, who string, flags ...string) (int, string, string) {
	r.t.Helper()
	return r.cli(input, append(append([]string{"approve", id}, r.key(who)...), flags...)...)
}

var pendingIDLine = regexp.MustCompile(`(?m)^((?:op|trust)-[0-9]+)  (.*)$`)

// pendingIDs lists the ids writ pending shows, by their description.
func (r *approverRig) pendingIDs() map[string]string {
	r.t.Helper()
	code, out, errOut := r.cli("", "pending")
	if code != exitOK {
		r.t.Fatalf("writ pending: %d %s", code, errOut)
	}
	ids := map[string]string{}
	for _, m := range pendingIDLine.FindAllStringSubmatch(out, -1) {
		ids[m[1]] = m[2]
	}
	return ids
}

// waitPending waits for an item whose description contains what.
func (r *approverRig) waitPending(what string) string {
	r.t.Helper()
	var id string
	r.waitFor("a pending "+what, func() bool {
		for k, desc := range r.pendingIDs() {
			if strings.Contains(desc, what) {
				id = k
				return true
			}
		}
		return false
	})
	return id
}

func (r *approverRig) blocked() string {
	data, err := os.ReadFile(r.list)
	if err != nil && !os.IsNotExist(err) {
		r.t.Fatal(err)
	}
	return string(data)
}

func (r *approverRig) push(msg string, write map[string]string, remove ...string) string {
	r.t.Helper()
	for p, c := range write {
		r.repo.Write(p, c)
	}
	for _, p := range remove {
		r.repo.Remove(p)
	}
	sha := r.repo.Commit(msg)
	r.repo.Push()
	return sha
}

const dayPlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-c2
  ticket: INC-42
spec:
  action: block_ip
  targets: [203.0.113.77]
  justification: C2 beaconing seen by EDR
  severity: high
  environment: production
`

// An approver's day through the public interfaces against a real writ
// serve: the pending queue, then writ approve ID for the apply of a
// production playbook, the revert of its deletion, a policy transition and
// an approver transition, and a rejection. Nobody types a digest or needs
// a checkout.
func TestApproverDay(t *testing.T) {
	r := newApproverRig(t)

	// Nothing waits yet.
	if code, out, errOut := r.cli("", "pending"); code != exitOK || !strings.Contains(out, "nothing waits for signatures") {
		t.Fatalf("an empty queue: %d %q %s", code, out, errOut)
	}

	// An analyst merges a production block; it waits for its proposal and
	// an approval.
	r.push("block the C2", map[string]string{"playbooks/block-c2.yaml": dayPlaybook})
	apply := r.waitPending("apply of playbooks/block-c2.yaml")
	_, out, _ := r.cli("", "pending")
	if !strings.Contains(out, "a signed proposal by analyst") || !strings.Contains(out, "alice (propose)") ||
		!strings.Contains(out, "writ approve "+apply) {
		t.Fatalf("the queue:\n%s", out)
	}
	if _, out, _ := r.cli("", "pending", "--approver", "bob"); !strings.Contains(out, apply) {
		t.Fatalf("bob's queue:\n%s", out)
	}

	// alice proposes it in one step: her id comes from her key.
	code, out, errOut := r.approve("", apply, "alice", "--propose", "--yes")
	if code != exitOK || !strings.Contains(errOut, "signed propose of "+apply) || !strings.Contains(out, `"approver": "alice"`) {
		t.Fatalf("alice proposes: %d\n%s\n%s", code, out, errOut)
	}
	// bob logs in with his password; his session is how he talks to the
	// server from now on (no WRIT_SERVER, no WRIT_TOKEN).
	db := []string{"--database", r.dbURL, "--data-dir", r.dataDir}
	if code, _, errOut := runCLIEnv(t, map[string]string{"WRIT_USER_PASSWORD": "bob's long passphrase"},
		append(db, "user", "add", "bob", "--role", "approver", "--password")...); code != exitOK {
		t.Fatalf("user add bob: %s", errOut)
	}
	bobHome := t.TempDir()
	bob := func(input string, args ...string) (int, string, string) {
		t.Helper()
		return runCLIInput(t, map[string]string{"XDG_CONFIG_HOME": bobHome, "WRIT_PASSWORD": "bob's long passphrase"}, input, args...)
	}
	if code, out, errOut := bob("", "login", "--server", r.base, "--user", "bob"); code != exitOK || !strings.Contains(out+errOut, "approver") {
		t.Fatalf("bob logs in: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := bob("", "pending", "--approver", "bob"); code != exitOK || !strings.Contains(out, apply) {
		t.Fatalf("bob's queue through his session: %d\n%s\n%s", code, out, errOut)
	}
	// bob reads what he signs and declines first: nothing is signed.
	code, out, errOut = bob("n\n", append([]string{"approve", apply}, r.key("bob")...)...)
	if code != exitFailure || !strings.Contains(errOut, "not confirmed; nothing signed") {
		t.Fatalf("bob declines: %d %s", code, errOut)
	}
	for _, want := range []string{"the new playbook playbooks/block-c2.yaml", "+ apiVersion: writ/v1", "203.0.113.77",
		"environment production is production: changes need approval", "plan ", "you sign    approve as bob"} {
		if !strings.Contains(out, want) {
			t.Fatalf("what bob is shown lacks %q:\n%s", want, out)
		}
	}
	if list, err := r.st.ListApprovals(context.Background(), store.ApprovalFilter{Approver: "bob"}); err != nil || len(list) != 0 {
		t.Fatalf("bob's statements after declining: %d %v", len(list), err)
	}
	// Then confirms.
	code, _, errOut = bob("y\n", append([]string{"approve", apply}, r.key("bob")...)...)
	if code != exitOK {
		t.Fatalf("bob approves: %d %s", code, errOut)
	}
	r.waitFor("the block", func() bool { return strings.Contains(r.blocked(), "203.0.113.77") })
	// It is done: signing it again is refused, saying why.
	r.waitFor("the apply to leave the queue", func() bool { _, ok := r.pendingIDs()[apply]; return !ok })
	code, _, errOut = r.approve("", apply, "carol", "--yes")
	if code != exitFailure || !strings.Contains(errOut, "no longer") && !strings.Contains(errOut, "waits for no signature") {
		t.Fatalf("approving a done operation: %d %s", code, errOut)
	}

	// The playbook is deleted: its revert is an operation of its own. No
	// one restores the file to sign it.
	r.push("unblock", nil, "playbooks/block-c2.yaml")
	revert := r.waitPending("revert of playbooks/block-c2.yaml")
	if code, _, errOut := r.approve("", revert, "alice", "--propose", "--yes"); code != exitOK {
		t.Fatalf("alice proposes the revert: %d %s", code, errOut)
	}
	code, out, errOut = r.approve("", revert, "carol", "--yes")
	if code != exitOK || !strings.Contains(out, "the revert undoes playbooks/block-c2.yaml") || !strings.Contains(out, "- apiVersion: writ/v1") {
		t.Fatalf("carol approves the revert: %d\n%s\n%s", code, out, errOut)
	}
	r.waitFor("the unblock", func() bool { return !strings.Contains(r.blocked(), "203.0.113.77") })

	// A policy transition: two admins sign it from the queue.
	trusted := r.state().AdoptedSHA
	prod, err := os.ReadFile(filepath.Join(r.repo.Work, "policies", "production.rego"))
	if err != nil {
		t.Fatal(err)
	}
	policyChange := r.push("policy: a clearer message", map[string]string{
		"policies/production.rego": strings.Replace(string(prod), "changes need approval", "every change needs approval", 1)})
	tc := r.waitPending("change to policies/")
	code, out, errOut = r.approve("", tc, "dave", "--yes")
	if code != exitOK || !strings.Contains(out, "policies/production.rego") || !strings.Contains(out, "+ ") ||
		!strings.Contains(out, "every change needs approval") {
		t.Fatalf("dave approves the policy change: %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := r.approve("", tc, "erin", "--yes"); code != exitOK {
		t.Fatalf("erin approves the policy change: %d %s", code, errOut)
	}
	r.waitFor("the policy adoption", func() bool { return r.state().AdoptedSHA == policyChange })
	if r.state().AdoptedSHA == trusted {
		t.Fatal("nothing adopted")
	}
	code, _, errOut = r.approve("", tc, "erin", "--yes")
	if code != exitFailure || !strings.Contains(errOut, "adopted") {
		t.Fatalf("signing an adopted change: %d %s", code, errOut)
	}

	// An approver transition: dave approves adding zed, erin rejects it.
	r.push("add zed", map[string]string{".writ/approvers.yaml": r.approvers(map[string][]string{"zed": {"approver"}})})
	ac := r.waitPending("change to .writ/approvers.yaml")
	if code, _, errOut := r.approve("", ac, "dave", "--yes"); code != exitOK {
		t.Fatalf("dave approves zed: %d %s", code, errOut)
	}
	code, _, errOut = r.approve("", ac, "erin", "--reject", "--yes")
	if code != exitUsage || !strings.Contains(errOut, "--reason") {
		t.Fatalf("a rejection without a reason: %d %s", code, errOut)
	}
	if code, _, errOut := r.approve("", ac, "erin", "--reject", "--reason", "zed has not done the training", "--yes"); code != exitOK {
		t.Fatalf("erin rejects zed: %d %s", code, errOut)
	}
	r.waitFor("the rejection in the queue", func() bool {
		_, out, _ := r.cli("", "pending")
		return strings.Contains(out, "erin reject")
	})
	if st := r.state(); st.AdoptedSHA != policyChange {
		t.Fatalf("the rejected approver change was adopted: %s", st.AdoptedSHA)
	}
}

// BenchmarkApprovePending measures writ approve ID --yes from the start of
// the command to the server's acknowledgement, on loopback: fetch the
// item, recompute its content, plan and policy digests, sign, post. The
// item needs three approvals (a critical production block), so that bob's
// repeated approvals leave it pending.
func BenchmarkApprovePending(b *testing.B) {
	r := newApproverRig(b)
	r.push("block critical", map[string]string{"playbooks/block-c2.yaml": strings.Replace(dayPlaybook, "severity: high", "severity: critical", 1)})
	id := r.waitPending("apply of playbooks/block-c2.yaml")
	if code, _, errOut := r.approve("", id, "alice", "--propose", "--yes"); code != exitOK {
		b.Fatalf("propose: %s", errOut)
	}
	env := map[string]string{"WRIT_SERVER": r.base, "WRIT_TOKEN": r.viewer}
	var times []time.Duration
	for b.Loop() {
		t0 := time.Now()
		code, _, errOut := runCLIInput(b, env, "", append(append([]string{"approve", id}, r.key("bob")...), "--approver", "bob", "--yes")...)
		times = append(times, time.Since(t0))
		if code != exitOK {
			b.Fatalf("approve: %d %s", code, errOut)
		}
	}
	slices.Sort(times)
	ms := func(q float64) float64 {
		return float64(times[min(len(times)-1, int(q*float64(len(times))))].Microseconds()) / 1000
	}
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
}
