package policy

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// writ evaluates net.cidr_contains_matches with an implementation of its
// own that answers exactly what OPA's does, faster. The default policies
// compare every IP target with three lists of ranges in both directions
// (reserved, private and allow-listed networks: ip.rego's overlaps), and
// OPA's implementation parses both strings of every pair it compares: a
// decision of two targets parsed well over a hundred strings, the largest
// single cost of a decision after the evaluator itself (docs/policies.md,
// Performance). Here each string of a call is parsed once, and the first
// strings seen (the policies' ranges among them) stay parsed.
//
// It is only ever a faster route to the same answer: when an operand holds
// anything but strings that parse (a number, an empty array, a string that
// is not an address or prefix), the call goes to OPA's own implementation,
// so that every error, and every result of an input OPA would not fail
// on, is OPA's to the letter. TestCIDRContainsMatchesAgreesWithOPA and
// FuzzCIDRContainsMatches compare the two. The policies stay stock Rego:
// `opa test` runs them with OPA's implementation and decides the same.
var stockCIDRContainsMatches = topdown.GetBuiltin(ast.NetCIDRContainsMatches.Name)

func init() {
	if stockCIDRContainsMatches == nil {
		// OPA registers its built-ins in topdown's init, which runs
		// before this one; without it there is nothing to be faster than.
		return
	}
	topdown.RegisterBuiltinFunc(ast.NetCIDRContainsMatches.Name, cidrContainsMatches)
}

// cidrEntry is one element of an operand: the CIDR or address it names,
// and the term that stands for it in the result (the string itself, an
// array index, a set element or an object key), as OPA iterates them.
type cidrEntry struct {
	text  string
	index *ast.Term
}

// cidrEntryText is the string an element of an operand names: the
// element itself, or the first element of an array. ok is false for
// anything else, which only OPA's implementation answers.
func cidrEntryText(x *ast.Term) (string, bool) {
	switch v := x.Value.(type) {
	case ast.String:
		return string(v), true
	case *ast.Array:
		if v.Len() == 0 {
			return "", false
		}
		s, ok := v.Elem(0).Value.(ast.String)
		return string(s), ok
	}
	return "", false
}

// appendCIDREntries appends an operand's entries to dst as OPA's
// evalNetCIDRContainsMatchesOperand visits them (a string; an array, set
// or object of strings or of non-empty arrays whose first element is the
// string). ok is false when an entry is not a string: only OPA's
// implementation says what then.
func appendCIDREntries(dst []cidrEntry, t *ast.Term) (entries []cidrEntry, ok bool) {
	switch v := t.Value.(type) {
	case ast.String:
		return append(dst, cidrEntry{string(v), t}), true
	case *ast.Array:
		for i := range v.Len() {
			s, ok := cidrEntryText(v.Elem(i))
			if !ok {
				return dst, false
			}
			dst = append(dst, cidrEntry{s, ast.InternedTerm(i)})
		}
		return dst, true
	case ast.Set:
		for _, x := range v.Slice() {
			s, ok := cidrEntryText(x)
			if !ok {
				return dst, false
			}
			dst = append(dst, cidrEntry{s, x})
		}
		return dst, true
	case ast.Object:
		ok = true
		v.Foreach(func(k, x *ast.Term) {
			s, good := cidrEntryText(x)
			ok = ok && good
			dst = append(dst, cidrEntry{s, k})
		})
		return dst, ok
	}
	// OPA iterates nothing of any other value: no pair, no error.
	return dst, true
}

// cidrScratch holds a call's entries and parsed targets; calls reuse
// them (cidrScratchPool) instead of allocating them in every decision.
type cidrScratch struct {
	ranges, targets []cidrEntry
	parsed          []cidrTarget
}

var cidrScratchPool = sync.Pool{New: func() any { return new(cidrScratch) }}

// release clears what the scratch points to and returns it to the pool,
// unless a call of many targets grew it: those are not kept.
func (sc *cidrScratch) release() {
	if cap(sc.targets) > 4096 || cap(sc.ranges) > 4096 {
		return
	}
	clear(sc.ranges)
	clear(sc.targets)
	clear(sc.parsed)
	sc.ranges, sc.targets, sc.parsed = sc.ranges[:0], sc.targets[:0], sc.parsed[:0]
	cidrScratchPool.Put(sc)
}

// cidrTarget is a parsed entry of the second operand: an address, or a
// network with its last address.
type cidrTarget struct {
	ip     net.IP
	net    *net.IPNet
	last   net.IP
	plain6 bool
}

// parsedCIDRs keeps what strings parsed to, for the ranges that every
// decision compares (the policies' lists) not to be parsed in each. It
// holds the first maxParsedCIDRs strings seen that parse, so the lists
// compared in every decision are among them; strings seen later (or a
// repository's targets that filled it first) are parsed in each call, as
// before: slower, never different.
var (
	parsedCIDRs    sync.Map // string -> cidrTarget
	parsedCIDRsLen atomic.Int64
)

const (
	maxParsedCIDRs   = 4096
	maxParsedCIDRLen = 64 // the longest address or prefix, with leading zeros, is 49
)

// parseCIDRCached is parseCIDRTarget through parsedCIDRs. The values
// are shared: nothing modifies a parsed address or network.
func parseCIDRCached(s string) (cidrTarget, bool) {
	if v, ok := parsedCIDRs.Load(s); ok {
		return v.(cidrTarget), true
	}
	t, ok := parseCIDRTarget(s)
	// Only what parsed is kept: an address or prefix is short, while a
	// string that is neither may be as long as a playbook.
	if ok && len(s) <= maxParsedCIDRLen && parsedCIDRsLen.Load() < maxParsedCIDRs {
		if _, loaded := parsedCIDRs.LoadOrStore(s, t); !loaded {
			parsedCIDRsLen.Add(1)
		}
	}
	return t, ok
}

// parseCIDRTarget parses s as OPA's net.cidr_contains parses its second
// operand: an address first, else a CIDR prefix. A string is one or the
// other, never both: an address has no "/", a prefix has one.
func parseCIDRTarget(s string) (cidrTarget, bool) {
	if ip := net.ParseIP(s); ip != nil {
		return cidrTarget{ip: ip}, true
	}
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		return cidrTarget{}, false
	}
	// The last address: the network's with every host bit set (OPA
	// computes the same with big integers; net.ParseCIDR's address and
	// mask always have the same length).
	last := make(net.IP, len(n.IP))
	for i := range last {
		last[i] = n.IP[i] | ^n.Mask[i]
	}
	return cidrTarget{net: n, last: last, plain6: isPlainIPv6Net(n)}, true
}

// isPlainIPv6Net is OPA's: an IPv6 network that is not IPv4-mapped.
func isPlainIPv6Net(n *net.IPNet) bool {
	return len(n.IP) == net.IPv6len && len(n.Mask) == net.IPv6len && n.IP.To4() == nil
}

// contains is OPA's net.cidr_contains(a, b) on parsed operands.
func (b cidrTarget) containedIn(a *net.IPNet, aPlain6 bool) bool {
	if b.ip != nil {
		return a.Contains(b.ip)
	}
	if aPlain6 && b.plain6 {
		aOnes, _ := a.Mask.Size()
		bOnes, _ := b.net.Mask.Size()
		return aOnes <= bOnes && a.IP.Equal(b.net.IP.Mask(a.Mask))
	}
	return a.Contains(b.net.IP) && a.Contains(b.last)
}

// cidrContainsMatches is net.cidr_contains_matches(cidrs, cidrs_or_ips):
// the set of [i, j] where entry i of the first operand contains entry j
// of the second.
func cidrContainsMatches(bctx topdown.BuiltinContext, operands []*ast.Term, iter func(*ast.Term) error) error {
	result, ok := cidrMatches(operands)
	if !ok {
		return stockCIDRContainsMatches(bctx, operands, iter)
	}
	return iter(ast.NewTerm(result))
}

// cidrMatches computes the result, or says that only OPA's
// implementation may answer these operands.
func cidrMatches(operands []*ast.Term) (ast.Set, bool) {
	sc := cidrScratchPool.Get().(*cidrScratch)
	defer sc.release()
	var ok1, ok2 bool
	sc.ranges, ok1 = appendCIDREntries(sc.ranges[:0], operands[0])
	sc.targets, ok2 = appendCIDREntries(sc.targets[:0], operands[1])
	if !ok1 || !ok2 {
		return nil, false
	}
	result := ast.NewSet()
	if len(sc.ranges) == 0 || len(sc.targets) == 0 {
		return result, true
	}
	for _, t := range sc.targets {
		p, ok := parseCIDRCached(t.text)
		if !ok {
			return nil, false
		}
		sc.parsed = append(sc.parsed, p)
	}
	for _, r := range sc.ranges {
		// The first operand is read as a prefix only (net.ParseCIDR).
		rp, ok := parseCIDRCached(r.text)
		if !ok || rp.net == nil {
			return nil, false
		}
		for j, t := range sc.parsed {
			if t.containedIn(rp.net, rp.plain6) {
				result.Add(ast.ArrayTerm(r.index, sc.targets[j].index))
			}
		}
	}
	return result, true
}
