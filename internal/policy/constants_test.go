package policy_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/writ-sec/writ/internal/policy"
)

// The default set's rules that depend on the set alone are evaluated when
// it loads; none that reads input or the clock is.
func TestDefaultConstantRules(t *testing.T) {
	got := policy.ConstantRules(loadDefaults(t))
	for _, want := range []string{
		"data.writ.checks.reserved_addresses.refused",
		"data.writ.checks.reserved_addresses.include_documentation",
		"data.writ.checks.private_targets.ranges",
		"data.writ.checks.allowlisted_networks.entries",
		"data.writ.checks.target_scope.min_prefix_ipv4",
		"data.writ.checks.business_hours.weekdays",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("%s is not among the constant rules %v", want, got)
		}
	}
	for _, never := range []string{
		"data.writ.lib.ip.targets",                              // input
		"data.writ.checks.target_scope.max_targets",             // input, through an else
		"data.writ.checks.business_hours.within_business_hours", // the clock
		"data.writ.lib.operation.apply",                         // input, with a default
		"data.writ.decision",                                    // everything
	} {
		if slices.Contains(got, never) {
			t.Errorf("%s is taken for a constant rule", never)
		}
	}
}

// A constant rule's value is what evaluating it in the decision gave
// (through other rules and functions, and undefined); a rule that uses
// `with`, reads input or the clock, or depends on one that does, is
// evaluated in each decision; under `with`, every rule is.
func TestConstantRulesDecideAsBefore(t *testing.T) {
	const rego = `package writ

limit := data.cfg.limit

double(x) := 2 * x

doubled := double(limit)

replaced := x if {
	x := limit with data.cfg.limit as 7
}

now_s := floor(time.now_ns() / 1000000000)

later := now_s + limit

# A token that expires at 1500 s: valid at the decision's time (1000 s,
# then 2000 s: not), whatever the time the set loaded.
token_valid := v if {
	[v, _, _] := io.jwt.decode_verify("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE1MDB9.ItJ7yCTsjyYt_Lj4h_ng8bdEMvngByjQ5nlf43NRwDE", {"secret": "s"})
}

seen := input.playbook.spec.targets[0]

# shared.fixed is one value, but shared[k] may define the same key from
# input (a conflict when it does): shared.fixed is not a constant.
shared.fixed := 1

shared[k] := 2 if k := input.playbook.spec.key

# Nothing a decision evaluates refers to unused: it is not evaluated at
# load.
unused := 42

seen_twice := [seen, seen]

undefined_rule if data.cfg.missing == true

failing := to_number("not a number") if input.playbook.spec.action == "fail"

msgs contains sprintf("limit=%v doubled=%v replaced=%v later=%v seen=%v undefined=%v token=%v fixed=%v", [limit, doubled, replaced, later, seen_twice, undefined_or_no, token_valid, shared.fixed])

msgs contains failing

decision := {
	"deny": msgs,
	"require_approval": set(),
	"approvals_required": 0,
}

default undefined_or_no := "no"

undefined_or_no := "yes" if undefined_rule
`
	fsys := fstest.MapFS{"p/decision.rego": {Data: []byte(rego)}, "p/data.yaml": {Data: []byte("cfg:\n  limit: 3\n")}}
	now := time.Unix(1000, 0)
	set, err := policy.LoadFS(fsys, "p", policy.Options{Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	constants := policy.ConstantRules(set)
	for _, want := range []string{"data.writ.limit", "data.writ.doubled", "data.writ.undefined_or_no", "data.writ.undefined_rule"} {
		if !slices.Contains(constants, want) {
			t.Errorf("%s is not among the constant rules %v", want, constants)
		}
	}
	for _, never := range []string{"data.writ.replaced", "data.writ.shared.fixed", "data.writ.unused", "data.writ.token_valid", "data.writ.now_s", "data.writ.later", "data.writ.seen", "data.writ.seen_twice", "data.writ.failing", "data.writ.decision"} {
		if slices.Contains(constants, never) {
			t.Errorf("%s is taken for a constant rule", never)
		}
	}
	env, _ := policy.DefaultEnvironments().Lookup("staging")
	decide := func(target, action string) policy.Decision {
		return set.Decide(context.Background(), policy.Input{
			Playbook:    map[string]any{"spec": map[string]any{"action": action, "targets": []any{target}}},
			Change:      policy.Change{Type: "create"},
			Environment: env,
		})
	}
	for i, c := range []struct {
		at             time.Time
		target, action string
		want           string
	}{
		{time.Unix(1000, 0), "a", "block_ip", `limit=3 doubled=6 replaced=7 later=1003 seen=["a", "a"] undefined=no token=true fixed=1`},
		{time.Unix(2000, 0), "b", "block_ip", `limit=3 doubled=6 replaced=7 later=2003 seen=["b", "b"] undefined=no token=false fixed=1`},
	} {
		now = c.at
		d := decide(c.target, c.action)
		if d.Outcome != policy.Deny || len(d.Reasons) != 1 || d.Reasons[0].Message != c.want {
			t.Errorf("decision %d: %+v, want one reason %q", i, d, c.want)
		}
	}
	// An error stays the decision's: the rule that fails is evaluated in it.
	d := decide("c", "fail")
	if d.Outcome != policy.Deny || len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0].Message, "to_number") {
		t.Errorf("a failing rule: %+v", d)
	}
}

// Decisions made at once share the set's constant values and parsed
// ranges: they decide what one at a time decides (run with -race).
func TestDecideAtOnceWithConstants(t *testing.T) {
	set := loadDefaults(t)
	env, _ := policy.DefaultEnvironments().Lookup("production")
	inputs := make([]policy.Input, 40)
	for i := range inputs {
		targets := []string{fmt.Sprintf("203.0.%d.%d", i, i+1), "198.51.100.0/24"}
		switch i % 4 {
		case 1:
			targets = []string{"10.1.2.3"}
		case 2:
			targets = []string{"127.0.0.1", "fe80::1"}
		case 3:
			targets = []string{"8.8.8.8", "2001:db8::/32"}
		}
		inputs[i] = policy.Input{Playbook: parsePlaybook(t, "block_ip", targets, "high", "production"),
			Change: policy.Change{Type: "create"}, Environment: env}
	}
	want := make([]policy.Decision, len(inputs))
	for i, in := range inputs {
		want[i] = set.Decide(context.Background(), in)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for r := range 3 {
				for i, in := range inputs {
					if got := set.Decide(context.Background(), in); !reflect.DeepEqual(got, want[i]) {
						t.Errorf("worker %d, round %d, input %d: %+v, one at a time %+v", w, r, i, got, want[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	outcomes := map[policy.Outcome]int{}
	for _, d := range want {
		outcomes[d.Outcome]++
	}
	if outcomes[policy.Deny] == 0 || outcomes[policy.RequireApproval] == 0 {
		t.Fatalf("the inputs miss outcomes: %v", outcomes)
	}
}
