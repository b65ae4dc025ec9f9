package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/keys"
)

// EnvelopeSigner makes the one signature of an approval envelope: a PEM
// key through sigstore (NewPEMSigner), an OpenSSH key (NewSSHSigner) or a
// key held by ssh-agent (NewSSHAgentSigner), both as armored SSHSIGs. It
// is securesystemslib's dsse.Signer with one more method.
type EnvelopeSigner interface {
	// KeyID is the signature's keyid: the key's SSH-style SHA256
	// fingerprint (ssh.FingerprintSHA256), for PEM and SSH keys alike.
	KeyID() (string, error)
	// Sign signs the DSSE pre-authentication encoding of the envelope
	// (PAE: "DSSEv1 <len(type)> <type> <len(body)> <body>"); the result,
	// base64-encoded, is the signature's sig.
	Sign(ctx context.Context, pae []byte) ([]byte, error)
	// SSHPublicKey is the OpenSSH public key of an SSH signer, whose
	// signatures count only for the key registered as an SSH line; nil for
	// a PEM signer.
	SSHPublicKey() ssh.PublicKey
}

// pemSigner signs with a sigstore signer: the signature is the raw one
// over the PAE, as cosign makes it.
type pemSigner struct {
	*sigdsse.SignerAdapter
}

func (pemSigner) SSHPublicKey() ssh.PublicKey { return nil }

// NewPEMSigner wraps a sigstore signer (a PEM key from writ keygen or
// cosign) of an accepted algorithm and size.
func NewPEMSigner(s signature.Signer) (EnvelopeSigner, error) {
	pub, err := s.PublicKey()
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
	return pemSigner{&sigdsse.SignerAdapter{SignatureSigner: s, Pub: pub, PubKeyID: keyID}}, nil
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
	s, err := NewPEMSigner(signer)
	if err != nil {
		return nil, fmt.Errorf("sign approval: %w", err)
	}
	return SignWith(context.Background(), s, st)
}

// SignWith is Sign with any EnvelopeSigner: a PEM key, an OpenSSH key or
// ssh-agent. The statement must validate.
func SignWith(ctx context.Context, signer EnvelopeSigner, st Statement) ([]byte, error) {
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("sign approval: %w", err)
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("sign approval: encode statement: %w", err)
	}
	out, err := signPayloadWith(ctx, signer, payload)
	if err != nil {
		return nil, fmt.Errorf("sign approval: %w", err)
	}
	return out, nil
}

// signPayload wraps payload in a DSSE envelope signed with a sigstore
// signer.
func signPayload(signer signature.Signer, payload []byte) ([]byte, error) {
	s, err := NewPEMSigner(signer)
	if err != nil {
		return nil, err
	}
	return signPayloadWith(context.Background(), s, payload)
}

// signPayloadWith wraps payload in a signed DSSE envelope.
func signPayloadWith(ctx context.Context, signer EnvelopeSigner, payload []byte) ([]byte, error) {
	es, err := ssldsse.NewEnvelopeSigner(signer)
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(ctx, PayloadType, payload)
	if err != nil {
		return nil, err
	}
	return marshalEnvelope(env)
}

// marshalEnvelope encodes a signed envelope as writ's signers write it:
// compact JSON, no HTML escaping, no trailing newline, within
// MaxEnvelopeBytes.
func marshalEnvelope(env *ssldsse.Envelope) ([]byte, error) {
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
