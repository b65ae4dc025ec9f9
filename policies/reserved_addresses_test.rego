package writ.checks.reserved_addresses_test

import data.writ.checks.reserved_addresses
import data.writ.test_inputs.block

denied(t) if count(reserved_addresses.deny) > 0 with input as block([t])

test_reserved_ipv4_addresses_are_denied if {
	every t in [
		"0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.255.254", "169.254.10.1",
		"224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
	] {
		denied(t)
	}
}

test_reserved_ipv6_addresses_are_denied if {
	every t in ["::", "::1", "fe80::1", "febf:ffff::1", "ff02::1", "ff05::1:3"] {
		denied(t)
	}
}

test_ipv4_mapped_loopback_is_denied if {
	denied("::ffff:127.0.0.1")
}

test_prefixes_that_include_reserved_ranges_are_denied if {
	every t in ["0.0.0.0/0", "::/0", "120.0.0.0/5", "224.0.0.0/3", "fe80::/64", "127.0.0.0/30"] {
		denied(t)
	}
}

test_the_reason_says_which_range if {
	reserved_addresses.deny == {"::1 is or includes ::1/128 (loopback, RFC 4291): reserved addresses are never blocked"} with input as block(["::1"])
	reserved_addresses.deny == {
		"0.0.0.0/0 is or includes 0.0.0.0/8 (unspecified, \"this network\", RFC 1122): reserved addresses are never blocked",
		"0.0.0.0/0 is or includes 127.0.0.0/8 (loopback, RFC 1122): reserved addresses are never blocked",
		"0.0.0.0/0 is or includes 169.254.0.0/16 (link-local, RFC 3927): reserved addresses are never blocked",
		"0.0.0.0/0 is or includes 224.0.0.0/4 (multicast, RFC 5771): reserved addresses are never blocked",
		"0.0.0.0/0 is or includes 240.0.0.0/4 (reserved, RFC 1112): reserved addresses are never blocked",
		"0.0.0.0/0 is or includes 255.255.255.255/32 (limited broadcast, RFC 919): reserved addresses are never blocked",
	} with input as block(["0.0.0.0/0"])
}

test_ordinary_addresses_are_not_denied if {
	every t in ["203.0.113.7", "198.51.100.0/24", "192.0.2.45", "2001:db8::1", "8.8.8.8", "10.0.0.1", "223.255.255.255", "1.0.0.0/8", "fec0::1"] {
		not denied(t)
	}
}

test_documentation_ranges_are_denied_when_configured if {
	every t in ["192.0.2.45", "198.51.100.0/24", "203.0.113.7", "2001:db8::1"] {
		count(reserved_addresses.deny) == 1 with input as block([t])
			with data.writ.config.reserved_addresses.include_documentation_ranges as true
	}
	count(reserved_addresses.deny) == 0 with input as block(["8.8.4.0/24"])
		with data.writ.config.reserved_addresses.include_documentation_ranges as true
}

test_other_actions_are_not_checked if {
	count(reserved_addresses.deny) == 0 with input as {"playbook": {"spec": {"action": "suspend_user", "targets": ["127.0.0.1"]}}}
}
