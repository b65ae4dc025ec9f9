package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/engine"
	"github.com/writ-sec/writ/internal/store"
)

type auditVerifyParams struct {
	export         string
	keys           string
	checkpoints    []string
	found          bool
	repo           string
	skipSignatures bool
	workers        int
	timeout        time.Duration
	witnesses      []string
	quorum         int
}

func newAuditVerifyCmd(env *cliEnv, g *globals) *cobra.Command {
	p := auditVerifyParams{}
	cmd := &cobra.Command{
		Use:   "verify [--database URL | --export FILE] [--keys PATH] [--checkpoint FILE]... [--repo PATH] [--witness KEY]... [--witness-quorum N]",
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

Verifying the database, it also checks the checkpoints writ serve
publishes outside it, wherever it finds them: DATA_DIR/audit/checkpoints/latest
(audit.checkpointDir of --config) and the refs/writ/checkpoints ref
(audit.checkpointRef) of the content repository (--repo, or the
configuration's repository when it is a local path). Each must be signed
by a trusted key (or one the log's signed rotations lead to) and
contained in the log: the log is at least as large and its tree at the
checkpoint's size has the checkpoint's root. A rolled-back, truncated or
forked log fails, naming the checkpoint that proves it. It prints a line
for each ("checkpoint PATH: size N, contained", or "none found");
--default-checkpoints=false checks only those given.

With --checkpoint (repeatable) it also proves the log contains each signed
checkpoint you kept.

With --witness KEY (repeatable; KEY is a witness's verifier key in
signed-note form, "<name>+<hash>+<base64 key>", or @FILE holding such
keys, one a line) it also requires that the latest checkpoint (the newest
recorded in the database, or the export's) is cosigned by each witness
given, or by --witness-quorum of them: a C2SP tlog-cosignature line of the
witness's key over the checkpoint, from the database's
audit_witness_cosignatures or the export's checkpoint note, checked here
with the key. It prints a line per witness ("witness NAME: cosigned
checkpoint N at TIME", or what it cosigned last). A witness never cosigns
two trees of the log that do not extend one another, so a cosigned
checkpoint the log contains is evidence its operator cannot rewrite.
Witnesses cosign in the background, seconds after a checkpoint is
recorded: a checkpoint that is not cosigned yet fails until they have.

A filtered export is replayed whole: its left-out entries are verified like
the others, and each entry must be selected exactly when its bytes match
the export's filters; a line "filtered export: N left out by its filters"
then precedes the verdict, whose N counts the selected entries.

Prints "OK: N entries, root HEX" last and exits 0, or "FAIL: " lines naming
the checkpoint or the first bad sequence number and what is wrong, and
exits 1. Exit 2: usage error.`,
		Example: `  writ audit verify
  writ audit verify --keys audit.pub --checkpoint checkpoints/latest --repo /srv/content
  writ audit verify --export audit.ndjson --keys keys/
  writ audit verify --witness @witnesses.vkey --witness-quorum 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditVerify(cmd, env, g, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.export, "export", "", "verify an export file instead of the database (- for standard input)")
	f.StringVar(&p.keys, "keys", "", "trusted public keys: a PEM file or a directory of .pub files (default DATA_DIR/audit/)")
	f.StringArrayVar(&p.checkpoints, "checkpoint", nil, "a signed checkpoint the log must contain (repeatable)")
	f.BoolVar(&p.found, "default-checkpoints", true, "also check the checkpoints writ publishes (DATA_DIR/audit/checkpoints/latest, the content repository's ref); database only")
	f.StringVar(&p.repo, "repo", "", "the content repository whose checkpoint ref to check (default: the configuration's repository, when local)")
	f.BoolVar(&p.skipSignatures, "no-signatures", false, "check hashes, chain and tree only")
	f.IntVar(&p.workers, "workers", 0, "goroutines checking entries (default: the number of CPUs)")
	f.DurationVar(&p.timeout, "timeout", 0, "give up after this long (default: no limit)")
	f.StringArrayVar(&p.witnesses, "witness", nil, "a witness's verifier key (or @FILE of keys) that must have cosigned the latest checkpoint (repeatable)")
	f.IntVar(&p.quorum, "witness-quorum", 0, "how many of the --witness keys must have cosigned it (default: all)")
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
		b, err := config.ReadFile(path, audit.MaxCheckpointSize)
		if err != nil {
			return usageError("--checkpoint: %v", err)
		}
		opts.Checkpoints = append(opts.Checkpoints, b)
	}
	witnessKeys, err := readWitnessKeys(p.witnesses)
	if err != nil {
		return err
	}
	quorum := p.quorum
	switch {
	case quorum != 0 && len(witnessKeys) == 0:
		return usageError("--witness-quorum needs --witness keys")
	case quorum == 0:
		quorum = len(witnessKeys)
	case quorum < 0 || quorum > len(witnessKeys):
		return usageError("--witness-quorum %d: between 1 and the %d witness keys given", quorum, len(witnessKeys))
	}
	ctx, cancel := withTimeout(cmd.Context(), p.timeout)
	defer cancel()
	start := time.Now()
	// witnessed is the checkpoint the witnesses must have cosigned;
	// witnessStore the database whose cosignatures count (nil: only the
	// note's own lines, for an export).
	var witnessed []byte
	var witnessStore *store.Store
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
		witnessed = rep.Checkpoint
	} else {
		db, err := openAuditStore(ctx, env, g)
		if err != nil {
			return err
		}
		defer db.Close()
		found := make([]foundCheckpoint, len(p.checkpoints))
		for i, path := range p.checkpoints {
			found[i] = foundCheckpoint{name: path, note: opts.Checkpoints[i]}
		}
		opts.Checkpoints = nil
		if p.found {
			more, err := publishedCheckpoints(ctx, g, p.repo)
			if err != nil {
				return err
			}
			found = append(found, more...)
		}
		checked, err := checkCheckpoints(ctx, db.store, &opts, found)
		if err != nil {
			return exitWith(exitFailure, err)
		}
		if len(witnessKeys) > 0 {
			witnessStore = db.store
			latest, err := db.store.LatestAuditCheckpoint(ctx)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return exitWith(exitFailure, err)
			default:
				// Proved contained by the verification (it may run on a
				// snapshot with a newer checkpoint).
				witnessed = []byte(latest.Note)
				opts.Checkpoints = append(opts.Checkpoints, witnessed)
			}
		}
		rep, err = audit.VerifyDatabase(ctx, db.store, opts)
		var failures []string
		for _, c := range checked {
			if c.failure != "" {
				failures = append(failures, c.failure)
			}
		}
		if err != nil && len(failures) == 0 {
			return exitWith(exitFailure, err)
		}
		if err != nil {
			// The log is too far gone to replay (its tables emptied, say);
			// the checkpoints already say what is missing.
			g.logger(env.stderr).WarnContext(ctx, "the log could not be replayed", "error", err)
			rep = &audit.Report{}
		}
		for _, c := range checked {
			fmt.Fprintf(env.stdout, "checkpoint %s: %s\n", c.name, c.status(rep))
		}
		if len(witnessKeys) > 0 && err == nil {
			wf, werr := witnessCheck(ctx, env, witnessStore, witnessed, witnessKeys, quorum)
			if werr != nil {
				return exitWith(exitFailure, werr)
			}
			failures = append(failures, wf...)
		}
		if len(failures) > 0 {
			for _, f := range failures {
				fmt.Fprintf(env.stdout, "FAIL: %s\n", f)
			}
			if rep.Bad != nil {
				fmt.Fprintf(env.stdout, "FAIL: %s\n", rep.Bad.Error())
			}
			return exitWith(exitFailure, nil)
		}
	}
	if rep.Bad != nil {
		fmt.Fprintf(env.stdout, "FAIL: %s\n", rep.Bad.Error())
		return exitWith(exitFailure, nil)
	}
	if len(witnessKeys) > 0 && p.export != "" {
		failures, err := witnessCheck(ctx, env, nil, witnessed, witnessKeys, quorum)
		if err != nil {
			return exitWith(exitFailure, err)
		}
		if len(failures) > 0 {
			for _, f := range failures {
				fmt.Fprintf(env.stdout, "FAIL: %s\n", f)
			}
			return exitWith(exitFailure, nil)
		}
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(env.stdout, "filtered export: %d left out by its filters\n", rep.Omitted)
	}
	fmt.Fprintf(env.stdout, "OK: %d entries, root %x\n", rep.Entries, rep.Root)
	log := g.logger(env.stderr)
	log.InfoContext(ctx, "audit log verified",
		"entries", rep.Entries, "omitted", rep.Omitted, "tree_size", rep.Size, "signatures", rep.Signatures,
		"checkpoints", rep.Checkpoints, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// readWitnessKeys reads the --witness values: a verifier key, or @FILE
// holding keys one a line (blank lines and # comments aside).
func readWitnessKeys(args []string) ([]string, error) {
	var keys []string
	for _, a := range args {
		lines := []string{a}
		if path, ok := strings.CutPrefix(a, "@"); ok {
			b, err := config.ReadFile(path, 64<<10)
			if err != nil {
				return nil, usageError("--witness: %v", err)
			}
			lines = nil
			for l := range strings.SplitSeq(string(b), "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					lines = append(lines, l)
				}
			}
			if len(lines) == 0 {
				return nil, usageError("--witness: %s holds no key", path)
			}
		}
		for _, k := range lines {
			if _, err := audit.ParseWitnessKey(k); err != nil {
				return nil, usageError("--witness: %v", err)
			}
			// A key given twice (a flag and a file, say) is one witness:
			// it counts once toward --witness-quorum.
			if k = strings.TrimSpace(k); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}

// witnessCheck prints, for each witness key, whether it cosigned the
// checkpoint cpNote (its lines, and st's cosignatures when st is not nil),
// and returns the failure when fewer than quorum did.
func witnessCheck(ctx context.Context, env *cliEnv, st *store.Store, cpNote []byte, keys []string, quorum int) ([]string, error) {
	if cpNote == nil {
		return []string{"the log has no checkpoint: no witness can have cosigned it (writ serve makes them; writ audit checkpoint makes one now)"}, nil
	}
	size, err := audit.CheckpointSize(cpNote)
	if err != nil {
		return nil, err
	}
	checks, _, err := audit.CheckWitnessCosignatures(ctx, st, cpNote, keys)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, c := range checks {
		switch {
		case c.Cosigned:
			n++
			fmt.Fprintf(env.stdout, "witness %s: cosigned checkpoint %d at %s\n", c.Name, size, c.Time.UTC().Format(time.RFC3339))
		case c.NewestKnown:
			fmt.Fprintf(env.stdout, "witness %s: has not cosigned checkpoint %d; the newest it cosigned is of size %d\n", c.Name, size, c.NewestSize)
		case st != nil:
			fmt.Fprintf(env.stdout, "witness %s: has not cosigned checkpoint %d, nor any recorded\n", c.Name, size)
		default:
			fmt.Fprintf(env.stdout, "witness %s: has not cosigned checkpoint %d\n", c.Name, size)
		}
	}
	if n < quorum {
		return []string{fmt.Sprintf("checkpoint %d is cosigned by %d of the %d witnesses given; %d required", size, n, len(keys), quorum)}, nil
	}
	return nil, nil
}

// foundCheckpoint is a checkpoint the log must contain, and where it came
// from.
type foundCheckpoint struct {
	name string
	note []byte // nil: none found there
}

// publishedCheckpoints reads the newest checkpoint of each place writ serve
// publishes to: the checkpoint directory (DATA_DIR/audit/checkpoints, or
// audit.checkpointDir), and the checkpoint ref of the content repository
// when one is known and local (repo, else the configuration's).
func publishedCheckpoints(ctx context.Context, g *globals, repo string) ([]foundCheckpoint, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, usageError("%v", err)
	}
	type place struct {
		name string
		sink audit.Sink
	}
	dir := engine.CheckpointDir(g.dataDir, cfg)
	places := []place{{filepath.Join(dir, audit.LatestFile), audit.DirSink{Dir: dir}}}
	explicitRepo := repo != ""
	if u := cfg.Repository.URL; repo == "" && u != "" && !strings.Contains(u, "://") && !engine.IsSCPLike(u) {
		repo = u
	}
	if repo != "" {
		ref := cfg.Audit.CheckpointRef
		if ref == "" {
			ref = audit.DefaultGitRef
		}
		places = append(places, place{"git " + repo + " " + ref, audit.GitSink{Repo: repo, Ref: ref}})
	}
	out := make([]foundCheckpoint, 0, len(places))
	for _, pl := range places {
		note, err := pl.sink.Latest(ctx)
		if err != nil {
			if explicitRepo {
				if _, ok := pl.sink.(audit.GitSink); ok {
					return nil, usageError("--repo: %v", err)
				}
			}
			return nil, exitWith(exitFailure, fmt.Errorf("checkpoint %s: %w (--default-checkpoints=false skips it)", pl.name, err))
		}
		out = append(out, foundCheckpoint{name: pl.name, note: note})
	}
	return out, nil
}

// checkedCheckpoint is what checkCheckpoints found of one checkpoint.
type checkedCheckpoint struct {
	name    string
	none    bool   // none found there
	size    uint64 // the checkpoint's
	failure string // why it fails; "" when it does not
	// unsigned: no trusted keys to check its signature with (--no-signatures).
	unsigned bool
}

// status is the line verify prints for the checkpoint, once the log was
// verified (rep): contained only when CheckCheckpoint found its root in
// the log and the full verification, re-deriving the tree from the entry
// bytes, reached its size and proved it too.
func (c checkedCheckpoint) status(rep *audit.Report) string {
	switch {
	case c.none:
		return "none found"
	case c.failure != "":
		return fmt.Sprintf("size %d, FAILED", c.size)
	case !slices.Contains(rep.Checkpoints, c.size):
		if rep.Bad != nil {
			return fmt.Sprintf("size %d, not proven (the log fails first)", c.size)
		}
		return fmt.Sprintf("size %d, not proven", c.size)
	case c.unsigned:
		return fmt.Sprintf("size %d, contained (signature not checked)", c.size)
	}
	return fmt.Sprintf("size %d, contained", c.size)
}

// checkCheckpoints checks each checkpoint against the log in st with
// audit.CheckCheckpoint (its signature by a trusted key, or one the log's
// signed rotations lead to, and its root at its size in the log) and adds
// it to what the full verification proves (opts.Checkpoints: it re-derives
// the tree from the entry bytes). opts.Trusted is extended by the keys the
// log's signed rotations hand over from, so a verifier given the key
// signing now verifies the entries before it too.
func checkCheckpoints(ctx context.Context, st *store.Store, opts *audit.VerifyOptions, found []foundCheckpoint) ([]checkedCheckpoint, error) {
	gone := func(err error) bool { return errors.Is(err, store.ErrNotFound) }
	var all *audit.KeySet
	if opts.Trusted != nil && opts.Trusted.Len() > 0 {
		back, err := audit.TrustPredecessors(ctx, st, opts.Trusted)
		switch {
		case gone(err):
		case err != nil:
			return nil, err
		default:
			opts.Trusted = back
		}
		if all, err = audit.TrustRotations(ctx, st, opts.Trusted); gone(err) {
			all = opts.Trusted
		} else if err != nil {
			return nil, err
		}
	}
	out := make([]checkedCheckpoint, 0, len(found))
	for _, f := range found {
		c := checkedCheckpoint{name: f.name, none: f.note == nil, unsigned: all == nil}
		if c.none {
			out = append(out, c)
			continue
		}
		size, err := audit.CheckpointSize(f.note)
		if err != nil {
			c.failure = fmt.Sprintf("checkpoint %s: %v", f.name, err)
			out = append(out, c)
			continue
		}
		c.size = size
		opts.Checkpoints = append(opts.Checkpoints, f.note)
		cs, err := audit.CheckCheckpoint(ctx, st, f.note, all)
		switch {
		case gone(err):
			c.failure = fmt.Sprintf("checkpoint %s (size %d): the log is gone (%v): %v", f.name, size, err, audit.ErrRollback)
		case err != nil:
			return nil, err
		case !cs.Signed && all != nil:
			c.failure = fmt.Sprintf("checkpoint %s (size %d) is not signed by a trusted key: %s", f.name, size, cs.SignatureProblem)
		case !cs.Contained:
			c.failure = fmt.Sprintf("checkpoint %s (size %d): %s", f.name, size, cs.Problem)
		}
		out = append(out, c)
	}
	return out, nil
}
