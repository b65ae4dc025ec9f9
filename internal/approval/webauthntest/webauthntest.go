// Package webauthntest is a software WebAuthn authenticator and client for
// tests: it makes a passkey (ES256 or Ed25519) with its COSE public key,
// and assertions (authenticator data, client data JSON, signature) as a
// browser and an authenticator would return them from
// navigator.credentials.get. Every part can be altered, to test refusals.
// It is for tests only: its keys live in memory, unprotected.
package webauthntest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// Authenticator flags (WebAuthn §6.1, authenticator data).
const (
	FlagUP = 0x01 // user present
	FlagUV = 0x04 // user verified
	FlagBE = 0x08 // backup eligible
	FlagBS = 0x10 // backup state
)

// Authenticator is one passkey: a credential of a relying party, used
// from an origin.
type Authenticator struct {
	RPID         string
	Origin       string
	CredentialID []byte
	// COSEKey is the credential public key as an authenticator returns it
	// at registration (CBOR, encoded here by hand, not by go-webauthn).
	COSEKey []byte
	Signer  crypto.Signer
	// Flags are the authenticator data flags of the next assertions
	// (default FlagUP|FlagUV).
	Flags byte
	// Counter is the signature counter, incremented by each assertion.
	Counter uint32
}

// NewES256 makes an ES256 (ECDSA P-256, SHA-256) passkey.
func NewES256(rpID, origin string) (*Authenticator, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newAuthenticator(rpID, origin, priv, ES256COSEKey(&priv.PublicKey))
}

// NewEd25519 makes an EdDSA (Ed25519) passkey.
func NewEd25519(rpID, origin string) (*Authenticator, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return newAuthenticator(rpID, origin, priv, EdDSACOSEKey(pub))
}

func newAuthenticator(rpID, origin string, priv crypto.Signer, cose []byte) (*Authenticator, error) {
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	return &Authenticator{RPID: rpID, Origin: origin, CredentialID: id, COSEKey: cose, Signer: priv, Flags: FlagUP | FlagUV}, nil
}

// ES256COSEKey is the COSE_Key of a P-256 key: {1: 2 (EC2), 3: -7 (ES256),
// -1: 1 (P-256), -2: x, -3: y}, in CTAP2 canonical CBOR.
func ES256COSEKey(pub *ecdsa.PublicKey) []byte {
	raw, err := pub.Bytes() // 0x04 || x || y
	if err != nil {
		panic(fmt.Sprintf("webauthntest: %v", err))
	}
	out := []byte{0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20}
	out = append(out, raw[1:33]...)
	out = append(out, 0x22, 0x58, 0x20)
	return append(out, raw[33:65]...)
}

// EdDSACOSEKey is the COSE_Key of an Ed25519 key: {1: 1 (OKP), 3: -8
// (EdDSA), -1: 6 (Ed25519), -2: x}, in CTAP2 canonical CBOR.
func EdDSACOSEKey(pub ed25519.PublicKey) []byte {
	out := []byte{0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20}
	return append(out, pub...)
}

// Assertion is what navigator.credentials.get returns that a signature
// needs (the fields of approval.WebAuthnAssertion, so one converts to the
// other).
type Assertion struct {
	CredentialID, AuthenticatorData, ClientDataJSON, Signature []byte
}

// ClientData is the client data a browser serializes (WebAuthn §5.8.1).
type ClientData struct {
	Type        string `json:"type"`
	Challenge   string `json:"challenge"`
	Origin      string `json:"origin"`
	CrossOrigin bool   `json:"crossOrigin"`
	TopOrigin   string `json:"topOrigin,omitempty"`
}

// Options alter one assertion; the zero value makes a valid one.
type Options struct {
	// Type of the client data (default "webauthn.get").
	Type string
	// Origin of the client data (default the authenticator's).
	Origin string
	// RPID whose sha256 is the authenticator data's rpIdHash (default the
	// authenticator's).
	RPID string
	// CrossOrigin and TopOrigin of the client data.
	CrossOrigin bool
	TopOrigin   string
	// ClientData, when set, changes the client data before it is
	// serialized.
	ClientData func(*ClientData)
	// ClientDataJSON, when set, is the client data's serialization as is.
	ClientDataJSON []byte
}

// Get makes an assertion over challenge, as navigator.credentials.get
// with publicKey.challenge = challenge returns it.
func (a *Authenticator) Get(challenge []byte, o Options) (Assertion, error) {
	cd := ClientData{
		Type:        or(o.Type, "webauthn.get"),
		Challenge:   base64.RawURLEncoding.EncodeToString(challenge),
		Origin:      or(o.Origin, a.Origin),
		CrossOrigin: o.CrossOrigin,
		TopOrigin:   o.TopOrigin,
	}
	if o.ClientData != nil {
		o.ClientData(&cd)
	}
	cdj := o.ClientDataJSON
	if cdj == nil {
		var err error
		if cdj, err = json.Marshal(cd); err != nil {
			return Assertion{}, err
		}
	}
	a.Counter++
	rpHash := sha256.Sum256([]byte(or(o.RPID, a.RPID)))
	authData := make([]byte, 37)
	copy(authData, rpHash[:])
	authData[32] = a.Flags
	binary.BigEndian.PutUint32(authData[33:], a.Counter)
	sig, err := a.Sign(authData, cdj)
	if err != nil {
		return Assertion{}, err
	}
	return Assertion{CredentialID: a.CredentialID, AuthenticatorData: authData, ClientDataJSON: cdj, Signature: sig}, nil
}

// Sign signs authenticatorData || sha256(clientDataJSON) as the
// authenticator does: ES256 as an ASN.1 DER signature of the sha256,
// Ed25519 over the bytes themselves.
func (a *Authenticator) Sign(authData, clientDataJSON []byte) ([]byte, error) {
	cdHash := sha256.Sum256(clientDataJSON)
	signed := append(append([]byte{}, authData...), cdHash[:]...)
	switch k := a.Signer.(type) {
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(signed)
		return ecdsa.SignASN1(rand.Reader, k, h[:])
	case ed25519.PrivateKey:
		return ed25519.Sign(k, signed), nil
	}
	return nil, fmt.Errorf("webauthntest: %T keys do not sign", a.Signer)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
