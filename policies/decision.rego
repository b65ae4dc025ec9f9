# The decision writ evaluates: data.writ.decision (docs/policies.md).
#
# Every package under writ.checks is one check. A check may define:
#   deny               deny contains msg if ...: reasons to refuse the playbook
#   require_approval   require_approval contains msg if ...: reasons it needs
#                      approval
#   approvals_required approvals_required := n if ...: approvals it needs when
#                      it asks for approval (default 1)
#   approver_roles     approver_roles contains role if ...: roles whose
#                      approvals count (none named: writ takes "approver")
# To add a check, add a file with a new package under writ.checks (see
# business_hours.rego): this file collects it. emergency says whether an
# apply marked emergency may break glass (emergency.rego). Checks see the operation
# judged in input.operation (apply or revert; see operation.rego): the
# built-in deny checks guard what an apply may contain, and the checks
# asking for approval ask it of reverts too (production, high-risk
# actions, critical severity; private targets only of applies), except
# for the revert a playbook's expiresAfter scheduled (see below). writ
# refuses to load a check whose rules have another form, and denies when a
# reason is not a string or a count not a whole number, so a slip cannot
# let a playbook through. Why each operation is judged on its own:
# docs/design.md.
package writ

decision := {
	"deny": deny,
	"require_approval": require_approval,
	"approvals_required": approvals_required,
	"approver_roles": approver_roles,
	"emergency": data.writ.lib.emergency.allowed,
}

deny contains {"rule": name, "msg": msg} if {
	some name, msg
	data.writ.checks[name].deny[msg]
}

# A revert that expiresAfter scheduled was approved with its apply (the
# expiry is part of the approved content): it needs no approval of its own;
# nor does the revert of an emergency apply whose approvals did not come in
# time (break-glass, emergency.rego). Every other operation, apply or
# revert, asks every check.
require_approval contains {"rule": name, "msg": msg} if {
	not data.writ.lib.operation.scheduled_expiry
	not data.writ.lib.operation.breakglass_lapsed
	some name, msg
	data.writ.checks[name].require_approval[msg]
}

default approvals_required := 0

approvals_required := max({1} | {n | some r in require_approval; n := data.writ.checks[r.rule].approvals_required}) if count(require_approval) > 0

# approver_roles are the roles the checks asking for approval name; when
# none does, writ takes "approver".
approver_roles := {role | some r in require_approval; some role in data.writ.checks[r.rule].approver_roles}
