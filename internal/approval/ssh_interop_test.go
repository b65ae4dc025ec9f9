package approval

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hiddeco/sshsig"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/keys"
)

// The tests here run OpenSSH's own ssh-keygen (.ci/run installs
// openssh-client): a signature ssh-keygen makes verifies in writ, and one
// writ makes verifies with ssh-keygen, through the commands
// docs/approvals.md gives.

// tool finds a program the tests need; CI installs them, so a missing one
// fails the test rather than skipping it.
func tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed (package openssh-client; .ci/run installs it): %v", name, err)
	}
	return p
}

// runIn runs a program in dir with stdin, returning its combined output
// and error.
func runIn(t testing.TB, dir string, stdin []byte, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), tool(t, name), args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sshKeygen makes a key pair with ssh-keygen in dir: dir/NAME and
// dir/NAME.pub.
func sshKeygen(t testing.TB, dir, name, alg string) (priv ssh.Signer, pubLine string) {
	t.Helper()
	args := []string{"-q", "-N", "", "-C", name + "@laptop", "-f", filepath.Join(dir, name)}
	switch alg {
	case keys.Ed25519:
		args = append(args, "-t", "ed25519")
	case keys.ECDSAP256:
		args = append(args, "-t", "ecdsa", "-b", "256")
	default:
		t.Fatalf("algorithm %s", alg)
	}
	if out, err := runIn(t, dir, nil, "ssh-keygen", args...); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	priv, err = ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, name+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	return priv, strings.TrimSpace(string(pub))
}

// keyringWith is the fixture's alice (PEM, analyst) and bob with one SSH
// key line, an approver.
func keyringWith(t testing.TB, f *fixture, bobLine string) *Keyring {
	t.Helper()
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
`, indentPEM(t, f.priv["alice"].Public()), bobLine)
	kr, problems := ParseKeyring(KeyringPath, []byte(data))
	if problems != nil {
		t.Fatalf("%v\n%s", problems, data)
	}
	return kr
}

// paeOfEnvelope rebuilds the PAE from an envelope's JSON.
func paeOfEnvelope(t testing.TB, env []byte) (pae, sig []byte) {
	t.Helper()
	var ej envelopeJSON
	if err := json.Unmarshal(env, &ej); err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(ej.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, err = base64.StdEncoding.DecodeString(ej.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	return ssldsse.PAE(ej.PayloadType, payload), sig
}

func TestSSHKeygenInterop(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{keys.Ed25519, keys.ECDSAP256} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			f := newFixture(t, sshPeople[:1])
			bobSSH, bobLine := sshKeygen(t, dir, "bob", alg)
			kr := keyringWith(t, f, bobLine)
			fp := ssh.FingerprintSHA256(bobSSH.PublicKey())
			st := stmt(pred("bob", Approve))
			pae := paeOf(t, st)
			if err := os.WriteFile(filepath.Join(dir, "pae"), pae, 0o600); err != nil {
				t.Fatal(err)
			}
			judge := func(env []byte) (Code, string) {
				in := baseInput(f, submitted(f.propose(t, "alice"), env))
				in.Keyring, in.ApprovalsRequired = kr, 1
				return codeOf(Verify(in), 1)
			}

			// ssh-keygen signs, writ verifies.
			for _, ns := range []string{SSHNamespace, "file"} {
				os.Remove(filepath.Join(dir, "pae.sig"))
				if out, err := runIn(t, dir, nil, "ssh-keygen", "-Y", "sign", "-n", ns, "-f", "bob", "pae"); err != nil {
					t.Fatalf("ssh-keygen -Y sign: %v\n%s", err, out)
				}
				sig, err := os.ReadFile(filepath.Join(dir, "pae.sig"))
				if err != nil {
					t.Fatal(err)
				}
				code, msg := judge(sshEnvelope(t, fp, st, sig))
				if ns == SSHNamespace && code != "" {
					t.Fatalf("ssh-keygen's signature: %s %s", code, msg)
				}
				if ns == "file" && (code != CodeBadSignature || !strings.Contains(msg, `namespace "file"`)) {
					t.Fatalf("ssh-keygen's signature in namespace file: %s %s", code, msg)
				}
			}

			// writ signs, ssh-keygen verifies.
			signer, err := NewSSHSigner(bobSSH)
			if err != nil {
				t.Fatal(err)
			}
			env, err := SignWith(context.Background(), signer, st)
			if err != nil {
				t.Fatal(err)
			}
			if code, msg := judge(env); code != "" {
				t.Fatalf("writ's own signature: %s %s", code, msg)
			}
			envPAE, sig := paeOfEnvelope(t, env)
			if !bytes.Equal(envPAE, pae) {
				t.Fatal("the envelope's PAE differs")
			}
			if err := os.WriteFile(filepath.Join(dir, "writ.sig"), sig, 0o600); err != nil {
				t.Fatal(err)
			}
			allowed := fmt.Sprintf("bob namespaces=%q %s\n", SSHNamespace, bobLine)
			if err := os.WriteFile(filepath.Join(dir, "allowed_signers"), []byte(allowed), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runIn(t, dir, pae, "ssh-keygen", "-Y", "verify", "-f", "allowed_signers", "-I", "bob", "-n", SSHNamespace, "-s", "writ.sig")
			if err != nil || !strings.Contains(out, "Good \""+SSHNamespace+"\" signature for bob") {
				t.Fatalf("ssh-keygen -Y verify: %v\n%s", err, out)
			}
			// ssh-keygen refuses it in another namespace, and for other bytes.
			if out, err := runIn(t, dir, pae, "ssh-keygen", "-Y", "verify", "-f", "allowed_signers", "-I", "bob", "-n", "file", "-s", "writ.sig"); err == nil {
				t.Fatalf("ssh-keygen accepted namespace file:\n%s", out)
			}
			if out, err := runIn(t, dir, append(bytes.Clone(pae), ' '), "ssh-keygen", "-Y", "verify", "-f", "allowed_signers", "-I", "bob", "-n", SSHNamespace, "-s", "writ.sig"); err == nil {
				t.Fatalf("ssh-keygen accepted other bytes:\n%s", out)
			}
		})
	}
}

// TestSSHFIDOAgreesWithSSHKeygen checks the simulated FIDO signatures the
// tests use are what OpenSSH verifies, and where writ is stricter:
// ssh-keygen -Y verify accepts a FIDO signature made without the
// user-presence flag (OpenSSH checks it only when logging in), writ does
// not; and the flags are signed, so setting the flag afterwards breaks the
// signature for both.
func TestSSHFIDOAgreesWithSSHKeygen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		flags     byte
		setUP     bool // set the flag in the signature after signing
		sshKeygen bool // ssh-keygen -Y verify accepts it
		writ      Code // writ's verdict
	}{
		{"touched", skUserPresent, false, true, ""},
		{"not touched", 0, false, true, CodeBadSignature},
		{"flag set after signing", 0, true, false, CodeBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			sk := newSKKey(t, tc.flags)
			f := skFixture(t, sk)
			st := stmt(pred("bob", Approve))
			sig := sshsigOf(t, sk, SSHNamespace, st)
			if tc.setUP {
				sig.Signature.Rest = ssh.Marshal(struct {
					Flags   byte
					Counter uint32
				}{skUserPresent, sk.counter})
			}
			armor := sshsig.Armor(sig)
			allowed := fmt.Sprintf("bob namespaces=%q %s\n", SSHNamespace, keys.MarshalSSHLine(sk.pub, "bob@yubikey"))
			if err := os.WriteFile(filepath.Join(dir, "allowed_signers"), []byte(allowed), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "sig"), armor, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runIn(t, dir, paeOf(t, st), "ssh-keygen", "-Y", "verify", "-f", "allowed_signers", "-I", "bob", "-n", SSHNamespace, "-s", "sig")
			if (err == nil) != tc.sshKeygen {
				t.Fatalf("ssh-keygen -Y verify: %v\n%s", err, out)
			}
			in := baseInput(f, submitted(f.propose(t, "alice"), sshEnvelope(t, f.kr.byID["bob"].Keys[0].DSSEKeyID, st, armor)))
			in.ApprovalsRequired = 1
			if code, msg := codeOf(Verify(in), 1); code != tc.writ {
				t.Fatalf("writ: %s %s", code, msg)
			}
		})
	}
}

// TestSSHDocumentedCheck runs the shell commands of docs/approvals.md
// ("Checking an envelope by hand") on an envelope writ signed, so the
// documentation stays true: they accept it, and refuse it once altered.
func TestSSHDocumentedCheck(t *testing.T) {
	t.Parallel()
	tool(t, "jq")
	tool(t, "base64")
	doc, err := os.ReadFile("../../docs/approvals.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- tested: ssh-keygen-verify -->\\s*```sh\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/approvals.md has no block marked <!-- tested: ssh-keygen-verify -->")
	}
	script := string(m[1])
	for _, alg := range []string{keys.Ed25519, keys.ECDSAP256} {
		dir := t.TempDir()
		bobSSH, bobLine := sshKeygen(t, dir, "bob", alg)
		signer, err := NewSSHSigner(bobSSH)
		if err != nil {
			t.Fatal(err)
		}
		env, err := SignWith(context.Background(), signer, stmt(pred("bob", Approve)))
		if err != nil {
			t.Fatal(err)
		}
		// bob.json is the envelope; bob.pub the key line (ssh-keygen's,
		// as the approvers file holds it).
		if err := os.WriteFile(filepath.Join(dir, "bob.json"), append(env, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runIn(t, dir, nil, "bash", "-euo", "pipefail", "-c", script)
		if err != nil || !strings.Contains(out, `Good "writ-approval" signature for bob`) {
			t.Fatalf("%s: the documented commands: %v\n%s\nscript:\n%s\nkey: %s", alg, err, out, script, bobLine)
		}
		altered := editPayload(t, env, func(st map[string]any) {
			st["predicate"].(map[string]any)["planDigest"] = strings.Repeat("0", 64)
		})
		if err := os.WriteFile(filepath.Join(dir, "bob.json"), altered, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := runIn(t, dir, nil, "bash", "-euo", "pipefail", "-c", script); err == nil {
			t.Fatalf("%s: the documented commands accept an altered envelope:\n%s", alg, out)
		}
	}
}
