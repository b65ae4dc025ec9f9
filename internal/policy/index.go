package policy

import (
	"net/netip"
	"strconv"
	"strings"
)

// indexMinTargets is how many targets an input needs before writ adds its
// target index. Below, the policies go through every target, which is
// faster when there are few (the index's extra rules cost more than they
// save: at 100 targets spread over as many networks a decision takes
// about 1.4 times as long with it, at 1,000 half as long, at 5,000 an
// eighth); the decisions are the same either way.
const indexMinTargets = 1000

// targetCount is the length of a list of targets, 0 when it is not one.
func targetCount(targets any) int {
	switch ts := targets.(type) {
	case []any:
		return len(ts)
	case []string:
		return len(ts)
	}
	return 0
}

// Bits of the networks the index groups targets by.
const (
	indexBits4 = 8
	indexBits6 = 16
)

// targetIndex is input.target_index, writ's index of the IP targets for
// data.writ.lib.ip (policies/ip.rego), built from the targets the policies
// see (input.playbook.spec.targets), in their order, when there are at
// least indexMinTargets of them:
//
//   - networks: the targets by the network that holds them, the /8 of an
//     IPv4 target and the /16 of an IPv6 one, or the target itself
//     (masked) when it is wider. A check against a few ranges compares
//     them with at most a few hundred networks, and only then with the
//     targets of the networks they overlap, instead of with every target.
//   - prefixes: the targets written as prefixes, by family ("ipv4",
//     "ipv6") and number of network bits ("24"), so that a check on prefix
//     lengths looks only at the lengths it refuses.
//
// With it, the default policies decide on 100,000 targets in a fraction of
// a second rather than past their deadline (BenchmarkDecideBulk); it says
// nothing the policies could not compute themselves, and they decide the
// same without it (TestTargetIndexDecidesAsTargets).
//
// It is nil, and the policies go through every target as before, when
// there are no targets or one of them is not an address or prefix that
// OPA's built-ins read exactly as net/netip does: anything that does not
// parse, an IPv6 zone, or an IPv4-mapped IPv6 form (OPA reads those as
// IPv4). Such a target then fails the evaluation as it always did.
func targetIndex(targets any) map[string]any {
	var list []string
	switch ts := targets.(type) {
	case []any:
		list = make([]string, 0, len(ts))
		for _, t := range ts {
			s, ok := t.(string)
			if !ok {
				return nil
			}
			list = append(list, s)
		}
	case []string:
		list = ts
	default:
		return nil
	}
	if len(list) == 0 {
		return nil
	}
	networks := map[string][]any{}
	prefixes := map[string]map[string][]any{"ipv4": {}, "ipv6": {}}
	for _, t := range list {
		network, family, bits, ok := indexOf(t)
		if !ok {
			return nil
		}
		networks[network] = append(networks[network], t)
		if bits >= 0 {
			n := strconv.Itoa(bits)
			prefixes[family][n] = append(prefixes[family][n], t)
		}
	}
	byNetwork := make(map[string]any, len(networks))
	for n, g := range networks {
		byNetwork[n] = g
	}
	byLength := make(map[string]any, 2)
	for family, groups := range prefixes {
		m := make(map[string]any, len(groups))
		for n, g := range groups {
			m[n] = g
		}
		byLength[family] = m
	}
	return map[string]any{"networks": byNetwork, "prefixes": byLength}
}

// indexOf reads one target: the network it is indexed under, its family,
// and its number of network bits when it is written as a prefix (else -1).
func indexOf(t string) (network, family string, bits int, ok bool) {
	var p netip.Prefix
	bits = -1
	if strings.Contains(t, "/") {
		var err error
		if p, err = netip.ParsePrefix(t); err != nil {
			return "", "", 0, false
		}
		bits = p.Bits()
	} else {
		a, err := netip.ParseAddr(t)
		if err != nil {
			return "", "", 0, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	if a.Zone() != "" || a.Is4In6() {
		return "", "", 0, false
	}
	width, family := indexBits6, "ipv6"
	if a.Is4() {
		width, family = indexBits4, "ipv4"
	}
	if p.Bits() < width {
		return p.Masked().String(), family, bits, true
	}
	n, err := a.Prefix(width)
	if err != nil {
		return "", "", 0, false
	}
	return n.String(), family, bits, true
}
