package policy

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/writ-sec/writ/internal/diag"
)

// checksRef is where the default decision (policies/decision.rego) finds
// its checks: one package per check under data.writ.checks.
var checksRef = ast.MustParseRef("data.writ.checks")

// checkFields are the rules a check may define, and the form each must
// have: the decision collects them by name, and a rule of another form
// (deny := "x", a function, an object) would be skipped or misread.
var checkFields = map[string]struct {
	kind ast.DocKind
	form string
}{
	"deny":               {ast.PartialSetDoc, "deny contains msg if { ... }"},
	"require_approval":   {ast.PartialSetDoc, "require_approval contains msg if { ... }"},
	"approver_roles":     {ast.PartialSetDoc, `approver_roles contains "role" if { ... }`},
	"approvals_required": {ast.CompleteDoc, "approvals_required := n if { ... }"},
}

// checkRules reports rules under data.writ.checks.<name> whose form the
// decision cannot collect, and data files that put documents there, as
// located problems. A set with such a check does not load (it fails
// closed), so a mistyped check can never be silently ignored.
func checkRules(c *compiled) diag.Problems {
	var out diag.Problems
	for _, m := range c.modules {
		for _, r := range m.Rules {
			if r.Module == nil {
				continue
			}
			ref := r.Ref()
			if !ref.HasPrefix(checksRef) || len(ref) < len(checksRef)+2 {
				continue
			}
			name, ok := ref[len(checksRef)].Value.(ast.String)
			if !ok {
				out = append(out, ruleProblem(r, "a check must be a package under writ.checks with a fixed name, not %s", ref))
				continue
			}
			field, ok := ref[len(checksRef)+1].Value.(ast.String)
			if !ok {
				continue
			}
			want, known := checkFields[string(field)]
			if !known {
				continue // a helper rule of the check
			}
			path := fmt.Sprintf("data.writ.checks.%s.%s", string(name), string(field))
			switch {
			case len(r.Head.Args) > 0:
				out = append(out, ruleProblem(r, "%s is a function; write it as %s", path, want.form))
			case len(ref) != len(checksRef)+2 && want.kind == ast.PartialSetDoc:
				out = append(out, ruleProblem(r, "%s must be a set of values; write it as %s", path, want.form))
			case r.Head.DocKind() != want.kind:
				out = append(out, ruleProblem(r, "%s has the wrong form; write it as %s", path, want.form))
			}
		}
	}
	if writ, ok := c.data["writ"].(map[string]any); ok {
		if _, ok := writ["checks"]; ok {
			out = append(out, diag.Errorf(c.dataOrigin["writ"], diag.Position{}, CodeData,
				"data.writ.checks is where checks (Rego packages) live: data files must not set it"))
		}
	}
	out.Sort()
	return out
}

func ruleProblem(r *ast.Rule, format string, args ...any) diag.Problem {
	var (
		file string
		pos  diag.Position
	)
	if r.Location != nil {
		file = r.Location.File
		pos = diag.Position{Line: r.Location.Row, Col: r.Location.Col}
	}
	return diag.Errorf(file, pos, CodeCompile, format, args...)
}
