# Blocking internal addresses can cut off your own users and services:
# targets in private (RFC 1918), unique local (RFC 4193) or shared CGNAT
# (RFC 6598) space need approval.
package writ.checks.private_targets

import data.writ.lib.ip
import data.writ.lib.operation

ranges := {
	"10.0.0.0/8": "private, RFC 1918",
	"172.16.0.0/12": "private, RFC 1918",
	"192.168.0.0/16": "private, RFC 1918",
	"100.64.0.0/10": "shared address space (CGNAT), RFC 6598",
	"fc00::/7": "unique local, RFC 4193",
}

# Releasing an internal address needs no approval of its own (production
# still does).
require_approval contains msg if {
	operation.apply
	some [target, r] in ip.overlaps(object.keys(ranges))
	msg := sprintf("%s is in %s (%s): blocking internal addresses needs approval", [target, r, ranges[r]])
}
