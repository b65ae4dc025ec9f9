# Never block reserved addresses: blocking loopback, unspecified, link-local,
# multicast or broadcast addresses breaks the hosts doing the blocking and
# never stops an attacker. Documentation-only ranges are refused too when
# data.writ.config.reserved_addresses.include_documentation_ranges is true.
package writ.checks.reserved_addresses

import data.writ.lib.ip
import data.writ.lib.operation

# ranges are the IANA special-purpose ranges (RFC 6890) that must never be
# blocked. They are fixed here, not in data, on purpose.
ranges := {
	"0.0.0.0/8": "unspecified, \"this network\", RFC 1122",
	"127.0.0.0/8": "loopback, RFC 1122",
	"169.254.0.0/16": "link-local, RFC 3927",
	"224.0.0.0/4": "multicast, RFC 5771",
	"240.0.0.0/4": "reserved, RFC 1112",
	"255.255.255.255/32": "limited broadcast, RFC 919",
	"::/128": "unspecified, RFC 4291",
	"::1/128": "loopback, RFC 4291",
	"fe80::/10": "link-local, RFC 4291",
	"ff00::/8": "multicast, RFC 4291",
}

documentation_ranges := {
	"192.0.2.0/24": "documentation TEST-NET-1, RFC 5737",
	"198.51.100.0/24": "documentation TEST-NET-2, RFC 5737",
	"203.0.113.0/24": "documentation TEST-NET-3, RFC 5737",
	"2001:db8::/32": "documentation, RFC 3849",
}

include_documentation if {
	data.writ.config.reserved_addresses.include_documentation_ranges == true
}

# refused are the ranges refused, and why.
refused := object.union(ranges, documentation_ranges) if include_documentation

else := ranges

# Releasing an address is never refused: reverts are not checked here.
deny contains msg if {
	operation.apply
	some [target, r] in ip.overlaps(object.keys(refused))
	msg := sprintf("%s is or includes %s (%s): reserved addresses are never blocked", [target, r, refused[r]])
}
