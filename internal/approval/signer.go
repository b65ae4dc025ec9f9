package approval

import (
	"errors"
	"fmt"
)

// ErrUnknownSigner means no key of the trusted keyring made the signature.
var ErrUnknownSigner = errors.New("not signed by a key in the trusted approvers file")

// VerifySigner checks the envelope's signature against the trusted
// keyring and returns the key that made it. It says nothing about whether
// the statement counts (subjects, digests, roles, time): Verify judges that.
// Intake channels use it to refuse unverifiable envelopes at the door.
func (e *Envelope) VerifySigner(k *Keyring) (*Key, error) {
	if k == nil {
		return nil, errors.New("no trusted approvers file")
	}
	// The key id hint narrows the search; it is unauthenticated, so a miss
	// falls back to every key.
	if e.KeyID != "" {
		if key, ok := k.Key(e.KeyID); ok && e.verify(key) == nil {
			return checkSigner(key, e)
		}
	}
	if e.ssh.armored || e.webauthn.shaped {
		// An SSH signature names its key, a WebAuthn one its credential: no
		// other can verify it.
		key, err := e.namedKey(k)
		switch {
		case key == nil:
			return nil, fmt.Errorf("%w: %v", ErrUnknownSigner, err)
		case err != nil:
			return nil, fmt.Errorf("%w: the signature does not verify with key %s of %s: %v", ErrUnknownSigner, key.DSSEKeyID, key.Person.ID, err)
		}
		return checkSigner(key, e)
	}
	for _, key := range k.keys {
		if e.verify(key) == nil {
			return checkSigner(key, e)
		}
	}
	return nil, ErrUnknownSigner
}

func checkSigner(key *Key, e *Envelope) (*Key, error) {
	if key.Person.Disabled {
		return key, fmt.Errorf("signed by %s, whose entry is disabled", key.Person.ID)
	}
	if a := e.Statement.Predicate.Approver; a != "" && a != key.Person.ID {
		return key, fmt.Errorf("signed by %s's key but names approver %q", key.Person.ID, a)
	}
	return key, nil
}

// namedKey finds the key an SSH or WebAuthn signature names: sshKey or
// webauthnKey.
func (e *Envelope) namedKey(k *Keyring) (*Key, error) {
	if e.webauthn.shaped {
		return e.webauthnKey(k)
	}
	return e.sshKey(k)
}

// sshKey finds the key of the keyring an SSH signature names (by its
// fingerprint) and verifies the signature with it. It returns the key
// with an error saying why it does not verify, or no key when the
// signature cannot be read or its key is not in the keyring.
func (e *Envelope) sshKey(k *Keyring) (*Key, error) {
	s := &e.ssh
	if s.err != nil {
		return nil, fmt.Errorf("no key in the approvers file verifies the signature: %v", s.err)
	}
	key, ok := k.Key(s.fingerprint)
	if !ok {
		return nil, fmt.Errorf("signed by SSH key %s (%s), which is not in the approvers file", s.fingerprint, s.sig.PublicKey.Type())
	}
	if err := e.verify(key); err != nil {
		return key, err
	}
	return key, nil
}
