package approval

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/writ-sec/writ/internal/keys"
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
	// SHA256 is the hex sha256 of Raw: the envelope's identity in storage.
	SHA256 string
	// KeyID is the signature's key id hint ("" when the signer gave none,
	// as cosign does). It is unauthenticated: it only picks the key to try.
	KeyID string
	// Payload is the signed statement's bytes.
	Payload   []byte
	Statement Statement

	dsse ssldsse.Envelope // what the signature is verified on (no key id)
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
	h := sha256.Sum256(raw)
	e.SHA256 = hex.EncodeToString(h[:])
	payload, err := e.dsse.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64: %v", ErrMalformed, err)
	}
	e.Payload = payload
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

// verify checks the envelope's signature with one key, through sigstore's
// DSSE adapter and the DSSE envelope verifier.
func (e *Envelope) verify(k *Key) error {
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

// Sign signs a statement as a DSSE envelope and returns its JSON. The
// signature's keyid is the key's SSH-style SHA256 fingerprint, the form
// securesystemslib's DSSE verifier derives from a key and skips
// signatures by when they differ; any other key id there could make such
// verifiers ignore the signature. The statement must validate.
func Sign(signer signature.Signer, st Statement) ([]byte, error) {
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("sign approval: %w", err)
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("sign approval: encode statement: %w", err)
	}
	out, err := signPayload(signer, payload)
	if err != nil {
		return nil, fmt.Errorf("sign approval: %w", err)
	}
	return out, nil
}

// signPayload wraps payload in a signed DSSE envelope.
func signPayload(signer signature.Signer, payload []byte) ([]byte, error) {
	pub, err := signer.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if err := keys.CheckPublic(pub); err != nil {
		return nil, err
	}
	keyID, err := ssldsse.SHA256KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	es, err := ssldsse.NewEnvelopeSigner(&sigdsse.SignerAdapter{SignatureSigner: signer, Pub: pub, PubKeyID: keyID})
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(context.Background(), PayloadType, payload)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(env); err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	if len(out) > MaxEnvelopeBytes {
		return nil, fmt.Errorf("envelope is %d bytes; the limit is %d", len(out), MaxEnvelopeBytes)
	}
	return out, nil
}
