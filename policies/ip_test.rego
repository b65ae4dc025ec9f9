package writ.lib.ip_test

import data.writ.lib.ip
import data.writ.test_inputs.block
import data.writ.test_inputs.make

test_prefixes_and_their_lengths if {
	ip.prefixes == {"2001:db8::/32", "10.0.0.0/8"} with input as block(["203.0.113.7", "2001:db8::/32", "10.0.0.0/8", "2001:db8::1"])
	ip.prefix_lengths == {"2001:db8::/32": 32, "10.0.0.0/8": 8} with input as block(["203.0.113.7", "2001:db8::/32", "10.0.0.0/8"])
}

test_only_ip_actions_have_ip_targets if {
	ip.targets == [] with input as make("suspend_user", ["10.0.0.1"], "low", "staging")
	ip.targets == ["10.0.0.1"] with input as block(["10.0.0.1"])
}

test_overlaps_pairs_targets_with_ranges_both_ways if {
	ip.overlaps({"10.0.0.0/8", "0.0.0.0/0", "192.168.0.0/16", "10.1.2.0/24", "::/0"}) == {
		["10.1.0.0/16", "10.0.0.0/8"], ["10.1.0.0/16", "0.0.0.0/0"], ["10.1.0.0/16", "10.1.2.0/24"],
		["2001:db8::1", "::/0"], ["203.0.113.7/32", "0.0.0.0/0"],
	} with input as block(["10.1.0.0/16", "2001:db8::1", "203.0.113.7/32"])
}

test_overlaps_of_an_array_gives_indices if {
	ip.overlaps(["192.0.2.0/24", "203.0.113.0/24"]) == {["203.0.113.7", 1]} with input as block(["203.0.113.7"])
}

test_no_overlap_across_families if {
	count(ip.overlaps({"::/0"})) == 0 with input as block(["0.0.0.0/0"])
	count(ip.overlaps({"0.0.0.0/0"})) == 0 with input as block(["::/0"])
}

# The index writ adds (input.target_index) gives the same answers as going
# through every target.
with_index(inp, networks, prefixes) := object.union(inp, {"target_index": {"networks": networks, "prefixes": prefixes}})

mixed := ["10.1.0.0/16", "2001:db8::1", "203.0.113.7/32", "8.0.0.0/6", "10.1.2.3"]

mixed_index := with_index(
	block(mixed),
	{
		"10.0.0.0/8": ["10.1.0.0/16", "10.1.2.3"], "2001::/16": ["2001:db8::1"],
		"203.0.0.0/8": ["203.0.113.7/32"], "8.0.0.0/6": ["8.0.0.0/6"],
	},
	{"ipv4": {"16": ["10.1.0.0/16"], "32": ["203.0.113.7/32"], "6": ["8.0.0.0/6"]}, "ipv6": {}},
)

test_the_index_is_used_only_when_complete if {
	ip.indexed with input as mixed_index
	not ip.indexed with input as block(mixed)
	not ip.indexed with input as object.union(block(mixed), {"target_index": {"networks": {}}})
	not ip.indexed with input as object.union(mixed_index, {"playbook": {"spec": {"action": "suspend_user"}}})
}

test_overlaps_with_and_without_the_index if {
	ranges := {"10.0.0.0/8", "0.0.0.0/0", "192.168.0.0/16", "10.1.2.0/24", "::/0", "8.8.8.8/32", "2001:db8::/32"}
	want := {
		["10.1.0.0/16", "10.0.0.0/8"], ["10.1.0.0/16", "0.0.0.0/0"], ["10.1.0.0/16", "10.1.2.0/24"],
		["10.1.2.3", "10.0.0.0/8"], ["10.1.2.3", "0.0.0.0/0"], ["10.1.2.3", "10.1.2.0/24"],
		["2001:db8::1", "::/0"], ["2001:db8::1", "2001:db8::/32"], ["203.0.113.7/32", "0.0.0.0/0"],
		["8.0.0.0/6", "0.0.0.0/0"], ["8.0.0.0/6", "8.8.8.8/32"], ["8.0.0.0/6", "10.0.0.0/8"],
		["8.0.0.0/6", "10.1.2.0/24"],
	}
	ip.overlaps(ranges) == want with input as mixed_index
	ip.overlaps(ranges) == want with input as block(mixed)
}

test_broader_than_with_and_without_the_index if {
	ip.broader_than("ipv4", 16) == {"8.0.0.0/6"} with input as mixed_index
	ip.broader_than("ipv4", 16) == {"8.0.0.0/6"} with input as block(mixed)
	ip.broader_than("ipv4", 17) == {"8.0.0.0/6", "10.1.0.0/16"} with input as mixed_index
	ip.broader_than("ipv4", 17) == {"8.0.0.0/6", "10.1.0.0/16"} with input as block(mixed)
	ip.broader_than("ipv6", 128) == set() with input as mixed_index
	ip.broader_than("ipv6", 128) == set() with input as block(mixed)
}
