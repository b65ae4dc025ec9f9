package writ.checks.protected_targets_test

import data.writ.checks.protected_targets
import data.writ.test_inputs.make

suspend(targets) := make("suspend_user", targets, "high", "staging")

isolate(targets) := make("isolate_host", targets, "high", "staging")

test_protected_identities_are_denied if {
	protected_targets.deny == {"Administrator is a protected identity (matches \"administrator\"): writ never acts on it"} with input as suspend(["Administrator"])
	count(protected_targets.deny) == 1 with input as suspend(["break-glass-01"])
	count(protected_targets.deny) == 1 with input as suspend(["j.doe@Security.Example.com"])
}

test_other_identities_are_not_denied if {
	count(protected_targets.deny) == 0 with input as suspend(["j.doe@example.com", "rooted", "svc-backup"])
}

test_protected_hosts_are_denied if {
	protected_targets.deny == {"dc01.corp.example.com is a protected host (matches \"dc*.corp.example.com\"): writ never acts on it"} with input as isolate(["dc01.corp.example.com"])
	count(protected_targets.deny) == 1 with input as isolate(["SIEM-collector-2"])
}

test_other_hosts_are_not_denied if {
	count(protected_targets.deny) == 0 with input as isolate(["fin-ws-12"])
}

test_lists_are_per_action if {
	count(protected_targets.deny) == 0 with input as isolate(["root"])
	count(protected_targets.deny) == 0 with input as make("block_ip", ["root"], "low", "staging")
}

test_malformed_entries_deny if {
	protected_targets.deny == {"the protected identity list has an entry that is not a string at index 1: 7"} with input as suspend(["j.doe@example.com"])
		with data.writ.config.protected_identities as ["root", 7]
}
