# Critical severity in production: two approvers (or
# data.writ.config.critical_severity.approvals_required).
package writ.checks.critical_severity

default approvals := 2

approvals := data.writ.config.critical_severity.approvals_required

critical_in_production if {
	input.playbook.spec.severity == "critical"
	not input.environment.production == false
}

require_approval contains msg if {
	critical_in_production
	msg := sprintf("critical severity in production: %d approvers", [approvals])
}

approvals_required := approvals if critical_in_production
