package approval

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/approval/webauthntest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/playbook"
)

// Test constants: the content, policy set and plan approvals cite.
var (
	testNow     = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	testPath    = "playbooks/network/block-c2-beacon.yaml"
	testDigest  = playbook.Digest([]byte("playbook bytes"))
	testPolicy  = playbook.Digest([]byte("policy set"))
	testPlan    = playbook.Digest([]byte("plan"))
	otherDigest = playbook.Digest([]byte("other bytes"))
)

// testPerson is one entry of the test keyring.
type testPerson struct {
	id       string
	github   string
	gitlab   string
	roles    []string
	disabled bool
	alg      string
	// ssh registers the key as an OpenSSH line (ed25519 or ecdsa-p256),
	// and the fixture signs with it as SSHSIG.
	ssh bool
	// passkey registers a software passkey ("es256" or "ed25519") as a
	// webauthn line, and the fixture signs with WebAuthn assertions.
	passkey string
}

// testPeople: alice the analyst (who may also approve), bob and carol
// approvers, dave and erin admins, frank a viewer, gina a disabled approver,
// hank an approver with a GitHub and a GitLab login.
var testPeople = []testPerson{
	{id: "alice", github: "alice-gh", roles: []string{RoleAnalyst, RoleApprover}},
	{id: "bob", roles: []string{RoleApprover}},
	{id: "carol", roles: []string{RoleApprover}, alg: keys.ECDSAP256},
	{id: "dave", roles: []string{RoleApprover, RoleAdmin}, alg: keys.ECDSAP384},
	{id: "erin", roles: []string{RoleAdmin}},
	{id: "frank", roles: []string{RoleViewer}},
	{id: "gina", roles: []string{RoleApprover}, disabled: true},
	{id: "hank", github: "Hank-GH", gitlab: "hank.lab", roles: []string{RoleApprover}},
	{id: "ivan", roles: []string{RoleAnalyst}},
}

type fixture struct {
	kr       *Keyring
	priv     map[string]crypto.Signer
	ssh      map[string]bool
	passkeys map[string]*webauthntest.Authenticator
	stranger crypto.Signer // a key in no keyring
}

func newFixture(t testing.TB, people []testPerson) *fixture {
	t.Helper()
	f := &fixture{priv: map[string]crypto.Signer{}, ssh: map[string]bool{}, passkeys: map[string]*webauthntest.Authenticator{}}
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	for _, p := range people {
		var priv crypto.Signer
		var err error
		if p.alg == "rsa-2048" {
			// keys.Generate makes 3072 bits and up; 2048 is still accepted.
			priv, err = rsa.GenerateKey(rand.Reader, 2048)
		} else {
			priv, err = keys.Generate(p.alg)
		}
		if err != nil {
			t.Fatal(err)
		}
		f.priv[p.id] = priv
		pub, err := keys.MarshalPublic(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - id: %s\n", p.id)
		if p.github != "" {
			fmt.Fprintf(&b, "    github: %s\n", p.github)
		}
		if p.gitlab != "" {
			fmt.Fprintf(&b, "    logins: {gitlab: %s}\n", p.gitlab)
		}
		fmt.Fprintf(&b, "    roles: [%s]\n", strings.Join(p.roles, ", "))
		if p.disabled {
			b.WriteString("    disabled: true\n")
		}
		if p.passkey != "" {
			a := newPasskey(t, p.passkey, testRPID, testOrigin)
			f.passkeys[p.id], f.priv[p.id] = a, a.Signer
			fmt.Fprintf(&b, "    keys:\n      - %s\n", passkeyLine(t, a, p.id+"'s passkey"))
			continue
		}
		if p.ssh {
			f.ssh[p.id] = true
			sshPub, err := ssh.NewPublicKey(priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "    keys:\n      - %s\n", keys.MarshalSSHLine(sshPub, p.id+"@laptop"))
			continue
		}
		b.WriteString("    keys:\n      - |\n")
		for _, line := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
	}
	kr, problems := ParseKeyring(KeyringPath, []byte(b.String()))
	if problems != nil {
		t.Fatalf("keyring: %v\n%s", problems, b.String())
	}
	f.kr = kr
	stranger, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	f.stranger = stranger
	return f
}

// pred is a valid approval by who of the test content.
func pred(who, decision string) Predicate {
	return Predicate{
		Decision:     decision,
		Approver:     who,
		Repository:   "acme/secops",
		PullRequest:  42,
		HeadCommit:   strings.Repeat("a", 40),
		PolicyDigest: testPolicy,
		PlanDigest:   testPlan,
		Reason:       "checked the targets",
		IssuedAt:     testNow.Add(-time.Hour),
		ExpiresAt:    testNow.Add(23 * time.Hour),
	}
}

func stmt(p Predicate) Statement {
	return NewStatement([]Subject{{Path: testPath, Digest: testDigest}}, p)
}

func signWith(t testing.TB, priv crypto.Signer, st Statement) []byte {
	t.Helper()
	s, err := keys.Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	env, err := Sign(s, st)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// signRaw signs arbitrary payload bytes, valid or not.
func signRaw(t testing.TB, priv crypto.Signer, payload []byte) []byte {
	t.Helper()
	s, err := keys.Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signPayload(s, payload)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (f *fixture) sign(t testing.TB, who string, p Predicate) []byte {
	t.Helper()
	if f.ssh[who] {
		return signSSH(t, f.priv[who], stmt(p))
	}
	if a := f.passkeys[who]; a != nil {
		return signWebAuthn(t, a, stmt(p), webauthntest.Options{})
	}
	return signWith(t, f.priv[who], stmt(p))
}

// sshSignerOf is the EnvelopeSigner of a private key used as an OpenSSH
// key.
func sshSignerOf(t testing.TB, priv crypto.Signer) EnvelopeSigner {
	t.Helper()
	ss, err := ssh.NewSignerFromSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSSHSigner(ss)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signSSH signs a statement with a private key used as an OpenSSH key.
func signSSH(t testing.TB, priv crypto.Signer, st Statement) []byte {
	t.Helper()
	env, err := SignWith(context.Background(), sshSignerOf(t, priv), st)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (f *fixture) propose(t testing.TB, who string) []byte {
	t.Helper()
	p := pred(who, Propose)
	p.Reason = "C2 beaconing seen by EDR"
	return f.sign(t, who, p)
}

func (f *fixture) approve(t testing.TB, who string) []byte {
	t.Helper()
	return f.sign(t, who, pred(who, Approve))
}

// editEnvelope decodes an envelope, lets fn change it, and encodes it
// again (the signature is kept as is).
func editEnvelope(t testing.TB, env []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// editPayload rewrites the statement inside an envelope, keeping the old
// signature (which then no longer matches).
func editPayload(t testing.TB, env []byte, fn func(st map[string]any)) []byte {
	t.Helper()
	return editEnvelope(t, env, func(m map[string]any) {
		raw, err := base64.StdEncoding.DecodeString(m["payload"].(string))
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		fn(st)
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		m["payload"] = base64.StdEncoding.EncodeToString(b)
	})
}

// statementJSON is the JSON of a statement with fn applied to its generic
// form, for signing malformed statements.
func statementJSON(t testing.TB, st Statement, fn func(m map[string]any)) []byte {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func submitted(envs ...[]byte) []Submitted {
	out := make([]Submitted, len(envs))
	for i, e := range envs {
		out[i] = Submitted{Envelope: e, Source: "api"}
	}
	return out
}

func baseInput(f *fixture, subs []Submitted) Input {
	return Input{
		Subject:           Subject{Path: testPath, Digest: testDigest},
		Repository:        "acme/secops",
		ApprovalsRequired: 2,
		ApproverRoles:     []string{RoleApprover},
		PolicyDigest:      testPolicy,
		PlanDigest:        testPlan,
		Keyring:           f.kr,
		Envelopes:         subs,
		Now:               testNow,
	}
}

// codeOf returns the code the verdict gives envelope i ("" when counted).
func codeOf(v Verdict, i int) (Code, string) {
	for _, n := range v.NotCounted {
		if n.EnvelopeIndex == i {
			return n.Code, n.Message
		}
	}
	return "", ""
}
