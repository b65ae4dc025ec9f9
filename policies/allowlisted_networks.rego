# Never act on allow-listed networks (data.writ.config.allowlisted_networks):
# your own egress, VPN and monitoring ranges, partners, the resolvers your
# hosts depend on. A target that overlaps an entry is refused.
package writ.checks.allowlisted_networks

import data.writ.lib.ip

entries := object.get(data.writ.config, "allowlisted_networks", [])

deny contains msg if {
	some target in ip.valid_targets
	some entry in entries
	valid_entry(entry)
	net.cidr_intersects(entry.cidr, ip.cidr(target))
	msg := sprintf("%s overlaps the allow-listed network %s (%s): writ never acts on allow-listed networks", [target, entry.cidr, object.get(entry, "reason", "no reason given")])
}

# A malformed entry refuses every IP playbook: an allow-list that cannot be
# read must not silently stop protecting anything.
deny contains msg if {
	count(ip.targets) > 0
	some i, entry in entries
	not valid_entry(entry)
	msg := sprintf("data.writ.config.allowlisted_networks[%d] is not {cidr: <CIDR prefix>, reason: <text>}: %v", [i, entry])
}

valid_entry(entry) if {
	is_string(entry.cidr)
	net.cidr_is_valid(entry.cidr)
}
