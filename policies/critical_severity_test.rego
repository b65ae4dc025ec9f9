package writ.checks.critical_severity_test

import data.writ.checks.critical_severity
import data.writ.test_inputs.make

test_critical_in_production_needs_two_approvals if {
	critical_severity.require_approval == {"critical severity in production: 2 approvers"} with input as make("isolate_host", ["fin-ws-12"], "critical", "production")
	critical_severity.approvals_required == 2 with input as make("isolate_host", ["fin-ws-12"], "critical", "production")
}

test_the_count_comes_from_data if {
	critical_severity.approvals_required == 3 with input as make("block_ip", ["203.0.113.7"], "critical", "production")
		with data.writ.config.critical_severity.approvals_required as 3
}

test_critical_in_staging_or_high_in_production_do_not if {
	count(critical_severity.require_approval) == 0 with input as make("isolate_host", ["fin-ws-12"], "critical", "staging")
	count(critical_severity.require_approval) == 0 with input as make("isolate_host", ["fin-ws-12"], "high", "production")
	not critical_severity.approvals_required with input as make("isolate_host", ["fin-ws-12"], "high", "production")
}

test_two_approvers_without_data if {
	critical_severity.approvals_required == 2 with input as make("isolate_host", ["fin-ws-12"], "critical", "production")
		with data.writ.config as {}
}
