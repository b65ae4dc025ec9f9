package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/audit"
)

type auditExportParams struct {
	since, until string
	actor, event string
	format       string
	proofs       bool
	out          string
	timeout      time.Duration
}

func newAuditExportCmd(env *cliEnv, g *globals) *cobra.Command {
	p := auditExportParams{}
	cmd := &cobra.Command{
		Use:   "export [--since T] [--until T] [--actor ID] [--event TYPE] [--format json|ndjson] [--proofs]",
		Short: "Stream audit entries with what offline verification needs",
		Long: `Export writes the audit log, or the entries the filters select, from one
consistent snapshot: a header (the log's origin, its public keys, its latest
signed checkpoint), the entries (their exact bytes, hashes, signature, key
id and a readable copy), and an end line with the count, so a cut file is
told from a short log. NDJSON (the default) is one object a line; json is
one document.

Every export verifies offline with writ audit verify --export. The filters
select on each entry's signed bytes (its time, actor id and event), never on
the database columns beside them. A filtered export still carries every
entry of the log: those the filters leave out as "omitted" lines, with
their bytes, hashes and signature but no readable copy, so the verifier
replays the whole chain and tree and checks that exactly the entries whose
bytes match the filters were selected; dropping or hiding one fails
verification. It is therefore about as large as a complete export and
discloses the left-out entries' bytes to whoever holds it. An entry whose
columns disagree with its bytes is exported by its bytes and named in a
warning (writ audit verify fails on it).

--proofs adds to each selected entry its RFC 6962 inclusion proof in the
latest checkpoint, and stops the export at that checkpoint's size (run writ
audit checkpoint first for the newest entries).

--since and --until take RFC 3339 times, dates (2026-05-01) or durations
ago (24h, 7d).`,
		Example: `  writ audit export > audit.ndjson
  writ audit export --actor alice --since 7d --proofs --out alice.ndjson`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditExport(cmd, env, g, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.since, "since", "", "entries at or after this time")
	f.StringVar(&p.until, "until", "", "entries before this time")
	f.StringVar(&p.actor, "actor", "", "entries of this actor id")
	f.StringVar(&p.event, "event", "", "entries of this event type")
	f.StringVar(&p.format, "format", audit.FormatNDJSON, "ndjson or json")
	f.BoolVar(&p.proofs, "proofs", false, "add inclusion proofs in the latest checkpoint and stop at its size")
	f.StringVar(&p.out, "out", "", "write to this file (atomically) instead of standard output")
	f.DurationVar(&p.timeout, "timeout", 0, "give up after this long (default: no limit)")
	return cmd
}

func runAuditExport(cmd *cobra.Command, env *cliEnv, g *globals, p auditExportParams) error {
	now := time.Now()
	opts := audit.ExportOptions{Actor: p.actor, Event: p.event, Format: p.format, Proofs: p.proofs}
	var err error
	if opts.Since, err = parseTimeFlag("since", p.since, now); err != nil {
		return usageError("%v", err)
	}
	if opts.Until, err = parseTimeFlag("until", p.until, now); err != nil {
		return usageError("%v", err)
	}
	if p.format != audit.FormatNDJSON && p.format != audit.FormatJSON {
		return usageError("--format must be ndjson or json, not %q", p.format)
	}
	if !opts.Since.IsZero() && !opts.Until.IsZero() && !opts.Since.Before(opts.Until) {
		return usageError("--since must be before --until")
	}
	ctx, cancel := withTimeout(cmd.Context(), p.timeout)
	defer cancel()
	db, err := openAuditStore(ctx, env, g)
	if err != nil {
		return err
	}
	defer db.Close()

	var w io.Writer = env.stdout
	var tmp *os.File
	if fi, err := os.Stat(p.out); p.out != "" && err == nil && fi.IsDir() {
		return usageError("--out %s is a directory; name the file to write", p.out)
	}
	if p.out != "" {
		tmp, err = os.CreateTemp(filepath.Dir(p.out), "."+filepath.Base(p.out)+".tmp-*")
		if err != nil {
			return exitWith(exitFailure, err)
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		w = tmp
	}
	sum, err := audit.Export(ctx, db.store, w, opts)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return exitWith(exitFailure, err)
		}
		if err := tmp.Close(); err != nil {
			return exitWith(exitFailure, err)
		}
		if err := os.Rename(tmp.Name(), p.out); err != nil {
			return exitWith(exitFailure, err)
		}
	}
	log := g.logger(env.stderr)
	log.InfoContext(ctx, "audit log exported", "entries", sum.Entries, "omitted", sum.Omitted, "tree_size", sum.Size, "complete", sum.Complete)
	if len(sum.Disagree) > 0 {
		fmt.Fprintf(env.stderr, "writ: warning: the stored columns of entries %v disagree with their signed bytes (selected by their bytes); run writ audit verify\n", sum.Disagree)
	}
	return nil
}
