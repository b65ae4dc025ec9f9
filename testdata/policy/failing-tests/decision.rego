# A small policy set whose tests partly fail: for writ policy test.
package writ

decision := {"deny": deny}

deny contains "loopback" if input.target == "127.0.0.1"

deny contains "never tested" if input.target == "0.0.0.0"
