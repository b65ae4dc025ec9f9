# Helpers for checks on IP targets. Only standard built-ins: these policies
# run unchanged under the stock `opa test`.
package writ.lib.ip

# ip_actions are the actions whose targets are IP addresses or CIDR prefixes.
ip_actions := {"block_ip"}

# targets are the playbook's targets when its action takes IP targets.
targets contains target if {
	input.playbook.spec.action in ip_actions
	some target in input.playbook.spec.targets
}

# valid_targets are the IP targets that parse as an address or a prefix.
valid_targets contains target if {
	some target in targets
	is_string(target)
	net.cidr_is_valid(cidr(target))
}

# invalid_targets are the IP targets that do not.
invalid_targets contains target if {
	some target in targets
	not target in valid_targets
}

# ipv6(t) holds for IPv6 addresses and prefixes.
ipv6(t) if contains(t, ":")

# cidr(t) is t as a CIDR prefix: an address becomes a /32 or a /128.
cidr(t) := t if contains(t, "/")

cidr(t) := concat("", [t, "/32"]) if {
	not contains(t, "/")
	not ipv6(t)
}

cidr(t) := concat("", [t, "/128"]) if {
	not contains(t, "/")
	ipv6(t)
}

# prefix_length(t) is the number of network bits of a valid target.
prefix_length(t) := to_number(split(cidr(t), "/")[1])

# overlapping(ranges, t) are the entries of ranges (an object keyed by CIDR)
# that share at least one address with target t, as "cidr (why)" strings in
# sorted order.
overlapping(ranges, t) := sort([sprintf("%s (%s)", [r, why]) |
	some r, why in ranges
	net.cidr_intersects(r, cidr(t))
])
