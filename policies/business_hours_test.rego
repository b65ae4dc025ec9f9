package writ.checks.business_hours_test

import data.writ.checks.business_hours
import data.writ.test_inputs.block

enabled := {"enabled": true, "timezone": "UTC", "start_hour": 8, "end_hour": 18, "weekdays": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]}

# Wednesday 2026-03-04 at 10:00 and 22:00 UTC, Saturday 2026-03-07 at 10:00 UTC.
wednesday_morning := time.parse_rfc3339_ns("2026-03-04T10:00:00Z")

wednesday_night := time.parse_rfc3339_ns("2026-03-04T22:00:00Z")

saturday_morning := time.parse_rfc3339_ns("2026-03-07T10:00:00Z")

test_outside_business_hours_needs_approval if {
	business_hours.require_approval == {"outside business hours (Monday, Tuesday, Wednesday, Thursday, Friday, 8:00 to 18:00 UTC): needs approval"} with input as block(["203.0.113.7"])
		with data.writ.config.business_hours as enabled
		with time.now_ns as wednesday_night
	count(business_hours.require_approval) == 1 with input as block(["203.0.113.7"])
		with data.writ.config.business_hours as enabled
		with time.now_ns as saturday_morning
}

test_within_business_hours_needs_none if {
	count(business_hours.require_approval) == 0 with input as block(["203.0.113.7"])
		with data.writ.config.business_hours as enabled
		with time.now_ns as wednesday_morning
}

test_the_end_hour_is_outside if {
	count(business_hours.require_approval) == 1 with input as block(["203.0.113.7"])
		with data.writ.config.business_hours as enabled
		with time.now_ns as time.parse_rfc3339_ns("2026-03-04T18:00:00Z")
}

test_off_when_not_enabled if {
	count(business_hours.require_approval) == 0 with input as block(["203.0.113.7"])
		with data.writ.config.business_hours as object.union(enabled, {"enabled": false})
		with time.now_ns as wednesday_night
}

test_the_decision_asks_for_approval_at_night if {
	d := data.writ.decision with input as block(["203.0.113.7"])
		with data.writ.config.business_hours as enabled
		with time.now_ns as wednesday_night
	{r.rule | some r in d.require_approval} == {"business_hours"}
	d.approver_roles == {"approver"}
}

test_defaults_apply_without_settings if {
	business_hours.require_approval == {"outside business hours (Monday, Tuesday, Wednesday, Thursday, Friday, 8:00 to 18:00 UTC): needs approval"} with input as block(["203.0.113.7"])
		with data.writ.config.business_hours as {"enabled": true}
		with time.now_ns as wednesday_night
}
