package writ.checks.target_scope_test

import data.writ.checks.target_scope
import data.writ.test_inputs.block
import data.writ.test_inputs.make

test_wide_ipv4_prefixes_are_denied if {
	target_scope.deny == {"10.0.0.0/15 is too broad: IPv4 prefixes must be /16 or narrower"} with input as block(["10.0.0.0/15"])
	count(target_scope.deny) == 1 with input as block(["0.0.0.0/0"])
}

test_wide_ipv6_prefixes_are_denied if {
	target_scope.deny == {"2001:db8::/47 is too broad: IPv6 prefixes must be /48 or narrower"} with input as block(["2001:db8::/47"])
}

test_narrow_enough_prefixes_are_not_denied if {
	count(target_scope.deny) == 0 with input as block(["10.0.0.0/16", "2001:db8::/48", "203.0.113.7", "2001:db8::1"])
}

test_prefix_limits_come_from_data if {
	count(target_scope.deny) == 1 with input as block(["10.0.0.0/16"])
		with data.writ.config.target_scope.min_prefix_length.ipv4 as 24
	count(target_scope.deny) == 0 with input as block(["10.0.0.0/15"])
		with data.writ.config.target_scope as {}
		with data.writ.config.target_scope.min_prefix_length as {"ipv4": 8}
}

test_defaults_apply_without_data if {
	count(target_scope.deny) == 1 with input as block(["10.0.0.0/15"])
		with data.writ.config as {}
}

test_too_many_targets_are_denied if {
	hosts := [sprintf("host-%d", [i]) | some i in numbers.range(1, 11)]
	target_scope.deny == {"11 targets is more than the limit of 10 for isolate_host: split the playbook"} with input as make("isolate_host", hosts, "low", "staging")
	count(target_scope.deny) == 0 with input as make("isolate_host", array.slice(hosts, 0, 10), "low", "staging")
}

test_the_default_limit_applies_to_other_actions if {
	addresses := [sprintf("203.0.113.%d", [i]) | some i in numbers.range(1, 101)]
	target_scope.deny == {"101 targets is more than the limit of 100 for block_ip: split the playbook"} with input as block(addresses)
}

test_no_targets_are_denied if {
	target_scope.deny == {"the playbook has no targets"} with input as block([])
	target_scope.deny == {"the playbook has no targets"} with input as {"playbook": {"spec": {"action": "isolate_host"}}}
	target_scope.deny == {"101 targets is more than the limit of 100 for (no action): split the playbook"} with input as {"playbook": {"spec": {"targets": numbers.range(1, 101)}}}
}

from_file(targets) := object.union(block(targets), {"playbook": {"spec": {"targetsFile": "indicators/feed.txt"}}})

test_a_targets_file_has_its_own_limit if {
	addresses := [sprintf("203.0.113.%d", [i]) | some i in numbers.range(1, 150)]
	count(target_scope.deny) == 0 with input as from_file(addresses)
	target_scope.deny == {"150 targets is more than the limit of 120 for a targets file (indicators/feed.txt): split the list"} with input as from_file(addresses)
		with data.writ.config.target_scope.max_file_targets as 120
	count(target_scope.deny) == 0 with input as from_file(addresses)
		with data.writ.config.target_scope as {}
}

test_prefixes_from_a_targets_file_are_checked_too if {
	target_scope.deny == {"10.0.0.0/15 is too broad: IPv4 prefixes must be /16 or narrower"} with input as from_file(["203.0.113.7", "10.0.0.0/15"])
}
