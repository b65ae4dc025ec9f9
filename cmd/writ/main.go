// Command writ is a declarative GitOps engine for security operations:
// containment playbooks in git, guarded by Rego policies, approved by signed
// statements, executed exactly once and recorded in a tamper-evident audit
// log. Run "writ --help" for the commands.
//
// default.pgo in this directory is a CPU profile of writ's hot paths (policy
// decisions, playbook validation, approval verification; `make pgo`
// regenerates it). `go build` and `go install` use it for profile-guided
// optimization without being asked: a few percent more policy decisions
// per second (0-18% in interleaved runs of the decision benchmark).
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// gcPercent is writ's garbage collector target unless GOGC says otherwise.
// Policy evaluation (OPA) allocates ~60 KB per decision; at the default of
// 100 the collector takes a third of the CPU and most of the tail latency.
// 400 trades a few more megabytes of heap for it (measured in
// internal/policy's BenchmarkDecide).
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &cliEnv{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
	})
	stop()
	os.Exit(code)
}
