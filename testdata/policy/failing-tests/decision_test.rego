package writ_test

import data.writ

test_allowed if {
	count(writ.decision.deny) == 0 with input as {"target": "203.0.113.7"}
}

test_denied if writ.decision.deny == {"loopback"} with input as {"target": "127.0.0.1"}

# Fails: the expectation is wrong.
test_wrong_expectation if {
	count(writ.decision.deny) == 1 with input as {"target": "203.0.113.7"}
}

# Errors: to_number("x") is a built-in error, which fails a test in writ.
test_builtin_error if {
	to_number(input.x) == 1 with input as {"x": "x"}
}

todo_test_later if false
