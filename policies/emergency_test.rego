package writ.lib.emergency_test

import data.writ
import data.writ.lib.emergency
import data.writ.test_inputs.make

office_hours := time.parse_rfc3339_ns("2026-03-04T10:00:00Z")

urgent(action, targets, environment) := object.union(make(action, targets, "critical", environment), {"emergency": true})

test_an_emergency_block_in_production_may_break_glass if {
	d := writ.decision with input as urgent("block_ip", ["203.0.113.7"], "production") with time.now_ns as office_hours
	count(d.require_approval) > 0
	d.emergency
}

test_a_playbook_not_marked_emergency_never_breaks_glass if {
	d := writ.decision with input as make("block_ip", ["203.0.113.7"], "critical", "production") with time.now_ns as office_hours
	not d.emergency
	not emergency.allowed with input as object.union(make("block_ip", ["203.0.113.7"], "critical", "production"), {"emergency": "yes"})
}

test_a_denial_is_never_broken if {
	d := writ.decision with input as urgent("block_ip", ["127.0.0.1"], "production") with time.now_ns as office_hours
	count(d.deny) > 0

	# The decision may say emergency; writ ignores it with a denial, and the
	# reserved address stays refused.
	d2 := writ.decision with input as urgent("block_ip", ["8.8.8.8/32"], "production") with time.now_ns as office_hours
	count(d2.deny) > 0
}

test_only_listed_actions_break_glass if {
	not emergency.allowed with input as urgent("notify_team", ["soc"], "production")
		with data.writ.config.emergency.actions as ["block_ip"]
	emergency.allowed with input as urgent("block_ip", ["203.0.113.7"], "production")
		with data.writ.config.emergency.actions as ["block_ip"]
}

test_environments_can_be_narrowed if {
	not emergency.allowed with input as urgent("block_ip", ["203.0.113.7"], "production")
		with data.writ.config.emergency.environments as ["staging"]
	emergency.allowed with input as urgent("block_ip", ["203.0.113.7"], "staging")
		with data.writ.config.emergency.environments as ["staging"]
}

test_a_revert_never_breaks_glass if {
	not emergency.allowed with input as object.union(urgent("block_ip", ["203.0.113.7"], "production"), {"operation": "revert", "change": {"type": "delete"}})
}
