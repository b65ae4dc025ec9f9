package policy

import "slices"

// IndexEvery makes s add the target index to every input with targets, so
// that tests compare the index with going through every target on small
// inputs too.
func IndexEvery(s *Set) { s.indexMin = 1 }

// CIDRContainsMatches is writ's net.cidr_contains_matches, and
// StockCIDRContainsMatches OPA's, for tests that compare them.
var (
	CIDRContainsMatches      = cidrContainsMatches
	StockCIDRContainsMatches = stockCIDRContainsMatches
)

// ConstantRules lists the rules s evaluated when it loaded, by path.
func ConstantRules(s *Set) []string {
	var out []string
	for _, cs := range s.constants {
		for _, c := range cs {
			out = append(out, c.ref.String())
		}
	}
	slices.Sort(out)
	return out
}
