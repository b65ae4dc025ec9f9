package audit

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/writ-sec/writ/internal/keys"
)

// SigningKey signs entries and checkpoints. It formats and logs as its id,
// never as key material.
type SigningKey struct {
	id     string
	alg    string
	pub    crypto.PublicKey
	pubPEM string
	priv   crypto.Signer
	signer signature.Signer
}

// NewSigningKey wraps a private key (ed25519 or ECDSA P-256/P-384; RSA is
// refused: its signatures are large and slow for one per entry).
func NewSigningKey(priv crypto.Signer) (*SigningKey, error) {
	if err := keys.CheckPublic(priv.Public()); err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	alg := keys.Algorithm(priv.Public())
	if strings.HasPrefix(alg, "rsa") {
		return nil, fmt.Errorf("audit signing key: %s is not accepted for the audit log (ed25519 or ECDSA)", alg)
	}
	id, err := keys.ID(priv.Public())
	if err != nil {
		return nil, err
	}
	pubPEM, err := keys.MarshalPublic(priv.Public())
	if err != nil {
		return nil, err
	}
	s, err := keys.Signer(priv)
	if err != nil {
		return nil, err
	}
	return &SigningKey{id: id, alg: alg, pub: priv.Public(), pubPEM: string(pubPEM), priv: priv, signer: s}, nil
}

// LoadSigningKey reads a PEM private key (password may be nil for an
// unencrypted key).
func LoadSigningKey(path string, password []byte) (*SigningKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit signing key: %w", err)
	}
	priv, err := keys.ParsePrivate(b, password)
	if err != nil {
		return nil, fmt.Errorf("audit signing key %s: %w", path, err)
	}
	return NewSigningKey(priv)
}

// ID is the key id: hex sha256 of the public key's PKIX DER.
func (k *SigningKey) ID() string { return k.id }

// Algorithm is e.g. "ed25519" or "ecdsa-p256".
func (k *SigningKey) Algorithm() string { return k.alg }

// Public is the public key.
func (k *SigningKey) Public() crypto.PublicKey { return k.pub }

// PublicPEM is the public key in PKIX PEM.
func (k *SigningKey) PublicPEM() string { return k.pubPEM }

// String names the key by id.
func (k *SigningKey) String() string { return "audit key " + k.id }

// GoString names the key by id, so %#v never prints key material.
func (k *SigningKey) GoString() string { return k.String() }

// LogValue logs the key by id and algorithm.
func (k *SigningKey) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("<none>")
	}
	return slog.GroupValue(slog.String("id", k.id), slog.String("algorithm", k.alg))
}

func (k *SigningKey) sign(msg []byte) ([]byte, error) {
	sig, err := k.signer.SignMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", k, err)
	}
	return sig, nil
}

// Files of the key EnsureKey keeps in the data directory.
const (
	keyDirName  = "audit"
	keyFileName = "audit.key"
	pubFileName = "audit.pub"
)

// EnsureKey returns the audit signing key kept in dataDir/audit/audit.key,
// creating it (ed25519, PKCS#8 PEM, mode 0600, with audit.pub beside it)
// when there is none; created reports which. Two processes racing to create
// it end up with the same key.
func EnsureKey(dataDir string) (key *SigningKey, created bool, err error) {
	dir := filepath.Join(dataDir, keyDirName)
	keyPath := filepath.Join(dir, keyFileName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("audit key directory: %w", err)
	}
	if _, err := os.Lstat(keyPath); errors.Is(err, fs.ErrNotExist) {
		priv, err := keys.Generate(keys.Ed25519)
		if err != nil {
			return nil, false, err
		}
		pemBytes, err := keys.MarshalPrivate(priv, nil)
		if err != nil {
			return nil, false, err
		}
		created, err = createExclusive(keyPath, pemBytes, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("create audit signing key: %w", err)
		}
	} else if err != nil {
		return nil, false, fmt.Errorf("audit signing key: %w", err)
	}
	key, err = LoadSigningKey(keyPath, nil)
	if err != nil {
		return nil, false, err
	}
	pubPath := filepath.Join(dir, pubFileName)
	if old, err := os.ReadFile(pubPath); err != nil || string(old) != key.pubPEM {
		if err := writeFileAtomic(pubPath, []byte(key.pubPEM), 0o644); err != nil {
			return nil, false, fmt.Errorf("write audit public key: %w", err)
		}
	}
	return key, created, nil
}

// createExclusive writes a complete file at path unless one exists: the
// bytes go to a temporary file, are synced, and are linked into place, so
// a crash never leaves a half-written key. It reports whether it created
// the file.
func createExclusive(path string, data []byte, mode os.FileMode) (bool, error) {
	tmp, err := writeTemp(path, data, mode)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, syncDir(filepath.Dir(path))
}

// writeFileAtomic replaces path with data: temporary file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func writeTemp(path string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// PublicKey is a verification key with the span of entry times it may sign.
type PublicKey struct {
	ID        string
	Algorithm string
	PEM       string
	Key       crypto.PublicKey
	// ValidFrom and ValidUntil bound the times of entries the key may sign
	// (ValidFrom <= time < ValidUntil); zero means unbounded.
	ValidFrom, ValidUntil time.Time

	verifier signature.Verifier
}

// LogValue logs the key by id.
func (k *PublicKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.ID), slog.String("algorithm", k.Algorithm))
}

// NewPublicKey wraps a public key.
func NewPublicKey(pub crypto.PublicKey) (*PublicKey, error) {
	if err := keys.CheckPublic(pub); err != nil {
		return nil, err
	}
	id, err := keys.ID(pub)
	if err != nil {
		return nil, err
	}
	pemBytes, err := keys.MarshalPublic(pub)
	if err != nil {
		return nil, err
	}
	v, err := keys.Verifier(pub)
	if err != nil {
		return nil, err
	}
	return &PublicKey{ID: id, Algorithm: keys.Algorithm(pub), PEM: string(pemBytes), Key: pub, verifier: v}, nil
}

// ParsePublicKey reads one PKIX PEM public key.
func ParsePublicKey(pemBytes []byte) (*PublicKey, error) {
	pub, err := keys.ParsePublic(pemBytes)
	if err != nil {
		return nil, err
	}
	return NewPublicKey(pub)
}

func (k *PublicKey) validAt(t time.Time) bool {
	if !k.ValidFrom.IsZero() && t.Before(k.ValidFrom) {
		return false
	}
	if !k.ValidUntil.IsZero() && !t.Before(k.ValidUntil) {
		return false
	}
	return true
}

func (k *PublicKey) verify(msg, sig []byte) error {
	return k.verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg))
}

// ed25519 returns the key as ed25519, for checkpoint notes.
func (k *PublicKey) ed25519() (ed25519.PublicKey, bool) {
	p, ok := k.Key.(ed25519.PublicKey)
	return p, ok
}

// KeySet is a set of verification keys by id.
type KeySet struct {
	keys map[string]*PublicKey
}

// NewKeySet returns a set holding keys.
func NewKeySet(ks ...*PublicKey) *KeySet {
	s := &KeySet{keys: make(map[string]*PublicKey)}
	for _, k := range ks {
		s.keys[k.ID] = k
	}
	return s
}

// Add puts a key in the set, replacing one with the same id.
func (s *KeySet) Add(k *PublicKey) { s.keys[k.ID] = k }

// Get returns the key with the id.
func (s *KeySet) Get(id string) (*PublicKey, bool) {
	k, ok := s.keys[id]
	return k, ok
}

// Len is the number of keys.
func (s *KeySet) Len() int { return len(s.keys) }

// Keys returns the keys sorted by id.
func (s *KeySet) Keys() []*PublicKey {
	out := make([]*PublicKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// clone copies the set (keys are shared; their validity is not modified
// through a clone).
func (s *KeySet) clone() *KeySet {
	c := NewKeySet()
	for id, k := range s.keys {
		kk := *k
		c.keys[id] = &kk
	}
	return c
}

// Trusted-key file headers: a PEM block may bound the entry times a key
// may sign.
const (
	headerValidFrom  = "Valid-From"
	headerValidUntil = "Valid-Until"
)

// LoadKeySet reads trusted public keys: a PEM file with one or more
// "PUBLIC KEY" blocks, or a directory whose *.pub and *.pem files are read
// so. A block may carry the headers Valid-From and Valid-Until (RFC 3339)
// to bound the times of the entries the key may sign.
func LoadKeySet(path string) (*KeySet, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("trusted keys: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		files = nil
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("trusted keys: %w", err)
		}
		for _, e := range ents {
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".pub") || strings.HasSuffix(e.Name(), ".pem")) {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	ks := NewKeySet()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("trusted keys: %w", err)
		}
		if err := ks.addPEM(b); err != nil {
			return nil, fmt.Errorf("trusted keys: %s: %w", f, err)
		}
	}
	if ks.Len() == 0 {
		return nil, fmt.Errorf("trusted keys: no public key in %s", path)
	}
	return ks, nil
}

func (s *KeySet) addPEM(b []byte) error {
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		n++
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return fmt.Errorf("block %d is a private key: give the public key (.pub)", n)
		}
		if block.Type != "PUBLIC KEY" {
			return fmt.Errorf("block %d is %q, want \"PUBLIC KEY\"", n, block.Type)
		}
		k, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: block.Bytes}))
		if err != nil {
			return fmt.Errorf("block %d: %w", n, err)
		}
		for name, v := range block.Headers {
			var t *time.Time
			switch name {
			case headerValidFrom:
				t = &k.ValidFrom
			case headerValidUntil:
				t = &k.ValidUntil
			default:
				return fmt.Errorf("block %d: unknown header %q (Valid-From, Valid-Until)", n, name)
			}
			p, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return fmt.Errorf("block %d: %s %q is not RFC 3339", n, name, v)
			}
			*t = p
		}
		s.Add(k)
	}
	if n == 0 {
		return errors.New("no PEM block")
	}
	if len(bytes.TrimSpace(b)) > 0 {
		return errors.New("data after the last PEM block")
	}
	return nil
}

// rotationContext separates the new key's proof of possession from other
// signatures.
const rotationContext = "writ-audit-key-rotation-v1\n"

// rotationMessage is what the new key signs in a rotation entry: it binds
// the log, the retiring key and the new key.
func rotationMessage(origin, oldID, newID string) []byte {
	return []byte(rotationContext + origin + "\n" + oldID + "\n" + newID + "\n")
}

// KeyRotation is the payload of an audit.key_rotated entry. The entry is
// signed by the old key; Proof is the new key's signature over
// rotationMessage, proving whoever rotated holds it.
type KeyRotation struct {
	NewKeyAlgorithm string `json:"new_key_algorithm"`
	NewKeyID        string `json:"new_key_id"`
	NewPublicKey    string `json:"new_public_key"`
	OldKeyID        string `json:"old_key_id"`
	Proof           string `json:"proof"`
}

// parseRotation checks a rotation payload and returns the key it
// introduces.
func parseRotation(payload []byte, origin, signerID string) (*PublicKey, error) {
	var r KeyRotation
	dec := jsonDecoder(payload)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("key rotation payload: %w", err)
	}
	if r.OldKeyID != signerID {
		return nil, fmt.Errorf("key rotation names old key %.16s but is signed by %.16s", r.OldKeyID, signerID)
	}
	k, err := ParsePublicKey([]byte(r.NewPublicKey))
	if err != nil {
		return nil, fmt.Errorf("key rotation: new key: %w", err)
	}
	if k.ID != r.NewKeyID {
		return nil, fmt.Errorf("key rotation: new key id %.16s does not match its public key (%.16s)", r.NewKeyID, k.ID)
	}
	sig, err := base64.StdEncoding.DecodeString(r.Proof)
	if err != nil {
		return nil, fmt.Errorf("key rotation: proof is not base64")
	}
	if err := k.verify(rotationMessage(origin, r.OldKeyID, r.NewKeyID), sig); err != nil {
		return nil, fmt.Errorf("key rotation: the new key's proof of possession does not verify")
	}
	return k, nil
}
