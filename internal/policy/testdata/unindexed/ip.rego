# Helpers for checks on IP targets. Only standard built-ins: these policies
# run unchanged under the stock `opa test`. Every rule here is computed at
# most once per decision, whichever checks use it.
#
# Targets reach the policies validated (addresses, or prefixes without host
# bits). A target that is neither makes the built-ins below fail, and writ
# denies a decision whose evaluation fails.
package writ.lib.ip

# targets are the playbook's targets when its action takes IP addresses or
# CIDR prefixes (an array; empty for other actions).
default targets := []

targets := input.playbook.spec.targets if input.playbook.spec.action == "block_ip"

# prefixes are the targets that are CIDR prefixes rather than addresses.
prefixes := {target | some target in targets; contains(target, "/")}

# prefix_lengths maps each prefix to its number of network bits.
prefix_lengths[target] := to_number(substring(target, indexof(target, "/") + 1, -1)) if some target in prefixes

# overlaps(ranges) are the pairs [target, range] of a target and an entry of
# ranges (a set of CIDR prefixes) that share addresses. Prefixes are nested
# or disjoint, so they overlap when one contains the other: ranges that
# contain a target, and ranges inside a target prefix. The built-in pairs
# them in one call each way.
overlaps(ranges) := {[targets[i], r] | some [r, i] in net.cidr_contains_matches(ranges, targets)} | {[t, r] | some [t, r] in net.cidr_contains_matches(prefixes, ranges)}
