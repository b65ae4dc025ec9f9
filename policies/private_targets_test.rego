package writ.checks.private_targets_test

import data.writ.checks.private_targets
import data.writ.test_inputs.block

test_private_targets_need_approval if {
	every t in ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.100", "100.64.0.1", "100.127.255.254", "fc00::1", "fd12:3456::1", "10.0.0.0/16"] {
		count(private_targets.require_approval) == 1 with input as block([t])
	}
}

test_the_reason_names_the_range if {
	private_targets.require_approval == {"192.168.1.100 is in 192.168.0.0/16 (private, RFC 1918): blocking internal addresses needs approval"} with input as block(["192.168.1.100"])
}

test_public_targets_need_no_approval if {
	every t in ["203.0.113.7", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2001:db8::1", "fe00::1"] {
		count(private_targets.require_approval) == 0 with input as block([t])
	}
}
