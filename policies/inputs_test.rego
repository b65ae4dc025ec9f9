# Inputs for the tests: playbooks and environments as writ builds them.
package writ.test_inputs

environments := {
	"production": {"name": "production", "production": true},
	"staging": {"name": "staging", "production": false},
}

# make(action, targets, severity, environment) is the input writ evaluates
# for a playbook with these fields.
make(action, targets, severity, environment) := {
	"playbook": {
		"path": "playbooks/test.yaml",
		"apiVersion": "writ/v1",
		"kind": "Playbook",
		"metadata": {"name": "test", "labels": {}},
		"spec": {
			"action": action,
			"targets": targets,
			"justification": "test",
			"severity": severity,
			"environment": environment,
			"execution": "auto",
			"params": {},
		},
	},
	"change": {"type": "create", "author": "alice", "pullRequest": 7},
	"environment": environments[environment],
}

# block(targets) blocks targets in staging at low severity: nothing but the
# targets themselves calls for approval.
block(targets) := make("block_ip", targets, "low", "staging")
