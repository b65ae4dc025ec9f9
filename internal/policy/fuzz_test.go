package policy_test

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/policies"
)

// FuzzLoadFS feeds arbitrary Rego and data (a PR's policies/ reach writ
// validate) to the loader: it must never panic, a set that does not load
// must deny, and a set that loads must decide one of the three outcomes,
// consistently.
func FuzzLoadFS(f *testing.F) {
	entries, _ := policies.FS.ReadDir(".")
	data, _ := policies.FS.ReadFile("data.yaml")
	for _, e := range entries {
		if e.Name() == "data.yaml" || policy.IsTestFile(e.Name()) {
			continue
		}
		src, _ := policies.FS.ReadFile(e.Name())
		f.Add(string(src), string(data))
	}
	f.Add("package writ\n\ndecision := {\"deny\": \"x\"}\n", "{}")
	f.Add("package writ\n\ndecision := {\"require_approval\": {\"y\"}, \"approvals_required\": 2}\n", "writ: {a: 1}\n")
	f.Add("package writ\n\ndecision := {}\n", "a: &x 1\n")
	f.Add("package writ\n\ndecision := {\"deny\": {input.playbook.spec.targets[0]}}\n", "- 1\n")
	envs := policy.DefaultEnvironments()
	env, _ := envs.Lookup("staging")
	in := policy.Input{
		Playbook: map[string]any{
			"metadata": map[string]any{"name": "fuzz"},
			"spec":     map[string]any{"action": "block_ip", "targets": []any{"203.0.113.7"}, "severity": "low", "environment": "staging"},
		},
		Change:      policy.Change{Type: "create"},
		Environment: env,
	}
	f.Fuzz(func(t *testing.T, rego, data string) {
		fsys := fstest.MapFS{
			"p/decision.rego": {Data: []byte(rego)},
			"p/data.yaml":     {Data: []byte(data)},
		}
		set, err := policy.LoadFS(fsys, "p", policy.Options{EvalTimeout: 200 * time.Millisecond})
		if set == nil {
			t.Fatal("no set")
		}
		d := set.Decide(context.Background(), in)
		if err != nil {
			if !set.Failed() || d.Outcome != policy.Deny || len(d.Reasons) == 0 {
				t.Fatalf("a set that did not load (%v) decided %+v", err, d)
			}
			return
		}
		switch d.Outcome {
		case policy.Allow:
			if d.ApprovalsRequired != 0 || len(d.Reasons) != 0 {
				t.Fatalf("allow with approvals or reasons: %+v", d)
			}
		case policy.RequireApproval:
			if d.ApprovalsRequired < 1 || len(d.ApproverRoles) == 0 {
				t.Fatalf("require_approval without approvals or roles: %+v", d)
			}
		case policy.Deny:
			if len(d.Reasons) == 0 {
				t.Fatalf("deny without reasons: %+v", d)
			}
		default:
			t.Fatalf("outcome %q", d.Outcome)
		}
	})
}
