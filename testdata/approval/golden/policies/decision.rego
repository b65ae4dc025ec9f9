# A fixed policy set for the golden approvals: every playbook needs one
# approval from an approver. (The default policies change over time; these
# do not, so the envelopes' policyDigest stays valid.)
package writ

decision := {
	"deny": set(),
	"require_approval": {"every playbook needs one approval in this fixture"},
	"approvals_required": 1,
	"approver_roles": {"approver"},
}
