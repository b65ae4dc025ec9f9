// Package keys holds writ's signing keys: generation, PKCS#8 PEM encoding
// (password-encrypted on request), parsing of private and public keys with
// the algorithms writ accepts, key ids, and sigstore signers and verifiers
// for them. Approvals and the audit log both sign with these keys.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/youmark/pkcs8"
)

// Algorithm names accepted by Generate.
const (
	Ed25519   = "ed25519"
	ECDSAP256 = "ecdsa-p256"
	ECDSAP384 = "ecdsa-p384"
	RSA3072   = "rsa-3072"
	RSA4096   = "rsa-4096"
)

// Algorithms lists what Generate makes, the default first.
var Algorithms = []string{Ed25519, ECDSAP256, ECDSAP384, RSA3072, RSA4096}

// MinRSABits is the smallest RSA modulus accepted anywhere.
const MinRSABits = 2048

// ErrWeakKey is returned for keys of an algorithm or size writ refuses.
var ErrWeakKey = errors.New("key algorithm or size not accepted")

// Generate makes a new private key.
func Generate(alg string) (crypto.Signer, error) {
	switch alg {
	case "", Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key algorithm %q (one of %s)", alg, strings.Join(Algorithms, ", "))
}

// MarshalPrivate encodes a private key as PKCS#8 PEM ("PRIVATE KEY"), or,
// with a password, as encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY": PBES2 with
// scrypt and AES-256-CBC).
func MarshalPrivate(priv crypto.Signer, password []byte) ([]byte, error) {
	if len(password) == 0 {
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("encode private key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	der, err := pkcs8.MarshalPrivateKey(priv, password, &pkcs8.Opts{
		Cipher: pkcs8.AES256CBC,
		KDFOpts: pkcs8.ScryptOpts{
			CostParameter: 1 << 15, BlockSize: 8, ParallelizationParameter: 1, SaltSize: 16,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// IsEncrypted reports whether a PEM private key needs a password.
func IsEncrypted(pemBytes []byte) bool {
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		return false
	}
	return b.Type == "ENCRYPTED PRIVATE KEY" || strings.HasPrefix(b.Type, "ENCRYPTED ") || x509.IsEncryptedPEMBlock(b) //nolint:staticcheck // legacy PEM encryption is only detected
}

// ParsePrivate decodes a PEM private key: PKCS#8 (plain or encrypted),
// SEC 1 EC, PKCS#1 RSA, and cosign's encrypted format. password may be nil
// for unencrypted keys. The key must be of an accepted algorithm and size.
func ParsePrivate(pemBytes, password []byte) (crypto.Signer, error) {
	if IsEncrypted(pemBytes) && len(password) == 0 {
		return nil, errors.New("private key is encrypted: a password is needed")
	}
	pf := func(bool) ([]byte, error) { return password, nil }
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, pf)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse private key: %T cannot sign", k)
	}
	if err := CheckPublic(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// MarshalPublic encodes a public key as PKIX PEM ("PUBLIC KEY").
func MarshalPublic(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublic decodes one PKIX PEM public key of an accepted algorithm and
// size.
func ParsePublic(pemBytes []byte) (crypto.PublicKey, error) {
	b, rest := pem.Decode(pemBytes)
	if b == nil {
		return nil, errors.New("parse public key: no PEM block")
	}
	if b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("parse public key: PEM block is %q, want \"PUBLIC KEY\"", b.Type)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("parse public key: data after the PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if err := CheckPublic(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// CheckPublic accepts ed25519, ECDSA P-256 and P-384, and RSA of at least
// MinRSABits.
func CheckPublic(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s (P-256 or P-384 only)", ErrWeakKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("%w: RSA key of %d bits (at least %d)", ErrWeakKey, k.N.BitLen(), MinRSABits)
		}
		return nil
	}
	return fmt.Errorf("%w: %T", ErrWeakKey, pub)
}

// Algorithm names a public key's algorithm, e.g. "ed25519", "ecdsa-p256",
// "rsa-3072".
func Algorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return Ed25519
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// ID is a key's id: the hex sha256 of its PKIX DER encoding.
func ID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:]), nil
}

// hashFor is the digest each algorithm signs with: ed25519 signs the
// message itself; ECDSA P-384 uses SHA-384; the rest SHA-256.
func hashFor(pub crypto.PublicKey) crypto.Hash {
	if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P384() {
		return crypto.SHA384
	}
	return crypto.SHA256
}

// Signer returns a sigstore signer for a private key. RSA signs with
// PKCS#1 v1.5 (what cosign uses).
func Signer(priv crypto.Signer) (signature.Signer, error) {
	if err := CheckPublic(priv.Public()); err != nil {
		return nil, err
	}
	s, err := signature.LoadSigner(priv, hashFor(priv.Public()))
	if err != nil {
		return nil, fmt.Errorf("load signer: %w", err)
	}
	return s, nil
}

// Verifier returns a sigstore verifier for a public key.
func Verifier(pub crypto.PublicKey) (signature.Verifier, error) {
	if err := CheckPublic(pub); err != nil {
		return nil, err
	}
	v, err := signature.LoadVerifier(pub, hashFor(pub))
	if err != nil {
		return nil, fmt.Errorf("load verifier: %w", err)
	}
	return v, nil
}
