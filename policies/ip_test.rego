package writ.lib.ip_test

import data.writ.lib.ip
import data.writ.test_inputs.block
import data.writ.test_inputs.make

test_cidr_of_addresses_and_prefixes if {
	ip.cidr("203.0.113.7") == "203.0.113.7/32"
	ip.cidr("2001:db8::1") == "2001:db8::1/128"
	ip.cidr("198.51.100.0/24") == "198.51.100.0/24"
}

test_prefix_length if {
	ip.prefix_length("203.0.113.7") == 32
	ip.prefix_length("2001:db8::/32") == 32
	ip.prefix_length("10.0.0.0/8") == 8
}

test_targets_split_into_valid_and_invalid if {
	ip.valid_targets == {"203.0.113.7", "2001:db8::/48"} with input as block(["203.0.113.7", "2001:db8::/48", "not-an-ip", 42])
	ip.invalid_targets == {"not-an-ip", 42} with input as block(["203.0.113.7", "2001:db8::/48", "not-an-ip", 42])
}

test_only_ip_actions_have_ip_targets if {
	count(ip.targets) == 0 with input as make("suspend_user", ["10.0.0.1"], "low", "staging")
}

test_overlapping_is_sorted if {
	ip.overlapping({"10.0.0.0/8": "b", "0.0.0.0/0": "a", "192.168.0.0/16": "c"}, "10.1.0.0/16") == ["0.0.0.0/0 (a)", "10.0.0.0/8 (b)"]
}
