package writ.checks.high_risk_actions_test

import data.writ.checks.high_risk_actions
import data.writ.test_inputs.make

test_high_risk_actions_need_approval if {
	high_risk_actions.require_approval == {"suspend_user is a high-risk action: it needs approval"} with input as make("suspend_user", ["j.doe@example.com"], "low", "staging")
	count(high_risk_actions.require_approval) == 1 with input as make("isolate_host", ["fin-ws-12"], "low", "staging")
}

test_block_ip_is_not_high_risk if {
	count(high_risk_actions.require_approval) == 0 with input as make("block_ip", ["203.0.113.7"], "low", "staging")
}

test_the_list_comes_from_data if {
	count(high_risk_actions.require_approval) == 1 with input as make("block_ip", ["203.0.113.7"], "low", "staging")
		with data.writ.config.high_risk_actions as ["block_ip"]
	count(high_risk_actions.require_approval) == 1 with input as make("isolate_host", ["fin-ws-12"], "low", "staging")
		with data.writ.config as {}
}
