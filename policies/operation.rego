# The operation judged. writ judges every change to live systems on its own
# (input.operation): the apply of a playbook (it contains its targets), or a
# revert (it releases them: the playbook was deleted, an update dropped some
# of its targets, or its expiresAfter passed; input.change.type is then
# delete, update or expiry). An input without an operation is an apply.
package writ.lib.operation

# apply: the operation contains its targets (blocks, suspends, isolates).
default apply := true

apply := false if input.operation == "revert"

# revert: the operation releases its targets.
revert if input.operation == "revert"

# scheduled_expiry: the revert that the playbook's expiresAfter scheduled.
# Its time was part of the content approved for the apply.
scheduled_expiry if {
	revert
	input.change.type == "expiry"
}

# breakglass_lapsed: the revert of an emergency apply whose normal quorum
# did not come within the server's break-glass window (or that an approver
# rejected meanwhile). It undoes what ran before its approvals, so it needs
# none of its own.
breakglass_lapsed if {
	revert
	input.change.type == "breakglass"
}
