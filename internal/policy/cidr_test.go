package policy_test

import (
	"math/rand/v2"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/writ-sec/writ/internal/policy"
)

// cidrTexts are addresses and prefixes of every shape OPA's
// net.cidr_contains treats apart: IPv4, IPv6, IPv4-mapped IPv6 (as
// addresses and prefixes: "::/80" ends in ::ffff:ffff:ffff), host bits
// set, /0 and full-length prefixes, and strings that are neither.
var cidrTexts = []string{
	"10.0.0.0/8", "10.1.2.3", "10.1.2.0/24", "10.0.0.1/8", "0.0.0.0/0", "127.0.0.1", "127.0.0.0/8",
	"192.168.1.1/32", "192.168.0.0/16", "203.0.113.7", "198.51.100.0/24", "255.255.255.255/32",
	"224.0.0.0/4", "8.8.8.8", "8.8.8.8/32", "100.64.0.0/10",
	"::/0", "::/80", "::/128", "::1", "::1/128", "fe80::/10", "fe80::1", "2001:db8::/32", "2001:db8::1",
	"2001:db8:1::/48", "fc00::/7", "ff00::/8", "::ffff:127.0.0.1", "::ffff:0:0/96", "::ffff:10.0.0.0/104",
	"::ffff:8.8.8.8/128", "2606:4700:4700::1111/128",
	"", "x", "10.0.0.0/33", "10.0.0", "::/129", "1.2.3.4/-1", "1.2.3.4 ", "10.0.0.0/8/8", "0x0a.0.0.1",
}

// cidrOperand builds a random operand: a string, or an array, set or
// object of strings (now and then of one-element arrays, an empty array
// or a number, which only OPA's implementation answers).
func cidrOperand(r *rand.Rand, odd bool) *ast.Term {
	elem := func() *ast.Term {
		s := ast.StringTerm(cidrTexts[r.IntN(len(cidrTexts))])
		if odd {
			switch r.IntN(12) {
			case 0:
				return ast.ArrayTerm(s, ast.IntNumberTerm(1))
			case 1:
				return ast.ArrayTerm()
			case 2:
				return ast.IntNumberTerm(7)
			}
		}
		return s
	}
	n := r.IntN(6)
	switch r.IntN(5) {
	case 0:
		return elem()
	case 1:
		terms := make([]*ast.Term, n)
		for i := range terms {
			terms[i] = elem()
		}
		return ast.ArrayTerm(terms...)
	case 2:
		terms := make([]*ast.Term, n)
		for i := range terms {
			terms[i] = elem()
		}
		return ast.SetTerm(terms...)
	case 3:
		obj := ast.NewObject()
		for i := range n {
			obj.Insert(ast.IntNumberTerm(i), elem())
		}
		return ast.NewTerm(obj)
	}
	if odd {
		return ast.NumberTerm("3")
	}
	return ast.ArrayTerm()
}

// callCIDR calls a net.cidr_contains_matches implementation and returns
// its result or its error.
func callCIDR(f topdown.BuiltinFunc, a, b *ast.Term) (*ast.Term, error) {
	var out *ast.Term
	err := f(topdown.BuiltinContext{}, []*ast.Term{a, b}, func(t *ast.Term) error { out = t; return nil })
	return out, err
}

// checkCIDRAgrees fails unless writ's and OPA's implementations give the
// same result, or the same error, for a and b.
func checkCIDRAgrees(t *testing.T, a, b *ast.Term) {
	t.Helper()
	got, gotErr := callCIDR(policy.CIDRContainsMatches, a, b)
	want, wantErr := callCIDR(policy.StockCIDRContainsMatches, a, b)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("net.cidr_contains_matches(%v, %v): error %v, OPA's %v", a, b, gotErr, wantErr)
	}
	if gotErr == nil && !got.Equal(want) {
		t.Fatalf("net.cidr_contains_matches(%v, %v) = %v, OPA's %v", a, b, got, want)
	}
}

// writ's net.cidr_contains_matches answers what OPA's does on every pair
// of the texts above, and on random operands of every shape.
func TestCIDRContainsMatchesAgreesWithOPA(t *testing.T) {
	if policy.StockCIDRContainsMatches == nil {
		t.Fatal("OPA has no net.cidr_contains_matches to compare with")
	}
	for _, a := range cidrTexts {
		for _, b := range cidrTexts {
			checkCIDRAgrees(t, ast.StringTerm(a), ast.StringTerm(b))
		}
	}
	all := make([]*ast.Term, len(cidrTexts))
	for i, s := range cidrTexts {
		all[i] = ast.StringTerm(s)
	}
	checkCIDRAgrees(t, ast.SetTerm(all...), ast.ArrayTerm(all...))
	r := rand.New(rand.NewPCG(1, 2))
	matched, failed := 0, 0
	for i := range 20000 {
		a, b := cidrOperand(r, i%2 == 0), cidrOperand(r, i%3 == 0)
		checkCIDRAgrees(t, a, b)
		switch out, err := callCIDR(policy.CIDRContainsMatches, a, b); {
		case err != nil:
			failed++
		case out.Value.(ast.Set).Len() > 0:
			matched++
		}
	}
	if matched < 200 || failed < 200 {
		t.Fatalf("of 20,000 random calls %d matched and %d failed: the operands miss the cases", matched, failed)
	}
}

// FuzzCIDRContainsMatches compares writ's and OPA's implementations on
// arbitrary strings in both operands.
func FuzzCIDRContainsMatches(f *testing.F) {
	for i, a := range cidrTexts {
		f.Add(a, cidrTexts[(i*7)%len(cidrTexts)])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		checkCIDRAgrees(t, ast.StringTerm(a), ast.StringTerm(b))
		checkCIDRAgrees(t, ast.SetTerm(ast.StringTerm(a), ast.StringTerm(b)), ast.ArrayTerm(ast.StringTerm(b), ast.StringTerm(a)))
	})
}
