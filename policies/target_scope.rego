# Refuse playbooks that reach too far: prefixes wider than /16 (IPv4) or /48
# (IPv6), more targets than the action's limit, no targets at all, or IP
# targets that do not parse. Limits live in data.writ.config.target_scope;
# the defaults below apply when it is missing.
package writ.checks.target_scope

import data.writ.lib.ip

config := object.get(data.writ.config, "target_scope", {})

min_prefix_ipv4 := object.get(config, ["min_prefix_length", "ipv4"], 16)

min_prefix_ipv6 := object.get(config, ["min_prefix_length", "ipv6"], 48)

action := a if {
	a := input.playbook.spec.action
} else := "(no action)"

max_targets := object.get(config, ["max_targets", action], object.get(config, ["max_targets", "default"], 100))

deny contains msg if {
	some target in ip.valid_targets
	not ip.ipv6(target)
	ip.prefix_length(target) < min_prefix_ipv4
	msg := sprintf("%s is too broad: IPv4 prefixes must be /%d or narrower", [target, min_prefix_ipv4])
}

deny contains msg if {
	some target in ip.valid_targets
	ip.ipv6(target)
	ip.prefix_length(target) < min_prefix_ipv6
	msg := sprintf("%s is too broad: IPv6 prefixes must be /%d or narrower", [target, min_prefix_ipv6])
}

deny contains msg if {
	some target in ip.invalid_targets
	msg := sprintf("%v is not an IP address or CIDR prefix", [target])
}

deny contains msg if {
	n := count(input.playbook.spec.targets)
	n > max_targets
	msg := sprintf("%d targets is more than the limit of %d for %s: split the playbook", [n, max_targets, action])
}

deny contains "the playbook has no targets" if {
	count(object.get(input.playbook.spec, "targets", [])) == 0
}
