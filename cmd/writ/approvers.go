package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"

	gh "github.com/google/go-github/v88/github"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/forge/github"
	"github.com/writ-sec/writ/internal/keys"
)

func init() { register(newApproversCmd) }

func newApproversCmd(env *cliEnv, _ *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approvers",
		Short: "Draft changes to the approvers file (.writ/approvers.yaml)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newApproversAddGitHubCmd(env))
	return cmd
}

type addGitHubParams struct {
	login     string
	id        string
	roles     []string
	file      string
	githubURL string
}

// maxGitHubKeyPages bounds the pages of keys read (100 a page).
const maxGitHubKeyPages = 10

var (
	ghLoginRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?$`) })
	personIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`) })
)

func newApproversAddGitHubCmd(env *cliEnv) *cobra.Command {
	p := addGitHubParams{}
	cmd := &cobra.Command{
		Use:   "add-github LOGIN [--id ID] [--role ROLE]... [--file .writ/approvers.yaml]",
		Short: "Draft an approvers entry from a GitHub user's SSH signing keys",
		Long: `Add-github reads a GitHub user's SSH signing keys (GET
/users/LOGIN/ssh_signing_keys) and profile (GET /users/LOGIN, for the name),
keeps the key types writ accepts (ssh-ed25519, ecdsa-sha2-nistp256,
sk-ssh-ed25519@openssh.com; it says which it skipped and why), and drafts
the person's entry in the approvers file: id (--id, default the lowercased
login), name, github: LOGIN, roles (--role, repeatable, default approver)
and the keys as SSH lines. The person then signs with writ approve
--ssh-key.

By default the entry is printed, to paste under people:. With --file it is
appended to that approvers file, the rest of the file kept; the command
refuses, leaving the file untouched, when the person, the login or one of
the keys is already there, or when the result is not a valid approvers
file.

The token is GITHUB_TOKEN when set (the endpoints are public; a token only
raises the rate limit); --github-url names a GitHub Enterprise Server.

The change takes effect only once committed and adopted: a change to .writ/
is a trust change, signed by the admins (writ approve --trust-change).`,
		Example: `  writ approvers add-github octocat
  writ approvers add-github Octo-Cat --id octo --role approver --role analyst \
      --file .writ/approvers.yaml
  GITHUB_TOKEN=... writ approvers add-github alice --github-url https://github.example.com`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.login = args[0]
			return runAddGitHub(cmd.Context(), env, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.id, "id", "", "the person's id in the approvers file (default: the lowercased login)")
	f.StringArrayVar(&p.roles, "role", []string{approval.RoleApprover}, "a role of the person, repeatable: "+strings.Join(approval.Roles, ", "))
	f.StringVar(&p.file, "file", "", "append the entry to this approvers file (e.g. .writ/approvers.yaml) instead of printing it")
	f.StringVar(&p.githubURL, "github-url", "", "GitHub Enterprise Server URL (default: github.com)")
	return cmd
}

// githubKey is one SSH signing key GitHub lists, as the entry will hold it.
type githubKey struct {
	line string
	pub  ssh.PublicKey
}

func runAddGitHub(ctx context.Context, env *cliEnv, p addGitHubParams) error {
	if !ghLoginRE().MatchString(p.login) {
		return usageError("%q is not a GitHub login: letters, digits and single hyphens", p.login)
	}
	if p.id != "" && !personIDRE().MatchString(p.id) {
		return usageError("--id %q is not a person id: lowercase letters, digits and . _ -", p.id)
	}
	if len(p.roles) == 0 {
		return usageError("--role: give at least one role")
	}
	var roles []string
	for _, r := range p.roles {
		if !slices.Contains(approval.Roles, r) {
			return usageError("--role %q is not one of %s", r, strings.Join(approval.Roles, ", "))
		}
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}

	var data []byte
	if p.file != "" {
		// Read (and judge) the file before asking GitHub anything.
		var err error
		if data, err = config.ReadFile(p.file, approval.MaxKeyringBytes); err != nil {
			return usageError("--file: %v", err)
		}
		if _, problems := approval.ParseKeyring(p.file, data); problems != nil {
			return exitWith(exitFailure, fmt.Errorf("%s is not a valid approvers file; mend it first:\n%s", p.file, problems.Error()))
		}
	}

	token := env.getenv("GITHUB_TOKEN")
	client, err := github.NewClient(github.ClientOptions{BaseURL: p.githubURL, Token: token, Anonymous: token == "",
		UserAgent: "writ/" + versionString()})
	if err != nil {
		return usageError("%v", err)
	}
	user, _, err := client.Users.Get(ctx, p.login)
	if err != nil {
		return exitWith(exitFailure, githubUserError(p.login, "profile", err))
	}
	login := user.GetLogin()
	if login == "" {
		login = p.login
	}
	id := p.id
	if id == "" {
		id = strings.ToLower(login)
	}
	name := cleanText(user.GetName(), 256)

	found, skipped, err := githubSigningKeys(ctx, client, login)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	for _, s := range skipped {
		fmt.Fprintf(env.stderr, "writ: skipped %s\n", s)
	}
	if len(found) == 0 {
		return exitWith(exitFailure, fmt.Errorf("GitHub user %s has no SSH signing key writ accepts (%s): they add one under Settings, SSH and GPG keys, as a signing key",
			login, strings.Join(keys.SSHTypes, ", ")))
	}
	entry := personNode(id, name, login, roles, found)

	if p.file == "" {
		var buf bytes.Buffer
		if err := encodeYAML(&buf, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{entry}}); err != nil {
			return exitWith(exitFailure, err)
		}
		if _, err := env.stdout.Write(buf.Bytes()); err != nil {
			return exitWith(exitFailure, err)
		}
		fmt.Fprintf(env.stderr, "writ: the entry above goes under people: in %s\n", approval.KeyringPath)
	} else {
		if err := appendPerson(p.file, data, id, login, found, entry); err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "writ: added %s (GitHub %s, %d keys, roles %s) to %s\n", id, login, len(found), strings.Join(roles, ", "), p.file)
	}
	fmt.Fprintf(env.stderr, "writ: this is a change to %s: it takes effect only once committed, and adopted with the admins' signatures "+
		"as a trust change (writ approve --trust-change, on the pending approver change)\n", approval.KeyringPath)
	return nil
}

// githubUserError says what went wrong asking GitHub about a user.
func githubUserError(login, what string, err error) error {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound {
		return fmt.Errorf("GitHub has no user %q", login)
	}
	var rl *gh.RateLimitError
	if errors.As(err, &rl) {
		return fmt.Errorf("GitHub %s of %s: rate limit reached until %s (set GITHUB_TOKEN for a higher limit)", what, login, rl.Rate.Reset.UTC().Format("15:04:05 MST"))
	}
	return fmt.Errorf("GitHub %s of %s: %w", what, login, err)
}

// githubSigningKeys lists a user's SSH signing keys and keeps those writ
// accepts, each once; skipped says which others there were and why.
func githubSigningKeys(ctx context.Context, client *gh.Client, login string) (found []githubKey, skipped []string, err error) {
	seen := map[string]bool{}
	opts := &gh.ListOptions{PerPage: 100}
	for page := 0; page < maxGitHubKeyPages; page++ {
		list, resp, err := client.Users.ListSSHSigningKeys(ctx, login, opts)
		if err != nil {
			return nil, nil, githubUserError(login, "SSH signing keys", err)
		}
		for _, k := range list {
			title := cleanText(k.GetTitle(), 100)
			what := fmt.Sprintf("key %d", k.GetID())
			if title != "" {
				what += fmt.Sprintf(" (%q)", title)
			}
			fields := strings.Fields(k.GetKey())
			if len(fields) < 2 {
				skipped = append(skipped, what+": not an SSH public key line")
				continue
			}
			pub, _, err := keys.ParseSSHPublic([]byte(fields[0] + " " + fields[1]))
			if err != nil {
				skipped = append(skipped, fmt.Sprintf("%s: %v", what, err))
				continue
			}
			fp := ssh.FingerprintSHA256(pub)
			if seen[fp] {
				skipped = append(skipped, fmt.Sprintf("%s: %s is listed twice", what, fp))
				continue
			}
			seen[fp] = true
			found = append(found, githubKey{line: keys.MarshalSSHLine(pub, title), pub: pub})
		}
		if resp == nil || resp.NextPage == 0 {
			return found, skipped, nil
		}
		opts.Page = resp.NextPage
	}
	return nil, nil, fmt.Errorf("GitHub lists more than %d SSH signing keys for %s", maxGitHubKeyPages*100, login)
}

// cleanText keeps a GitHub-supplied text fit for one YAML line and an SSH
// key comment: no control characters, spaces collapsed, bounded.
func cleanText(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit])
	}
	return s
}

// personNode is the approvers file entry of one person.
func personNode(id, name, login string, roles []string, found []githubKey) *yaml.Node {
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	entry := &yaml.Node{Kind: yaml.MappingNode}
	add := func(k string, v *yaml.Node) { entry.Content = append(entry.Content, str(k), v) }
	add("id", str(id))
	if name != "" {
		add("name", str(name))
	}
	add("github", str(login))
	rs := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, r := range roles {
		rs.Content = append(rs.Content, str(r))
	}
	add("roles", rs)
	ks := &yaml.Node{Kind: yaml.SequenceNode}
	for _, k := range found {
		ks.Content = append(ks.Content, str(k.line))
	}
	add("keys", ks)
	return entry
}

func encodeYAML(buf *bytes.Buffer, n *yaml.Node) error {
	enc := yaml.NewEncoder(buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return fmt.Errorf("encode YAML: %w", err)
	}
	return enc.Close()
}

// appendPerson appends entry to the people of the approvers file (data,
// read from file) and writes it back, after checking that the person, the
// login and the keys are new and that the result is a valid approvers
// file. On any refusal the file is untouched.
func appendPerson(file string, data []byte, id, login string, found []githubKey, entry *yaml.Node) error {
	refuse := func(format string, args ...any) error {
		return exitWith(exitFailure, fmt.Errorf("%s unchanged: "+format, append([]any{file}, args...)...))
	}
	kr, problems := approval.ParseKeyring(file, data)
	if problems != nil {
		return refuse("it is not a valid approvers file:\n%s", problems.Error())
	}
	if _, ok := kr.Person(id); ok {
		return refuse("person %q is already there", id)
	}
	if p, ok := kr.PersonByLogin(approval.ForgeGitHub, login); ok {
		return refuse("GitHub login %s already belongs to %q", login, p.ID)
	}
	for _, k := range found {
		if prev, ok := kr.Key(ssh.FingerprintSHA256(k.pub)); ok {
			return refuse("key %s already belongs to %q", ssh.FingerprintSHA256(k.pub), prev.Person.ID)
		}
		if kid, err := keys.SSHID(k.pub); err == nil {
			if prev, ok := kr.Key(kid); ok {
				return refuse("key %s already belongs to %q", ssh.FingerprintSHA256(k.pub), prev.Person.ID)
			}
		}
	}

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return refuse("cannot read it as one YAML document")
	}
	people := mappingValue(doc.Content[0], "people")
	if people == nil || people.Kind != yaml.SequenceNode {
		return refuse("it has no people: list")
	}
	people.Content = append(people.Content, entry)
	var buf bytes.Buffer
	if err := encodeYAML(&buf, &doc); err != nil {
		return refuse("%v", err)
	}
	out := buf.Bytes()
	if _, problems := approval.ParseKeyring(file, out); problems != nil {
		return refuse("the result would not be a valid approvers file:\n%s", problems.Error())
	}
	if err := replaceFile(file, out); err != nil {
		return exitWith(exitFailure, fmt.Errorf("write %s: %w", file, err))
	}
	return nil
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// replaceFile replaces a regular file's content atomically (a temporary
// file in the same directory, renamed over it), keeping its mode.
func replaceFile(path string, data []byte) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s); refusing to replace it", path, fi.Mode().Type())
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
