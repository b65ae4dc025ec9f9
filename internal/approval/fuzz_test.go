package approval

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/hiddeco/sshsig"

	"github.com/writ-sec/writ/internal/approval/webauthntest"
	"github.com/writ-sec/writ/internal/keys"
)

// FuzzParse feeds arbitrary bytes to the envelope and statement decoder:
// it must never panic, and whatever it accepts must be a valid approval
// statement that re-encodes to an equally valid one.
func FuzzParse(f *testing.F) {
	priv, err := keys.Generate(keys.Ed25519)
	if err != nil {
		f.Fatal(err)
	}
	s, err := keys.Signer(priv)
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range []string{Propose, Approve, Reject} {
		env, err := Sign(s, stmt(pred("bob", d)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(env)
	}
	for _, d := range []string{Propose, Approve} {
		f.Add(signSSH(f, priv, stmt(pred("bob", d))))
	}
	for _, alg := range []string{"es256", "ed25519"} {
		f.Add(signWebAuthn(f, newPasskey(f, alg, testRPID, testOrigin), stmt(pred("bob", Approve)), webauthntest.Options{}))
	}
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6MX0=","signatures":[{"sig":"AA=="}],"payloadType":""}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`))
	f.Add([]byte(`{"a":{"b":{"c":1},"b":2}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data)
		if err != nil {
			if e != nil {
				t.Fatal("envelope returned with an error")
			}
			return
		}
		if err := e.Statement.Validate(); err != nil {
			t.Fatalf("accepted an invalid statement: %v", err)
		}
		if e.Statement.Predicate.ExpiresAt.Before(e.Statement.Predicate.IssuedAt) {
			t.Fatal("accepted expiresAt before issuedAt")
		}
		again, err := json.Marshal(e.Statement)
		if err != nil {
			t.Fatal(err)
		}
		var st Statement
		if err := decodeStrict(again, &st); err != nil {
			t.Fatalf("re-encoded statement does not decode: %v\n%s", err, again)
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("re-encoded statement invalid: %v", err)
		}
		if !bytes.Equal(e.Raw, data) {
			t.Fatal("Raw differs from the input")
		}
		// Verifying never panics either, whatever the keyring.
		_ = Verify(Input{Subject: Subject{Path: "p.yaml", Digest: testDigest}, PolicyDigest: testPolicy, PlanDigest: testPlan,
			Keyring: &Keyring{}, Envelopes: []Submitted{{Envelope: data}}, Now: time.Unix(0, 0)})
	})
}

// FuzzSSHSignature feeds arbitrary signature bytes (armored or not) in an
// otherwise valid envelope to the SSH verification path, against a
// keyring of SSH keys (ed25519, ecdsa-p256, FIDO): it must never panic,
// and only the real signature counts.
func FuzzSSHSignature(f *testing.F) {
	sk := newSKKey(f, skUserPresent)
	fx := skFixture(f, sk)
	st := stmt(pred("bob", Approve))
	good := sshsigOf(f, sk, SSHNamespace, st)
	f.Add(sshsig.Armor(good))
	f.Add(good.Marshal())
	f.Add([]byte("-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n"))
	f.Add([]byte("SSHSIG"))
	keyID := fx.kr.byID["bob"].Keys[0].DSSEKeyID
	f.Fuzz(func(t *testing.T, sig []byte) {
		in := baseInput(fx, []Submitted{{Envelope: sshEnvelope(t, keyID, st, sig)}, {Envelope: sshEnvelope(t, "", st, sig)}})
		in.ApprovalsRequired = 1
		in.Options.RelaxProposal = true
		v := Verify(in)
		if len(v.Counted) > 0 && !bytes.Equal(sig, sshsig.Armor(good)) {
			// Another armor of the same signature (spacing) may count;
			// anything that counts must carry the same signature.
			parsed, err := sshsig.Unarmor(bytes.TrimLeft(sig, " \t\r\n"))
			if err != nil || !bytes.Equal(parsed.Signature.Blob, good.Signature.Blob) {
				t.Fatalf("counted a signature that is not bob's: %q", sig)
			}
		}
	})
}

// FuzzWebAuthnSignature feeds arbitrary signature bytes in an otherwise
// valid envelope to the WebAuthn verification path, against a keyring of
// passkeys (ES256, Ed25519) and PEM keys: it must never panic, and only
// the real assertion counts.
func FuzzWebAuthnSignature(f *testing.F) {
	fx := newFixture(f, passkeyPeople)
	st := stmt(pred("bob", Approve))
	payload := payloadOf(f, st)
	good := mustJSON(f, sigObject(assertWith(f, fx.passkeys["bob"], payload, webauthntest.Options{})))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"type":"writ.webauthn.v1"}`))
	f.Add([]byte(`{}`))
	keyID := fx.kr.byID["bob"].Keys[0].DSSEKeyID
	f.Fuzz(func(t *testing.T, sig []byte) {
		in := baseInput(fx, []Submitted{{Envelope: rawEnvelope(t, payload, keyID, sig, base64.StdEncoding)},
			{Envelope: rawEnvelope(t, payload, "", sig, base64.StdEncoding)}})
		in.ApprovalsRequired = 1
		in.Options.RelaxProposal = true
		v := Verify(in)
		if len(v.Counted) > 0 {
			// Whatever counts carries bob's assertion: the same
			// authenticator data, client data and signature.
			var got, want webauthnSigJSON
			if err := json.Unmarshal(sig, &got); err != nil {
				t.Fatalf("counted a signature that is not JSON: %q", sig)
			}
			_ = json.Unmarshal(good, &want)
			if got.AuthenticatorData != want.AuthenticatorData || got.ClientDataJSON != want.ClientDataJSON || got.Signature != want.Signature {
				t.Fatalf("counted a signature that is not bob's: %q", sig)
			}
		}
	})
}

// FuzzWebAuthnKeyLine: parsing a keyring line never panics, and a line it
// accepts writes back (String) to a line that parses to the same key.
func FuzzWebAuthnKeyLine(f *testing.F) {
	for _, alg := range []string{"es256", "ed25519"} {
		a := newPasskey(f, alg, testRPID, testOrigin)
		f.Add(passkeyLine(f, a, "bob's key"))
	}
	f.Add("webauthn rp=localhost origin=http://localhost:8080 cred=AA key=AA")
	f.Add("webauthn")
	f.Fuzz(func(t *testing.T, line string) {
		w, err := ParseWebAuthnKeyLine(line)
		if err != nil {
			return
		}
		again, err := ParseWebAuthnKeyLine(w.String())
		if err != nil {
			t.Fatalf("%q parses, its String %q does not: %v", line, w.String(), err)
		}
		if again.String() != w.String() || !bytes.Equal(again.CredentialID, w.CredentialID) {
			t.Fatalf("%q: %q then %q", line, w.String(), again.String())
		}
	})
}
