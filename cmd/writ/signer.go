package main

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/keys"
)

// Loading the key a statement is signed with.

// loadApprovalSigner reads a private key, asking for its password when it
// is encrypted.
func loadApprovalSigner(env *cliEnv, file string) (signature.Signer, crypto.PublicKey, error) {
	data, err := readFileLimited(file, 1<<20)
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
// the key is registered for the approver. The server judges with the
// target branch's file, so these are warnings only.
func keyringWarnings(root, approver, decision string, pub crypto.PublicKey) []string {
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
	id, err := keys.ID(pub)
	if err != nil {
		return nil
	}
	var out []string
	if k, ok := kr.Key(id); !ok || k.Person != person {
		out = append(out, fmt.Sprintf("this key (id %s) is not one of %q's keys in %s", id, approver, approval.KeyringPath))
	}
	if person.Disabled {
		out = append(out, fmt.Sprintf("%q is disabled in %s", approver, approval.KeyringPath))
	}
	if decision == approval.Propose && !person.Has(approval.RoleAnalyst) && !person.Has(approval.RoleAdmin) {
		out = append(out, fmt.Sprintf("%q does not hold the analyst role: the proposal will not count", approver))
	}
	return out
}

// statementSigner signs statements with one key.
type statementSigner interface {
	// KeyID is the key's DSSE key id (its SHA256:... fingerprint).
	KeyID() string
	Sign(ctx context.Context, st approval.Statement) ([]byte, error)
}

// pemSigner signs with a PEM private key.
type pemSigner struct {
	s     signature.Signer
	keyID string
}

func (p *pemSigner) KeyID() string { return p.keyID }

func (p *pemSigner) Sign(_ context.Context, st approval.Statement) ([]byte, error) {
	return approval.Sign(p.s, st)
}

// openApprovalSigner opens the key a statement is signed with: --key (a
// PEM private key).
func openApprovalSigner(env *cliEnv, keyFile, sshKey string) (statementSigner, error) {
	if sshKey != "" {
		return nil, usageError("--ssh-key is not supported yet")
	}
	s, pub, err := loadApprovalSigner(env, keyFile)
	if err != nil {
		return nil, err
	}
	id, err := keyIDOf(pub)
	if err != nil {
		return nil, usageError("--key %s: %v", keyFile, err)
	}
	return &pemSigner{s: s, keyID: id}, nil
}
