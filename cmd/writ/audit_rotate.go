package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/keys"
)

type auditRotateParams struct {
	key     string
	newKey  string
	actor   string
	timeout time.Duration
}

func newAuditRotateKeyCmd(env *cliEnv, g *globals) *cobra.Command {
	p := auditRotateParams{}
	cmd := &cobra.Command{
		Use:   "rotate-key --new-key FILE [--key FILE]",
		Short: "Hand the audit log over to a new signing key",
		Long: `Rotate-key appends an audit.key_rotated entry, signed by the current key,
that names the new key and carries its proof of possession (a signature by
the new key). Verifiers that trust the current key trust the new one from
that entry on, and no longer accept the current key for any later entry;
old entries keep verifying with the old key.

Without --key the current key is DATA_DIR/audit/audit.key; the new key then
replaces it there (the old one is kept beside it as audit-<id>.key.retired,
its public key as audit-<id>.pub, which verification keeps trusting).
Stop writ serve first, or restart it afterwards: a process still signing
with the old key writes entries verification rejects.

Passwords: WRIT_KEY_PASSWORD for --key, WRIT_NEW_KEY_PASSWORD for --new-key.
Make the new key with writ keygen.`,
		Example: `  writ keygen --out audit-2027
  writ audit rotate-key --new-key audit-2027.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditRotate(cmd, env, g, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.key, "key", "", "the current audit signing key (default DATA_DIR/audit/audit.key)")
	f.StringVar(&p.newKey, "new-key", "", "the new signing key (required)")
	f.StringVar(&p.actor, "actor", "", "who rotates (default $USER)")
	f.DurationVar(&p.timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

func runAuditRotate(cmd *cobra.Command, env *cliEnv, g *globals, p auditRotateParams) error {
	if p.newKey == "" {
		return usageError("--new-key is required")
	}
	actor := p.actor
	if actor == "" {
		actor = localUser(env)
	}
	if actor == "" {
		return usageError("--actor is required (no $USER, $LOGNAME or account name for uid %d)", os.Getuid())
	}
	old, err := loadAuditKey(env, g, p.key, "WRIT_KEY_PASSWORD")
	if err != nil {
		return err
	}
	next, err := loadAuditKey(env, g, p.newKey, "WRIT_NEW_KEY_PASSWORD")
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
	l, err := audit.NewLog(audit.LogOptions{Store: db.store, Key: old, Logger: g.logger(env.stderr)})
	if err != nil {
		return exitWith(exitFailure, err)
	}
	rec, err := l.RotateKey(ctx, audit.Actor{ID: actor, Role: "admin"}, next)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	fmt.Fprintf(env.stdout, "rotated at seq %d: %s -> %s\n", rec.Seq, old.ID(), next.ID())
	if p.key == "" {
		if err := installAuditKey(g, old, p.newKey, env); err != nil {
			return exitWith(exitFailure, fmt.Errorf("the rotation is recorded, but installing the new key failed: %w", err))
		}
		fmt.Fprintf(env.stdout, "installed the new key as %s\n", auditKeyPath(g))
	}
	return nil
}

// installAuditKey makes the new key the data directory's signing key,
// keeping the old one beside it.
func installAuditKey(g *globals, old *audit.SigningKey, newPath string, env *cliEnv) error {
	b, err := os.ReadFile(newPath)
	if err != nil {
		return err
	}
	var password []byte
	if keys.IsEncrypted(b) {
		password = []byte(env.getenv("WRIT_NEW_KEY_PASSWORD"))
	}
	priv, err := keys.ParsePrivate(b, password)
	if err != nil {
		return err
	}
	// The data directory's key is unencrypted (0600), like the one
	// writ serve creates, so the server can start unattended.
	plain, err := keys.MarshalPrivate(priv, nil)
	if err != nil {
		return err
	}
	pub, err := keys.MarshalPublic(priv.Public())
	if err != nil {
		return err
	}
	dir := filepath.Dir(auditKeyPath(g))
	prefix := filepath.Join(dir, fmt.Sprintf("audit-%.12s", old.ID()))
	if err := writeFileExclusive(prefix+".pub", []byte(old.PublicPEM()), 0o644, true); err != nil {
		return err
	}
	if err := os.Rename(auditKeyPath(g), prefix+".key.retired"); err != nil {
		return err
	}
	if err := writeFileExclusive(auditKeyPath(g), plain, 0o600, false); err != nil {
		return err
	}
	return writeFileExclusive(filepath.Join(dir, "audit.pub"), pub, 0o644, true)
}
