package writ.lib.operation_test

import data.writ.lib.operation
import data.writ.test_inputs.block

test_an_input_without_an_operation_is_an_apply if {
	operation.apply with input as block(["203.0.113.7"])
	not operation.revert with input as block(["203.0.113.7"])
}

test_a_revert if {
	inp := object.union(block(["203.0.113.7"]), {"operation": "revert", "change": {"type": "delete"}})
	not operation.apply with input as inp
	operation.revert with input as inp
	not operation.scheduled_expiry with input as inp
}

test_a_scheduled_expiry if {
	operation.scheduled_expiry with input as object.union(block(["203.0.113.7"]), {"operation": "revert", "change": {"type": "expiry"}})
	not operation.scheduled_expiry with input as object.union(block(["203.0.113.7"]), {"change": {"type": "expiry"}})
}

test_a_lapsed_break_glass if {
	operation.breakglass_lapsed with input as object.union(block(["203.0.113.7"]), {"operation": "revert", "change": {"type": "breakglass"}})
	not operation.breakglass_lapsed with input as object.union(block(["203.0.113.7"]), {"change": {"type": "breakglass"}})
	not operation.breakglass_lapsed with input as object.union(block(["203.0.113.7"]), {"operation": "revert", "change": {"type": "delete"}})
}
