package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/approval"
)

// The tests here run OpenSSH's ssh-keygen, ssh-agent and ssh-add (.ci/run
// installs openssh-client); a missing tool fails them.

func sshTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed (package openssh-client; .ci/run installs it): %v", name, err)
	}
	return p
}

// sshKeygenCLI makes an SSH key pair in a temp directory and returns the
// private key's path (the public key is path.pub) and the public line.
func sshKeygenCLI(t testing.TB, name, typ, passphrase string) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	args := []string{"-q", "-t", typ, "-N", passphrase, "-C", name + "@laptop", "-f", path}
	if typ == "ecdsa" {
		args = append(args, "-b", "256")
	}
	if out, err := exec.Command(sshTool(t, "ssh-keygen"), args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return path, strings.TrimSpace(string(pub))
}

// addSSHPerson appends a person with an SSH key line to the repository's
// approvers file.
func (r *approvalRepo) addSSHPerson(t *testing.T, id, roles, line string) {
	t.Helper()
	data, err := os.ReadFile(r.path(".writ/approvers.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	data = fmt.Appendf(data, "  - id: %s\n    roles: [%s]\n    keys:\n      - %s\n", id, roles, line)
	r.write(t, ".writ/approvers.yaml", data)
}

// approveWith runs writ approve with the given signing flags and
// environment and returns the exit code, the envelope file and stderr.
func (r *approvalRepo) approveWith(t *testing.T, env map[string]string, who string, args ...string) (int, string, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), who+".json")
	all := append([]string{"--data-dir", r.dataDir, "approve", "--approver", who, "--out", out}, args...)
	all = append(all, r.path(testPlaybookPath))
	code, _, errOut := runCLIEnv(t, env, all...)
	return code, out, errOut
}

// signerOf checks an envelope file verifies with the repository's keyring
// and returns the signer's key.
func (r *approvalRepo) signerOf(t *testing.T, file string) *approval.Key {
	t.Helper()
	data, err := os.ReadFile(r.path(".writ/approvers.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kr, problems := approval.ParseKeyring(approval.KeyringPath, data)
	if problems != nil {
		t.Fatal(problems)
	}
	k, err := parseEnvelopeFile(t, file).VerifySigner(kr)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestApproveWithSSHKeyFile(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst")
	bobKey, bobLine := sshKeygenCLI(t, "bob", "ed25519", "correct horse battery")
	carolKey, carolLine := sshKeygenCLI(t, "carol", "ecdsa", "")
	r.addSSHPerson(t, "bob", "approver", bobLine)
	r.addSSHPerson(t, "carol", "approver", carolLine)

	proposal := r.approve(t, "alice", "--propose")
	// bob's key has a passphrase: from WRIT_KEY_PASSWORD.
	code, bob, errOut := r.approveWith(t, map[string]string{"WRIT_KEY_PASSWORD": "correct horse battery"}, "bob", "--ssh-key", bobKey)
	if code != exitOK || strings.Contains(errOut, "warning") {
		t.Fatalf("bob: %d %s", code, errOut)
	}
	code, carol, errOut := r.approveWith(t, nil, "carol", "--ssh-key", carolKey)
	if code != exitOK || strings.Contains(errOut, "warning") {
		t.Fatalf("carol: %d %s", code, errOut)
	}
	for who, file := range map[string]string{"bob": bob, "carol": carol} {
		k := r.signerOf(t, file)
		if k.Person.ID != who || k.SSH == nil || parseEnvelopeFile(t, file).KeyID != k.DSSEKeyID {
			t.Fatalf("%s's envelope: key %+v", who, k)
		}
	}
	code, out, errOut := r.verify(t, "--approvals-required", "2", proposal, bob, carol)
	if code != exitOK || !strings.Contains(collapseSpaces(out), "approved by bob, carol") {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}

	// The passphrase missing or wrong; both flags; the wrong kind of file.
	pemPub := filepath.Join(t.TempDir(), "alice.pub")
	pemData, _ := os.ReadFile(strings.TrimSuffix(r.keys["alice"], ".key") + ".pub")
	os.WriteFile(pemPub, pemData, 0o644)
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--ssh-key", bobKey}, "protected by a passphrase: a password is needed"},
		{map[string]string{"WRIT_KEY_PASSWORD": "wrong"}, []string{"--ssh-key", bobKey}, "wrong passphrase"},
		{nil, []string{"--ssh-key", bobKey, "--key", r.keys["alice"]}, "--key and --ssh-key exclude each other"},
		{nil, []string{"--ssh-key", r.path(testPlaybookPath)}, "not an SSH private key"},
		{nil, []string{"--ssh-key", pemPub}, "a PEM public key: --ssh-key takes OpenSSH keys"},
		{nil, []string{"--ssh-key", "/no/such/key"}, "--ssh-key"},
		{nil, []string{"--ssh-key", bobKey + ".pub"}, "SSH_AUTH_SOCK is not set"},
	} {
		code, _, errOut := r.approveWith(t, tc.env, "bob", tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q; want %q", tc.args, code, errOut, tc.want)
		}
		if strings.Contains(errOut, "correct horse") || strings.Contains(errOut, "wrong\n") {
			t.Errorf("a passphrase in the output: %q", errOut)
		}
	}

	// Warnings: a key not registered for the approver, and a key whose
	// SSH line is not registered (its PEM form is).
	strangerKey, _ := sshKeygenCLI(t, "stranger", "ed25519", "")
	code, _, errOut = r.approveWith(t, nil, "bob", "--ssh-key", strangerKey)
	if code != exitOK || !strings.Contains(errOut, "warning: this key (SHA256:") || !strings.Contains(errOut, `is not one of "bob"'s keys`) {
		t.Fatalf("stranger: %d %s", code, errOut)
	}
	code, _, errOut = r.approveWith(t, nil, "carol", "--key", r.keys["alice"])
	if code != exitOK || !strings.Contains(errOut, `is not one of "carol"'s keys`) {
		t.Fatalf("alice's PEM key as carol: %d %s", code, errOut)
	}
	// alice's PEM private key read as an SSH key: ssh.ParsePrivateKey takes
	// PKCS#8, but her key is registered as PEM, so SSH signatures by it do
	// not count.
	code, file, errOut := r.approveWith(t, nil, "alice", "--propose", "--ssh-key", r.keys["alice"])
	if code != exitOK || !strings.Contains(errOut, "is registered in .writ/approvers.yaml as a PEM key: its SSH signatures do not count") {
		t.Fatalf("alice's PEM key with --ssh-key: %d %s", code, errOut)
	}
	if code, out, _ := r.verify(t, file, bob); code == exitOK || !strings.Contains(out, "registered as a PEM key") {
		t.Fatalf("an SSH signature by a PEM-registered key counted: %d\n%s", code, out)
	}
}

// startSSHAgent runs a real ssh-agent on a socket in a temp directory and
// adds keys to it; it is killed when the test ends.
func startSSHAgent(t testing.TB, keyFiles ...string) string {
	t.Helper()
	// Unix socket paths are short: a directory of its own under /tmp.
	dir, err := os.MkdirTemp("", "writ-agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(sshTool(t, "ssh-agent"), "-D", "-a", sock)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// ssh-agent -D prints its environment once it listens.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "SSH_AUTH_SOCK=") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("ssh-agent did not start")
	}
	for _, k := range keyFiles {
		add := exec.Command(sshTool(t, "ssh-add"), k)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add %s: %v\n%s", k, err, out)
		}
	}
	return sock
}

func TestApproveThroughSSHAgent(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst")
	daveKey, daveLine := sshKeygenCLI(t, "dave", "ed25519", "")
	erinKey, erinLine := sshKeygenCLI(t, "erin", "ecdsa", "")
	otherKey, _ := sshKeygenCLI(t, "other", "ed25519", "")
	r.addSSHPerson(t, "dave", "approver", daveLine)
	r.addSSHPerson(t, "erin", "approver", erinLine)
	sock := startSSHAgent(t, daveKey, erinKey)
	env := map[string]string{"SSH_AUTH_SOCK": sock}
	// The private key files are gone: only the agent can sign.
	for _, k := range []string{daveKey, erinKey} {
		if err := os.Remove(k); err != nil {
			t.Fatal(err)
		}
	}

	proposal := r.approve(t, "alice", "--propose")
	var envs []string
	for _, who := range []struct{ id, pub string }{{"dave", daveKey + ".pub"}, {"erin", erinKey + ".pub"}} {
		code, file, errOut := r.approveWith(t, env, who.id, "--ssh-key", who.pub)
		if code != exitOK || strings.Contains(errOut, "warning") {
			t.Fatalf("%s: %d %s", who.id, code, errOut)
		}
		if k := r.signerOf(t, file); k.Person.ID != who.id || k.SSH == nil {
			t.Fatalf("%s: signed by %+v", who.id, k)
		}
		envs = append(envs, file)
	}
	code, out, errOut := r.verify(t, "--approvals-required", "2", proposal, envs[0], envs[1])
	if code != exitOK {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}

	// A public key file without .pub is recognised by its content.
	bare := filepath.Join(t.TempDir(), "dave-key")
	line, _ := os.ReadFile(daveKey + ".pub")
	os.WriteFile(bare, line, 0o644)
	if code, _, errOut := r.approveWith(t, env, "dave", "--ssh-key", bare); code != exitOK {
		t.Fatalf("public key without .pub: %d %s", code, errOut)
	}
	// A key the agent does not hold.
	code, _, errOut = r.approveWith(t, env, "dave", "--ssh-key", otherKey+".pub")
	if code != exitUsage || !strings.Contains(errOut, "ssh-agent does not hold key SHA256:") {
		t.Fatalf("key not in the agent: %d %s", code, errOut)
	}
	// No agent there.
	code, _, errOut = r.approveWith(t, map[string]string{"SSH_AUTH_SOCK": filepath.Join(t.TempDir(), "none")}, "dave", "--ssh-key", daveKey+".pub")
	if code != exitUsage || !strings.Contains(errOut, "ssh-agent") {
		t.Fatalf("no agent: %d %s", code, errOut)
	}

	// openApprovalSigner directly: the signer is the agent's, and a
	// cancelled context stops it.
	s, err := openApprovalSigner(context.Background(), &cliEnv{getenv: func(k string) string { return env[k] }}, "", daveKey+".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, _ := ssh.ParseAuthorizedKey(line)
	if id, _ := s.KeyID(); id != ssh.FingerprintSHA256(pub) || s.SSHPublicKey() == nil {
		t.Fatalf("signer %s", id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sign(ctx, []byte("DSSEv1 0  0 ")); err == nil {
		t.Fatal("signed with a cancelled context")
	}
}
