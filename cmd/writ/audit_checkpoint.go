package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/audit"
)

type auditCheckpointParams struct {
	out     string
	dir     string
	gitRepo string
	gitRef  string
	key     string
	timeout time.Duration
}

func newAuditCheckpointCmd(env *cliEnv, g *globals) *cobra.Command {
	p := auditCheckpointParams{}
	cmd := &cobra.Command{
		Use:   "checkpoint [--out FILE] [--dir DIR] [--git-repo PATH [--git-ref REF]]",
		Short: "Sign a checkpoint of the audit log now and publish it",
		Long: `Checkpoint signs the committed audit log's tree size and root as a C2SP
signed note (tlog-checkpoint), records it in the database and publishes it:
to --out (one file, replaced atomically; standard output without --out),
to --dir (checkpoint.<size> for each, and latest), and to a git ref of
--git-repo (a commit per checkpoint on --git-ref, default
refs/writ/checkpoints; no branch or working tree is touched).

Before publishing it checks the log still contains what each destination
last received (a consistency proof); a rolled-back or rewritten database
is refused, not published over. Keep the checkpoints somewhere the
database's administrators cannot write: writ audit verify --checkpoint
proves the log only grew since.

Checkpoints are signed with an ed25519 key.`,
		Example: `  writ audit checkpoint --dir /srv/writ-checkpoints
  writ audit checkpoint --git-repo /srv/content-repo --out latest.checkpoint`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditCheckpoint(cmd, env, g, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.out, "out", "", "write the checkpoint to this file (default: standard output)")
	f.StringVar(&p.dir, "dir", "", "also keep it in this directory (checkpoint.<size> and latest)")
	f.StringVar(&p.gitRepo, "git-repo", "", "also commit it to a ref of this git repository")
	f.StringVar(&p.gitRef, "git-ref", audit.DefaultGitRef, "the ref for --git-repo")
	f.StringVar(&p.key, "key", "", "audit signing key (default DATA_DIR/audit/audit.key; password from WRIT_KEY_PASSWORD)")
	f.DurationVar(&p.timeout, "timeout", 5*time.Minute, "give up after this long")
	return cmd
}

func runAuditCheckpoint(cmd *cobra.Command, env *cliEnv, g *globals, p auditCheckpointParams) error {
	var sinks []audit.Sink
	if p.out != "" {
		sinks = append(sinks, audit.FileSink{Path: p.out})
	}
	if p.dir != "" {
		sinks = append(sinks, audit.DirSink{Dir: p.dir})
	}
	if p.gitRepo != "" {
		sinks = append(sinks, audit.GitSink{Repo: p.gitRepo, Ref: p.gitRef})
	}
	key, err := loadAuditKey(env, g, p.key, "WRIT_KEY_PASSWORD")
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(cmd.Context(), p.timeout)
	defer cancel()
	db, err := openAuditStore(ctx, env, g)
	if err != nil {
		return err
	}
	defer db.Close()
	log := g.logger(env.stderr)
	l, err := audit.NewLog(audit.LogOptions{Store: db.store, Key: key, Logger: log})
	if err != nil {
		return exitWith(exitFailure, err)
	}
	c, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: l, Sinks: sinks, Logger: log})
	if err != nil {
		return exitWith(exitFailure, err)
	}
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if p.out == "" {
		if _, err := env.stdout.Write(cp.Note); err != nil {
			return exitWith(exitFailure, err)
		}
	}
	fmt.Fprintf(env.stderr, "checkpoint: %d entries, root %x\n", cp.Size, cp.Root)
	return nil
}
