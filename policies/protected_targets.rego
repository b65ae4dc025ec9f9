# Never act on protected identities or hosts: break-glass and service
# accounts, domain controllers, the security tooling itself. The lists are
# glob patterns in data.writ.config.protected_identities (for suspend_user)
# and data.writ.config.protected_hosts (for isolate_host), matched without
# regard to case.
package writ.checks.protected_targets

import data.writ.lib.operation

lists := {
	"suspend_user": ["identity", "protected_identities"],
	"isolate_host": ["host", "protected_hosts"],
}

# Releasing a protected identity or host is never refused: reverts are not
# checked here.
deny contains msg if {
	operation.apply
	[kind, key] := lists[input.playbook.spec.action]
	some target in input.playbook.spec.targets
	some pattern in data.writ.config[key]
	is_string(pattern)
	glob.match(lower(pattern), null, lower(target))
	msg := sprintf("%s is a protected %s (matches %q): writ never acts on it", [target, kind, pattern])
}

deny contains msg if {
	[kind, key] := lists[input.playbook.spec.action]
	some i, pattern in data.writ.config[key]
	not is_string(pattern)
	msg := sprintf("the protected %s list has an entry that is not a string at index %d: %v", [kind, i, pattern])
}
