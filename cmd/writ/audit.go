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
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
)

func init() { register(newAuditCmd) }

func newAuditCmd(env *cliEnv, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The tamper-evident audit log: append, verify, export, checkpoint, rotate-key, vkey",
		Long: `Every event writ records (PR checked, approval accepted or rejected, merge
seen, execution started or finished, configuration change, login) is one
entry of a hash-chained, signed audit log in PostgreSQL whose entries are
also leaves of an RFC 6962 Merkle tree. Signed checkpoints of the tree are
published outside the database, so a verifier can prove the log only grew.

The signing key is --key, or DATA_DIR/audit/audit.key (writ serve creates
it). Verification trusts only the public keys it is given (--keys; default
the .pub files in DATA_DIR/audit/) and the keys signed rotation entries lead
to from them (forward to the new key, or back from a trusted new key whose
proof of possession names the old one): never the keys stored in the
database or an export by themselves.

writ audit vkey prints the public key as a C2SP signed-note verifier key
(<origin>+<hash>+<key>), the form witnesses and monitors take to verify the
checkpoints.`,
	}
	cmd.AddCommand(
		newAuditAppendCmd(env, g),
		newAuditVerifyCmd(env, g),
		newAuditExportCmd(env, g),
		newAuditCheckpointCmd(env, g),
		newAuditRotateKeyCmd(env, g),
		newAuditVkeyCmd(env, g),
	)
	return cmd
}

// auditKeyPath is the data directory's audit signing key.
func auditKeyPath(g *globals) string { return filepath.Join(g.dataDir, "audit", "audit.key") }

// loadAuditKey reads --key (asking for its password when encrypted) or the
// data directory's key. passwordEnv names the variable a password comes
// from.
func loadAuditKey(env *cliEnv, g *globals, path, passwordEnv string) (*audit.SigningKey, error) {
	explicit := path != ""
	if !explicit {
		path = auditKeyPath(g)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, usageError("no audit signing key: pass --key, or run writ serve once to create %s", path)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError("audit signing key: %v", err)
	}
	var password []byte
	if keys.IsEncrypted(b) {
		if pw := env.getenv(passwordEnv); pw != "" {
			password = []byte(pw)
		} else if password, err = readPassword(env, false); err != nil {
			return nil, usageError("audit signing key %s is encrypted: %v", path, err)
		}
	}
	priv, err := keys.ParsePrivate(b, password)
	if err != nil {
		return nil, usageError("audit signing key %s: %v", path, err)
	}
	k, err := audit.NewSigningKey(priv)
	if err != nil {
		return nil, usageError("%s: %v", path, err)
	}
	return k, nil
}

// loadTrustedKeys reads --keys, or the public keys in the data
// directory's audit/ (audit.pub, and the keys it replaced).
func loadTrustedKeys(g *globals, path string) (*audit.KeySet, error) {
	if path == "" {
		path = filepath.Join(g.dataDir, "audit")
		if _, err := os.Stat(filepath.Join(path, "audit.pub")); errors.Is(err, fs.ErrNotExist) {
			return nil, usageError("no trusted keys: pass --keys with the audit log's public key(s) (a PEM file or a directory of .pub files)")
		}
	}
	ks, err := audit.LoadKeySet(path)
	if err != nil {
		return nil, usageError("%v", err)
	}
	return ks, nil
}

// openAuditStore opens the database and checks its schema is current.
func openAuditStore(ctx context.Context, env *cliEnv, g *globals) (*database, error) {
	db, err := openDatabase(ctx, g, g.logger(env.stderr))
	if err != nil {
		return nil, exitWith(exitFailure, err)
	}
	if err := db.store.Ready(ctx); err != nil {
		db.Close()
		if errors.Is(err, store.ErrNotMigrated) {
			return nil, exitWith(exitFailure, fmt.Errorf("%w (or start writ serve)", err))
		}
		return nil, exitWith(exitFailure, err)
	}
	return db, nil
}

// parseTimeFlag reads --since and --until: RFC 3339, a date (midnight
// UTC), or a duration meaning that long ago (audit.ParseTime, which the
// console's audit page reads its filters with too).
func parseTimeFlag(name, v string, now time.Time) (time.Time, error) {
	return audit.ParseTime("--"+name, v, now)
}

// withTimeout bounds a command.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
