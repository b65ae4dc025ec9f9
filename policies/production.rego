# Every change to production needs approval. An environment counts as
# production unless its description says production: false, so a missing
# or mistyped flag errs on the side of approval.
package writ.checks.production

name := n if {
	n := input.environment.name
} else := "(unnamed)"

require_approval contains msg if {
	not input.environment.production == false
	msg := sprintf("environment %v is production: changes need approval", [name])
}
