# Refuse playbooks that reach too far: prefixes wider than /16 (IPv4) or /48
# (IPv6), more targets than the action's limit, or no targets at all.
# Limits live in data.writ.config.target_scope; the defaults below apply
# when it is missing.
package writ.checks.target_scope

import data.writ.lib.ip
import data.writ.lib.operation

default min_prefix_ipv4 := 16

min_prefix_ipv4 := data.writ.config.target_scope.min_prefix_length.ipv4

default min_prefix_ipv6 := 48

min_prefix_ipv6 := data.writ.config.target_scope.min_prefix_length.ipv6

# Scope limits what one playbook may contain; releasing is not limited.

default max_targets := 100

max_targets := n if {
	n := data.writ.config.target_scope.max_targets[input.playbook.spec.action]
} else := n if {
	n := data.writ.config.target_scope.max_targets.default
}

deny contains msg if {
	operation.apply
	some target, n in ip.prefix_lengths
	n < min_prefix_ipv4
	not contains(target, ":")
	msg := sprintf("%s is too broad: IPv4 prefixes must be /%d or narrower", [target, min_prefix_ipv4])
}

deny contains msg if {
	operation.apply
	some target, n in ip.prefix_lengths
	n < min_prefix_ipv6
	contains(target, ":")
	msg := sprintf("%s is too broad: IPv6 prefixes must be /%d or narrower", [target, min_prefix_ipv6])
}

deny contains msg if {
	operation.apply
	n := count(input.playbook.spec.targets)
	n > max_targets
	msg := sprintf("%d targets is more than the limit of %d for %v: split the playbook", [n, max_targets, object.get(input.playbook.spec, "action", "(no action)")])
}

deny contains "the playbook has no targets" if {
	not input.playbook.spec.targets[0]
}
