# Example of a custom check: copy this file to write your own.
#
# Outside business hours, every change needs approval: nobody should wake up
# to a block they did not see coming. A check is a package under
# writ.checks with any of deny, require_approval, approvals_required and
# approver_roles (see decision.rego). This one is off unless
# data.writ.config.business_hours.enabled is true; its test
# (business_hours_test.rego) fixes the clock with `with time.now_ns as ...`.
package writ.checks.business_hours

config := data.writ.config.business_hours

default timezone := "UTC"

timezone := config.timezone

default start_hour := 8

start_hour := config.start_hour

default end_hour := 18

end_hour := config.end_hour

default weekdays := ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]

weekdays := config.weekdays

within_business_hours if {
	now := time.now_ns()
	time.weekday([now, timezone]) in weekdays
	[hour, _, _] := time.clock([now, timezone])
	hour >= start_hour
	hour < end_hour
}

require_approval contains msg if {
	data.writ.config.business_hours.enabled == true
	not within_business_hours
	msg := sprintf("outside business hours (%v, %d:00 to %d:00 %s): needs approval", [concat(", ", weekdays), start_hour, end_hour, timezone])
}

# Approvals from these roles count for this check's approval.
approver_roles contains "approver" if data.writ.config.business_hours.enabled == true
