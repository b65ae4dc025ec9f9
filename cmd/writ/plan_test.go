package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const testEnvironments = `environments:
  production:
    production: true
  staging:
    production: false
`

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func playbookYAML(name, action, targets, severity, environment string) string {
	return "apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: " + name +
		"\nspec:\n  action: " + action + "\n  targets: " + targets +
		"\n  justification: plan test\n  severity: " + severity + "\n  environment: " + environment + "\n"
}

type planJSON struct {
	Path              string
	Name              string
	Digest            string
	PolicyDigest      string `json:"policy_digest"`
	Decision          string
	Reasons           []struct{ Kind, Rule, Message, Location string }
	RulesFired        []string `json:"rules_fired"`
	ApprovalsRequired int      `json:"approvals_required"`
	ApproverRoles     []string `json:"approver_roles"`
	Plan              *struct {
		Backend string
		Targets []struct{ Target, Result string }
	}
	PlanDigest string `json:"plan_digest"`
	PlanError  string `json:"plan_error"`
}

func decodePlan(t *testing.T, out string) []planJSON {
	t.Helper()
	var entries []planJSON
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, out)
	}
	return entries
}

// The "done when" cases, end to end: playbook YAML in, writ plan
// --format json with the default policies out.
func TestPlanDefaultPolicies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := writeFile(t, filepath.Join(dir, "environments.yaml"), testEnvironments)
	cases := []struct {
		name, action, targets, severity, environment string
		decision                                     string
		reason                                       string
		approvals                                    int
	}{
		{"loopback-v4", "block_ip", "[127.0.0.1]", "high", "staging", "deny", "127.0.0.0/8 (loopback, RFC 1122)", 0},
		{"loopback-v6", "block_ip", `["::1"]`, "high", "staging", "deny", "::1/128 (loopback, RFC 4291)", 0},
		{"link-local", "block_ip", "[169.254.10.1]", "high", "staging", "deny", "169.254.0.0/16 (link-local, RFC 3927)", 0},
		{"multicast", "block_ip", "[224.0.0.1]", "high", "staging", "deny", "224.0.0.0/4 (multicast, RFC 5771)", 0},
		{"everything", "block_ip", "[0.0.0.0/0]", "high", "staging", "deny", "0.0.0.0/0 is too broad: IPv4 prefixes must be /16 or narrower", 0},
		{"allowlisted", "block_ip", "[8.8.8.8]", "high", "staging", "deny", "overlaps the allow-listed network 8.8.8.8/32", 0},
		{"private-staging", "block_ip", "[192.168.1.100]", "medium", "staging", "require_approval", "192.168.1.100 is in 192.168.0.0/16 (private, RFC 1918)", 1},
		{"public-staging", "block_ip", "[203.0.113.7]", "low", "staging", "allow", "", 0},
		{"public-production", "block_ip", "[203.0.113.7]", "low", "production", "require_approval", "environment production is production", 1},
		{"suspend-staging", "suspend_user", "[j.doe@example.com]", "low", "staging", "require_approval", "suspend_user is a high-risk action", 1},
		{"suspend-production", "suspend_user", "[j.doe@example.com]", "medium", "production", "require_approval", "suspend_user is a high-risk action", 1},
		{"isolate-critical-production", "isolate_host", "[fin-ws-12]", "critical", "production", "require_approval", "critical severity in production: 2 approvers", 2},
		{"suspend-protected", "suspend_user", "[administrator]", "high", "staging", "deny", "administrator is a protected identity", 0},
	}
	args := []string{"--data-dir", filepath.Join(dir, "state"), "plan", "--format", "json", "--environment", env}
	for _, c := range cases {
		args = append(args, writeFile(t, filepath.Join(dir, "playbooks", c.name+".yaml"), playbookYAML(c.name, c.action, c.targets, c.severity, c.environment)))
	}
	code, out, errOut := runCLI(t, args...)
	if code != exitFailure {
		t.Fatalf("exit %d (want 1: some are denied)\n%s", code, errOut)
	}
	entries := decodePlan(t, out)
	byName := map[string]planJSON{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	if len(byName) != len(cases) {
		t.Fatalf("%d entries for %d playbooks", len(byName), len(cases))
	}
	for _, c := range cases {
		e := byName[c.name]
		if e.Decision != c.decision || e.ApprovalsRequired != c.approvals {
			t.Errorf("%s: %s with %d approvals, want %s with %d: %+v", c.name, e.Decision, e.ApprovalsRequired, c.decision, c.approvals, e.Reasons)
			continue
		}
		if c.reason != "" && !slices.ContainsFunc(e.Reasons, func(r struct{ Kind, Rule, Message, Location string }) bool {
			return strings.Contains(r.Message, c.reason)
		}) {
			t.Errorf("%s: no reason contains %q: %+v", c.name, c.reason, e.Reasons)
		}
		if c.decision == "allow" && (len(e.Reasons) != 0 || len(e.ApproverRoles) != 0) {
			t.Errorf("%s: allowed with reasons or roles: %+v", c.name, e)
		}
		if c.decision == "require_approval" && !slices.Equal(e.ApproverRoles, []string{"approver"}) {
			t.Errorf("%s: approver roles %v", c.name, e.ApproverRoles)
		}
		if len(e.Digest) != 64 || len(e.PolicyDigest) != 64 || !strings.HasSuffix(e.Path, c.name+".yaml") {
			t.Errorf("%s: path or digests: %+v", c.name, e)
		}
		switch {
		case c.decision == "deny" && e.Plan != nil:
			t.Errorf("%s: a denied playbook was dry-run", c.name)
		case c.decision != "deny" && c.action == "block_ip" && (e.Plan == nil || e.PlanDigest == "" || e.Plan.Targets[0].Result != "would_block"):
			t.Errorf("%s: no dry-run plan: %+v", c.name, e)
		}
	}

	// The default policies built in and the ones in the repository are the
	// same set.
	code, out2, _ := runCLI(t, "--data-dir", filepath.Join(dir, "state"), "plan", "--format", "json", "--policies", "../../policies", filepath.Join(dir, "playbooks", "public-staging.yaml"))
	if code != exitOK {
		t.Fatalf("with --policies: exit %d", code)
	}
	if got := decodePlan(t, out2)[0]; got.PolicyDigest != byName["public-staging"].PolicyDigest || got.Decision != "allow" {
		t.Fatalf("with --policies: %+v", got)
	}
}

func TestPlanExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	allowed := writeFile(t, filepath.Join(dir, "ok.yaml"), playbookYAML("ok", "block_ip", "[203.0.113.7]", "low", "staging"))
	approval := writeFile(t, filepath.Join(dir, "approval.yaml"), playbookYAML("approval", "suspend_user", "[j.doe@example.com]", "low", "staging"))
	unknownEnv := writeFile(t, filepath.Join(dir, "lab.yaml"), playbookYAML("lab", "block_ip", "[203.0.113.7]", "low", "lab"))
	invalid := writeFile(t, filepath.Join(dir, "invalid.yaml"), playbookYAML("invalid", "block_ip", "[203.0.113.300]", "low", "staging"))

	if code, out, errOut := runCLI(t, "--data-dir", state, "plan", allowed, approval); code != exitOK || !strings.Contains(out, "2 playbooks: 1 allowed, 1 need approval, 0 denied") {
		t.Fatalf("allowed: %d\n%s%s", code, out, errOut)
	}

	code, out, _ := runCLI(t, "--data-dir", state, "plan", "--format", "json", unknownEnv)
	e := decodePlan(t, out)
	if code != exitFailure || e[0].Decision != "deny" || e[0].Reasons[0].Rule != "writ.policy.environment" || !strings.Contains(e[0].Reasons[0].Message, `environment "lab"`) {
		t.Fatalf("unknown environment: %d %+v", code, e)
	}
	// With an environments file that knows lab, the same playbook is fine.
	envFile := writeFile(t, filepath.Join(dir, "env.yaml"), "environments:\n  lab:\n    production: false\n")
	if code, _, errOut := runCLI(t, "--data-dir", state, "plan", "--environment", envFile, unknownEnv); code != exitOK {
		t.Fatalf("known lab: %d %s", code, errOut)
	}

	code, out, errOut := runCLI(t, "--data-dir", state, "plan", "--format", "json", invalid, allowed)
	if code != exitUsage || !strings.Contains(errOut, "invalid.yaml:7:13: spec.targets[0]: \"203.0.113.300\" is not a valid IP address") {
		t.Fatalf("invalid: %d\n%s", code, errOut)
	}
	if e := decodePlan(t, out); len(e) != 1 || e[0].Name != "ok" {
		t.Fatalf("the valid playbook was not planned: %+v", e)
	}

	badEnv := writeFile(t, filepath.Join(dir, "bad-env.yaml"), "environments:\n  prod:\n    production: maybe\n")
	if code, _, errOut := runCLI(t, "--data-dir", state, "plan", "--environment", badEnv, allowed); code != exitUsage || !strings.Contains(errOut, "bad-env.yaml:3:17: environments.prod.production: wrong type") {
		t.Fatalf("bad environments file: %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"plan", "--policies", filepath.Join(dir, "no-such-dir"), allowed},
		{"plan", "--format", "yaml", allowed},
		{"plan", filepath.Join(dir, "missing.yaml")},
		{"plan", "--environment", filepath.Join(dir, "missing-env.yaml"), allowed},
	} {
		if code, _, _ := runCLI(t, append([]string{"--data-dir", state}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// Policies that do not compile deny everything; plan says why.
func TestPlanBrokenPolicies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policies", "decision.rego"), "package writ\n\ndecision := {\"deny\": set()\n")
	pb := writeFile(t, filepath.Join(dir, "ok.yaml"), playbookYAML("ok", "block_ip", "[203.0.113.7]", "low", "staging"))
	policies := filepath.Join(dir, "policies")
	code, out, errOut := runCLI(t, "--data-dir", filepath.Join(dir, "state"), "plan", "--format", "json", "--policies", policies, pb)
	e := decodePlan(t, out)
	if code != exitFailure || len(e) != 1 || e[0].Decision != "deny" || e[0].Reasons[0].Rule != "writ.policy.compile" {
		t.Fatalf("%d %+v\n%s", code, e, errOut)
	}
	want := policies + "/decision.rego:4:1: rego_parse_error"
	if !strings.Contains(errOut, want) || !strings.HasPrefix(e[0].Reasons[0].Location, policies+"/decision.rego:4:1") {
		t.Fatalf("stderr %q and reasons %+v do not locate the error at %s", errOut, e[0].Reasons, want)
	}
}

var hexDigest = regexp.MustCompile(`[0-9a-f]{64}`)

// The text output for the example playbooks, against a golden file
// (digests replaced). WRIT_UPDATE_GOLDEN=1 rewrites it.
func TestPlanText(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, "--data-dir", t.TempDir(), "plan", "../../playbooks")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	got := hexDigest.ReplaceAllString(out, "<sha256>")
	golden := "../../testdata/policy/plan.golden"
	if os.Getenv("WRIT_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("plan output differs from %s (WRIT_UPDATE_GOLDEN=1 to update)\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}
