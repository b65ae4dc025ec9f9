# The decision writ evaluates: data.writ.decision (DESIGN §4).
#
# Every package under writ.checks is one check. A check contributes:
#   deny               a set of strings: reasons to refuse the playbook
#   require_approval   a set of strings: reasons it needs approval
#   approvals_required a number >= 1: approvals it needs when it fires
#   approver_roles     a set of role names whose approvals count
# To add a check, add a file with a new package under writ.checks (see
# business_hours.rego); this file collects it. A check of the wrong shape
# denies, so a typo can never let a playbook through.
package writ

decision := {
	"deny": deny,
	"require_approval": require_approval,
	"approvals_required": approvals_required,
	"approver_roles": approver_roles,
}

deny contains {"rule": name, "msg": msg} if {
	some name, msg
	data.writ.checks[name].deny[msg]
	is_string(msg)
}

deny contains {"rule": name, "msg": sprintf("data.writ.checks.%s.deny must be a set of strings, not %v", [name, d])} if {
	some name
	d := data.writ.checks[name].deny
	not reasons(d)
}

deny contains {"rule": name, "msg": sprintf("data.writ.checks.%s.require_approval must be a set of strings, not %v", [name, r])} if {
	some name
	r := data.writ.checks[name].require_approval
	not reasons(r)
}

deny contains {"rule": name, "msg": sprintf("data.writ.checks.%s.approvals_required must be a whole number of at least 1, not %v", [name, n])} if {
	some name
	n := data.writ.checks[name].approvals_required
	not count_at_least_one(n)
}

deny contains {"rule": name, "msg": sprintf("data.writ.checks.%s.approver_roles must be a set of role names, not %v", [name, r])} if {
	some name
	r := data.writ.checks[name].approver_roles
	not reasons(r)
}

require_approval contains {"rule": name, "msg": msg} if {
	some name, msg
	data.writ.checks[name].require_approval[msg]
	is_string(msg)
}

# fired holds the checks that asked for approval.
fired contains name if {
	some name
	count(data.writ.checks[name].require_approval) > 0
}

default approvals_required := 0

approvals_required := max({approvals(name) | some name in fired}) if count(fired) > 0

approvals(name) := n if {
	n := data.writ.checks[name].approvals_required
} else := 1

default approver_roles := set()

approver_roles := roles if {
	count(fired) > 0
	roles := {role | some name in fired; some role in data.writ.checks[name].approver_roles}
	count(roles) > 0
} else := {"approver"} if count(fired) > 0

reasons(s) if {
	is_set(s)
	every m in s {
		is_string(m)
	}
}

count_at_least_one(n) if {
	is_number(n)
	n >= 1
	n == floor(n)
}
