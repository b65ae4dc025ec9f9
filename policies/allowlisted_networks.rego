# Never act on allow-listed networks (data.writ.config.allowlisted_networks,
# CIDR prefix: reason): your own egress, VPN and monitoring ranges, partners,
# the resolvers your hosts depend on. A target that overlaps an entry is
# refused.
#
# An entry that is not a CIDR prefix makes every block_ip decision fail in
# writ, which denies; allowlisted_networks_test.rego checks the data so CI
# says so first.
package writ.checks.allowlisted_networks

import data.writ.lib.ip
import data.writ.lib.operation

default entries := {}

entries := data.writ.config.allowlisted_networks

# Releasing an allow-listed network is what the list wants: reverts are not
# checked here.
deny contains msg if {
	operation.apply
	is_object(entries)
	some [target, network] in ip.overlaps(object.keys(entries))
	msg := sprintf("%s overlaps the allow-listed network %s (%s): writ never acts on allow-listed networks", [target, network, entries[network]])
}

deny contains "data.writ.config.allowlisted_networks must map CIDR prefixes to reasons" if {
	not is_object(entries)
	count(ip.targets) > 0
}
