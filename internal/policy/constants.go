package policy

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Rules whose value depends only on the policy set (its Rego and its
// data) are evaluated once, when the set loads, instead of in every
// decision: the checks' range lists, the limits read from data, the
// settings. writ hands their values to OPA's evaluator as cached results
// (constantCache), the cache OPA itself fills as a decision evaluates
// each rule the first time. A decision that evaluates `refused` then finds
// the value it would have computed, at the cost of a lookup.
//
// A rule is constant when neither it, nor any rule that may also define
// its value, nor any rule they depend on (OPA's dependency graph, which
// covers calls and every rule a ref with variables may reach) mentions
// input, calls a built-in whose result may differ from one call to the
// next (OPA marks them non-deterministic: time.now_ns, rand.intn,
// http.send, ...; crypto.x509's verifications read the clock unmarked),
// print or trace, or uses `with`. Only complete rules (one value, no
// arguments) are kept, and only those that evaluate without error: an
// error stays the decision's to report, as before.

// constantBudget bounds the time a set spends evaluating its constant
// rules when it loads; the rules not evaluated by then are evaluated in
// each decision, as any other.
const constantBudget = 500 * time.Millisecond

// constantValue is the value of a constant rule, or undefined.
type constantValue struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
}

// constants holds the constant rules of a set by the last element of
// their path, for a quick miss on every other ref.
type constants map[string][]constantValue

func (cs constants) get(ref ast.Ref) (constantValue, bool) {
	if len(ref) == 0 {
		return constantValue{}, false
	}
	last, ok := ref[len(ref)-1].Value.(ast.String)
	if !ok {
		return constantValue{}, false
	}
	for _, c := range cs[string(last)] {
		if c.ref.Equal(ref) {
			return c, true
		}
	}
	return constantValue{}, false
}

// constantRules finds and evaluates the constant rules of a compiled set.
func constantRules(ctx context.Context, compiler *ast.Compiler, store storage.Store) constants {
	// Every rule node (each else of a chain is a node of its own), and
	// whether it is constant on its own terms.
	own := map[*ast.Rule]bool{}
	var paths []ast.Ref
	seen := map[string]bool{}
	for _, m := range compiler.Modules {
		ast.WalkRules(m, func(r *ast.Rule) bool {
			own[r] = !variesOnItsOwn(r)
			if r.Head.RuleKind() == ast.SingleValue && len(r.Head.Args) == 0 {
				if p := r.Ref(); p.IsGround() && !seen[p.String()] {
					seen[p.String()] = true
					paths = append(paths, p)
				}
			}
			return false
		})
	}
	memo := map[*ast.Rule]bool{}
	var constant func(r *ast.Rule) bool
	constant = func(r *ast.Rule) bool {
		if v, ok := memo[r]; ok {
			return v
		}
		memo[r] = false // Rego refuses recursion; this only guards.
		ok := own[r]
		for dep := range compiler.Graph.Dependencies(r) {
			if !ok {
				break
			}
			d, isRule := dep.(*ast.Rule)
			ok = isRule && constant(d)
		}
		memo[r] = ok
		return ok
	}
	// Only the rules a decision may evaluate: those data.writ.decision
	// depends on, directly or not. Others cost nothing at load.
	reachable := map[*ast.Rule]bool{}
	var reach func(r *ast.Rule)
	reach = func(r *ast.Rule) {
		if reachable[r] {
			return
		}
		reachable[r] = true
		for dep := range compiler.Graph.Dependencies(r) {
			if d, ok := dep.(*ast.Rule); ok {
				reach(d)
			}
		}
	}
	for _, r := range compiler.GetRules(ast.MustParseRef(Query)) {
		for n := r; n != nil; n = n.Else {
			reach(n)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, constantBudget)
	defer cancel()
	out := constants{}
	for _, p := range paths {
		// Every rule that may give the ref a value: its own, and rules
		// with variables in their heads that may define it (p[x] := …
		// beside p.a := …).
		rules := compiler.GetRules(p)
		ok := slices.ContainsFunc(rules, func(r *ast.Rule) bool { return reachable[r] })
		for _, r := range rules {
			for n := r; ok && n != nil; n = n.Else {
				ok = constant(n)
			}
		}
		if !ok || ctx.Err() != nil {
			continue
		}
		v, undefined, err := evalConstant(ctx, compiler, store, p)
		if err != nil {
			continue
		}
		last, isString := p[len(p)-1].Value.(ast.String)
		if !isString {
			continue
		}
		out[string(last)] = append(out[string(last)], constantValue{ref: p, value: v, undefined: undefined})
	}
	return out
}

// variesOnItsOwn reports whether a rule node's own terms (head and body,
// not its else, which is a node of its own) may give another value in
// another decision: it mentions input, calls a non-deterministic
// built-in, print or trace, or uses `with`.
func variesOnItsOwn(r *ast.Rule) bool {
	varies := false
	check := func(x any) {
		ast.WalkTerms(x, func(t *ast.Term) bool {
			if varies {
				return true
			}
			switch v := t.Value.(type) {
			case ast.Var:
				varies = v.Equal(ast.InputRootDocument.Value)
			case ast.Ref:
				varies = v.HasPrefix(ast.InputRootRef)
			case ast.Call:
				varies = variesCall(v[0])
			}
			return varies
		})
		ast.WalkExprs(x, func(e *ast.Expr) bool {
			if varies {
				return true
			}
			if len(e.With) > 0 {
				varies = true
			} else if e.IsCall() {
				varies = variesCall(ast.NewTerm(e.Operator()))
			}
			return varies
		})
	}
	check(r.Head)
	check(r.Body)
	return varies
}

// variesCall reports whether a call of op may give another value for the
// same arguments (a user-defined function is judged by its own rules).
func variesCall(op *ast.Term) bool {
	ref, ok := op.Value.(ast.Ref)
	if !ok {
		return true
	}
	name := ref.String()
	switch name {
	case ast.Print.Name, ast.Trace.Name, ast.InternalPrint.Name:
		return true
	}
	// Built-ins that read the clock: OPA marks io.jwt.decode_verify (exp
	// and nbf against the evaluation's time) non-deterministic, but not
	// crypto.x509's chain verifications (against the current time). Every
	// io.jwt built-in and crypto.x509 verification is taken to vary, to be
	// safe whatever a later OPA marks.
	if strings.HasPrefix(name, "io.jwt.") || strings.HasPrefix(name, "crypto.x509.parse_and_verify") {
		return true
	}
	if b, ok := ast.BuiltinMap[name]; ok {
		return b.Nondeterministic
	}
	return false
}

// evalConstant evaluates one constant rule, keeping its value as OPA's
// evaluator holds it (a set stays a set).
func evalConstant(ctx context.Context, compiler *ast.Compiler, store storage.Store, path ast.Ref) (value *ast.Term, undefined bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			value, undefined, err = nil, false, errPanicked
		}
	}()
	x := ast.VarTerm("__writ_constant__")
	body, err := compiler.QueryCompiler().Compile(ast.NewBody(ast.Equality.Expr(x, ast.NewTerm(path))))
	if err != nil {
		return nil, false, err
	}
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, false, err
	}
	defer store.Abort(ctx, txn)
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	rs, err := topdown.NewQuery(body).WithCompiler(compiler).WithStore(store).WithTransaction(txn).
		WithStrictBuiltinErrors(true).WithCancel(cancel).Run(ctx)
	switch {
	case err != nil:
		return nil, false, err
	case len(rs) == 0:
		return nil, true, nil
	case len(rs) > 1:
		return nil, false, errConflict
	}
	v, ok := rs[0][x.Value.(ast.Var)]
	if !ok || !v.IsGround() {
		return nil, false, errConflict
	}
	return v, false, nil
}

var (
	errPanicked = &topdown.Error{Code: topdown.InternalErr, Message: "evaluation panicked"}
	errConflict = &topdown.Error{Code: topdown.ConflictErr, Message: "not one value"}
)

// constantCache is OPA's virtual-document cache with the set's constant
// rules already in it. It answers from them only outside `with`: a
// `with` pushes a frame of its own (it may replace data the constants
// were computed from), in which every rule is evaluated afresh, as OPA
// does.
type constantCache struct {
	consts constants
	inner  topdown.VirtualCache
	depth  int
}

func newConstantCache(cs constants) topdown.VirtualCache {
	return &constantCache{consts: cs, inner: topdown.NewVirtualCache()}
}

func (c *constantCache) Push() { c.depth++; c.inner.Push() }

func (c *constantCache) Pop() { c.depth--; c.inner.Pop() }

func (c *constantCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if c.depth == 0 {
		if v, ok := c.consts.get(ref); ok {
			return v.value, v.undefined
		}
	}
	return c.inner.Get(ref)
}

func (c *constantCache) Put(ref ast.Ref, value *ast.Term) { c.inner.Put(ref, value) }

func (c *constantCache) Keys() []ast.Ref { return c.inner.Keys() }
