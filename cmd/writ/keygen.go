package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/writ-sec/writ/internal/keys"
)

func init() { register(newKeygenCmd) }

type keygenParams struct {
	out       string
	password  bool
	algorithm string
	force     bool
}

func newKeygenCmd(env *cliEnv, _ *globals) *cobra.Command {
	p := keygenParams{}
	cmd := &cobra.Command{
		Use:   "keygen [--out PREFIX] [--password] [--algorithm ALG]",
		Short: "Make a signing key pair (PKCS#8 PEM) for approvals or the audit log",
		Long: `Keygen writes PREFIX.key (the private key, PKCS#8 PEM, mode 0600) and
PREFIX.pub (the public key, PKIX PEM), and prints the key id (sha256 of the
public key). With --password the private key is encrypted (PBES2: scrypt and
AES-256-CBC); the password comes from WRIT_KEY_PASSWORD or, on a terminal,
is asked twice.

Register the .pub file in .writ/approvers.yaml (for approvals) or in the
server's audit key set (for the audit log). Never commit the .key file.`,
		Example: `  writ keygen --out alice
  writ keygen --out audit-2026 --algorithm ecdsa-p256 --password`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeygen(p, env)
		},
	}
	cmd.Flags().StringVar(&p.out, "out", "writ", "path prefix of the key files")
	cmd.Flags().BoolVar(&p.password, "password", false, "encrypt the private key with a password")
	cmd.Flags().StringVar(&p.algorithm, "algorithm", keys.Ed25519, "key algorithm: "+strings.Join(keys.Algorithms, ", "))
	cmd.Flags().BoolVar(&p.force, "force", false, "overwrite existing key files")
	return cmd
}

func runKeygen(p keygenParams, env *cliEnv) error {
	keyPath, pubPath := p.out+".key", p.out+".pub"
	if !p.force {
		for _, f := range []string{keyPath, pubPath} {
			if _, err := os.Lstat(f); err == nil {
				return usageError("%s exists; pass --force to overwrite it", f)
			}
		}
	}
	var password []byte
	if p.password {
		pw, err := readPassword(env, true)
		if err != nil {
			return exitWith(exitUsage, err)
		}
		password = pw
	}
	priv, err := keys.Generate(p.algorithm)
	if err != nil {
		return usageError("%v", err)
	}
	privPEM, err := keys.MarshalPrivate(priv, password)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	pubPEM, err := keys.MarshalPublic(priv.Public())
	if err != nil {
		return exitWith(exitFailure, err)
	}
	id, err := keys.ID(priv.Public())
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if err := writeFileExclusive(keyPath, privPEM, 0o600, p.force); err != nil {
		return exitWith(exitFailure, err)
	}
	if err := writeFileExclusive(pubPath, pubPEM, 0o644, p.force); err != nil {
		return exitWith(exitFailure, err)
	}
	fmt.Fprintf(env.stdout, "private key: %s\npublic key:  %s\nalgorithm:   %s\nkey id:      %s\n", keyPath, pubPath, keys.Algorithm(priv.Public()), id)
	return nil
}

// writeFileExclusive writes a new file (or replaces one with force),
// never following a symlink at the path.
func writeFileExclusive(path string, data []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		if fi, err := os.Lstat(path); err == nil {
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file (%s); refusing to replace it", path, fi.Mode().Type())
			}
			if err := os.Remove(path); err != nil {
				return err
			}
		}
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readPassword takes a key password from WRIT_KEY_PASSWORD, or asks on the
// terminal (twice when confirm is set). It never echoes or logs it.
func readPassword(env *cliEnv, confirm bool) ([]byte, error) {
	if pw := env.getenv("WRIT_KEY_PASSWORD"); pw != "" {
		return []byte(pw), nil
	}
	f, ok := env.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, errors.New("a password is needed: set WRIT_KEY_PASSWORD or run on a terminal")
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(env.stderr, prompt)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.stderr)
		return pw, err
	}
	pw, err := ask("Key password: ")
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	if confirm {
		again, err := ask("Repeat password: ")
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("passwords do not match")
		}
	}
	return pw, nil
}
