package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
)

// ErrMalformed is wrapped by every error of Parse about the bytes
// themselves (as opposed to whom they are from).
var ErrMalformed = errors.New("malformed approval")

// ErrNotApproval is wrapped when a well-formed in-toto statement carries
// another predicate type than writ's.
var ErrNotApproval = errors.New("not a writ approval")

// envelopeJSON is a DSSE envelope as it travels (strict: no other fields).
type envelopeJSON struct {
	PayloadType string          `json:"payloadType"`
	Payload     string          `json:"payload"`
	Signatures  []signatureJSON `json:"signatures"`
}

type signatureJSON struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Envelope is a decoded, not yet verified, approval envelope.
type Envelope struct {
	// Raw is the envelope's bytes as received.
	Raw []byte
	// SHA256 is the hex sha256 of Raw: these exact bytes, in storage.
	SHA256 string
	// StatementSHA256 is the hex sha256 of Payload: the statement's
	// identity, whatever envelope carries it. The same statement may come
	// in other bytes — other JSON spacing, another base64 alphabet or key
	// id hint, and even another valid signature, which anyone can make from
	// an ECDSA one without the key — so what is withdrawn is the statement,
	// never only one of its envelopes (docs/design.md, rule 2).
	StatementSHA256 string
	// KeyID is the signature's key id hint ("" when the signer gave none,
	// as cosign does). It is unauthenticated: it only picks the key to try.
	KeyID string
	// Payload is the signed statement's bytes.
	Payload   []byte
	Statement Statement

	dsse     ssldsse.Envelope  // what the signature is verified on (no key id)
	ssh      sshSignature      // the signature read as an SSHSIG, for SSH keys
	webauthn webauthnSignature // the signature read as a WebAuthn assertion, for passkeys
}

// StatementDigests are the statement sha256 (Envelope.StatementSHA256) of
// the envelopes that parse, for a channel that withdraws what a text no
// longer carries: what stays is a statement, in whatever bytes. An
// envelope that does not parse was never stored, so it keeps nothing.
func StatementDigests(raws [][]byte) []string {
	out := make([]string, 0, len(raws))
	for _, raw := range raws {
		if e, err := Parse(raw); err == nil {
			out = append(out, e.StatementSHA256)
		}
	}
	return out
}

// Parse decodes an approval envelope strictly — size limit, DSSE envelope
// with one signature, in-toto statement (v1 or v0.1) with writ's predicate,
// no unknown fields or duplicate keys — without verifying the signature.
// Errors wrap ErrMalformed, and also ErrNotApproval for a foreign predicate
// type.
func Parse(raw []byte) (*Envelope, error) {
	if len(raw) > MaxEnvelopeBytes {
		return nil, fmt.Errorf("%w: envelope is %d bytes; the limit is %d", ErrMalformed, len(raw), MaxEnvelopeBytes)
	}
	var ej envelopeJSON
	if err := decodeStrict(raw, &ej); err != nil {
		return nil, fmt.Errorf("%w: DSSE envelope: %v", ErrMalformed, err)
	}
	if ej.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w: payloadType %q, want %q", ErrMalformed, ej.PayloadType, PayloadType)
	}
	if len(ej.Signatures) != 1 {
		return nil, fmt.Errorf("%w: envelope has %d signatures; an approval carries exactly one", ErrMalformed, len(ej.Signatures))
	}
	if ej.Signatures[0].Sig == "" {
		return nil, fmt.Errorf("%w: empty signature", ErrMalformed)
	}
	if len(ej.Signatures[0].KeyID) > 256 {
		return nil, fmt.Errorf("%w: keyid longer than 256 bytes", ErrMalformed)
	}
	e := &Envelope{
		Raw:   raw,
		KeyID: ej.Signatures[0].KeyID,
		dsse: ssldsse.Envelope{
			PayloadType: ej.PayloadType,
			Payload:     ej.Payload,
			Signatures:  []ssldsse.Signature{{Sig: ej.Signatures[0].Sig}},
		},
	}
	e.ssh = readSSHSignature(ej.Signatures[0].Sig)
	e.webauthn = readWebAuthnSignature(ej.Signatures[0].Sig)
	h := sha256.Sum256(raw)
	e.SHA256 = hex.EncodeToString(h[:])
	payload, err := e.dsse.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64: %v", ErrMalformed, err)
	}
	e.Payload = payload
	ph := sha256.Sum256(payload)
	e.StatementSHA256 = hex.EncodeToString(ph[:])
	if err := decodeStrict(payload, &e.Statement); err != nil {
		return nil, fmt.Errorf("%w: statement: %v", ErrMalformed, err)
	}
	if err := e.Statement.Validate(); err != nil {
		var pt *predicateTypeError
		if errors.As(err, &pt) {
			return nil, fmt.Errorf("%w: %w: %v", ErrMalformed, ErrNotApproval, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return e, nil
}

// verify checks the envelope's signature with one key: for a PEM key
// through sigstore's DSSE adapter and the DSSE envelope verifier, for an
// SSH key as an SSHSIG (verifySSH), for a passkey as a WebAuthn assertion
// (verifyWebAuthn). The error says why it does not verify.
func (e *Envelope) verify(k *Key) error {
	switch {
	case k.WebAuthn != nil:
		return e.verifyWebAuthn(k)
	case e.webauthn.shaped:
		kind := "a PEM key"
		if k.SSH != nil {
			kind = "an SSH key"
		}
		return fmt.Errorf("a WebAuthn signature, but key %s is registered as %s: a WebAuthn signature counts only for a key given as a webauthn line", k.DSSEKeyID, kind)
	case k.SSH != nil:
		return e.verifySSH(k)
	case e.ssh.armored:
		return fmt.Errorf("an SSH signature, but key %s is registered as a PEM key: an SSH signature counts only for a key given as an OpenSSH line", k.DSSEKeyID)
	}
	ev, err := ssldsse.NewEnvelopeVerifier(&sigdsse.VerifierAdapter{
		SignatureVerifier: k.verifier,
		Pub:               k.Public,
		PubKeyID:          k.DSSEKeyID,
	})
	if err != nil {
		return err
	}
	_, err = ev.Verify(context.Background(), &e.dsse)
	return err
}
