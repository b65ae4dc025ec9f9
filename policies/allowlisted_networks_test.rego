package writ.checks.allowlisted_networks_test

import data.writ.checks.allowlisted_networks
import data.writ.test_inputs.block

# The shipped allow-list is well formed: writ would deny every block_ip
# otherwise.
test_the_allowlist_data_is_valid if {
	is_object(data.writ.config.allowlisted_networks)
	every network, reason in data.writ.config.allowlisted_networks {
		net.cidr_is_valid(network)
		is_string(reason)
	}
}

test_targets_in_allowlisted_networks_are_denied if {
	allowlisted_networks.deny == {"8.8.8.8 overlaps the allow-listed network 8.8.8.8/32 (Google Public DNS): writ never acts on allow-listed networks"} with input as block(["8.8.8.8"])
	count(allowlisted_networks.deny) == 1 with input as block(["2606:4700:4700::1111"])
}

test_prefixes_that_cover_an_allowlisted_network_are_denied if {
	allowlisted_networks.deny == {
		"8.8.0.0/16 overlaps the allow-listed network 8.8.4.4/32 (Google Public DNS): writ never acts on allow-listed networks",
		"8.8.0.0/16 overlaps the allow-listed network 8.8.8.8/32 (Google Public DNS): writ never acts on allow-listed networks",
	} with input as block(["8.8.0.0/16"])
}

test_other_targets_are_not_denied if {
	count(allowlisted_networks.deny) == 0 with input as block(["8.8.8.9", "203.0.113.7", "2001:4860:4860::8889"])
}

test_entries_come_from_data if {
	allowlisted_networks.deny == {"198.51.100.7 overlaps the allow-listed network 198.51.100.0/24 (partner VPN): writ never acts on allow-listed networks"} with input as block(["198.51.100.7"])
		with data.writ.config.allowlisted_networks as {"198.51.100.0/24": "partner VPN"}
}

test_an_allowlist_of_the_wrong_shape_denies if {
	allowlisted_networks.deny == {"data.writ.config.allowlisted_networks must map CIDR prefixes to reasons"} with input as block(["203.0.113.7"])
		with data.writ.config.allowlisted_networks as ["10.0.0.0/8"]
}

test_no_allowlist_allows if {
	count(allowlisted_networks.deny) == 0 with input as block(["8.8.8.8"])
		with data.writ.config as {}
}
