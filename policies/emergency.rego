# Break-glass (docs/policies.md, Emergencies): input.emergency is true for
# the apply of a playbook marked `emergency: true`. When `allowed` holds,
# the decision says so (its emergency field) and the apply may run on one
# signed break-glass statement by a holder of the break-glass role, before
# its normal approvals; it must gather them within the server's window or
# is reverted. A denial is never broken: reserved, allowlisted and
# protected targets stay denied, whatever this file says.
package writ.lib.emergency

default allowed := false

allowed if {
	input.emergency == true
	data.writ.lib.operation.apply
	input.playbook.spec.action in data.writ.config.emergency.actions
	environment_allowed
}

# Every environment, unless data.writ.config.emergency.environments names
# the ones allowed.
environment_allowed if not data.writ.config.emergency.environments

environment_allowed if input.environment.name in data.writ.config.emergency.environments
