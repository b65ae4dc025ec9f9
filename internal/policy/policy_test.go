package policy_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/policies"
)

const repoRoot = "../.."

func loadDefaults(t testing.TB) *policy.Set {
	t.Helper()
	s, err := policy.LoadFS(policies.FS, ".", policy.Options{Root: "policies"})
	if err != nil {
		t.Fatalf("default policies: %v", err)
	}
	return s
}

// parsePlaybook builds a real playbook from its fields and returns what
// policies see of it.
func parsePlaybook(t testing.TB, action string, targets []string, severity, environment string) map[string]any {
	t.Helper()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = fmt.Sprintf("%q", tg)
	}
	src := fmt.Sprintf(`apiVersion: writ/v1
kind: Playbook
metadata:
  name: case
spec:
  action: %s
  targets: [%s]
  justification: a test case
  severity: %s
  environment: %s
`, action, strings.Join(quoted, ", "), severity, environment)
	pb, problems := playbook.Parse("playbooks/case.yaml", []byte(src), playbook.Options{})
	if problems != nil {
		t.Fatalf("playbook: %v", problems)
	}
	return pb.PolicyInput()
}

func input(t testing.TB, action string, targets []string, severity, environment string) policy.Input {
	t.Helper()
	env, ok := policy.DefaultEnvironments().Lookup(environment)
	if !ok {
		t.Fatalf("no environment %s", environment)
	}
	return policy.Input{
		Playbook:    parsePlaybook(t, action, targets, severity, environment),
		Change:      policy.Change{Type: "create", Author: "alice", PullRequest: 12},
		Environment: env,
	}
}

func readYAML(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "testdata/policy", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

type decisionCase struct {
	Name        string
	Action      string
	Targets     []string
	Severity    string
	Environment string
	Outcome     policy.Outcome
	Approvals   *int
	Rules       []string
	Message     string
}

func TestDefaultPolicyDecisions(t *testing.T) {
	t.Parallel()
	var file struct{ Cases []decisionCase }
	readYAML(t, "decisions.yaml", &file)
	if len(file.Cases) < 20 {
		t.Fatalf("only %d cases in decisions.yaml", len(file.Cases))
	}
	set := loadDefaults(t)
	for _, c := range file.Cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			in := input(t, c.Action, c.Targets, cmpOr(c.Severity, "low"), cmpOr(c.Environment, "staging"))
			d := set.Decide(context.Background(), in)
			if d.Outcome != c.Outcome {
				t.Fatalf("outcome %s, want %s; reasons %v", d.Outcome, c.Outcome, d.Reasons)
			}
			if c.Approvals != nil && d.ApprovalsRequired != *c.Approvals {
				t.Fatalf("approvals_required %d, want %d", d.ApprovalsRequired, *c.Approvals)
			}
			want := slices.Clone(c.Rules)
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(d.RulesFired, want) {
				t.Fatalf("rules fired %v, want %v; reasons %v", d.RulesFired, want, d.Reasons)
			}
			if c.Message != "" && !slices.ContainsFunc(d.Reasons, func(r policy.Reason) bool { return strings.Contains(r.Message, c.Message) }) {
				t.Fatalf("no reason contains %q: %v", c.Message, d.Reasons)
			}
			if d.PolicyDigest != set.Digest() {
				t.Fatalf("policy digest %q, want %q", d.PolicyDigest, set.Digest())
			}
			switch d.Outcome {
			case policy.Allow:
				if d.ApprovalsRequired != 0 || len(d.ApproverRoles) != 0 || len(d.Reasons) != 0 {
					t.Fatalf("allow with approvals or reasons: %+v", d)
				}
			case policy.RequireApproval:
				if d.ApprovalsRequired < 1 || !slices.Equal(d.ApproverRoles, []string{"approver"}) {
					t.Fatalf("require_approval without approvals or roles: %+v", d)
				}
				for _, r := range d.Reasons {
					if r.Kind != policy.KindRequireApproval {
						t.Fatalf("a %s reason in a require_approval decision: %v", r.Kind, r)
					}
				}
			case policy.Deny:
				if len(d.ReasonsOf(policy.KindDeny)) == 0 {
					t.Fatalf("deny without deny reasons: %+v", d)
				}
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

type failCase struct {
	Name      string
	Files     map[string]string
	Timeout   string
	LoadError string `yaml:"load_error"`
	Rule      string
	Location  string
	Message   string
}

// Every broken policy set denies, with a reason naming file and rule.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	var file struct{ Cases []failCase }
	readYAML(t, "failclosed.yaml", &file)
	for _, c := range file.Cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			fsys := fstest.MapFS{}
			for name, content := range c.Files {
				fsys["policies/"+name] = &fstest.MapFile{Data: []byte(content)}
			}
			opts := policy.Options{}
			if c.Timeout != "" {
				d, err := time.ParseDuration(c.Timeout)
				if err != nil {
					t.Fatal(err)
				}
				opts.EvalTimeout = d
			}
			set, err := policy.LoadFS(fsys, "policies", opts)
			if set == nil {
				t.Fatal("LoadFS returned no set")
			}
			if c.LoadError == "" {
				if err != nil || set.Failed() {
					t.Fatalf("load: %v", err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), c.LoadError) {
					t.Fatalf("load error %v, want one containing %q", err, c.LoadError)
				}
				if !set.Failed() {
					t.Fatal("a set that did not load is not marked failed")
				}
				var ps diag.Problems
				if errors.As(err, &ps) {
					for _, p := range ps {
						if p.Path == "" || p.Message == "" {
							t.Fatalf("unlocated problem %+v", p)
						}
					}
				}
			}
			d := set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
			if d.Outcome != policy.Deny {
				t.Fatalf("outcome %s, want deny: %+v", d.Outcome, d)
			}
			if d.ApprovalsRequired != 0 {
				t.Fatalf("a deny with approvals: %+v", d)
			}
			ok := slices.ContainsFunc(d.Reasons, func(r policy.Reason) bool {
				return r.Kind == policy.KindDeny && r.Rule == c.Rule && strings.HasPrefix(r.Location, c.Location) && strings.Contains(r.Message, c.Message)
			})
			if !ok {
				t.Fatalf("no reason with rule %q, location %q..., message ...%q...: %+v", c.Rule, c.Location, c.Message, d.Reasons)
			}
			if !slices.Contains(d.RulesFired, c.Rule) {
				t.Fatalf("rules fired %v lack %s", d.RulesFired, c.Rule)
			}
		})
	}
}

func TestUnknownEnvironmentDenies(t *testing.T) {
	t.Parallel()
	set := loadDefaults(t)
	in := input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging")
	in.Environment = nil
	d := set.Decide(context.Background(), in)
	if d.Outcome != policy.Deny || d.Reasons[0].Rule != policy.RuleEnvironment || !strings.Contains(d.Reasons[0].Message, `environment "staging" is not one of the server's environments`) {
		t.Fatalf("%+v", d)
	}
	var nilSet *policy.Set
	if d := nilSet.Decide(context.Background(), in); d.Outcome != policy.Deny {
		t.Fatalf("nil set: %+v", d)
	}
}

func TestInputReachesPolicies(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"p/decision.rego": {Data: []byte(`package writ

decision := {"require_approval": {msg}} if {
	msg := sprintf("%s %s %d %s %v", [input.playbook.metadata.name, input.change.author, input.change.pullRequest, input.environment.name, input.environment.production])
}
`)}}
	set, err := policy.LoadFS(fsys, "p", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "production"))
	if d.Outcome != policy.RequireApproval || d.Reasons[0].Message != "case alice 12 production true" || d.Reasons[0].Rule != policy.RuleDecision {
		t.Fatalf("%+v", d)
	}
}

func TestApprovalsWithoutReasonsStillNeedApproval(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"p/decision.rego": {Data: []byte("package writ\n\ndecision := {\"approvals_required\": 3, \"approver_roles\": {\"admin\"}}\n")}}
	set, err := policy.LoadFS(fsys, "p", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
	if d.Outcome != policy.RequireApproval || d.ApprovalsRequired != 3 || !slices.Equal(d.ApproverRoles, []string{"admin"}) {
		t.Fatalf("%+v", d)
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"p/decision.rego": {Data: []byte(`package writ

decision := {"require_approval": {"at night"}} if {
	[hour, _, _] := time.clock(time.now_ns())
	hour >= 20
} else := {}
`)}}
	at := func(hour int) policy.Outcome {
		set, err := policy.LoadFS(fsys, "p", policy.Options{Clock: func() time.Time { return time.Date(2026, 3, 4, hour, 0, 0, 0, time.UTC) }})
		if err != nil {
			t.Fatal(err)
		}
		return set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging")).Outcome
	}
	if got := at(22); got != policy.RequireApproval {
		t.Fatalf("22:00: %s", got)
	}
	if got := at(10); got != policy.Allow {
		t.Fatalf("10:00: %s", got)
	}
}

// The example check of the default set works through writ, with its clock.
func TestBusinessHoursThroughWrit(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{}
	entries, err := policies.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := policies.FS.ReadFile(e.Name())
		if e.Name() == "data.yaml" {
			b = []byte(strings.Replace(string(b), "enabled: false", "enabled: true", 1))
		}
		fsys["policies/"+e.Name()] = &fstest.MapFile{Data: b}
	}
	night := func() time.Time { return time.Date(2026, 3, 4, 23, 0, 0, 0, time.UTC) }
	set, err := policy.LoadFS(fsys, "policies", policy.Options{Clock: night})
	if err != nil {
		t.Fatal(err)
	}
	d := set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
	if d.Outcome != policy.RequireApproval || !slices.Equal(d.RulesFired, []string{"business_hours"}) {
		t.Fatalf("%+v", d)
	}
	if set.Digest() == loadDefaults(t).Digest() {
		t.Fatal("changing data.yaml did not change the digest")
	}
}

func TestDecideConcurrently(t *testing.T) {
	t.Parallel()
	set := loadDefaults(t)
	inputs := []policy.Input{
		input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"),
		input(t, "block_ip", []string{"127.0.0.1"}, "low", "staging"),
		input(t, "isolate_host", []string{"fin-ws-12"}, "critical", "production"),
	}
	want := make([]policy.Decision, len(inputs))
	for i, in := range inputs {
		want[i] = set.Decide(context.Background(), in)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*50)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				k := (g + i) % len(inputs)
				d := set.Decide(context.Background(), inputs[k])
				if d.Outcome != want[k].Outcome || !slices.Equal(d.RulesFired, want[k].RulesFired) {
					errs <- fmt.Sprintf("input %d: %+v, want %+v", k, d, want[k])
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestCancelledContextDenies(t *testing.T) {
	t.Parallel()
	set := loadDefaults(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := set.Decide(ctx, input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
	if d.Outcome != policy.Deny || d.Reasons[0].Rule != policy.RuleTimeout {
		t.Fatalf("%+v", d)
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	set, err := policy.LoadFS(policies.FS, ".", policy.Options{EvalTimeout: -time.Second})
	if err == nil || !set.Failed() || set.Decide(context.Background(), policy.Input{}).Outcome != policy.Deny {
		t.Fatalf("negative timeout: %v", err)
	}
}

// slowToCompile is a valid policy set with about n KiB of Rego: OPA takes
// about 2 ms per KiB to compile it.
func slowToCompile(n int) fstest.MapFS {
	var b strings.Builder
	b.WriteString("package writ.checks.generated\n\n")
	for i := 0; b.Len() < n<<10; i++ {
		fmt.Fprintf(&b, "deny contains msg if {\n\tsome t in input.playbook.spec.targets\n\tstartswith(t, \"10.%d.\")\n\tmsg := sprintf(\"%%s: rule %d\", [t])\n}\n\n", i, i)
	}
	return fstest.MapFS{
		"p/generated.rego": {Data: []byte(b.String())},
		"p/decision.rego":  {Data: []byte("package writ\n\ndecision := {\"deny\": {m | some m in data.writ.checks.generated.deny}}\n")},
	}
}

func TestCompileTimeout(t *testing.T) {
	t.Parallel()
	fsys := slowToCompile(256)
	// The same set compiles without a tight deadline (a generous one: a
	// busy machine running the race detector can take longer than the
	// default)...
	if set, err := policy.LoadFS(fsys, "p", policy.Options{CompileTimeout: 10 * time.Minute}); err != nil || set.Failed() {
		t.Fatalf("the set should compile: %v", err)
	}
	// ...and is fail-closed past one, with a reason that says why.
	for _, timeout := range []time.Duration{time.Nanosecond, 20 * time.Millisecond} {
		set, err := policy.LoadFS(fsys, "p", policy.Options{CompileTimeout: timeout})
		if err == nil || !strings.Contains(err.Error(), "load policies from p: compiling took longer than the limit of "+timeout.String()+" (CompileTimeout)") {
			t.Fatalf("%s: %v", timeout, err)
		}
		d := set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
		if d.Outcome != policy.Deny || len(d.Reasons) != 1 || d.Reasons[0].Rule != policy.RuleCompile ||
			!strings.Contains(d.Reasons[0].Message, "writ denies every playbook until the policy set compiles in time") {
			t.Fatalf("%s: %+v", timeout, d)
		}
	}
	if _, err := policy.LoadFS(fsys, "p", policy.Options{CompileTimeout: -time.Second}); err == nil || !strings.Contains(err.Error(), "CompileTimeout -1s is negative") {
		t.Fatalf("negative compile timeout: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	set, err := policy.LoadFS(fstest.MapFS{}, "policies", policy.Options{})
	if !errors.Is(err, os.ErrNotExist) || !set.Failed() {
		t.Fatalf("missing directory: %v", err)
	}
	if d := set.Decide(context.Background(), policy.Input{}); d.Outcome != policy.Deny || !strings.Contains(d.Reasons[0].Message, "policies") {
		t.Fatalf("%+v", d)
	}
	big := fstest.MapFS{
		"p/decision.rego": {Data: []byte("package writ\n\ndecision := {}\n")},
		"p/data.json":     {Data: []byte(`{"x": "` + strings.Repeat("a", 2000) + `"}`)},
	}
	if _, err := policy.LoadFS(big, "p", policy.Options{MaxFileBytes: 1000}); err == nil || !strings.Contains(err.Error(), "p/data.json:1:1: file is larger than the limit of 1000 bytes") {
		t.Fatalf("big file: %v", err)
	}
	if _, err := policy.LoadFS(big, "p", policy.Options{MaxTotalBytes: 1000}); err == nil || !strings.Contains(err.Error(), "more than 1000 bytes") {
		t.Fatalf("big set: %v", err)
	}
	// Data does not count against MaxRegoBytes; Rego does.
	if _, err := policy.LoadFS(big, "p", policy.Options{MaxRegoBytes: 1000}); err != nil {
		t.Fatalf("data counted as Rego: %v", err)
	}
	if _, err := policy.LoadFS(big, "p", policy.Options{MaxRegoBytes: 10}); err == nil || !strings.Contains(err.Error(), "the Rego files add up to more than 10 bytes") {
		t.Fatalf("much Rego: %v", err)
	}
	if _, err := policy.LoadFS(big, "p", policy.Options{MaxFiles: 1}); err == nil || !strings.Contains(err.Error(), "more than 1 files") {
		t.Fatalf("many files: %v", err)
	}
	if _, err := policy.LoadFS(big, "p/decision.rego", policy.Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("a file: %v", err)
	}
}

func TestSymlinksAreRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "elsewhere.txt"), []byte("package writ\n\ndecision := {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../elsewhere.txt", filepath.Join(dir, "policies", "decision.rego")); err != nil {
		t.Fatal(err)
	}
	set, err := policy.LoadFS(os.DirFS(dir), "policies", policy.Options{})
	if err == nil || !strings.Contains(err.Error(), "policies/decision.rego:1:1: not a regular file") || !set.Failed() {
		t.Fatalf("symlink: %v", err)
	}
}

// Data files land where `opa test` puts them: their directory under the
// policy directory is their path in data.
func TestDataPaths(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"p/decision.rego": {Data: []byte(`package writ

decision := {"deny": {msg | some msg in data.limits.messages}, "approvals_required": data.writ.cfg.approvals, "require_approval": {data.top}}
`)},
		"p/data.yaml":             {Data: []byte("top: from the root\n")},
		"p/writ/cfg/data.json":    {Data: []byte(`{"approvals": 2}`)},
		"p/limits/data.yml":       {Data: []byte("messages: []\n")},
		"p/limits/README.md":      {Data: []byte("ignored\n")},
		"p/limits/x_test.rego":    {Data: []byte("package x_test\n\ntest_x if false\n")},
		"p/nested/deep/data.json": {Data: []byte(`[1, 2]`)},
	}
	set, err := policy.LoadFS(fsys, "p", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
	if d.Outcome != policy.RequireApproval || d.ApprovalsRequired != 2 || d.Reasons[0].Message != "from the root" {
		t.Fatalf("%+v", d)
	}
	want := []string{"p/data.yaml", "p/decision.rego", "p/limits/data.yml", "p/nested/deep/data.json", "p/writ/cfg/data.json"}
	got := set.Files()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	fsys["p/data.yaml"] = &fstest.MapFile{Data: []byte("- a list at the top\n")}
	if _, err := policy.LoadFS(fsys, "p", policy.Options{}); err == nil || !strings.Contains(err.Error(), "p/data.yaml:1:1: a data file at the top of the policy set must hold an object") {
		t.Fatalf("list at the top: %v", err)
	}
}

// The digest is defined byte for byte in docs/policies.md; this pins it.
func TestDigestDefinition(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"decision.rego":      "package writ\n\ndecision := {}\n",
		"sub/data.json":      `{"a": 1}`,
		"decision_test.rego": "package writ_test\n",
		"NOTES.md":           "not loaded\n",
	}
	fsys := fstest.MapFS{}
	for name, content := range files {
		fsys["repo/policies/"+name] = &fstest.MapFile{Data: []byte(content)}
	}
	h := sha256.New()
	h.Write([]byte("writ-policy-set-v1\n"))
	for _, name := range []string{"decision.rego", "sub/data.json"} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(files[name])))
		h.Write(n[:])
		h.Write([]byte(files[name]))
	}
	want := hex.EncodeToString(h.Sum(nil))
	got, err := policy.DigestFS(fsys, "repo/policies")
	if err != nil || got != want {
		t.Fatalf("DigestFS = %s, %v; want %s", got, err, want)
	}
	set, err := policy.LoadFS(fsys, "repo/policies", policy.Options{Root: "elsewhere"})
	if err != nil || set.Digest() != want {
		t.Fatalf("Set.Digest = %s, %v; want %s", set.Digest(), err, want)
	}
}

func TestDigestChanges(t *testing.T) {
	t.Parallel()
	base := fstest.MapFS{
		"p/decision.rego":      {Data: []byte("package writ\n\ndecision := {}\n")},
		"p/data.yaml":          {Data: []byte("a: 1\n")},
		"p/decision_test.rego": {Data: []byte("package writ_test\n")},
	}
	digest := func(fsys fstest.MapFS) string {
		d, err := policy.DigestFS(fsys, "p")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	with := func(name, content string) fstest.MapFS {
		c := fstest.MapFS{}
		for k, v := range base {
			c[k] = v
		}
		c[name] = &fstest.MapFile{Data: []byte(content)}
		return c
	}
	d0 := digest(base)
	if d0 != digest(base) {
		t.Fatal("digest is not stable")
	}
	same := map[string]fstest.MapFS{
		"a test file changed": with("p/decision_test.rego", "package writ_test\n\ntest_x if true\n"),
		"a README was added":  with("p/README.md", "hello\n"),
	}
	for what, fsys := range same {
		if digest(fsys) != d0 {
			t.Errorf("%s: the digest changed", what)
		}
	}
	changed := map[string]fstest.MapFS{
		"policy edited":    with("p/decision.rego", "package writ\n\ndecision := {} \n"),
		"data edited":      with("p/data.yaml", "a: 2\n"),
		"policy added":     with("p/more.rego", "package more\n"),
		"data added":       with("p/sub/data.json", "{}"),
		"renamed boundary": with("p/decision.rego", "package writ\n\ndecision := {}\n"+"\x00"),
	}
	seen := map[string]string{d0: "base"}
	for what, fsys := range changed {
		d := digest(fsys)
		if prev, dup := seen[d]; dup {
			t.Errorf("%s: same digest as %s", what, prev)
		}
		seen[d] = what
	}
	// The defaults: embedded and on disk are the same set.
	onDisk, err := policy.DigestFS(os.DirFS(repoRoot), "policies")
	if err != nil {
		t.Fatal(err)
	}
	if onDisk != loadDefaults(t).Digest() {
		t.Fatal("the embedded default policies differ from policies/")
	}
}

func TestEnvironments(t *testing.T) {
	t.Parallel()
	envs := policy.DefaultEnvironments()
	if !slices.Equal(envs.Names(), []string{"production", "staging"}) {
		t.Fatalf("defaults %v", envs.Names())
	}
	prod, ok := envs.Lookup("production")
	if !ok || prod["production"] != true || prod["name"] != "production" {
		t.Fatalf("production %v", prod)
	}
	if _, ok := envs.Lookup("lab"); ok {
		t.Fatal("lab exists")
	}
	if _, has := envs["production"]["name"]; has {
		t.Fatal("Lookup changed the description")
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "env.yaml")
	if err := os.WriteFile(good, []byte("environments:\n  prod-eu:\n    production: true\n    region: eu-west-1\n  lab:\n    production: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := policy.LoadEnvironments(good)
	if err != nil {
		t.Fatal(err)
	}
	eu, _ := got.Lookup("prod-eu")
	if eu["region"] != "eu-west-1" || !slices.Equal(got.Names(), []string{"lab", "prod-eu"}) {
		t.Fatalf("%v", got)
	}
	if _, err := policy.LoadEnvironments(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}

	for src, want := range map[string]string{
		"environments:\n  prod:\n    region: eu\n":                    "env.yaml:3:5: missing required field \"production\" in environments.prod",
		"environments:\n  prod:\n    production: yes-please\n":        "env.yaml:3:17: environments.prod.production: wrong type: expected a boolean, got a string",
		"environments:\n  Prod_1:\n    production: true\n":            "env.yaml:2:3: environment name \"Prod_1\" is not a DNS label",
		"environments:\n  prod:\n    production: true\n    name: x\n": "env.yaml:4:5: environments.prod.name: writ sets input.environment.name itself",
		"environment:\n  prod:\n    production: true\n":               "env.yaml:1:1: unknown field \"environment\" at the top level",
		"environments:\n  prod: &p {production: true}\n":              "env.yaml:2:9: anchors (&p) are not allowed",
		"environments:\n  prod:\n    production: true\n  prod: {}\n":  "env.yaml:4:3: duplicate key \"prod\"",
		"environments: {}\n": "env.yaml:1:15: environments:",
	} {
		_, err := policy.ParseEnvironments("env.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
		if policy.ProblemsOf(err) == nil {
			t.Errorf("%q: no located problems in %v", src, err)
		}
	}
}

func TestRunTestsDefaults(t *testing.T) {
	t.Parallel()
	rep, err := policy.RunTests(context.Background(), os.DirFS(repoRoot), "policies", policy.TestOptions{Coverage: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Passed < 50 || rep.Passed != len(rep.Results) {
		for _, r := range rep.Results {
			if r.Outcome != policy.TestPass {
				t.Errorf("%s: %s %s %s", r.Location(), r.Name, r.Outcome, r.Message)
			}
		}
		t.Fatalf("passed %d, failed %d", rep.Passed, rep.Failed)
	}
	if rep.Coverage == nil || rep.Coverage.Percent < 90 {
		t.Fatalf("coverage %+v", rep.Coverage)
	}
	for _, f := range rep.Coverage.Files {
		if policy.IsTestFile(f.Path) || !strings.HasPrefix(f.Path, "policies/") {
			t.Fatalf("coverage of %s", f.Path)
		}
	}
	t.Logf("default policies: %d tests passed, coverage %.1f%%", rep.Passed, rep.Coverage.Percent)
}

func TestRunTestsReportsFailures(t *testing.T) {
	t.Parallel()
	rep, err := policy.RunTests(context.Background(), os.DirFS(repoRoot), "testdata/policy/failing-tests", policy.TestOptions{Options: policy.Options{Root: "failing-tests"}, Coverage: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed != 2 || rep.Failed != 2 || rep.Skipped != 1 {
		t.Fatalf("passed %d failed %d skipped %d: %+v", rep.Passed, rep.Failed, rep.Skipped, rep.Results)
	}
	byName := map[string]policy.TestResult{}
	for _, r := range rep.Results {
		byName[r.Name] = r
	}
	if r := byName["test_wrong_expectation"]; r.Outcome != policy.TestFail || r.Location() != "failing-tests/decision_test.rego:12" {
		t.Fatalf("failing test %+v", r)
	}
	// A built-in error fails the test, as it fails a decision.
	if r := byName["test_builtin_error"]; r.Outcome != policy.TestError || !strings.Contains(r.Message, "to_number") {
		t.Fatalf("erroring test %+v", r)
	}
	if rep.Coverage.Percent >= 100 || len(rep.Coverage.Files) != 1 || len(rep.Coverage.Files[0].Uncovered) == 0 {
		t.Fatalf("coverage %+v", rep.Coverage)
	}

	only, err := policy.RunTests(context.Background(), os.DirFS(repoRoot), "testdata/policy/failing-tests", policy.TestOptions{Run: "allowed"})
	if err != nil || only.Passed != 1 || only.Failed != 0 {
		t.Fatalf("--run: %+v %v", only, err)
	}
	if _, err := policy.RunTests(context.Background(), os.DirFS(repoRoot), "testdata/policy/failing-tests", policy.TestOptions{Run: "("}); err == nil {
		t.Fatal("a bad regular expression passed")
	}
}

func TestRunTestsCompileError(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"p/decision.rego":      {Data: []byte("package writ\n\ndecision := {}\n")},
		"p/decision_test.rego": {Data: []byte("package writ_test\n\ntest_x if {\n\tno_such_function(1)\n}\n")},
	}
	_, err := policy.RunTests(context.Background(), fsys, "p", policy.TestOptions{})
	ps := policy.ProblemsOf(err)
	if len(ps) != 1 || ps[0].String() != "p/decision_test.rego:4:2: rego_type_error: undefined function no_such_function" || ps[0].Code != policy.CodeCompile {
		t.Fatalf("%v", err)
	}
}

// defaultsWith is the default policy set under "policies/" with files added
// or replaced.
func defaultsWith(t testing.TB, files map[string]string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	entries, err := policies.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := policies.FS.ReadFile(e.Name())
		fsys["policies/"+e.Name()] = &fstest.MapFile{Data: b}
	}
	for name, content := range files {
		fsys["policies/"+name] = &fstest.MapFile{Data: []byte(content)}
	}
	return fsys
}

// A check whose rules the decision could not collect does not load.
func TestMalformedChecksDoNotLoad(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct{ src, want string }{
		"deny is a string": {
			"package writ.checks.mine\n\ndeny := \"everything\"\n",
			"policies/mine.rego:3:1: data.writ.checks.mine.deny has the wrong form; write it as deny contains msg if { ... }",
		},
		"deny is a function": {
			"package writ.checks.mine\n\ndeny(x) := {x}\n",
			"policies/mine.rego:3:1: data.writ.checks.mine.deny is a function",
		},
		"require_approval is an object": {
			"package writ.checks.mine\n\nrequire_approval[x] := true if some x in input.playbook.spec.targets\n",
			"policies/mine.rego:3:1: data.writ.checks.mine.require_approval must be a set of values",
		},
		"approvals_required is a set": {
			"package writ.checks.mine\n\napprovals_required contains 2 if true\n",
			"policies/mine.rego:3:1: data.writ.checks.mine.approvals_required has the wrong form; write it as approvals_required := n if { ... }",
		},
		"a ref head from another package": {
			"package writ.checks\n\nmine.deny := \"x\"\n",
			"policies/mine.rego:3:1: data.writ.checks.mine.deny has the wrong form",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			set, err := policy.LoadFS(defaultsWith(t, map[string]string{"mine.rego": c.src}), "policies", policy.Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) || !set.Failed() {
				t.Fatalf("error %v\nwant %q", err, c.want)
			}
			d := set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
			if d.Outcome != policy.Deny || !strings.Contains(d.Reasons[0].Location, "policies/mine.rego:3:1") {
				t.Fatalf("%+v", d)
			}
		})
	}
	data, _ := policies.FS.ReadFile("data.yaml")
	fsys := defaultsWith(t, map[string]string{"data.yaml": string(data) + "  checks:\n    sneaky:\n      deny: []\n"})
	if _, err := policy.LoadFS(fsys, "policies", policy.Options{}); err == nil || !strings.Contains(err.Error(), "policies/data.yaml:1:1: data.writ.checks is where checks (Rego packages) live") {
		t.Fatalf("data under writ.checks: %v", err)
	}
}

// What the Rego tests of the default decision pass through, writ refuses.
func TestDefaultDecisionRefusesMalformedReasons(t *testing.T) {
	t.Parallel()
	for name, src := range map[string]string{
		"a number":  "package writ.checks.mine\n\ndeny contains 42 if true\n",
		"an object": "package writ.checks.mine\n\nrequire_approval contains {\"why\": \"x\"} if true\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			set, err := policy.LoadFS(defaultsWith(t, map[string]string{"mine.rego": src}), "policies", policy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			d := set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
			if d.Outcome != policy.Deny || d.Reasons[0].Rule != policy.RuleShape || !strings.Contains(d.Reasons[0].Message, "mine gave a reason that is not a string") {
				t.Fatalf("%+v", d)
			}
			if !strings.HasPrefix(d.Reasons[0].Location, "policies/decision.rego:") {
				t.Fatalf("location %q", d.Reasons[0].Location)
			}
		})
	}
}

// Inputs the default policies cannot read (a target writ validation would
// have refused, an allow-list entry that is not a prefix) fail the
// evaluation, and writ denies, naming the rule.
func TestDefaultPoliciesFailClosedOnBadValues(t *testing.T) {
	t.Parallel()
	set := loadDefaults(t)
	in := input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging")
	spec := in.Playbook["spec"].(map[string]any)
	spec["targets"] = []any{"203.0.113.300"}
	d := set.Decide(context.Background(), in)
	if d.Outcome != policy.Deny || !strings.HasPrefix(d.Reasons[0].Location, "policies/ip.rego:") || !strings.Contains(d.Reasons[0].Message, "net.cidr_contains_matches") {
		t.Fatalf("invalid target: %+v", d)
	}
	if d.Reasons[0].Rule != "data.writ.lib.ip.overlaps" {
		t.Fatalf("rule %q", d.Reasons[0].Rule)
	}

	data, _ := policies.FS.ReadFile("data.yaml")
	bad := strings.Replace(string(data), "9.9.9.9/32: Quad9 DNS", "9.9.9.9/33: Quad9 DNS", 1)
	set, err := policy.LoadFS(defaultsWith(t, map[string]string{"data.yaml": bad}), "policies", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d = set.Decide(context.Background(), input(t, "block_ip", []string{"203.0.113.7"}, "low", "staging"))
	if d.Outcome != policy.Deny || !strings.Contains(d.Reasons[0].Message, "9.9.9.9/33") {
		t.Fatalf("bad allow-list: %+v", d)
	}
	// Other actions do not touch the allow-list.
	d = set.Decide(context.Background(), input(t, "suspend_user", []string{"j.doe@example.com"}, "low", "staging"))
	if d.Outcome != policy.RequireApproval {
		t.Fatalf("suspend_user with a bad allow-list: %+v", d)
	}
}

// TestDataErrorColumnCountsCodePoints: the column of a JSON data file's
// error counts Unicode code points like the YAML decoder's and OPA's
// (diag.ColumnKind), and names the offending character.
func TestDataErrorColumnCountsCodePoints(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"p/decision.rego": {Data: []byte("package writ\n\ndecision := {}\n")},
		// x is the 9th character of line 2 (its 13th byte).
		"p/data.json": {Data: []byte("{\n\"é😀\": 1 x}")},
	}
	_, err := policy.LoadFS(fsys, "p", policy.Options{})
	if err == nil || !strings.Contains(err.Error(), "p/data.json:2:9: invalid JSON") {
		t.Fatalf("want p/data.json:2:9: %v", err)
	}
}
