package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/forge/github/githubfake"
	"github.com/writ-sec/writ/internal/keys"
)

// sshLine is the public key line of a new key.
func sshLine(t *testing.T, pub any) string {
	t.Helper()
	p, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return keys.MarshalSSHLine(p, "")
}

func newEd25519Line(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return sshLine(t, pub)
}

// githubWithKeys is a fake GitHub where Octo-Cat ("The Octocat") has an
// ed25519, an ecdsa P-256, an RSA and an ECDSA P-384 signing key, and the
// same ed25519 key twice.
func githubWithKeys(t *testing.T) (*githubfake.Server, []string, []int64) {
	t.Helper()
	fake := githubfake.New(t, "acme", "secops")
	fake.SetUserName("Octo-Cat", "The Octocat")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ed := newEd25519Line(t)
	accepted := []string{ed, sshLine(t, &ec.PublicKey)}
	ids := []int64{
		fake.AddSSHSigningKey("Octo-Cat", ed, "laptop"),
		fake.AddSSHSigningKey("Octo-Cat", accepted[1], "work: #2"),
		fake.AddSSHSigningKey("Octo-Cat", sshLine(t, &rsaKey.PublicKey), "old"),
		fake.AddSSHSigningKey("Octo-Cat", sshLine(t, &ec384.PublicKey), "p384"),
		fake.AddSSHSigningKey("Octo-Cat", ed, "laptop again"),
	}
	return fake, accepted, ids
}

func TestApproversAddGitHubPrints(t *testing.T) {
	t.Parallel()
	fake, accepted, ids := githubWithKeys(t)
	code, out, errOut := runCLI(t, "approvers", "add-github", "octo-cat", "--github-url", fake.URL())
	if code != exitOK {
		t.Fatalf("%d %s", code, errOut)
	}
	want := "- id: octo-cat\n  name: The Octocat\n  github: Octo-Cat\n  roles: [approver]\n  keys:\n" +
		"    - " + accepted[0] + " laptop\n" +
		"    - '" + accepted[1] + " work: #2'\n"
	if out != want {
		t.Fatalf("entry:\n%s\nwant:\n%s", out, want)
	}
	for _, w := range []string{
		fmt.Sprintf(`skipped key %d ("old"): key algorithm or size not accepted: SSH key type "ssh-rsa"`, ids[2]),
		fmt.Sprintf(`skipped key %d ("p384"): key algorithm or size not accepted: SSH key type "ecdsa-sha2-nistp384"`, ids[3]),
		fmt.Sprintf(`skipped key %d ("laptop again"): SHA256:`, ids[4]),
		"takes effect only once committed",
		"writ approve --trust-change",
	} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	// Anonymous: the fake saw no token, and asked the documented paths.
	var paths []string
	for _, r := range fake.Requests() {
		paths = append(paths, r.Path)
	}
	if strings.Join(paths, " ") != "/users/octo-cat /users/Octo-Cat/ssh_signing_keys" {
		t.Fatalf("requests %v", paths)
	}

	// The entry, pasted under people:, is a valid keyring entry.
	kr, problems := approval.ParseKeyring(approval.KeyringPath, []byte("apiVersion: writ/v1\nkind: Approvers\npeople:\n"+indent(out, "  ")))
	if problems != nil {
		t.Fatal(problems)
	}
	p, ok := kr.PersonByLogin(approval.ForgeGitHub, "octo-cat")
	if !ok || p.ID != "octo-cat" || p.Name != "The Octocat" || len(p.Keys) != 2 || p.Keys[0].SSH == nil {
		t.Fatalf("person %+v", p)
	}

	// With a token, --id and roles.
	fake.AddToken("tok", "someone")
	code, out, errOut = runCLIEnv(t, map[string]string{"GITHUB_TOKEN": "tok"}, "approvers", "add-github", "Octo-Cat",
		"--github-url", fake.URL(), "--id", "octo", "--role", "analyst", "--role", "approver", "--role", "analyst")
	if code != exitOK || !strings.HasPrefix(out, "- id: octo\n") || !strings.Contains(out, "roles: [analyst, approver]\n") {
		t.Fatalf("%d\n%s\n%s", code, out, errOut)
	}
}

func indent(s, by string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = by + l
		}
	}
	return strings.Join(lines, "")
}

func TestApproversAddGitHubFile(t *testing.T) {
	t.Parallel()
	fake, accepted, _ := githubWithKeys(t)
	r := newApprovalRepo(t, "alice:analyst", "bob:approver+admin")
	file := r.path(".writ/approvers.yaml")
	// A comment and a flow list, which the edit keeps.
	orig, _ := os.ReadFile(file)
	orig = append([]byte("# who may sign what\n"), orig...)
	if err := os.WriteFile(file, orig, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "approvers", "add-github", "Octo-Cat", "--github-url", fake.URL(), "--file", file)
	if code != exitOK || out != "" || !strings.Contains(errOut, "added octo-cat (GitHub Octo-Cat, 2 keys, roles approver) to "+file) {
		t.Fatalf("%d %q %s", code, out, errOut)
	}
	got, _ := os.ReadFile(file)
	if !bytes.HasPrefix(got, orig) {
		t.Fatalf("the file's content was not kept:\n%s", got)
	}
	if added := string(got[len(orig):]); !strings.HasPrefix(added, "  - id: octo-cat\n    name: The Octocat\n    github: Octo-Cat\n") || !strings.Contains(added, accepted[0]+" laptop") {
		t.Fatalf("added:\n%s", added)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	kr, problems := approval.ParseKeyring(file, got)
	if problems != nil || len(kr.People()) != 3 {
		t.Fatalf("%v", problems)
	}

	// Refusals leave the file untouched.
	otherKeys := githubfake.New(t, "acme", "secops")
	otherKeys.AddSSHSigningKey("bob-gh", newEd25519Line(t), "bob's laptop")
	otherKeys.AddSSHSigningKey("mallory", accepted[1], "copied")
	otherKeys.AddSSHSigningKey("zed", newEd25519Line(t), "zed")
	otherKeys.AddSSHSigningKey("rsa-only", sshLine(t, &mustRSA(t).PublicKey), "old")
	otherKeys.AddUser("nokeys")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"Octo-Cat"}, exitFailure, `person "octo-cat" is already there`},
		{[]string{"octo-cat", "--id", "octo2"}, exitFailure, `GitHub login Octo-Cat already belongs to "octo-cat"`},
		{[]string{"bob-gh", "--id", "robert"}, exitFailure, `GitHub login bob-gh already belongs to "bob"`},
		{[]string{"mallory"}, exitFailure, `already belongs to "octo-cat"`},
		{[]string{"zed", "--id", "alice"}, exitFailure, `person "alice" is already there`},
		{[]string{"rsa-only"}, exitFailure, "has no SSH signing key writ accepts"},
		{[]string{"nokeys"}, exitFailure, "has no SSH signing key writ accepts"},
		{[]string{"ghost"}, exitFailure, `GitHub has no user "ghost"`},
		{[]string{"not_a_login"}, exitUsage, "is not a GitHub login"},
		{[]string{"zed", "--id", "Zed Z"}, exitUsage, "is not a person id"},
		{[]string{"zed", "--role", "root"}, exitUsage, `--role "root" is not one of`},
	} {
		url := otherKeys.URL()
		if tc.args[0] == "Octo-Cat" || tc.args[0] == "octo-cat" {
			url = fake.URL()
		}
		args := append([]string{"approvers", "add-github", "--github-url", url, "--file", file}, tc.args...)
		code, _, errOut := runCLI(t, args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %s; want %d %q", tc.args, code, errOut, tc.code, tc.want)
		}
		if now, _ := os.ReadFile(file); !bytes.Equal(now, got) {
			t.Fatalf("%v changed the file", tc.args)
		}
	}

	// An invalid approvers file is refused before GitHub is asked.
	bad := filepath.Join(t.TempDir(), "approvers.yaml")
	os.WriteFile(bad, []byte("apiVersion: writ/v1\nkind: Approvers\npeople: []\nextra: 1\n"), 0o644)
	before := len(otherKeys.Requests())
	code, _, errOut = runCLI(t, "approvers", "add-github", "--github-url", otherKeys.URL(), "--file", bad, "zed")
	if code != exitFailure || !strings.Contains(errOut, "not a valid approvers file") || len(otherKeys.Requests()) != before {
		t.Fatalf("%d %s", code, errOut)
	}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
