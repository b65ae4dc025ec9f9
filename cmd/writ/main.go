// Command writ is a declarative GitOps engine for security operations:
// containment playbooks in git, guarded by Rego policies, approved by signed
// statements, executed exactly once and recorded in a tamper-evident audit
// log. Run "writ --help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
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
