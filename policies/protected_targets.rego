# Never act on protected identities or hosts: break-glass and service
# accounts, domain controllers, the security tooling itself. The lists are
# glob patterns in data.writ.config.protected_identities (for suspend_user)
# and data.writ.config.protected_hosts (for isolate_host), matched without
# regard to case.
package writ.checks.protected_targets

patterns := {
	"suspend_user": object.get(data.writ.config, "protected_identities", []),
	"isolate_host": object.get(data.writ.config, "protected_hosts", []),
}

kind := {
	"suspend_user": "identity",
	"isolate_host": "host",
}

deny contains msg if {
	action := input.playbook.spec.action
	some target in input.playbook.spec.targets
	is_string(target)
	some pattern in patterns[action]
	is_string(pattern)
	glob.match(lower(pattern), null, lower(target))
	msg := sprintf("%s is a protected %s (matches %q): writ never acts on it", [target, kind[action], pattern])
}

deny contains msg if {
	some action, list in patterns
	input.playbook.spec.action == action
	some i, pattern in list
	not is_string(pattern)
	msg := sprintf("the protected %s list has an entry that is not a string at index %d: %v", [kind[action], i, pattern])
}
