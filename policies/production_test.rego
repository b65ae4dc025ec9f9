package writ.checks.production_test

import data.writ.checks.production
import data.writ.test_inputs.make

test_production_needs_approval if {
	production.require_approval == {"environment production is production: changes need approval"} with input as make("block_ip", ["203.0.113.7"], "low", "production")
}

test_staging_does_not if {
	count(production.require_approval) == 0 with input as make("block_ip", ["203.0.113.7"], "low", "staging")
}

test_an_environment_without_the_flag_counts_as_production if {
	production.require_approval == {"environment lab is production: changes need approval"} with input as {"environment": {"name": "lab"}}
	production.require_approval == {"environment (unnamed) is production: changes need approval"} with input as {"environment": {"production": "no"}}
	production.require_approval == {"environment (unnamed) is production: changes need approval"} with input as {}
}
