package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// MaxApprovals bounds approvals_required: a larger number is a policy bug,
// and denies.
const MaxApprovals = 100

// parseDecision reads the value of data.writ.decision. Any deviation from
// the contract is a problem, and the caller denies: a typo in a field name
// must never turn a refusal into an allow.
func parseDecision(v any) (Decision, []string) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Decision{}, []string{fmt.Sprintf("must be an object with deny, require_approval, approvals_required and approver_roles, not %s", describe(v))}
	}
	var (
		d        Decision
		problems []string
	)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	approvals := 0
	emergency := false
	for _, k := range keys {
		val := obj[k]
		switch k {
		case "deny", "require_approval":
			kind := KindDeny
			if k == "require_approval" {
				kind = KindRequireApproval
			}
			rs, ps := parseReasons(k, kind, val)
			d.Reasons = append(d.Reasons, rs...)
			problems = append(problems, ps...)
		case "approvals_required":
			n, err := parseCount(val)
			if err != nil {
				problems = append(problems, fmt.Sprintf("approvals_required %v", err))
				continue
			}
			approvals = n
		case "approver_roles":
			roles, ok := stringSet(val)
			if !ok {
				problems = append(problems, fmt.Sprintf("approver_roles must be a set of role names, not %s", describe(val)))
				continue
			}
			d.ApproverRoles = roles
		case "emergency":
			b, ok := val.(bool)
			if !ok {
				problems = append(problems, fmt.Sprintf("emergency must be true or false, not %s", describe(val)))
				continue
			}
			emergency = b
		default:
			problems = append(problems, fmt.Sprintf("unknown field %q (known: deny, require_approval, approvals_required, approver_roles, emergency)", k))
		}
	}
	if len(problems) > 0 {
		return Decision{}, problems
	}
	deny, approve := false, false
	for _, r := range d.Reasons {
		if r.Kind == KindDeny {
			deny = true
		} else {
			approve = true
		}
	}
	switch {
	case deny:
		d.Outcome = Deny
		d.ApprovalsRequired = 0
		d.ApproverRoles = nil
		emergency = false // a denial is never broken
	case approve || approvals > 0:
		d.Outcome = RequireApproval
		if !approve {
			// Approvals asked for without a reason: ask for them anyway.
			d.Reasons = append(d.Reasons, Reason{Kind: KindRequireApproval, Rule: RuleDecision,
				Message: fmt.Sprintf("approvals_required is %d (the policies gave no reason)", approvals)})
		}
		d.ApprovalsRequired = max(approvals, 1)
		if len(d.ApproverRoles) == 0 {
			d.ApproverRoles = []string{"approver"}
		}
	default:
		d.Outcome = Allow
		d.ApprovalsRequired = 0
		d.ApproverRoles = nil
	}
	d.Emergency = emergency
	return finish(d), nil
}

// parseReasons reads deny or require_approval: a set (or array) of strings,
// or of objects with msg (or message) and optionally rule.
func parseReasons(field string, kind ReasonKind, v any) ([]Reason, []string) {
	items, ok := v.([]any)
	if !ok {
		return nil, []string{fmt.Sprintf("%s must be a set of reasons, not %s", field, describe(v))}
	}
	var (
		out      []Reason
		problems []string
	)
	for _, it := range items {
		switch x := it.(type) {
		case string:
			out = append(out, Reason{Kind: kind, Rule: RuleDecision, Message: x})
		case map[string]any:
			raw, present := x["msg"]
			if !present {
				raw, present = x["message"]
			}
			msg, ok := raw.(string)
			if !ok {
				if rule, named := x["rule"].(string); named && present {
					problems = append(problems, fmt.Sprintf("%s: %s gave a reason that is not a string: %s", field, rule, compact(raw)))
				} else {
					problems = append(problems, fmt.Sprintf("%s: a reason object needs a string msg, got %s", field, compact(x)))
				}
				continue
			}
			rule := RuleDecision
			if r, present := x["rule"]; present {
				rs, ok := r.(string)
				if !ok || rs == "" {
					problems = append(problems, fmt.Sprintf("%s: rule must be a non-empty string, got %s", field, compact(x)))
					continue
				}
				rule = rs
			}
			out = append(out, Reason{Kind: kind, Rule: rule, Message: msg})
		default:
			problems = append(problems, fmt.Sprintf("%s: a reason must be a string or an object with msg, not %s", field, describe(it)))
		}
	}
	return out, problems
}

func parseCount(v any) (int, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("must be a number, not %s", describe(v))
	}
	f, err := num.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("must be a number, not %s", num)
	}
	if f != math.Trunc(f) {
		return 0, fmt.Errorf("must be a whole number, not %s", num)
	}
	if f < 0 {
		return 0, fmt.Errorf("must not be negative, got %s", num)
	}
	if f > MaxApprovals {
		return 0, fmt.Errorf("is %s; more than %d cannot be meant", num, MaxApprovals)
	}
	return int(f), nil
}

func stringSet(v any) ([]string, bool) {
	items, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok || s == "" {
			return nil, false
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), true
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("a string (%q)", truncate(x, 60))
	case bool:
		return fmt.Sprintf("a boolean (%v)", x)
	case json.Number:
		return fmt.Sprintf("a number (%s)", x)
	case []any:
		return "a set or array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return truncate(string(b), 120)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// runtimeReason describes an evaluation error: where it happened and in
// which rule, or that the deadline passed.
func (s *Set) runtimeReason(ctx context.Context, err error) Reason {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || topdown.IsCancel(err) {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Reason{Kind: KindDeny, Rule: RuleTimeout, Location: s.decisionAt,
				Message: fmt.Sprintf("evaluation of %s was cancelled: %v", Query, ctx.Err())}
		}
		return Reason{Kind: KindDeny, Rule: RuleTimeout, Location: s.decisionAt,
			Message: fmt.Sprintf("evaluation of %s ran past its deadline of %s", Query, s.opts.EvalTimeout)}
	}
	var te *topdown.Error
	if errors.As(err, &te) && te.Location != nil {
		loc := fmt.Sprintf("%s:%d:%d", te.Location.File, te.Location.Row, te.Location.Col)
		rule := ruleAt(s.compiler.Modules, te.Location.File, te.Location.Row)
		if rule == "" {
			rule = RuleRuntime
		}
		return Reason{Kind: KindDeny, Rule: rule, Location: loc, Message: fmt.Sprintf("%s: %s", te.Code, te.Message)}
	}
	return Reason{Kind: KindDeny, Rule: RuleRuntime, Location: s.decisionAt, Message: fmt.Sprintf("evaluation of %s failed: %v", Query, err)}
}

// ruleAt names the rule whose text spans row in file, e.g.
// "data.writ.checks.production.require_approval", or "".
func ruleAt(modules map[string]*ast.Module, file string, row int) string {
	m, ok := modules[file]
	if !ok {
		return ""
	}
	for _, r := range m.Rules {
		loc := r.Location
		if loc == nil || r.Module == nil {
			continue
		}
		end := loc.Row + strings.Count(string(loc.Text), "\n")
		if row >= loc.Row && row <= end {
			return r.Ref().String()
		}
	}
	return ""
}
