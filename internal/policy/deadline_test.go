package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestWithDeadlineStopsTheCompiler checks the stage hook itself: a compiler
// whose deadline has passed stops after its first stage, with an error.
func TestWithDeadlineStopsTheCompiler(t *testing.T) {
	t.Parallel()
	m := ast.MustParseModule("package p\n\nx := 1\n")
	live := ast.NewCompiler()
	withDeadline(context.Background(), live)
	if live.Compile(map[string]*ast.Module{"p.rego": m}); live.Failed() {
		t.Fatalf("a live deadline must not stop the compiler: %v", live.Errors)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := ast.NewCompiler()
	withDeadline(ctx, c)
	c.Compile(map[string]*ast.Module{"p.rego": ast.MustParseModule("package p\n\nx := 1\n")})
	if !c.Failed() || len(c.Errors) != 1 || !strings.Contains(c.Errors[0].Message, "compilation stopped: context canceled") {
		t.Fatalf("errors: %v", c.Errors)
	}
	if c.RuleTree != nil && len(c.GetRulesExact(ast.MustParseRef("data.p.x"))) > 0 {
		t.Fatal("the compiler ran to the end")
	}
}
