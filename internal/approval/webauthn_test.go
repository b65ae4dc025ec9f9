package approval

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/approval/webauthntest"
	"github.com/writ-sec/writ/internal/keys"
)

// The console the test passkeys are registered for.
const (
	testRPID   = "writ.example.com"
	testOrigin = "https://writ.example.com"
)

// passkeyPeople: alice the analyst and dave an approver with PEM keys, bob
// (ES256) and carol (Ed25519) approvers with passkeys, erin an approver
// with an SSH key.
var passkeyPeople = []testPerson{
	{id: "alice", roles: []string{RoleAnalyst}},
	{id: "bob", roles: []string{RoleApprover}, passkey: "es256"},
	{id: "carol", roles: []string{RoleApprover}, passkey: "ed25519"},
	{id: "dave", roles: []string{RoleApprover}},
	{id: "erin", roles: []string{RoleApprover}, ssh: true},
}

func newPasskey(t testing.TB, alg, rpID, origin string) *webauthntest.Authenticator {
	t.Helper()
	var a *webauthntest.Authenticator
	var err error
	switch alg {
	case "es256":
		a, err = webauthntest.NewES256(rpID, origin)
	case "ed25519":
		a, err = webauthntest.NewEd25519(rpID, origin)
	default:
		t.Fatalf("passkey algorithm %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func passkeyLine(t testing.TB, a *webauthntest.Authenticator, comment string) string {
	t.Helper()
	line, err := WebAuthnKeyLine(a.RPID, a.Origin, a.CredentialID, a.COSEKey, comment)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func payloadOf(t testing.TB, st Statement) []byte {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertWith makes a passkey's assertion over the challenge of payload.
func assertWith(t testing.TB, a *webauthntest.Authenticator, payload []byte, o webauthntest.Options) WebAuthnAssertion {
	t.Helper()
	as, err := a.Get(WebAuthnChallenge(payload), o)
	if err != nil {
		t.Fatal(err)
	}
	return WebAuthnAssertion(as)
}

// signWebAuthn signs a statement with a passkey, as the console does.
func signWebAuthn(t testing.TB, a *webauthntest.Authenticator, st Statement, o webauthntest.Options) []byte {
	t.Helper()
	payload := payloadOf(t, st)
	env, err := WebAuthnEnvelope(payload, assertWith(t, a, payload, o))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// rawEnvelope is an envelope of payload with any keyid and sig (sig given
// decoded; encode says how it is base64-encoded).
func rawEnvelope(t testing.TB, payload []byte, keyID string, sig []byte, encode *base64.Encoding) []byte {
	t.Helper()
	out, err := json.Marshal(envelopeJSON{PayloadType: PayloadType, Payload: base64.StdEncoding.EncodeToString(payload),
		Signatures: []signatureJSON{{KeyID: keyID, Sig: encode.EncodeToString(sig)}}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sigObject is a WebAuthn signature's JSON object, to alter.
func sigObject(a WebAuthnAssertion) map[string]any {
	return map[string]any{
		"type":              WebAuthnSignatureType,
		"credentialId":      b64url.EncodeToString(a.CredentialID),
		"authenticatorData": b64url.EncodeToString(a.AuthenticatorData),
		"clientDataJSON":    b64url.EncodeToString(a.ClientDataJSON),
		"signature":         b64url.EncodeToString(a.Signature),
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWebAuthnChallenge(t *testing.T) {
	t.Parallel()
	payload := []byte(`{"hello":"world"}`)
	// The DSSE PAE, written out by hand.
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(PayloadType), PayloadType, len(payload), payload)
	want := sha256.Sum256([]byte(pae))
	if got := WebAuthnChallenge(payload); !bytes.Equal(got, want[:]) {
		t.Fatalf("challenge %x; want %x", got, want)
	}
	if bytes.Equal(WebAuthnChallenge(payload), WebAuthnChallenge(append(payload, ' '))) {
		t.Fatal("the challenge does not depend on the payload")
	}
}

func TestWebAuthnSignAndVerify(t *testing.T) {
	t.Parallel()
	f := newFixture(t, passkeyPeople)
	bob, carol := f.passkeys["bob"], f.passkeys["carol"]
	bobEnv := f.approve(t, "bob")
	carolEnv := f.approve(t, "carol")

	// The envelope has the shape of writ's others: one signature, keyid
	// webauthn:<credential>, sig the standard base64 of the JSON object.
	var ej envelopeJSON
	if err := decodeStrict(bobEnv, &ej); err != nil {
		t.Fatal(err)
	}
	if ej.PayloadType != PayloadType || len(ej.Signatures) != 1 || ej.Signatures[0].KeyID != "webauthn:"+base64.RawURLEncoding.EncodeToString(bob.CredentialID) {
		t.Fatalf("envelope %s", bobEnv)
	}
	sig, err := base64.StdEncoding.DecodeString(ej.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	var sj map[string]string
	if err := json.Unmarshal(sig, &sj); err != nil || sj["type"] != "writ.webauthn.v1" || len(sj) != 5 {
		t.Fatalf("sig %s: %v", sig, err)
	}
	var cd map[string]any
	cdj, _ := base64.RawURLEncoding.DecodeString(sj["clientDataJSON"])
	if err := json.Unmarshal(cdj, &cd); err != nil || cd["type"] != "webauthn.get" || cd["origin"] != testOrigin {
		t.Fatalf("client data %s", cdj)
	}

	in := baseInput(f, submitted(f.propose(t, "alice"), bobEnv, carolEnv))
	v := Verify(in)
	if !v.QuorumMet || len(v.Counted) != 2 || len(v.NotCounted) != 0 {
		t.Fatalf("verdict %+v", v)
	}
	for i, who := range []string{"bob", "carol"} {
		c := v.Counted[i]
		key := f.kr.byID[who].Keys[0]
		if c.Approver != who || c.KeyID != key.ID {
			t.Fatalf("counted %+v", c)
		}
		want := map[string]string{"bob": WebAuthnES256, "carol": WebAuthnEd25519}[who]
		if key.Algorithm != want || key.WebAuthn == nil || key.SSH != nil {
			t.Fatalf("%s's key %+v", who, key)
		}
		// writ's key id is the one the key has as PEM.
		id, err := keys.ID(f.priv[who].Public())
		if err != nil || key.ID != id {
			t.Fatalf("key id %s; want %s (%v)", key.ID, id, err)
		}
	}

	// The door check finds the signer, with the keyid or without it, or
	// with writ's key id as keyid.
	noKeyID := editEnvelope(t, bobEnv, func(m map[string]any) { delete(m["signatures"].([]any)[0].(map[string]any), "keyid") })
	hexKeyID := editEnvelope(t, bobEnv, func(m map[string]any) {
		m["signatures"].([]any)[0].(map[string]any)["keyid"] = f.kr.byID["bob"].Keys[0].ID
	})
	for name, env := range map[string][]byte{"keyid": bobEnv, "no keyid": noKeyID, "hex keyid": hexKeyID} {
		e, err := Parse(env)
		if err != nil {
			t.Fatal(err)
		}
		k, err := e.VerifySigner(f.kr)
		if err != nil || k.Person.ID != "bob" || !bytes.Equal(k.WebAuthn.CredentialID, bob.CredentialID) {
			t.Fatalf("%s: VerifySigner %v %v", name, k, err)
		}
		in.Envelopes = submitted(f.propose(t, "alice"), env, carolEnv)
		if v := Verify(in); !v.QuorumMet {
			t.Fatalf("%s: verdict %+v", name, v)
		}
	}

	// Each assertion has its counter; writ does not check counters (it
	// verifies offline), so an older assertion still counts.
	if carol.Counter != 1 || bob.Counter != 1 {
		t.Fatalf("counters %d %d", bob.Counter, carol.Counter)
	}
	again := f.approve(t, "bob")
	in.Envelopes = submitted(f.propose(t, "alice"), bobEnv, again)
	in.ApprovalsRequired = 1
	if v := Verify(in); !v.QuorumMet || len(v.Counted) != 1 {
		t.Fatalf("verdict %+v", v)
	}

	// Backup-eligible and backed-up passkeys (synced passkeys) count like
	// any other.
	bob.Flags |= webauthntest.FlagBE | webauthntest.FlagBS
	in.Envelopes = submitted(f.propose(t, "alice"), f.approve(t, "bob"))
	if v := Verify(in); !v.QuorumMet {
		t.Fatalf("synced passkey: %+v", v)
	}
}

func TestWebAuthnRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, passkeyPeople)
	bob := f.passkeys["bob"]
	bobKey, carolKey := f.kr.byID["bob"].Keys[0], f.kr.byID["carol"].Keys[0]
	daveKey, erinKey := f.kr.byID["dave"].Keys[0], f.kr.byID["erin"].Keys[0]
	st := stmt(pred("bob", Approve))
	payload := payloadOf(t, st)
	good := assertWith(t, bob, payload, webauthntest.Options{})
	goodSig := mustJSON(t, sigObject(good))

	other := pred("bob", Approve)
	other.Reason = "another statement"
	otherPayload := payloadOf(t, stmt(other))

	// A passkey with bob's credential id but another key.
	forger := newPasskey(t, "es256", testRPID, testOrigin)
	forger.CredentialID = bob.CredentialID
	stranger := newPasskey(t, "ed25519", testRPID, testOrigin)

	flags := func(fl byte) WebAuthnAssertion {
		saved := bob.Flags
		bob.Flags = fl
		defer func() { bob.Flags = saved }()
		return assertWith(t, bob, payload, webauthntest.Options{})
	}
	withSig := func(fn func(m map[string]any)) []byte {
		m := sigObject(good)
		fn(m)
		return mustJSON(t, m)
	}
	tamperedAuthData := bytes.Clone(good.AuthenticatorData)
	tamperedAuthData[36] ^= 1 // the counter's last byte
	clearedUV := bytes.Clone(good.AuthenticatorData)
	clearedUV[32] &^= webauthntest.FlagUV
	pemSig := func() []byte {
		var ej envelopeJSON
		if err := json.Unmarshal(signWith(t, f.priv["dave"], stmt(pred("dave", Approve))), &ej); err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(ej.Signatures[0].Sig)
		return raw
	}()
	// A signature whose base64url form is not standard base64: "???"
	// makes a 6-bit group of 63 ('_' in base64url).
	urlSig := withSig(func(m map[string]any) { m["note"] = "???" })
	if !strings.Contains(base64.URLEncoding.EncodeToString(urlSig), "_") {
		t.Fatal("the base64url form is standard base64")
	}

	cases := []struct {
		name    string
		payload []byte // default payload (bob's statement)
		keyID   string // "bob": bob's DSSE key id; "" none
		sig     []byte
		encode  *base64.Encoding // default standard
		code    Code
		msg     string
		// door: what VerifySigner says ("" accepts).
		door string
	}{
		{name: "good", keyID: "bob", sig: goodSig},
		{name: "good without keyid", sig: goodSig},
		{name: "wrong origin", keyID: "bob", sig: mustJSON(t, sigObject(assertWith(t, bob, payload, webauthntest.Options{Origin: "https://evil.example.net"}))),
			code: CodeBadSignature, msg: `made at origin "https://evil.example.net"; the passkey is registered for origin https://writ.example.com`, door: "made at origin"},
		{name: "a subdomain origin not registered", sig: mustJSON(t, sigObject(assertWith(t, bob, payload, webauthntest.Options{Origin: "https://other.writ.example.com"}))),
			code: CodeBadSignature, msg: "made at origin", door: "made at origin"},
		{name: "wrong rp", keyID: "bob", sig: mustJSON(t, sigObject(assertWith(t, bob, payload, webauthntest.Options{RPID: "example.com"}))),
			code: CodeBadSignature, msg: "for another relying party: its rpIdHash is not the sha256 of rp=writ.example.com", door: "another relying party"},
		{name: "UP missing", keyID: "bob", sig: mustJSON(t, sigObject(flags(webauthntest.FlagUV))),
			code: CodeBadSignature, msg: "lacks the user-present flag (UP)", door: "user-present"},
		{name: "UV missing", keyID: "bob", sig: mustJSON(t, sigObject(flags(webauthntest.FlagUP))),
			code: CodeBadSignature, msg: "lacks the user-verified flag (UV)", door: "user-verified"},
		{name: "UV cleared after signing", keyID: "bob", sig: withSig(func(m map[string]any) { m["authenticatorData"] = b64url.EncodeToString(clearedUV) }),
			code: CodeBadSignature, msg: "user-verified", door: "user-verified"},
		{name: "another statement's challenge", keyID: "bob", sig: mustJSON(t, sigObject(assertWith(t, bob, otherPayload, webauthntest.Options{}))),
			code: CodeBadSignature, msg: "over another challenge", door: "over another challenge"},
		{name: "tampered payload", payload: otherPayload, keyID: "bob", sig: goodSig,
			code: CodeBadSignature, msg: "over another challenge", door: "over another challenge"},
		{name: "registration type", keyID: "bob", sig: mustJSON(t, sigObject(assertWith(t, bob, payload, webauthntest.Options{Type: "webauthn.create"}))),
			code: CodeBadSignature, msg: `client data is of type "webauthn.create", not "webauthn.get"`, door: "webauthn.create"},
		{name: "cross-origin frame", keyID: "bob", sig: mustJSON(t, sigObject(assertWith(t, bob, payload, webauthntest.Options{CrossOrigin: true, TopOrigin: "https://evil.example.net"}))),
			code: CodeBadSignature, msg: "cross-origin frame", door: "cross-origin"},
		{name: "duplicate key in client data", keyID: "bob", sig: mustJSON(t, sigObject(assertWith(t, bob, payload, webauthntest.Options{
			ClientDataJSON: fmt.Appendf(nil, `{"type":"webauthn.get","challenge":%q,"origin":"https://evil.example.net","origin":%q}`, b64url.EncodeToString(WebAuthnChallenge(payload)), testOrigin)}))),
			code: CodeBadSignature, msg: `client data: duplicate JSON key "origin"`, door: "duplicate JSON key"},
		{name: "tampered authenticator data", keyID: "bob", sig: withSig(func(m map[string]any) { m["authenticatorData"] = b64url.EncodeToString(tamperedAuthData) }),
			code: CodeBadSignature, msg: "the WebAuthn signature does not verify", door: "does not verify"},
		{name: "tampered client data", keyID: "bob", sig: withSig(func(m map[string]any) {
			m["clientDataJSON"] = b64url.EncodeToString(append(bytes.Clone(good.ClientDataJSON[:len(good.ClientDataJSON)-1]), []byte(`,"x":1}`)...))
		}), code: CodeBadSignature, msg: "the WebAuthn signature does not verify", door: "does not verify"},
		{name: "signature by another key", keyID: "bob", sig: mustJSON(t, sigObject(assertWith(t, forger, payload, webauthntest.Options{}))),
			code: CodeBadSignature, msg: "the WebAuthn signature does not verify", door: "does not verify"},
		{name: "credential not in the keyring", sig: mustJSON(t, sigObject(assertWith(t, stranger, payload, webauthntest.Options{}))),
			code: CodeUnknownKey, msg: "signed by passkey credential " + WebAuthnKeyID(stranger.CredentialID) + ", which is not in the approvers file", door: "not in the approvers file"},
		{name: "credential not in the keyring, with its keyid", keyID: WebAuthnKeyID(stranger.CredentialID), sig: mustJSON(t, sigObject(assertWith(t, stranger, payload, webauthntest.Options{}))),
			code: CodeUnknownKey, msg: "which is not in the approvers file", door: "not in the approvers file"},
		{name: "bob's passkey signature, carol's keyid", keyID: carolKey.DSSEKeyID, sig: goodSig,
			code: CodeBadSignature, msg: "signed with passkey credential " + bobKey.DSSEKeyID + ", not with key " + carolKey.DSSEKeyID},
		{name: "WebAuthn signature with a PEM key's keyid", keyID: daveKey.DSSEKeyID, sig: goodSig,
			code: CodeBadSignature, msg: "a WebAuthn signature, but key " + daveKey.DSSEKeyID + " is registered as a PEM key"},
		{name: "WebAuthn signature with an SSH key's keyid", keyID: erinKey.DSSEKeyID, sig: goodSig,
			code: CodeBadSignature, msg: "is registered as an SSH key"},
		{name: "PEM signature with a passkey's keyid", payload: payloadOf(t, stmt(pred("dave", Approve))), keyID: "bob", sig: pemSig,
			code: CodeBadSignature, msg: "not a WebAuthn signature: key " + bobKey.DSSEKeyID + " is a passkey"},
		{name: "unknown field", keyID: "bob", sig: withSig(func(m map[string]any) { m["userHandle"] = "AA" }),
			code: CodeBadSignature, msg: `not a writ.webauthn.v1 object: unknown field "userHandle"`, door: "unknown field"},
		{name: "unknown field without keyid", sig: withSig(func(m map[string]any) { m["userHandle"] = "AA" }),
			code: CodeUnknownKey, msg: "unknown field", door: "unknown field"},
		{name: "another type", keyID: "bob", sig: withSig(func(m map[string]any) { m["type"] = "writ.webauthn.v2" }),
			code: CodeBadSignature, msg: `is of type "writ.webauthn.v2"`, door: "writ.webauthn.v2"},
		{name: "padded base64url", keyID: "bob", sig: withSig(func(m map[string]any) { m["signature"] = base64.URLEncoding.EncodeToString(good.Signature) + "=" }),
			code: CodeBadSignature, msg: "signature that is not base64url without padding", door: "base64url"},
		{name: "no signature", keyID: "bob", sig: withSig(func(m map[string]any) { delete(m, "signature") }),
			code: CodeBadSignature, msg: "has no signature", door: "has no signature"},
		{name: "oversized client data", keyID: "bob", sig: withSig(func(m map[string]any) { m["clientDataJSON"] = b64url.EncodeToString(make([]byte, 5000)) }),
			code: CodeBadSignature, msg: "clientDataJSON of 5000 bytes; the limit is 4096", door: "limit"},
		{name: "oversized signature object", keyID: "bob", sig: withSig(func(m map[string]any) { m["type"] = strings.Repeat("x", MaxWebAuthnSignatureBytes) }),
			code: CodeBadSignature, msg: "the limit is 16384", door: "limit"},
		{name: "duplicate key in the signature object", keyID: "bob", sig: []byte(`{"type":"writ.webauthn.v1","type":"writ.webauthn.v1","credentialId":"AA","authenticatorData":"AA","clientDataJSON":"AA","signature":"AA"}`),
			code: CodeBadSignature, msg: `not a writ.webauthn.v1 object: duplicate JSON key "type"`, door: "duplicate JSON key"},
		{name: "truncated signature object", keyID: "bob", sig: goodSig[:len(goodSig)/2],
			code: CodeBadSignature, msg: "not a writ.webauthn.v1 object", door: "not a writ.webauthn.v1 object"},
		{name: "base64url sig", keyID: "bob", sig: urlSig, encode: base64.URLEncoding,
			code: CodeBadSignature, msg: "is not standard base64", door: "not standard base64"},
		{name: "bob's passkey, carol named as approver", payload: payloadOf(t, stmt(pred("carol", Approve))), keyID: "bob",
			sig:  mustJSON(t, sigObject(assertWith(t, bob, payloadOf(t, stmt(pred("carol", Approve))), webauthntest.Options{}))),
			code: CodeKeyOfAnotherPerson, msg: `signed with a key of "bob"`, door: `signed by bob's key but names approver "carol"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keyID := tc.keyID
			if keyID == "bob" {
				keyID = bobKey.DSSEKeyID
			}
			p := payload
			if tc.payload != nil {
				p = tc.payload
			}
			enc := base64.StdEncoding
			if tc.encode != nil {
				enc = tc.encode
			}
			env := rawEnvelope(t, p, keyID, tc.sig, enc)
			in := baseInput(f, submitted(f.propose(t, "alice"), env))
			in.ApprovalsRequired = 1
			v := Verify(in)
			code, msg := codeOf(v, 1)
			if code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Fatalf("code %q, message %q; want %q containing %q", code, msg, tc.code, tc.msg)
			}
			if tc.code == "" && !v.QuorumMet {
				t.Fatalf("verdict %+v", v)
			}
			// The door check: the same reasons. A keyid is only a hint
			// there: a signature verifies with the key it names (its
			// credential), whatever the keyid says.
			parsed, err := Parse(env)
			if err != nil {
				t.Fatal(err)
			}
			k, err := parsed.VerifySigner(f.kr)
			switch {
			case tc.door == "" && err != nil:
				t.Fatalf("VerifySigner: %v", err)
			case tc.door == "" && tc.code == "" && k.Person.ID != "bob":
				t.Fatalf("VerifySigner: %s's key", k.Person.ID)
			case tc.door != "" && (err == nil || !strings.Contains(err.Error(), tc.door)):
				t.Fatalf("VerifySigner: %v; want an error containing %q", err, tc.door)
			}
		})
	}

	t.Run("PEM and SSH signatures never verify with a passkey", func(t *testing.T) {
		t.Parallel()
		// Envelopes of dave (PEM) and erin (SSH) still verify, with and
		// without keyid, though passkeys are tried too.
		for _, env := range [][]byte{f.approve(t, "dave"), f.approve(t, "erin")} {
			for _, drop := range []bool{false, true} {
				e := env
				if drop {
					e = editEnvelope(t, env, func(m map[string]any) { delete(m["signatures"].([]any)[0].(map[string]any), "keyid") })
				}
				in := baseInput(f, submitted(f.propose(t, "alice"), e))
				in.ApprovalsRequired = 1
				if v := Verify(in); !v.QuorumMet {
					t.Fatalf("verdict %+v", v)
				}
			}
		}
		// And no passkey verifies them.
		parsed, err := Parse(f.approve(t, "dave"))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []*Key{bobKey, carolKey} {
			if err := parsed.verify(k); err == nil || !strings.Contains(err.Error(), "not a WebAuthn signature") {
				t.Fatalf("PEM signature with passkey %s: %v", k.DSSEKeyID, err)
			}
		}
		parsed, err = Parse(f.approve(t, "erin"))
		if err != nil {
			t.Fatal(err)
		}
		if err := parsed.verify(carolKey); err == nil || !strings.Contains(err.Error(), "not a WebAuthn signature") {
			t.Fatalf("SSH signature with a passkey: %v", err)
		}
	})
}

// TestWebAuthnEnvelopeRefuses: WebAuthnEnvelope makes only envelopes that
// parse.
func TestWebAuthnEnvelopeRefuses(t *testing.T) {
	t.Parallel()
	a := newPasskey(t, "es256", testRPID, testOrigin)
	payload := payloadOf(t, stmt(pred("bob", Approve)))
	good := assertWith(t, a, payload, webauthntest.Options{})
	for name, tc := range map[string]struct {
		payload []byte
		a       WebAuthnAssertion
		want    string
	}{
		"no credential id": {payload, WebAuthnAssertion{AuthenticatorData: good.AuthenticatorData, ClientDataJSON: good.ClientDataJSON, Signature: good.Signature}, "has no credentialId"},
		"no signature":     {payload, WebAuthnAssertion{CredentialID: good.CredentialID, AuthenticatorData: good.AuthenticatorData, ClientDataJSON: good.ClientDataJSON}, "has no signature"},
		"not a statement":  {[]byte(`{"_type":"x"}`), good, "malformed approval"},
	} {
		if _, err := WebAuthnEnvelope(tc.payload, tc.a); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", name, err, tc.want)
		}
	}
}

func TestParseKeyringWebAuthn(t *testing.T) {
	t.Parallel()
	es := newPasskey(t, "es256", "example.com", "https://writ.example.com:8443")
	ed := newPasskey(t, "ed25519", "localhost", "http://localhost:8080")
	cred := func(a *webauthntest.Authenticator) string {
		return base64.RawURLEncoding.EncodeToString(a.CredentialID)
	}
	cose := func(a *webauthntest.Authenticator) string { return base64.RawURLEncoding.EncodeToString(a.COSEKey) }
	data := fmt.Sprintf(`apiVersion: writ/v1
kind: Approvers
people:
  - id: bob
    roles: [approver]
    keys:
      - webauthn key=%s cred=%s origin=https://writ.example.com:8443 rp=example.com bob's YubiKey 5C
      - "webauthn	rp=localhost origin=http://localhost:8080 cred=%s key=%s"
`, cose(es), cred(es), cred(ed), cose(ed))
	kr, problems := ParseKeyring(KeyringPath, []byte(data))
	if problems != nil {
		t.Fatalf("%v\n%s", problems, data)
	}
	ks := kr.KeysOf("bob")
	if len(ks) != 2 || kr.KeysOf("nobody") != nil {
		t.Fatalf("keys %+v", ks)
	}
	for i, a := range []*webauthntest.Authenticator{es, ed} {
		k := ks[i]
		w := k.WebAuthn
		if w == nil || w.RPID != a.RPID || w.Origin != a.Origin || !bytes.Equal(w.CredentialID, a.CredentialID) || !bytes.Equal(w.COSEKey, a.COSEKey) {
			t.Fatalf("key %d: %+v", i, w)
		}
		if k.DSSEKeyID != "webauthn:"+cred(a) || w.KeyID() != k.DSSEKeyID {
			t.Fatalf("key %d: DSSE key id %q", i, k.DSSEKeyID)
		}
		id, _ := keys.ID(a.Signer.Public())
		if k.ID != id {
			t.Fatalf("key %d: id %s; want %s", i, k.ID, id)
		}
		for _, lookup := range []string{k.ID, k.DSSEKeyID} {
			if got, ok := kr.Key(lookup); !ok || got != k {
				t.Fatalf("key %d not found by %s", i, lookup)
			}
		}
	}
	if ks[0].WebAuthn.Comment != "bob's YubiKey 5C" || ks[1].WebAuthn.Comment != "" || ks[0].Algorithm != WebAuthnES256 || ks[1].Algorithm != WebAuthnEd25519 {
		t.Fatalf("comments, algorithms: %+v %+v", ks[0], ks[1])
	}
	// The line writ writes parses back to the same key.
	w, err := ParseWebAuthnKeyLine(ks[0].WebAuthn.String())
	if err != nil || w.String() != "webauthn rp=example.com origin=https://writ.example.com:8443 cred="+cred(es)+" key="+cose(es)+" bob's YubiKey 5C" {
		t.Fatalf("%v %v", w, err)
	}
}

// TestParseKeyringWebAuthnInvalid: every malformed webauthn line is a
// problem located at its entry, with the reason.
func TestParseKeyringWebAuthnInvalid(t *testing.T) {
	t.Parallel()
	a := newPasskey(t, "es256", testRPID, testOrigin)
	ed := newPasskey(t, "ed25519", testRPID, testOrigin)
	cred := base64.RawURLEncoding.EncodeToString(a.CredentialID)
	key := base64.RawURLEncoding.EncodeToString(a.COSEKey)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub := ed.Signer.Public().(ed25519.PublicKey)
	line := func(fields string) string { return "webauthn " + fields }
	std := fmt.Sprintf("rp=%s origin=%s cred=%s", testRPID, testOrigin, cred)
	cases := []struct{ entry, want string }{
		{line(std), "missing key= (a webauthn line has rp=, origin=, cred= and key=)"},
		{line(std + " key=" + key + " rp=other.example.com"), "field rp is given twice"},
		{line("rp=writ.example.com rp=writ.example.com origin=" + testOrigin + " cred=" + cred + " key=" + key), "field rp is given twice"},
		{line("colour=blue " + std + " key=" + key), `"colour=blue" is not one of the fields rp=, origin=, cred= and key=`},
		{line("rp= origin=" + testOrigin + " cred=" + cred + " key=" + key), "field rp is empty"},
		{line(std + " key=" + key + "=="), "key= is not base64url without padding"},
		{line(std + " key=" + strings.NewReplacer("-", "+", "_", "/").Replace(key) + "+/"), "key= is not base64url without padding"},
		{line("rp=Writ.Example.com origin=https://writ.example.com cred=" + cred + " key=" + key), "rp=Writ.Example.com is not a host name"},
		{line("rp=10.1.2.3 origin=https://10.1.2.3 cred=" + cred + " key=" + key), "not an IP address"},
		{line("rp=writ.example.com origin=http://writ.example.com cred=" + cred + " key=" + key), "http is allowed only for localhost and 127.0.0.1"},
		{line("rp=writ.example.com origin=https://writ.example.com/ cred=" + cred + " key=" + key), "is not an origin"},
		{line("rp=writ.example.com origin=https://writ.example.com/approve cred=" + cred + " key=" + key), "is not an origin"},
		{line("rp=writ.example.com origin=https://writ.example.com:443 cred=" + cred + " key=" + key), "leave out the default port 443"},
		{line("rp=writ.example.com origin=https://evilwrit.example.com cred=" + cred + " key=" + key), "neither rp=writ.example.com nor a subdomain of it"},
		{line("rp=writ.example.com origin=https://example.com cred=" + cred + " key=" + key), "neither rp=writ.example.com nor a subdomain of it"},
		{line("rp=github.io origin=https://writ.github.io cred=" + cred + " key=" + key), "rp=github.io is a public suffix"},
		{line("rp=writ.example.com origin=ftp://writ.example.com cred=" + cred + " key=" + key), "the scheme is https"},
		{line(std + " key=" + b64(rsaCOSEKey(rsaKey))), "key= is a key of COSE algorithm RS256 (-257): writ accepts passkeys of ES256 (-7, P-256) and EdDSA (-8, Ed25519) only"},
		{line(std + " key=" + b64(es384COSEKey(p384))), "COSE algorithm ES384 (-35)"},
		{line(std + " key=" + b64(ed25519AlgCOSEKey(edPub))), "COSE algorithm Ed25519 (-19)"},
		{line(std + " key=AAAA"), "key= is not a COSE public key writ accepts"},
		{line(std + " key=" + b64(append(bytes.Clone(a.COSEKey), 0))), "key= is not a COSE public key writ accepts"},
		{line(std + " key=" + key + " cred=" + cred), "field cred is given twice"},
		{"|\n        " + line(std+" key="+key) + "\n        " + line(std+" key="+key), "one key per line"},
		{line(std + " key=" + key + " " + strings.Repeat("x", 300)), "the comment is 300 bytes; the limit is 256"},
	}
	// One person per entry, each entry on line 7+4i (a block scalar
	// takes more lines).
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	lines := make([]int, len(cases))
	n := 4
	for i, tc := range cases {
		fmt.Fprintf(&b, "  - id: p%d\n    roles: [approver]\n    keys:\n      - %s\n", i, tc.entry)
		lines[i] = n + 3
		n += 4 + strings.Count(tc.entry, "\n")
	}
	kr, problems := ParseKeyring(KeyringPath, []byte(b.String()))
	if kr != nil {
		t.Fatal("accepted")
	}
	for i, tc := range cases {
		found := false
		for _, p := range problems {
			if p.Path == KeyringPath && p.Line == lines[i] && p.Col == 9 && strings.Contains(p.Message, fmt.Sprintf("people[%d].keys[0]: ", i)) && strings.Contains(p.Message, tc.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("entry %d (%.60s…): no problem at %d:9 containing %q:\n%s", i, tc.entry, lines[i], tc.want, problems.Error())
		}
	}
	if len(problems) != len(cases) {
		t.Errorf("%d problems for %d entries:\n%s", len(problems), len(cases), problems.Error())
	}

	// A line the schema refuses: located, with the hint.
	_, problems = ParseKeyring(KeyringPath, []byte("apiVersion: writ/v1\nkind: Approvers\npeople:\n  - id: alice\n    roles: [approver]\n    keys:\n      - webauthn\n"))
	if len(problems) != 1 || problems[0].Line != 7 || problems[0].Col != 9 || !strings.Contains(problems[0].Message, "nor a passkey line (webauthn rp=… origin=… cred=… key=…") {
		t.Fatalf("problems %v", problems)
	}
}

// lineWith is the 1-based number of the first line of text containing s.
func lineWith(t testing.TB, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("no line contains %q", s)
	return 0
}

func TestParseKeyringWebAuthnDuplicates(t *testing.T) {
	t.Parallel()
	a := newPasskey(t, "es256", testRPID, testOrigin)
	b := newPasskey(t, "ed25519", testRPID, testOrigin)
	b.CredentialID = a.CredentialID // the same credential id, another key
	data := fmt.Sprintf(`apiVersion: writ/v1
kind: Approvers
people:
  - id: alice
    roles: [approver]
    keys:
      - %s
      - |
%s
  - id: bob
    roles: [approver]
    keys:
      - %s
      - %s
`, passkeyLine(t, a, "alice"), indentPEM(t, a.Signer.Public()), passkeyLine(t, newPasskeyFrom(t, a, "https://console.writ.example.com"), ""), passkeyLine(t, b, ""))
	_, problems := ParseKeyring(KeyringPath, []byte(data))
	second := passkeyLine(t, newPasskeyFrom(t, a, "https://console.writ.example.com"), "")
	third := passkeyLine(t, b, "")
	wants := []struct {
		line int
		msg  string
	}{
		{lineWith(t, data, "- |"), "people[0].keys[1]: key"},                                                              // the same key as PEM
		{lineWith(t, data, second), `people[1].keys[0]: key`},                                                             // the same key, another origin…
		{lineWith(t, data, second), `already belongs to "alice": a key identifies one person`},                            // …is alice's
		{lineWith(t, data, third), "passkey credential " + WebAuthnKeyID(a.CredentialID) + ` already belongs to "alice"`}, // the same credential id
	}
	for _, w := range wants {
		found := false
		for _, p := range problems {
			if p.Line == w.line && p.Col == 9 && strings.Contains(p.Message, w.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at %d:9 containing %q:\n%s\n%s", w.line, w.msg, problems.Error(), data)
		}
	}
	if len(problems) != 3 {
		t.Errorf("%d problems:\n%s", len(problems), problems.Error())
	}
}

// newPasskeyFrom is a's key and credential registered for another origin.
func newPasskeyFrom(t testing.TB, a *webauthntest.Authenticator, origin string) *webauthntest.Authenticator {
	t.Helper()
	c := *a
	c.Origin = origin
	c.CredentialID = append([]byte{1}, a.CredentialID...)
	return &c
}

func TestWebAuthnKeyLine(t *testing.T) {
	t.Parallel()
	a := newPasskey(t, "es256", testRPID, testOrigin)
	line, err := WebAuthnKeyLine(testRPID, testOrigin, a.CredentialID, a.COSEKey, "bob's\nphone ")
	if err != nil {
		t.Fatal(err)
	}
	want := "webauthn rp=writ.example.com origin=https://writ.example.com cred=" + base64.RawURLEncoding.EncodeToString(a.CredentialID) +
		" key=" + base64.RawURLEncoding.EncodeToString(a.COSEKey) + " bob's phone"
	if line != want {
		t.Fatalf("line %q; want %q", line, want)
	}
	if !IsWebAuthnLine([]byte(line)) || IsWebAuthnLine([]byte("webauthnx rp=a")) || IsWebAuthnLine([]byte("ssh-ed25519 AAAA")) {
		t.Fatal("IsWebAuthnLine")
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rp, origin string
		cred, key  []byte
		want       string
	}{
		{testRPID, testOrigin, a.CredentialID, rsaCOSEKey(rsaKey), "RS256"},
		{testRPID, "https://example.org", a.CredentialID, a.COSEKey, "neither rp=writ.example.com nor a subdomain"},
		{"writ example", testOrigin, a.CredentialID, a.COSEKey, "single words"},
		{testRPID, testOrigin, nil, a.COSEKey, "field cred is empty"},
		{testRPID, testOrigin, make([]byte, 1024), a.COSEKey, "cred= is longer than 1023 bytes"},
	} {
		if _, err := WebAuthnKeyLine(tc.rp, tc.origin, tc.cred, tc.key, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v; want %q", tc.rp, tc.origin, err, tc.want)
		}
	}
	// Origins browsers treat as secure contexts.
	for _, ok := range []struct{ rp, origin string }{
		{"localhost", "http://localhost"},
		{"localhost", "http://localhost:5173"},
		{"localhost", "https://localhost:8443"},
		{"127.0.0.1", "http://127.0.0.1:8080"},
		{"writ.example.com", "https://console.writ.example.com"},
		{"example.co.uk", "https://writ.example.co.uk"},
		{"xn--bcher-kva.example", "https://xn--bcher-kva.example"},
		{"intranet", "https://intranet"},
	} {
		if _, err := WebAuthnKeyLine(ok.rp, ok.origin, a.CredentialID, a.COSEKey, ""); err != nil {
			t.Errorf("%s %s: %v", ok.rp, ok.origin, err)
		}
	}
	for _, bad := range []struct{ rp, origin, want string }{
		{"127.0.0.2", "http://127.0.0.2", "not an IP address"},
		{"localhost", "http://localhost:80", "default port 80"},
		{"localhost", "http://localhost:0", "not a port number"},
		{"localhost", "http://localhost:65536", "not a port number"},
		{"localhost", "http://user@localhost", "is not an origin"},
		{"localhost", "http://localhost?x", "is not an origin"},
		{"localhost", "http://localhost#", "is not an origin"},
		{"localhost", "HTTP://localhost", "is not an origin"},
		{"writ.example.com", "https://Writ.example.com", "is not an origin"},
		{"example.com", "http://localhost.example.com", "http is allowed only"},
		{"co.uk", "https://example.co.uk", "rp=co.uk is a public suffix"},
		{"1.2.3", "https://1.2.3", "does not end in a number"},
		{"-writ.example.com", "https://-writ.example.com", "is not a host name"},
		{"writ..example.com", "https://writ..example.com", "is not a host name"},
	} {
		if _, err := WebAuthnKeyLine(bad.rp, bad.origin, a.CredentialID, a.COSEKey, ""); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s %s: %v; want %q", bad.rp, bad.origin, err, bad.want)
		}
	}
}

// COSE keys writ refuses, in CBOR written by hand.

// rsaCOSEKey: {1: 3 (RSA), 3: -257 (RS256), -1: n, -2: e}.
func rsaCOSEKey(k *rsa.PrivateKey) []byte {
	n := k.N.Bytes()
	out := []byte{0xa4, 0x01, 0x03, 0x03, 0x39, 0x01, 0x00, 0x20, 0x59, byte(len(n) >> 8), byte(len(n))}
	out = append(out, n...)
	return append(out, 0x21, 0x43, 0x01, 0x00, 0x01)
}

// es384COSEKey: {1: 2 (EC2), 3: -35 (ES384), -1: 2 (P-384), -2: x, -3: y}.
func es384COSEKey(k *ecdsa.PrivateKey) []byte {
	raw, _ := k.PublicKey.Bytes()
	out := []byte{0xa5, 0x01, 0x02, 0x03, 0x38, 0x22, 0x20, 0x02, 0x21, 0x58, 0x30}
	out = append(out, raw[1:49]...)
	out = append(out, 0x22, 0x58, 0x30)
	return append(out, raw[49:97]...)
}

// ed25519AlgCOSEKey: {1: 1 (OKP), 3: -19 (Ed25519), -1: 6, -2: x}.
func ed25519AlgCOSEKey(pub ed25519.PublicKey) []byte {
	return append([]byte{0xa4, 0x01, 0x01, 0x03, 0x32, 0x20, 0x06, 0x21, 0x58, 0x20}, pub...)
}

// TestWebAuthnDocumentedLine: the passkey line of docs/approvals.md's
// example approvers file parses.
func TestWebAuthnDocumentedLine(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/approvals.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^      - (webauthn .*)$`).FindSubmatch(doc)
	if m == nil {
		t.Fatal("no webauthn line in docs/approvals.md")
	}
	w, err := ParseWebAuthnKeyLine(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	if w.Algorithm() != WebAuthnEd25519 || w.RPID != "writ.example.com" || w.Comment != "alice's YubiKey" {
		t.Fatalf("%+v", w)
	}
}
