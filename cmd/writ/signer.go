package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/keys"
)

// Loading the key a statement is signed with.

// checkSignerFlags checks that exactly one of --key and --ssh-key is
// given, before any work is done.
func checkSignerFlags(keyFile, sshKey string) error {
	switch {
	case keyFile != "" && sshKey != "":
		return usageError("--key and --ssh-key exclude each other: sign with one key")
	case keyFile == "" && sshKey == "":
		return usageError("--key is required: the private key you sign with (or --ssh-key, an SSH key or the .pub of a key in ssh-agent)")
	}
	return nil
}

// openApprovalSigner opens the key a statement is signed with: --key, a
// PEM private key (writ keygen, cosign); or --ssh-key, an OpenSSH private
// key file, or a public key file (a path ending in .pub, or a file holding
// an SSH public key line) whose private half ssh-agent holds
// (SSH_AUTH_SOCK). A password or passphrase comes from WRIT_KEY_PASSWORD
// or the terminal.
func openApprovalSigner(ctx context.Context, env *cliEnv, keyFile, sshKey string) (approval.EnvelopeSigner, error) {
	if err := checkSignerFlags(keyFile, sshKey); err != nil {
		return nil, err
	}
	if keyFile != "" {
		s, _, err := loadApprovalSigner(env, keyFile)
		if err != nil {
			return nil, err
		}
		es, err := approval.NewPEMSigner(s)
		if err != nil {
			return nil, usageError("--key %s: %v", keyFile, err)
		}
		return es, nil
	}
	data, err := config.ReadFile(sshKey, 1<<20)
	if err != nil {
		return nil, usageError("--ssh-key: %v", err)
	}
	if pub, ok, err := sshPublicKeyFile(sshKey, data); ok {
		if err != nil {
			return nil, usageError("--ssh-key %s: %v", sshKey, err)
		}
		socket := env.getenv("SSH_AUTH_SOCK")
		if socket == "" {
			return nil, usageError("--ssh-key %s is a public key: writ signs through ssh-agent with it, but SSH_AUTH_SOCK is not set (start ssh-agent and ssh-add the key, or give the private key file)", sshKey)
		}
		s, err := approval.NewSSHAgentSigner(ctx, socket, pub)
		if err != nil {
			return nil, usageError("--ssh-key %s: %v", sshKey, err)
		}
		return s, nil
	}
	signer, err := parseSSHPrivateKey(env, sshKey, data)
	if err != nil {
		return nil, err
	}
	s, err := approval.NewSSHSigner(signer)
	if err != nil {
		return nil, usageError("--ssh-key %s: %v", sshKey, err)
	}
	return s, nil
}

// sshPublicKeyFile reports whether an --ssh-key file is a public key (its
// name ends in .pub, or it holds an SSH public key line), and parses it.
func sshPublicKeyFile(path string, data []byte) (ssh.PublicKey, bool, error) {
	if !keys.IsSSHLine(data) {
		if strings.Contains(string(data), "-----BEGIN PUBLIC KEY-----") {
			return nil, true, errors.New("a PEM public key: --ssh-key takes OpenSSH keys (a PEM key signs with --key and its private key file)")
		}
		return nil, false, nil // a private key, OpenSSH or PEM
	}
	_, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil && !strings.HasSuffix(path, ".pub") {
		return nil, false, nil
	}
	pub, _, err := keys.ParseSSHPublic(data)
	return pub, true, err
}

// parseSSHPrivateKey reads an OpenSSH private key, asking for its
// passphrase when it has one.
func parseSSHPrivateKey(env *cliEnv, path string, data []byte) (ssh.Signer, error) {
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		password, perr := readPassword(env, false)
		if perr != nil {
			return nil, usageError("--ssh-key %s is protected by a passphrase: %v", path, perr)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(data, password)
		clear(password)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, usageError("--ssh-key %s: wrong passphrase", path)
		}
	}
	if err != nil {
		return nil, usageError("--ssh-key %s: not an SSH private key (%v); a FIDO key (sk-…) signs through ssh-agent: give its .pub file", path, err)
	}
	return signer, nil
}

// loadApprovalSigner reads a private key, asking for its password when it
// is encrypted.
func loadApprovalSigner(env *cliEnv, file string) (signature.Signer, crypto.PublicKey, error) {
	data, err := config.ReadFile(file, 1<<20)
	if err != nil {
		return nil, nil, usageError("--key: %v", err)
	}
	var password []byte
	if keys.IsEncrypted(data) {
		if password, err = readPassword(env, false); err != nil {
			return nil, nil, usageError("%v", err)
		}
	}
	priv, err := keys.ParsePrivate(data, password)
	if err != nil {
		return nil, nil, usageError("--key %s: %v", file, err)
	}
	s, err := keys.Signer(priv)
	if err != nil {
		return nil, nil, usageError("--key %s: %v", file, err)
	}
	return s, priv.Public(), nil
}

// keyringWarnings checks, when the repository has an approvers file, that
// the signer's key is registered for the approver, in the form it signs
// with (PEM or SSH). The server judges with the target branch's file, so
// these are warnings only.
func keyringWarnings(root, approver, decision string, signer approval.EnvelopeSigner) []string {
	if root == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(approval.KeyringPath)))
	if err != nil {
		return nil
	}
	kr, problems := approval.ParseKeyring(approval.KeyringPath, data)
	if problems != nil {
		return []string{fmt.Sprintf("cannot check your key: %s is invalid (%d problems; run writ validate)", approval.KeyringPath, len(problems))}
	}
	person, ok := kr.Person(approver)
	if !ok {
		return []string{fmt.Sprintf("%q is not in %s: the envelope counts only once the target branch lists you", approver, approval.KeyringPath)}
	}
	fp, err := signer.KeyID()
	if err != nil {
		return nil
	}
	var out []string
	k, ok := kr.Key(fp)
	switch {
	case !ok || k.Person != person:
		out = append(out, fmt.Sprintf("this key (%s) is not one of %q's keys in %s", fp, approver, approval.KeyringPath))
	case k.SSH == nil && signer.SSHPublicKey() != nil:
		out = append(out, fmt.Sprintf("this key (%s) is registered in %s as a PEM key: its SSH signatures do not count; register its SSH line, or sign with --key", fp, approval.KeyringPath))
	case k.SSH != nil && signer.SSHPublicKey() == nil:
		out = append(out, fmt.Sprintf("this key (%s) is registered in %s as an SSH key: only its SSH signatures count; sign with --ssh-key", fp, approval.KeyringPath))
	}
	if person.Disabled {
		out = append(out, fmt.Sprintf("%q is disabled in %s", approver, approval.KeyringPath))
	}
	if decision == approval.Propose && !person.Has(approval.RoleAnalyst) && !person.Has(approval.RoleAdmin) {
		out = append(out, fmt.Sprintf("%q does not hold the analyst role: the proposal will not count", approver))
	}
	return out
}
