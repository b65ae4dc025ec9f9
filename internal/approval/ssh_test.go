package approval

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hiddeco/sshsig"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/keys"
)

// sshPeople: alice proposes (PEM), bob approves with an SSH ed25519 key,
// carol with an SSH ecdsa-p256 key, dave with a PEM key.
var sshPeople = []testPerson{
	{id: "alice", roles: []string{RoleAnalyst}},
	{id: "bob", roles: []string{RoleApprover}, ssh: true},
	{id: "carol", roles: []string{RoleApprover}, alg: keys.ECDSAP256, ssh: true},
	{id: "dave", roles: []string{RoleApprover}},
}

func TestSSHKeysSignAndVerify(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sshPeople)
	bob, carol := f.approve(t, "bob"), f.approve(t, "carol")
	in := baseInput(f, submitted(f.propose(t, "alice"), bob, carol))
	v := Verify(in)
	if !v.QuorumMet || len(v.Counted) != 2 {
		t.Fatalf("verdict %+v", v)
	}
	for _, who := range []string{"bob", "carol"} {
		p, _ := f.kr.Person(who)
		k := p.Keys[0]
		sshPub, err := ssh.NewPublicKey(f.priv[who].Public())
		if err != nil {
			t.Fatal(err)
		}
		// The same key's ids in PEM form: writ's id and the fingerprint.
		pemID, _ := keys.ID(f.priv[who].Public())
		if k.SSH == nil || k.ID != pemID || k.DSSEKeyID != ssh.FingerprintSHA256(sshPub) || k.Algorithm != keys.Algorithm(f.priv[who].Public()) {
			t.Fatalf("%s's key: %+v", who, k)
		}
	}
	// The envelope: keyid the fingerprint, sig the armored SSHSIG.
	var ej envelopeJSON
	if err := json.Unmarshal(bob, &ej); err != nil {
		t.Fatal(err)
	}
	bobKey := f.kr.byID["bob"].Keys[0]
	armor, err := base64.StdEncoding.DecodeString(ej.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	if ej.Signatures[0].KeyID != bobKey.DSSEKeyID || !bytes.HasPrefix(armor, []byte("-----BEGIN SSH SIGNATURE-----\n")) {
		t.Fatalf("signature %+v", ej.Signatures[0])
	}
	sig, err := sshsig.Unarmor(armor)
	if err != nil || sig.Namespace != SSHNamespace || sig.HashAlgorithm != sshsig.HashSHA512 {
		t.Fatalf("SSHSIG %+v: %v", sig, err)
	}

	// Without a keyid, the SSHSIG's own key is found.
	noID := editEnvelope(t, bob, func(m map[string]any) {
		m["signatures"].([]any)[0].(map[string]any)["keyid"] = ""
	})
	in.Envelopes = submitted(f.propose(t, "alice"), noID, carol)
	if v := Verify(in); !v.QuorumMet {
		t.Fatalf("without keyid: %+v", v)
	}
	// The door check finds the signer too.
	for _, raw := range [][]byte{bob, noID} {
		env, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if k, err := env.VerifySigner(f.kr); err != nil || k != bobKey {
			t.Fatalf("VerifySigner: %v %v", k, err)
		}
	}
	// An altered statement no longer verifies.
	altered := editPayload(t, bob, func(st map[string]any) {
		st["predicate"].(map[string]any)["reason"] = "something else"
	})
	in.Envelopes = submitted(f.propose(t, "alice"), altered)
	if c, msg := codeOf(Verify(in), 1); c != CodeBadSignature || !strings.Contains(msg, "does not verify") {
		t.Fatalf("altered: %s %s", c, msg)
	}
}

// sshEnvelope builds an envelope around a given sig (the armored SSHSIG
// bytes, or anything) for a statement.
func sshEnvelope(t testing.TB, keyID string, st Statement, sig []byte) []byte {
	t.Helper()
	payload, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(envelopeJSON{PayloadType: PayloadType, Payload: base64.StdEncoding.EncodeToString(payload),
		Signatures: []signatureJSON{{KeyID: keyID, Sig: base64.StdEncoding.EncodeToString(sig)}}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// paeOf is the DSSE PAE of a statement as writ signs it.
func paeOf(t testing.TB, st Statement) []byte {
	t.Helper()
	payload, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return ssldsse.PAE(PayloadType, payload)
}

// sshsigOf signs the PAE of a statement with an ssh.Signer, in a namespace.
func sshsigOf(t testing.TB, s ssh.Signer, namespace string, st Statement) *sshsig.Signature {
	t.Helper()
	sig, err := sshsig.Sign(bytes.NewReader(paeOf(t, st)), s, sshsig.HashSHA512, namespace)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func sshSignerFor(t testing.TB, priv crypto.Signer) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSSHRefusals: each way an SSH signature fails is refused with the
// reason, with and without a keyid naming the key.
func TestSSHRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sshPeople)
	st := stmt(pred("bob", Approve))
	bobKey := f.kr.byID["bob"].Keys[0]
	bobSSH := sshSignerFor(t, f.priv["bob"])
	good := sshsigOf(t, bobSSH, SSHNamespace, st)
	armor := sshsig.Armor(good)

	carolECDSA := sshSignerFor(t, f.priv["carol"])
	strangerSSH := sshSignerFor(t, f.stranger)

	truncated := armor[:len(armor)/2]
	garbled := bytes.Replace(armor, []byte("U1NIU0lH"), []byte("U1NIU0lI"), 1) // "SSHSIG" -> "SSHSIH"
	if bytes.Equal(garbled, armor) {
		t.Fatal("garbling changed nothing")
	}
	trailing := append(bytes.Clone(armor), "more\n"...)
	pemSig := func() []byte {
		// bob's key used as a PEM key: a raw signature over the PAE.
		var ej envelopeJSON
		if err := json.Unmarshal(signWith(t, f.priv["bob"], st), &ej); err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(ej.Signatures[0].Sig)
		return raw
	}()

	cases := []struct {
		name  string
		keyID string // "" to send none; "bob" for bob's fingerprint
		sig   []byte
		code  Code
		msg   string
	}{
		{"good", "bob", armor, "", ""},
		{"good without keyid", "", armor, "", ""},
		{"sha256 hash", "bob", sshsig.Armor(func() *sshsig.Signature {
			s, err := sshsig.Sign(bytes.NewReader(paeOf(t, st)), bobSSH, sshsig.HashSHA256, SSHNamespace)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}()), "", ""},
		{"wrong namespace", "bob", sshsig.Armor(sshsigOf(t, bobSSH, "file", st)), CodeBadSignature, `namespace "file"; writ approvals are signed in namespace "writ-approval"`},
		{"wrong namespace without keyid", "", sshsig.Armor(sshsigOf(t, bobSSH, "git", st)), CodeBadSignature, `namespace "git"`},
		{"truncated armor", "bob", truncated, CodeBadSignature, "armor is truncated or garbled"},
		{"truncated armor without keyid", "", truncated, CodeUnknownKey, "armor is truncated or garbled"},
		{"garbled inside the armor", "bob", garbled, CodeBadSignature, "garbled"},
		{"data after the armor", "bob", trailing, CodeBadSignature, "followed by other data"},
		{"bare SSHSIG blob", "bob", good.Marshal(), CodeBadSignature, "must be armored"},
		{"a PEM signature for an SSH key", "bob", pemSig, CodeBadSignature, "not an SSH signature"},
		{"unknown key", "", sshsig.Armor(sshsigOf(t, strangerSSH, SSHNamespace, st)), CodeUnknownKey, "which is not in the approvers file"},
		{"unknown key with its keyid", "stranger", sshsig.Armor(sshsigOf(t, strangerSSH, SSHNamespace, st)), CodeUnknownKey, "which is not in the approvers file"},
		{"key of the wrong type", "bob", sshsig.Armor(sshsigOf(t, carolECDSA, SSHNamespace, st)), CodeBadSignature, "signed by a ecdsa-sha2-nistp256 key, but key " + bobKey.DSSEKeyID + " is a ssh-ed25519 key"},
		{"another key of the same type", "bob", sshsig.Armor(sshsigOf(t, sshSignerFor(t, f.priv["alice"]), SSHNamespace, st)), CodeBadSignature, "not by key " + bobKey.DSSEKeyID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keyID := tc.keyID
			switch keyID {
			case "bob":
				keyID = bobKey.DSSEKeyID
			case "stranger":
				pub, _ := ssh.NewPublicKey(f.stranger.Public())
				keyID = ssh.FingerprintSHA256(pub)
			}
			env := sshEnvelope(t, keyID, st, tc.sig)
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
			// The door check agrees, with the same reason.
			parsed, err := Parse(env)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parsed.VerifySigner(f.kr)
			if (err == nil) != (tc.code == "") || (err != nil && !strings.Contains(err.Error(), tc.msg) && tc.keyID == "") {
				t.Fatalf("VerifySigner: %v", err)
			}
		})
	}

	t.Run("an SSH signature for a PEM key", func(t *testing.T) {
		t.Parallel()
		// dave's key is registered as PEM: his SSHSIG, with or without
		// keyid, is refused with the reason.
		dst := stmt(pred("dave", Approve))
		dave := f.kr.byID["dave"].Keys[0]
		sig := sshsig.Armor(sshsigOf(t, sshSignerFor(t, f.priv["dave"]), SSHNamespace, dst))
		for _, keyID := range []string{dave.DSSEKeyID, ""} {
			in := baseInput(f, submitted(f.propose(t, "alice"), sshEnvelope(t, keyID, dst, sig)))
			code, msg := codeOf(Verify(in), 1)
			if code != CodeBadSignature || !strings.Contains(msg, "registered as a PEM key") {
				t.Fatalf("keyid %q: %s %s", keyID, code, msg)
			}
		}
	})
}

// skKey is a FIDO sk-ssh-ed25519@openssh.com key simulated in software,
// following PROTOCOL.u2f: the signed data is sha256(application) || flags
// || counter || sha256(message), and the signature carries flags and
// counter after the ed25519 signature.
type skKey struct {
	priv        ed25519.PrivateKey
	pub         ssh.PublicKey
	application string
	flags       byte
	counter     uint32
}

func newSKKey(t testing.TB, flags byte) *skKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wire := ssh.Marshal(struct {
		Name        string
		KeyBytes    []byte
		Application string
	}{keys.SSHSKEd25519, pub, "ssh:"})
	sshPub, err := ssh.ParsePublicKey(wire)
	if err != nil {
		t.Fatal(err)
	}
	return &skKey{priv: priv, pub: sshPub, application: "ssh:", flags: flags, counter: 7}
}

func (k *skKey) PublicKey() ssh.PublicKey { return k.pub }

func (k *skKey) Sign(_ io.Reader, data []byte) (*ssh.Signature, error) {
	app := sha256.Sum256([]byte(k.application))
	msg := sha256.Sum256(data)
	signed := append(app[:], k.flags)
	signed = binary.BigEndian.AppendUint32(signed, k.counter)
	signed = append(signed, msg[:]...)
	return &ssh.Signature{
		Format: keys.SSHSKEd25519,
		Blob:   ed25519.Sign(k.priv, signed),
		Rest: ssh.Marshal(struct {
			Flags   byte
			Counter uint32
		}{k.flags, k.counter}),
	}, nil
}

// skFixture is a keyring where bob's key is a FIDO key.
func skFixture(t testing.TB, sk *skKey) *fixture {
	t.Helper()
	f := newFixture(t, sshPeople)
	data := fmt.Sprintf(`apiVersion: writ/v1
kind: Approvers
people:
  - id: alice
    roles: [analyst]
    keys:
      - |
%s
  - id: bob
    roles: [approver]
    keys:
      - %s
`, indentPEM(t, f.priv["alice"].Public()), keys.MarshalSSHLine(sk.pub, "bob@yubikey"))
	kr, problems := ParseKeyring(KeyringPath, []byte(data))
	if problems != nil {
		t.Fatalf("%v\n%s", problems, data)
	}
	f.kr = kr
	return f
}

func indentPEM(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	p, err := keys.MarshalPublic(pub)
	if err != nil {
		t.Fatal(err)
	}
	return "        " + strings.ReplaceAll(strings.TrimSpace(string(p)), "\n", "\n        ")
}

func TestSSHFIDOUserPresence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags byte
		rest  []byte // replaces the flags and counter when set
		code  Code
		msg   string
	}{
		{"touched", skUserPresent, nil, "", ""},
		{"touched and verified", skUserPresent | 0x04, nil, "", ""},
		{"not touched", 0x00, nil, CodeBadSignature, "without the user-presence flag (flags 0x00)"},
		{"verified but not touched", 0x04, nil, CodeBadSignature, "without the user-presence flag (flags 0x04)"},
		{"no flags", skUserPresent, []byte{}, CodeBadSignature, "without its flags and counter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sk := newSKKey(t, tc.flags)
			f := skFixture(t, sk)
			bobKey := f.kr.byID["bob"].Keys[0]
			if bobKey.Algorithm != keys.SKEd25519 || bobKey.SSH.Type() != keys.SSHSKEd25519 {
				t.Fatalf("key %+v", bobKey)
			}
			if h := sha256.Sum256(sk.pub.Marshal()); bobKey.ID != fmt.Sprintf("%x", h) {
				t.Fatalf("a FIDO key's id is the sha256 of its wire encoding: %s", bobKey.ID)
			}
			st := stmt(pred("bob", Approve))
			signer, err := NewSSHSigner(sk)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := SignWith(context.Background(), signer, st)
			if err != nil {
				t.Fatal(err)
			}
			if tc.rest != nil {
				sig := sshsigOf(t, sk, SSHNamespace, st)
				sig.Signature.Rest = tc.rest
				raw = sshEnvelope(t, bobKey.DSSEKeyID, st, sshsig.Armor(sig))
			}
			for _, env := range [][]byte{raw, editEnvelope(t, raw, func(m map[string]any) {
				m["signatures"].([]any)[0].(map[string]any)["keyid"] = ""
			})} {
				in := baseInput(f, submitted(f.propose(t, "alice"), env))
				in.ApprovalsRequired = 1
				v := Verify(in)
				code, msg := codeOf(v, 1)
				if code != tc.code || !strings.Contains(msg, tc.msg) || (tc.code == "") != v.QuorumMet {
					t.Fatalf("code %q, message %q; want %q containing %q", code, msg, tc.code, tc.msg)
				}
			}
		})
	}
}

func TestSSHSignerRefusesOtherKeyTypes(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{keys.ECDSAP384, keys.RSA3072} {
		priv, err := keys.Generate(alg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewSSHSigner(sshSignerFor(t, priv)); !errors.Is(err, keys.ErrWeakKey) {
			t.Fatalf("%s: %v", alg, err)
		}
	}
	if _, err := NewSSHAgentSigner(context.Background(), "", sshSignerFor(t, newFixture(t, sshPeople).stranger).PublicKey()); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Fatalf("agent without socket: %v", err)
	}
}

func TestParseKeyringSSH(t *testing.T) {
	t.Parallel()
	sk := newSKKey(t, skUserPresent)
	ed, _ := keys.Generate(keys.Ed25519)
	ec, _ := keys.Generate(keys.ECDSAP256)
	edPub, _ := ssh.NewPublicKey(ed.Public())
	ecPub, _ := ssh.NewPublicKey(ec.Public())
	data := fmt.Sprintf(`apiVersion: writ/v1
kind: Approvers
people:
  - id: alice
    roles: [analyst]
    keys:
      - %s
      - "%s"
      - %s
      - |
%s
`, keys.MarshalSSHLine(edPub, ""), keys.MarshalSSHLine(ecPub, "alice@laptop, the old one"), keys.MarshalSSHLine(sk.pub, "alice@yubikey"),
		indentPEM(t, newFixture(t, sshPeople[:1]).stranger.Public()))
	kr, problems := ParseKeyring(KeyringPath, []byte(data))
	if problems != nil {
		t.Fatalf("%v\n%s", problems, data)
	}
	alice, _ := kr.Person("alice")
	if len(alice.Keys) != 4 {
		t.Fatalf("keys %+v", alice.Keys)
	}
	for i, want := range []string{keys.Ed25519, "ecdsa-p256", keys.SKEd25519, keys.Ed25519} {
		k := alice.Keys[i]
		if k.Algorithm != want || (k.SSH == nil) != (i == 3) {
			t.Fatalf("key %d: %+v", i, k)
		}
		if byFP, ok := kr.Key(k.DSSEKeyID); !ok || byFP != k {
			t.Fatalf("key %d not found by fingerprint", i)
		}
		if byID, ok := kr.Key(k.ID); !ok || byID != k {
			t.Fatalf("key %d not found by id", i)
		}
	}
}
