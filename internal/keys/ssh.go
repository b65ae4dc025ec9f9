package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/crypto/ssh"
)

// OpenSSH public key types accepted for approvals: the key types of
// ssh-keygen's defaults and of FIDO security keys, whose signatures are
// SSHSIG (OpenSSH's PROTOCOL.sshsig).
const (
	SSHEd25519   = ssh.KeyAlgoED25519   // "ssh-ed25519"
	SSHSKEd25519 = ssh.KeyAlgoSKED25519 // "sk-ssh-ed25519@openssh.com", a FIDO security key
	SSHECDSAP256 = ssh.KeyAlgoECDSA256  // "ecdsa-sha2-nistp256"
)

// SSHTypes lists the accepted OpenSSH key types.
var SSHTypes = []string{SSHEd25519, SSHSKEd25519, SSHECDSAP256}

// SKEd25519 is the algorithm name of an sk-ssh-ed25519@openssh.com key.
const SKEd25519 = "sk-ed25519"

// maxSSHLine bounds one OpenSSH public key line.
const maxSSHLine = 16 << 10

// IsSSHLine reports whether text is meant as an OpenSSH public key line
// rather than a PEM block: it has no "-----BEGIN".
func IsSSHLine(text []byte) bool {
	return !bytes.Contains(text, []byte("-----BEGIN"))
}

// ParseSSHPublic parses one OpenSSH public key line, "TYPE BASE64
// [COMMENT]" as in a .pub file or on GitHub, of an accepted type. Options
// (authorized_keys' "no-touch-required" and the like) and several lines
// are refused. It returns the key and the comment.
func ParseSSHPublic(line []byte) (ssh.PublicKey, string, error) {
	text := strings.TrimSpace(string(line))
	switch {
	case text == "":
		return nil, "", errors.New("parse SSH public key: empty")
	case len(text) > maxSSHLine:
		return nil, "", fmt.Errorf("parse SSH public key: %d bytes; the limit is %d", len(text), maxSSHLine)
	case strings.ContainsAny(text, "\r\n"):
		return nil, "", errors.New("parse SSH public key: one key per line: the text spans several lines")
	}
	fields := strings.Fields(text)
	typ := fields[0]
	if !slices.Contains(SSHTypes, typ) {
		if strings.Contains(typ, "=") || strings.Contains(typ, ",") || typ == "no-touch-required" || typ == "verify-required" {
			return nil, "", fmt.Errorf("parse SSH public key: options (%q) are not accepted: give the key line alone, %s", typ, sshTypesHint())
		}
		return nil, "", fmt.Errorf("%w: SSH key type %q (accepted: %s)", ErrWeakKey, typ, strings.Join(SSHTypes, ", "))
	}
	if len(fields) < 2 {
		return nil, "", fmt.Errorf("parse SSH public key: %s line without key data", typ)
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return nil, "", fmt.Errorf("parse SSH public key: key data is not base64: %v", err)
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, "", fmt.Errorf("parse SSH public key: %v", err)
	}
	if pub.Type() != typ {
		return nil, "", fmt.Errorf("parse SSH public key: the line says %s, but the key data is a %s key", typ, pub.Type())
	}
	if err := CheckSSHPublic(pub); err != nil {
		return nil, "", err
	}
	comment := strings.Join(fields[2:], " ")
	if strings.IndexFunc(comment, unicode.IsControl) >= 0 {
		return nil, "", errors.New("parse SSH public key: control characters in the comment")
	}
	return pub, comment, nil
}

func sshTypesHint() string {
	return "TYPE BASE64 [COMMENT] with TYPE one of " + strings.Join(SSHTypes, ", ")
}

// CheckSSHPublic accepts ssh-ed25519, sk-ssh-ed25519@openssh.com and
// ecdsa-sha2-nistp256 keys.
func CheckSSHPublic(pub ssh.PublicKey) error {
	if pub == nil {
		return fmt.Errorf("%w: no key", ErrWeakKey)
	}
	if !slices.Contains(SSHTypes, pub.Type()) {
		return fmt.Errorf("%w: SSH key type %q (accepted: %s)", ErrWeakKey, pub.Type(), strings.Join(SSHTypes, ", "))
	}
	cp, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return fmt.Errorf("%w: SSH key type %q has no public key", ErrWeakKey, pub.Type())
	}
	switch k := cp.CryptoPublicKey().(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: ed25519 key of %d bytes", ErrWeakKey, len(k))
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ECDSA curve %s in an %s key", ErrWeakKey, k.Curve.Params().Name, pub.Type())
		}
	default:
		return fmt.Errorf("%w: %T", ErrWeakKey, k)
	}
	return nil
}

// IsSK reports whether an SSH key lives on a FIDO security key.
func IsSK(pub ssh.PublicKey) bool { return pub != nil && pub.Type() == SSHSKEd25519 }

// SSHID is writ's key id of an accepted OpenSSH key. For ssh-ed25519 and
// ecdsa-sha2-nistp256 it is ID of the key inside (the hex sha256 of its
// PKIX DER), so a key is the same key whether given as PEM or as an SSH
// line. An sk-ssh-ed25519@openssh.com key is more than its ed25519 key (it
// binds an application, usually "ssh:"), and has no PKIX form: its id is
// the hex sha256 of its SSH wire encoding.
func SSHID(pub ssh.PublicKey) (string, error) {
	if err := CheckSSHPublic(pub); err != nil {
		return "", err
	}
	if IsSK(pub) {
		h := sha256.Sum256(pub.Marshal())
		return hex.EncodeToString(h[:]), nil
	}
	return ID(pub.(ssh.CryptoPublicKey).CryptoPublicKey())
}

// SSHMaterialID is the id of the signing key inside an OpenSSH key: ID of
// its ed25519 or ECDSA key, the FIDO key's included. Two entries with the
// same material are the same signer, whatever their form.
func SSHMaterialID(pub ssh.PublicKey) (string, error) {
	if err := CheckSSHPublic(pub); err != nil {
		return "", err
	}
	return ID(pub.(ssh.CryptoPublicKey).CryptoPublicKey())
}

// SSHAlgorithm names an accepted OpenSSH key's algorithm as Algorithm
// does ("ed25519", "ecdsa-p256"), and "sk-ed25519" for a FIDO key.
func SSHAlgorithm(pub ssh.PublicKey) string {
	if IsSK(pub) {
		return SKEd25519
	}
	if cp, ok := pub.(ssh.CryptoPublicKey); ok {
		return Algorithm(cp.CryptoPublicKey())
	}
	return pub.Type()
}

// MarshalSSHLine is the OpenSSH public key line of a key: "TYPE BASE64"
// and the comment when one is given.
func MarshalSSHLine(pub ssh.PublicKey, comment string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment = strings.TrimSpace(comment); comment != "" {
		line += " " + comment
	}
	return line
}
