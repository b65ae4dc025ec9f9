# Suspending an account or isolating a host stops people from working:
# these actions need approval in every environment. The list is
# data.writ.config.high_risk_actions.
package writ.checks.high_risk_actions

default actions := ["suspend_user", "isolate_host"]

actions := data.writ.config.high_risk_actions

require_approval contains msg if {
	input.playbook.spec.action in actions
	msg := sprintf("%s is a high-risk action: it needs approval", [input.playbook.spec.action])
}
