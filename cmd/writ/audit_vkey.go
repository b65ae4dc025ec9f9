package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/audit"
)

type auditVkeyParams struct {
	key     string
	keys    string
	all     bool
	timeout time.Duration
}

func newAuditVkeyCmd(env *cliEnv, g *globals) *cobra.Command {
	p := auditVkeyParams{}
	cmd := &cobra.Command{
		Use:   "vkey [--key FILE] [--all [--keys PATH]]",
		Short: "Print the audit log's public key as a signed-note verifier key",
		Long: `Vkey prints the audit log's current public key in C2SP signed-note
verifier-key form, the line witnesses, monitors and Go's
golang.org/x/mod/sumdb/note (NewVerifier) take:

  <origin>+<key hash>+<base64 of the ed25519 key>

The name is the log's origin (read from the database), the name the
checkpoints are signed under, so the line verifies the checkpoints writ
publishes (DATA_DIR/audit/checkpoints/latest, the git ref) as they are.

The current key is --key (a public key PEM file), default
DATA_DIR/audit/audit.pub, the public half of the key writ serve signs with.

With --all it prints, oldest first, every key recorded in the log that the
trusted keys lead to (--keys, default the .pub files in DATA_DIR/audit/,
and the current key, followed through the log's signed rotations), then
the current key if the log has not recorded it yet: the keys the log's
checkpoints have been signed with. A recorded key nothing trusted leads to
is not printed (a line on standard error names it): keys stored in the
database are never trusted by themselves.

One key a line on standard output. Only ed25519 keys sign checkpoints.`,
		Example: `  writ audit vkey
  writ audit vkey --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditVkey(cmd, env, g, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.key, "key", "", "the current public key, a PEM file (default DATA_DIR/audit/audit.pub)")
	f.BoolVar(&p.all, "all", false, "every key the log has signed with, oldest first")
	f.StringVar(&p.keys, "keys", "", "with --all, trusted public keys: a PEM file or a directory of .pub files (default DATA_DIR/audit/)")
	f.DurationVar(&p.timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

func runAuditVkey(cmd *cobra.Command, env *cliEnv, g *globals, p auditVkeyParams) error {
	current, err := loadCurrentPublicKey(g, p.key)
	if err != nil {
		return err
	}
	var trusted *audit.KeySet
	if p.all {
		if p.keys != "" || p.key == "" {
			if trusted, err = loadTrustedKeys(g, p.keys); err != nil {
				return err
			}
		} else {
			trusted = audit.NewKeySet()
		}
		trusted.Add(current)
	}
	ctx, cancel := withTimeout(cmd.Context(), p.timeout)
	defer cancel()
	db, err := openAuditStore(ctx, env, g)
	if err != nil {
		return err
	}
	defer db.Close()
	origin, err := db.store.AuditOrigin(ctx)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	keys := []*audit.PublicKey{current}
	if p.all {
		if keys, err = signingKeys(ctx, env, db, trusted, current); err != nil {
			return err
		}
	}
	for _, k := range keys {
		vkey, err := audit.VerifierKey(origin, k)
		if err != nil {
			if k != current {
				// An older key that cannot sign notes signed no checkpoint.
				fmt.Fprintf(env.stderr, "key %.12s: %v; not printed\n", k.ID, err)
				continue
			}
			return exitWith(exitFailure, err)
		}
		fmt.Fprintln(env.stdout, vkey)
	}
	return nil
}

// loadCurrentPublicKey reads --key, or the data directory's audit.pub.
func loadCurrentPublicKey(g *globals, path string) (*audit.PublicKey, error) {
	if path == "" {
		path = filepath.Join(g.dataDir, "audit", "audit.pub")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, usageError("no audit public key: pass --key, or run writ serve once to create %s", path)
		}
	}
	ks, err := audit.LoadKeySet(path)
	if err != nil {
		return nil, usageError("%v", err)
	}
	if ks.Len() != 1 {
		return nil, usageError("%s holds %d public keys; --key takes one", path, ks.Len())
	}
	return ks.Keys()[0], nil
}

// signingKeys lists the keys recorded in the log that trusted leads to
// through its signed rotations, oldest first, and current last unless the
// log recorded it already.
func signingKeys(ctx context.Context, env *cliEnv, db *database, trusted *audit.KeySet, current *audit.PublicKey) ([]*audit.PublicKey, error) {
	reached, err := audit.TrustRotations(ctx, db.store, trusted)
	if err != nil {
		return nil, exitWith(exitFailure, err)
	}
	recorded, err := db.store.AuditKeys(ctx)
	if err != nil {
		return nil, exitWith(exitFailure, err)
	}
	var out []*audit.PublicKey
	seenCurrent := false
	for _, r := range recorded {
		k, ok := reached.Get(r.ID)
		if !ok {
			fmt.Fprintf(env.stderr, "key %.12s is recorded in the log but no trusted key leads to it; not printed\n", r.ID)
			continue
		}
		if k.ID == current.ID {
			seenCurrent = true
		}
		out = append(out, k)
	}
	if !seenCurrent {
		out = append(out, current)
	}
	return out, nil
}
