package writ.decision_test

import data.writ
import data.writ.test_inputs.block
import data.writ.test_inputs.make

outcome(d) := "deny" if count(d.deny) > 0

else := "require_approval" if count(d.require_approval) > 0

else := "allow"

rules(reasons) := {r.rule | some r in reasons}

# The clock these tests decide at: Wednesday 2026-03-04 10:00 UTC, within
# any office's hours, so a team that enables a time-dependent check (the
# example business_hours.rego) keeps these tests true at night too.
office_hours := time.parse_rfc3339_ns("2026-03-04T10:00:00Z")

test_public_address_in_staging_is_allowed if {
	d := writ.decision with input as block(["203.0.113.7"]) with time.now_ns as office_hours
	outcome(d) == "allow"
	d.approvals_required == 0
	d.approver_roles == set()
}

test_public_address_in_production_needs_one_approval if {
	d := writ.decision with input as make("block_ip", ["203.0.113.7"], "high", "production") with time.now_ns as office_hours
	outcome(d) == "require_approval"
	rules(d.require_approval) == {"production"}
	d.approvals_required == 1
	d.approver_roles == set() # writ takes "approver"
}

test_private_address_in_staging_needs_one_approval if {
	d := writ.decision with input as make("block_ip", ["192.168.1.100"], "medium", "staging") with time.now_ns as office_hours
	outcome(d) == "require_approval"
	rules(d.require_approval) == {"private_targets"}
	d.approvals_required == 1
}

test_reserved_addresses_are_denied if {
	every t in ["127.0.0.1", "::1", "169.254.10.1", "224.0.0.1", "0.0.0.0/0"] {
		d := writ.decision with input as block([t]) with time.now_ns as office_hours
		outcome(d) == "deny"
		"reserved_addresses" in rules(d.deny)
	}
}

test_allowlisted_network_is_denied if {
	d := writ.decision with input as block(["8.8.8.8"]) with time.now_ns as office_hours
	outcome(d) == "deny"
	rules(d.deny) == {"allowlisted_networks"}
}

test_suspend_user_needs_approval_everywhere if {
	every env in ["staging", "production"] {
		d := writ.decision with input as make("suspend_user", ["j.doe@example.com"], "low", env) with time.now_ns as office_hours
		outcome(d) == "require_approval"
		"high_risk_actions" in rules(d.require_approval)
		d.approvals_required == 1
	}
}

test_suspend_protected_identity_is_denied if {
	d := writ.decision with input as make("suspend_user", ["Administrator"], "high", "staging") with time.now_ns as office_hours
	outcome(d) == "deny"
	rules(d.deny) == {"protected_targets"}
}

test_isolate_critical_in_production_needs_two_approvals if {
	d := writ.decision with input as make("isolate_host", ["fin-ws-12"], "critical", "production") with time.now_ns as office_hours
	outcome(d) == "require_approval"
	rules(d.require_approval) == {"critical_severity", "high_risk_actions", "production"}
	d.approvals_required == 2
}

test_isolate_critical_in_staging_needs_one_approval if {
	d := writ.decision with input as make("isolate_host", ["fin-ws-12"], "critical", "staging") with time.now_ns as office_hours
	outcome(d) == "require_approval"
	d.approvals_required == 1
}

# Reasons that are not strings pass through; writ refuses such a decision
# (DENY), and refuses to load a check whose deny or require_approval is not
# a set. The Go tests of internal/policy check that end.
test_reasons_that_are_not_strings_pass_through_for_writ_to_refuse if {
	d := writ.decision with input as block(["203.0.113.7"]) with time.now_ns as office_hours
		with data.writ.checks as {
			"members": {"deny": {1}, "require_approval": {{"nested": true}}},
			"numbers": {"require_approval": {"y"}, "approvals_required": -1},
		}
	d.deny == {{"rule": "members", "msg": 1}}
	d.require_approval == {{"rule": "members", "msg": {"nested": true}}, {"rule": "numbers", "msg": "y"}}
	d.approvals_required == 1
	d.approver_roles == set()
}

test_approvals_and_roles_come_from_the_checks_that_fired if {
	d := writ.decision with input as block(["203.0.113.7"]) with time.now_ns as office_hours
		with data.writ.checks as {
			"a": {"require_approval": {"a"}, "approvals_required": 3, "approver_roles": {"admin"}},
			"b": {"require_approval": {"b"}, "approver_roles": {"approver"}},
			"quiet": {"require_approval": set(), "approvals_required": 5, "approver_roles": {"viewer"}},
		}
	outcome(d) == "require_approval"
	d.approvals_required == 3
	d.approver_roles == {"admin", "approver"}
}

revert(inp, type) := object.union(inp, {"operation": "revert", "change": {"type": type}})

test_a_revert_in_production_needs_approval_like_an_apply if {
	d := writ.decision with input as revert(make("block_ip", ["203.0.113.7"], "high", "production"), "delete") with time.now_ns as office_hours
	outcome(d) == "require_approval"
	rules(d.require_approval) == {"production"}
	d.approvals_required == 1
}

test_releasing_what_an_apply_may_not_contain_is_not_denied if {
	every t in ["127.0.0.1", "8.8.8.8", "10.0.0.0/8"] {
		d := writ.decision with input as revert(block([t]), "delete") with time.now_ns as office_hours
		outcome(d) == "allow"
	}
	d := writ.decision with input as revert(make("suspend_user", ["admin@example.com"], "low", "staging"), "update") with time.now_ns as office_hours
	outcome(d) == "require_approval"
	rules(d.require_approval) == {"high_risk_actions"}
}

test_a_scheduled_expiry_needs_no_approval if {
	d := writ.decision with input as revert(make("isolate_host", ["fin-ws-12"], "critical", "production"), "expiry") with time.now_ns as office_hours
	outcome(d) == "allow"
	d.approvals_required == 0
}
