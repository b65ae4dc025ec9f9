package approval

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/writ-sec/writ/internal/display"
)

// WebAuthn signatures (docs/approvals.md, Passkeys (WebAuthn)): for a key
// registered as a webauthn line, an envelope signature's sig is the
// standard base64 of a JSON object
//
//	{"type":"writ.webauthn.v1","credentialId":…,"authenticatorData":…,
//	 "clientDataJSON":…,"signature":…}
//
// (values base64url without padding): a WebAuthn assertion
// (navigator.credentials.get) whose challenge is WebAuthnChallenge of the
// envelope's payload. Its keyid is WebAuthnKeyID of the credential.

// WebAuthnSignatureType is the type member of a WebAuthn envelope
// signature.
const WebAuthnSignatureType = "writ.webauthn.v1"

// MaxWebAuthnSignatureBytes bounds the decoded JSON of one WebAuthn
// signature.
const MaxWebAuthnSignatureBytes = 16 << 10

// Bounds of an assertion's parts: authenticator data is 37 bytes plus any
// extensions; client data is a short JSON object; an ES256 signature is at
// most 72 bytes, an Ed25519 one 64.
const (
	maxAuthenticatorDataBytes = 2048
	maxClientDataJSONBytes    = 4096
	maxAssertionSigBytes      = 256
)

// WebAuthnAssertion is what navigator.credentials.get returns that a
// signature needs: the credential's raw id, and the response's
// authenticatorData, clientDataJSON and signature, all raw bytes.
type WebAuthnAssertion struct {
	CredentialID, AuthenticatorData, ClientDataJSON, Signature []byte
}

// WebAuthnChallenge is the challenge a passkey signs to approve payload
// (the statement's JSON, as the envelope carries it): the sha256 of the
// DSSE pre-authentication encoding of (PayloadType, payload), the bytes
// PEM and SSH keys sign. The console passes it to
// navigator.credentials.get as publicKey.challenge.
func WebAuthnChallenge(payload []byte) []byte {
	h := sha256.Sum256(ssldsse.PAE(PayloadType, payload))
	return h[:]
}

// webauthnSigJSON is a WebAuthn envelope signature as it travels.
type webauthnSigJSON struct {
	Type              string `json:"type"`
	CredentialID      string `json:"credentialId"`
	AuthenticatorData string `json:"authenticatorData"`
	ClientDataJSON    string `json:"clientDataJSON"`
	Signature         string `json:"signature"`
}

// WebAuthnEnvelope makes the approval envelope of payload (the statement's
// JSON) signed by a passkey's assertion over WebAuthnChallenge(payload):
// the DSSE envelope writ's other signers make, with keyid
// WebAuthnKeyID(a.CredentialID). The envelope must parse (a valid
// statement, within the size limits); its signature is not verified here
// (that takes the keyring: VerifySigner, Verify).
func WebAuthnEnvelope(payload []byte, a WebAuthnAssertion) ([]byte, error) {
	sig, err := json.Marshal(webauthnSigJSON{
		Type:              WebAuthnSignatureType,
		CredentialID:      b64url.EncodeToString(a.CredentialID),
		AuthenticatorData: b64url.EncodeToString(a.AuthenticatorData),
		ClientDataJSON:    b64url.EncodeToString(a.ClientDataJSON),
		Signature:         b64url.EncodeToString(a.Signature),
	})
	if err != nil {
		return nil, fmt.Errorf("webauthn envelope: %w", err)
	}
	sigB64 := base64.StdEncoding.EncodeToString(sig)
	if s := readWebAuthnSignature(sigB64); s.err != nil {
		return nil, fmt.Errorf("webauthn envelope: %w", s.err)
	}
	out, err := marshalEnvelope(&ssldsse.Envelope{
		PayloadType: PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []ssldsse.Signature{{KeyID: WebAuthnKeyID(a.CredentialID), Sig: sigB64}},
	})
	if err != nil {
		return nil, fmt.Errorf("webauthn envelope: %w", err)
	}
	if _, err := Parse(out); err != nil {
		return nil, fmt.Errorf("webauthn envelope: %w", err)
	}
	return out, nil
}

// webauthnSignature is an envelope signature read as a WebAuthn one.
type webauthnSignature struct {
	// shaped: sig decodes to a JSON object (or to the start of one naming
	// its members: looksWebAuthn), whether or not it is a valid one. No
	// raw or SSH signature is.
	shaped bool
	a      WebAuthnAssertion
	// keyID is WebAuthnKeyID of the credential it names.
	keyID string
	// err says why a shaped signature cannot be used.
	err error
}

// readWebAuthnSignature looks at an envelope signature's sig: when it
// decodes to a JSON object it is read, strictly, once here, and verify
// checks it for passkeys.
func readWebAuthnSignature(sigB64 string) webauthnSignature {
	raw, err := base64.StdEncoding.DecodeString(sigB64)
	std := err == nil
	if !std {
		if raw, err = base64.URLEncoding.DecodeString(sigB64); err != nil {
			if raw, err = base64.RawURLEncoding.DecodeString(sigB64); err != nil {
				return webauthnSignature{}
			}
		}
	}
	if !looksWebAuthn(raw) {
		return webauthnSignature{}
	}
	s := webauthnSignature{shaped: true}
	fail := func(format string, args ...any) webauthnSignature {
		s.err = fmt.Errorf("the WebAuthn signature "+format, args...)
		return s
	}
	if !std {
		return fail("is not standard base64: DSSE signatures are")
	}
	if len(raw) > MaxWebAuthnSignatureBytes {
		return fail("is %d bytes; the limit is %d", len(raw), MaxWebAuthnSignatureBytes)
	}
	var j webauthnSigJSON
	if err := decodeStrict(raw, &j); err != nil {
		return fail("is not a %s object: %v", WebAuthnSignatureType, err)
	}
	if j.Type != WebAuthnSignatureType {
		return fail("is of type %q; writ reads %q", j.Type, WebAuthnSignatureType)
	}
	for _, f := range []struct {
		name  string
		value string
		dst   *[]byte
		limit int
	}{
		{"credentialId", j.CredentialID, &s.a.CredentialID, maxCredentialIDBytes},
		{"authenticatorData", j.AuthenticatorData, &s.a.AuthenticatorData, maxAuthenticatorDataBytes},
		{"clientDataJSON", j.ClientDataJSON, &s.a.ClientDataJSON, maxClientDataJSONBytes},
		{"signature", j.Signature, &s.a.Signature, maxAssertionSigBytes},
	} {
		b, err := b64url.DecodeString(f.value)
		switch {
		case err != nil:
			return fail("has a %s that is not base64url without padding: %v", f.name, err)
		case len(b) == 0:
			return fail("has no %s", f.name)
		case len(b) > f.limit:
			return fail("has a %s of %d bytes; the limit is %d", f.name, len(b), f.limit)
		}
		*f.dst = b
	}
	s.keyID = WebAuthnKeyID(s.a.CredentialID)
	return s
}

// webauthnMarkers are strings of which a WebAuthn signature object holds
// at least one, and a raw signature (random-looking bytes) none.
var webauthnMarkers = [][]byte{[]byte(WebAuthnSignatureType), []byte(`"type"`), []byte(`"credentialId"`),
	[]byte(`"authenticatorData"`), []byte(`"clientDataJSON"`), []byte(`"signature"`)}

// looksWebAuthn reports whether a decoded sig is meant as a WebAuthn
// signature: a JSON object, or the start of one naming its members. A raw
// ed25519 signature may begin with '{', but is neither.
func looksWebAuthn(raw []byte) bool {
	text := bytes.TrimLeft(raw, " \t\r\n")
	if !bytes.HasPrefix(text, []byte("{")) {
		return false
	}
	if json.Valid(text) {
		return true
	}
	for _, m := range webauthnMarkers {
		if bytes.Contains(text, m) {
			return true
		}
	}
	return false
}

// verifyWebAuthn checks the envelope's WebAuthn signature with a passkey
// of the keyring, and says why it does not count.
func (e *Envelope) verifyWebAuthn(k *Key) error {
	s := &e.webauthn
	switch {
	case !s.shaped:
		return fmt.Errorf("not a WebAuthn signature: key %s is a passkey, whose signatures are %s assertions", k.DSSEKeyID, WebAuthnSignatureType)
	case s.err != nil:
		return s.err
	case !bytes.Equal(s.a.CredentialID, k.WebAuthn.CredentialID):
		return fmt.Errorf("signed with passkey credential %s, not with key %s", s.keyID, k.DSSEKeyID)
	}
	return verifyAssertion(k.WebAuthn, s.a, WebAuthnChallenge(e.Payload))
}

// verifyAssertion checks a WebAuthn assertion as a relying party does
// (WebAuthn §7.2), through go-webauthn's protocol package: client data
// of type webauthn.get with this challenge, the registered origin and no
// cross-origin frame; authenticator data for the registered relying party
// with user presence and user verification; the signature over
// authenticatorData || sha256(clientDataJSON) by the registered key.
// Signature counters are not checked: that needs state, and verification
// here is offline.
func verifyAssertion(w *WebAuthnKey, a WebAuthnAssertion, challenge []byte) error {
	if !json.Valid(a.ClientDataJSON) {
		return errors.New("the WebAuthn client data is not JSON")
	}
	if err := checkDuplicateKeys(a.ClientDataJSON); err != nil {
		return fmt.Errorf("the WebAuthn client data: %v", err)
	}
	car := protocol.CredentialAssertionResponse{
		PublicKeyCredential: protocol.PublicKeyCredential{
			Credential: protocol.Credential{ID: b64url.EncodeToString(a.CredentialID), Type: string(protocol.PublicKeyCredentialType)},
			RawID:      a.CredentialID,
		},
		AssertionResponse: protocol.AuthenticatorAssertionResponse{
			AuthenticatorResponse: protocol.AuthenticatorResponse{ClientDataJSON: a.ClientDataJSON},
			AuthenticatorData:     a.AuthenticatorData,
			Signature:             a.Signature,
		},
	}
	par, err := car.Parse()
	if err != nil {
		return fmt.Errorf("the WebAuthn assertion does not parse: %s", protocolErr(err))
	}
	want := b64url.EncodeToString(challenge)
	err = par.Verify(want, w.RPID, "", []string{w.Origin}, nil, nil, protocol.TopOriginExplicitVerificationMode,
		false, true, true, w.COSEKey, protocol.SignaturePolicy{})
	if err != nil {
		return explainAssertion(par, w, want, err)
	}
	return nil
}

// explainAssertion says in writ's words why go-webauthn refused an
// assertion; the library's verdict stands, this only names the reason.
func explainAssertion(par *protocol.ParsedCredentialAssertionData, w *WebAuthnKey, challenge string, err error) error {
	cd := par.Response.CollectedClientData
	ad := par.Response.AuthenticatorData
	rpHash := sha256.Sum256([]byte(w.RPID))
	switch {
	case cd.Type != protocol.AssertCeremony:
		return fmt.Errorf("the WebAuthn client data is of type %q, not %q: only an assertion (navigator.credentials.get) approves", cd.Type, protocol.AssertCeremony)
	case cd.Challenge != challenge:
		return errors.New("the WebAuthn assertion is over another challenge: it was made for another statement, or the payload was altered")
	case !protocol.IsOriginInHaystack(cd.Origin, []string{w.Origin}):
		return fmt.Errorf("the WebAuthn assertion was made at origin %q; the passkey is registered for origin %s", display.Line(cd.Origin, 200), w.Origin)
	case cd.CrossOrigin:
		return errors.New("the WebAuthn assertion was made in a cross-origin frame (crossOrigin is true)")
	case cd.TopOrigin != "":
		return errors.New("the WebAuthn client data names a topOrigin: only a top-level console page signs")
	case !bytes.Equal(ad.RPIDHash, rpHash[:]):
		return fmt.Errorf("the WebAuthn assertion is for another relying party: its rpIdHash is not the sha256 of rp=%s", w.RPID)
	case !ad.Flags.HasUserPresent():
		return errors.New("the WebAuthn assertion lacks the user-present flag (UP): the authenticator was not touched")
	case !ad.Flags.HasUserVerified():
		return errors.New("the WebAuthn assertion lacks the user-verified flag (UV): the authenticator did not verify the user (PIN or biometrics)")
	}
	return fmt.Errorf("the WebAuthn signature does not verify: %s", protocolErr(err))
}

// protocolErr flattens a go-webauthn error (its details and debug
// information) to one line.
func protocolErr(err error) string {
	var pe *protocol.Error
	var ce *webauthncose.Error
	msg := err.Error()
	switch {
	case errors.As(err, &pe):
		msg = pe.Details
		if pe.DevInfo != "" {
			msg += ": " + pe.DevInfo
		}
		if pe.Err != nil && !strings.Contains(msg, pe.Err.Error()) {
			msg += ": " + protocolErr(pe.Err)
		}
	case errors.As(err, &ce):
		msg = ce.Details
		if ce.DevInfo != "" {
			msg += ": " + ce.DevInfo
		}
	}
	return display.Line(msg, 300)
}

// coseErr is protocolErr for errors of the COSE key parser.
func coseErr(err error) string { return protocolErr(err) }

// webauthnKey finds the key of the keyring a WebAuthn signature names (by
// its credential id) and verifies the signature with it. It returns the
// key with an error saying why it does not verify, or no key when the
// signature cannot be read or its credential is not in the keyring.
func (e *Envelope) webauthnKey(k *Keyring) (*Key, error) {
	s := &e.webauthn
	if s.err != nil {
		return nil, fmt.Errorf("no key in the approvers file verifies the signature: %v", s.err)
	}
	key, ok := k.Key(s.keyID)
	if !ok || key.WebAuthn == nil {
		return nil, fmt.Errorf("signed by passkey credential %s, which is not in the approvers file", s.keyID)
	}
	if err := e.verify(key); err != nil {
		return key, err
	}
	return key, nil
}
