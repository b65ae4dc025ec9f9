package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/audit"
)

type auditVerifyParams struct {
	export         string
	keys           string
	checkpoints    []string
	skipSignatures bool
	workers        int
	timeout        time.Duration
}

func newAuditVerifyCmd(env *cliEnv, g *globals) *cobra.Command {
	p := auditVerifyParams{}
	cmd := &cobra.Command{
		Use:   "verify [--database URL | --export FILE] [--keys PATH] [--checkpoint FILE]...",
		Short: "Re-derive the audit log's chain, signatures and tree, and prove it only grew",
		Long: `Verify recomputes everything about the audit log from the stored entry
bytes: sequence numbers without gaps, the hash chain, canonical entry bytes,
every signature (by a trusted key, following signed key rotations), the
RFC 6962 tree, and the latest checkpoint recorded with the log. It reads
the database (--database, DATABASE_URL, or the private cluster) or, with
--export, a file made by writ audit export ("-" for standard input).

--keys names the trusted public keys: a PEM file or a directory of .pub
files (default: those in DATA_DIR/audit/). Keys stored in the database or an
export are never trusted by themselves.

With --checkpoint (repeatable) it also proves the log contains each signed
checkpoint you kept: a truncated, rolled-back or rewritten log fails.

Prints "OK: N entries, root HEX" and exits 0, or names the first bad
sequence number and what is wrong and exits 1. Exit 2: usage error.`,
		Example: `  writ audit verify --keys audit.pub --checkpoint checkpoints/latest
  writ audit verify --export audit.ndjson --keys keys/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditVerify(cmd, env, g, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.export, "export", "", "verify an export file instead of the database (- for standard input)")
	f.StringVar(&p.keys, "keys", "", "trusted public keys: a PEM file or a directory of .pub files (default DATA_DIR/audit/)")
	f.StringArrayVar(&p.checkpoints, "checkpoint", nil, "a signed checkpoint the log must contain (repeatable)")
	f.BoolVar(&p.skipSignatures, "no-signatures", false, "check hashes, chain and tree only")
	f.IntVar(&p.workers, "workers", 0, "goroutines checking entries (default: the number of CPUs)")
	f.DurationVar(&p.timeout, "timeout", 0, "give up after this long (default: no limit)")
	return cmd
}

func runAuditVerify(cmd *cobra.Command, env *cliEnv, g *globals, p auditVerifyParams) error {
	if p.workers < 0 {
		return usageError("--workers must not be negative")
	}
	opts := audit.VerifyOptions{SkipSignatures: p.skipSignatures, Workers: p.workers}
	if !p.skipSignatures || p.keys != "" {
		ks, err := loadTrustedKeys(g, p.keys)
		if err != nil {
			return err
		}
		opts.Trusted = ks
	}
	for _, path := range p.checkpoints {
		b, err := readLimited(path, audit.MaxCheckpointSize)
		if err != nil {
			return usageError("--checkpoint: %v", err)
		}
		opts.Checkpoints = append(opts.Checkpoints, b)
	}
	ctx, cancel := withTimeout(cmd.Context(), p.timeout)
	defer cancel()
	start := time.Now()
	var rep *audit.Report
	if p.export != "" {
		var r io.Reader = env.stdin
		if p.export != "-" {
			f, err := os.Open(p.export)
			if err != nil {
				return usageError("--export: %v", err)
			}
			defer f.Close()
			r = f
		}
		var err error
		if rep, err = audit.VerifyExport(ctx, r, opts); err != nil {
			return exitWith(exitFailure, err)
		}
	} else {
		db, err := openAuditStore(ctx, env, g)
		if err != nil {
			return err
		}
		defer db.Close()
		if rep, err = audit.VerifyDatabase(ctx, db.store, opts); err != nil {
			return exitWith(exitFailure, err)
		}
	}
	if rep.Bad != nil {
		fmt.Fprintf(env.stdout, "FAIL: %s\n", rep.Bad.Error())
		return exitWith(exitFailure, nil)
	}
	fmt.Fprintf(env.stdout, "OK: %d entries, root %x\n", rep.Entries, rep.Root)
	log := g.logger(env.stderr)
	log.InfoContext(ctx, "audit log verified",
		"entries", rep.Entries, "tree_size", rep.Size, "signatures", rep.Signatures,
		"checkpoints", rep.Checkpoints, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// readLimited reads a file of at most max bytes.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}
