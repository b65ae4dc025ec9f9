# Helpers for checks on IP targets. Only standard built-ins: these policies
# run unchanged under the stock `opa test`. Every rule here is computed at
# most once per decision, whichever checks use it.
#
# Targets reach the policies validated (addresses, or prefixes without host
# bits). A target that is neither makes the built-ins below fail, and writ
# denies a decision whose evaluation fails.
#
# A playbook may hold up to 100,000 targets (spec.targetsFile). writ then
# gives the policies an index of them (input.target_index, see indexed
# below) so that the checks here decide on 100,000 targets in a fraction of
# a second; every helper gives the same answer with or without it.
package writ.lib.ip

# targets are the playbook's targets when its action takes IP addresses or
# CIDR prefixes (an array; empty for other actions).
default targets := []

targets := input.playbook.spec.targets if input.playbook.spec.action == "block_ip"

# prefixes are the targets that are CIDR prefixes rather than addresses.
prefixes := {target | some target in targets; contains(target, "/")}

# prefix_lengths maps each prefix to its number of network bits. (A
# comprehension: OPA checks every key of a partial object rule against the
# keys made before it, which grows with the square of the prefixes.)
prefix_lengths := {target: to_number(substring(target, indexof(target, "/") + 1, -1)) | some target in prefixes}

# broader_than(family, bits) are the prefixes of a family ("ipv4" or "ipv6")
# with fewer network bits than bits.
broader_than(family, bits) := found if {
	indexed
	found := {t | some n, group in input.target_index.prefixes[family]; to_number(n) < bits; some t in group}
} else := {t | some t, n in prefix_lengths; n < bits; family_of(t) == family}

family_of(t) := "ipv6" if contains(t, ":")

else := "ipv4"

# overlaps(ranges) are the pairs [target, range] of a target and an entry of
# ranges (a set of CIDR prefixes) that share addresses. Prefixes are nested
# or disjoint, so they overlap when one contains the other: ranges that
# contain a target, and ranges inside a target prefix.
#
# With the index, each range is compared with the networks that hold
# targets, and only then with the targets of the networks it overlaps;
# without it, with every target.
overlaps(ranges) := pairs if {
	indexed
	pairs := {[t, r] |
		some [network, r] in network_overlaps(ranges)
		some t in overlapping(network, ranges[r])
	}
} else := pairs if {
	# The built-in names each match by its index in each operand: an
	# array index, or the element of a set, so the pairs of prefixes (a
	# set) inside ranges are already [target, range].
	pairs := {[targets[i], r] | some [r, i] in net.cidr_contains_matches(ranges, targets)} | net.cidr_contains_matches(prefixes, ranges)
}

# indexed holds when the input carries writ's index of the IP targets,
# input.target_index, built from input.playbook.spec.targets:
#
#   networks  the targets by the network that holds them: the /8 of an
#             IPv4 target, the /16 of an IPv6 one, or the target itself
#             when it is wider; every target in exactly one network
#   prefixes  the targets that are prefixes, by family ("ipv4", "ipv6")
#             and number of network bits (as a string, e.g. "24")
#
# writ adds it to a decision of 1,000 targets or more (below, going through
# every target is faster) whose targets are all addresses or prefixes.
indexed if {
	input.playbook.spec.action == "block_ip"
	is_object(input.target_index.networks)
	is_object(input.target_index.prefixes)
}

# network_overlaps(ranges) are the pairs [network, range] of an indexed
# network and an entry of ranges that overlap (one contains the other).
network_overlaps(ranges) := {[n, r] | some [r, n] in net.cidr_contains_matches(ranges, networks)} | {[n, r] | some [n, r] in net.cidr_contains_matches(networks, ranges)}

networks := object.keys(input.target_index.networks)

# overlapping(network, cidr) are the targets of an indexed network that
# cidr contains, or that contain it.
overlapping(network, cidr) := {members[i] | some [_, i] in net.cidr_contains_matches([cidr], members)} | {t | some [t, _] in net.cidr_contains_matches(network_prefixes[network], [cidr])} if {
	members := input.target_index.networks[network]
}

# network_prefixes are the targets of each indexed network that are
# prefixes.
network_prefixes[network] := {t | some t in members; contains(t, "/")} if {
	some network, members in input.target_index.networks
}
