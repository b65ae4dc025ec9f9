package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/forge/github"
	"github.com/writ-sec/writ/internal/forge/github/githubfake"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/playbook"
)

const testPlaybookPath = "playbooks/network/block-c2-beacon.yaml"

// approvalRepo is a content repository in a temp directory: a real git
// repository with one playbook, people with keys and their approvers file.
type approvalRepo struct {
	root    string
	dataDir string
	keys    map[string]string // person -> private key file
}

func newApprovalRepo(t *testing.T, people ...string) *approvalRepo {
	t.Helper()
	r := &approvalRepo{root: t.TempDir(), dataDir: t.TempDir(), keys: map[string]string{}}
	if out, err := exec.Command("git", "init", "-q", r.root).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	src, err := os.ReadFile(filepath.Join("..", "..", testPlaybookPath))
	if err != nil {
		t.Fatal(err)
	}
	r.write(t, testPlaybookPath, src)
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	for _, p := range people {
		id, roles, _ := strings.Cut(p, ":")
		prefix := filepath.Join(t.TempDir(), id)
		if code, _, errOut := runCLI(t, "keygen", "--out", prefix); code != exitOK {
			t.Fatalf("keygen: %s", errOut)
		}
		r.keys[id] = prefix + ".key"
		pub, _ := os.ReadFile(prefix + ".pub")
		fmt.Fprintf(&b, "  - id: %s\n    github: %s-gh\n    roles: [%s]\n    keys:\n      - |\n", id, id, strings.ReplaceAll(roles, "+", ", "))
		for _, line := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
	}
	r.write(t, ".writ/approvers.yaml", []byte(b.String()))
	return r
}

func (r *approvalRepo) path(rel string) string { return filepath.Join(r.root, filepath.FromSlash(rel)) }

func (r *approvalRepo) write(t *testing.T, rel string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(r.path(rel)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.path(rel), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// approve runs writ approve as who and returns the envelope file.
func (r *approvalRepo) approve(t *testing.T, who string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), who+".json")
	all := append([]string{"--data-dir", r.dataDir, "approve", "--key", r.keys[who], "--approver", who, "--out", out}, args...)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasSuffix(a, ".yaml") }) {
		all = append(all, r.path(testPlaybookPath))
	}
	code, _, errOut := runCLI(t, all...)
	if code != exitOK {
		t.Fatalf("approve %v: %d %s", args, code, errOut)
	}
	return out
}

func (r *approvalRepo) verify(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	all := append([]string{"--data-dir", r.dataDir, "approvals", "verify", "--approvers", r.path(".writ/approvers.yaml"),
		"--playbook", r.path(testPlaybookPath)}, args...)
	return runCLI(t, all...)
}

func parseEnvelopeFile(t *testing.T, file string) *approval.Envelope {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	e, err := approval.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestApproveWritesSignedStatement(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst", "bob:approver")
	file := r.approve(t, "bob", "--repo", "acme/secops", "--pr", "42", "--head", strings.Repeat("C", 40), "--reason", "checked")
	e := parseEnvelopeFile(t, file)
	st := e.Statement
	pbBytes, _ := os.ReadFile(r.path(testPlaybookPath))
	if len(st.Subject) != 1 || st.Subject[0].Name != testPlaybookPath || st.Subject[0].SHA256() != playbook.Digest(pbBytes) {
		t.Fatalf("subject %+v", st.Subject)
	}
	p := st.Predicate
	if p.Decision != approval.Approve || p.Approver != "bob" || p.Repository != "acme/secops" || p.PullRequest != 42 ||
		p.HeadCommit != strings.Repeat("c", 40) || p.Reason != "checked" || len(p.PlanDigest) != 64 || len(p.PolicyDigest) != 64 {
		t.Fatalf("predicate %+v", p)
	}
	if d := p.ExpiresAt.Sub(p.IssuedAt); d != 24*time.Hour {
		t.Fatalf("validity %s; want 24h", d)
	}
	if time.Since(p.IssuedAt) > time.Minute {
		t.Fatalf("issued at %s", p.IssuedAt)
	}

	// The repository has no policies/: the built-in policies' digest. An
	// explicit --policies gives that directory's digest.
	pol := filepath.Join(t.TempDir(), "policies")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(pol, "decision.rego"), []byte("package writ\n\ndecision := {\"deny\": set()}\n"), 0o644)
	other := parseEnvelopeFile(t, r.approve(t, "bob", "--policies", pol))
	if other.Statement.Predicate.PolicyDigest == p.PolicyDigest {
		t.Fatal("--policies did not change the policy digest")
	}
	// ... and so does the repository's own policies/.
	r.write(t, "policies/decision.rego", []byte("package writ\n\ndecision := {\"deny\": set()}\n"))
	own := parseEnvelopeFile(t, r.approve(t, "bob"))
	if own.Statement.Predicate.PolicyDigest != other.Statement.Predicate.PolicyDigest {
		t.Fatal("the repository's policies/ were not used")
	}

	// A proposal covers several playbooks, has no plan and lasts 30 days.
	second, _ := os.ReadFile(filepath.Join("..", "..", "playbooks/network/block-scanner-staging.yaml"))
	r.write(t, "playbooks/network/block-scanner-staging.yaml", second)
	prop := parseEnvelopeFile(t, r.approve(t, "alice", "--propose", r.path(testPlaybookPath), r.path("playbooks/network/block-scanner-staging.yaml")))
	pp := prop.Statement.Predicate
	if pp.Decision != approval.Propose || pp.PlanDigest != "" || len(prop.Statement.Subject) != 2 || pp.ExpiresAt.Sub(pp.IssuedAt) != 30*24*time.Hour {
		t.Fatalf("proposal %+v %+v", prop.Statement.Subject, pp)
	}
	if prop.Statement.Subject[1].Name != "playbooks/network/block-scanner-staging.yaml" {
		t.Fatalf("second subject %q", prop.Statement.Subject[1].Name)
	}
	// --expires and --plan-digest are taken as given.
	plan := strings.Repeat("ab", 32)
	given := parseEnvelopeFile(t, r.approve(t, "bob", "--expires", "2h", "--plan-digest", plan))
	if given.Statement.Predicate.PlanDigest != plan || given.Statement.Predicate.ExpiresAt.Sub(given.Statement.Predicate.IssuedAt) != 2*time.Hour {
		t.Fatalf("given %+v", given.Statement.Predicate)
	}
}

func TestApproveToStdoutAndWarnings(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst", "bob:approver")
	// A key that is not bob's, and a proposal by a non-analyst: warnings,
	// but the envelope is still made (the target branch decides).
	code, out, errOut := runCLI(t, "--data-dir", r.dataDir, "approve", "--key", r.keys["alice"], "--approver", "bob", "--propose", r.path(testPlaybookPath))
	if code != exitOK {
		t.Fatalf("%d %s", code, errOut)
	}
	if !strings.Contains(errOut, `warning: this key`) || !strings.Contains(errOut, `"bob" does not hold the analyst role`) {
		t.Fatalf("stderr %q", errOut)
	}
	if _, err := approval.Parse([]byte(strings.TrimSpace(out))); err != nil {
		t.Fatalf("stdout is not an envelope: %v\n%s", err, out)
	}
	code, _, errOut = runCLI(t, "--data-dir", r.dataDir, "approve", "--key", r.keys["alice"], "--approver", "zed", "--propose", r.path(testPlaybookPath))
	if code != exitOK || !strings.Contains(errOut, `"zed" is not in .writ/approvers.yaml`) {
		t.Fatalf("%d %q", code, errOut)
	}
}

func TestApproveUsageErrors(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "bob:approver")
	pb := r.path(testPlaybookPath)
	outside := filepath.Join(t.TempDir(), "x.yaml")
	src, _ := os.ReadFile(pb)
	os.WriteFile(outside, src, 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--approver", "bob", pb}, "--key is required"},
		{[]string{"--key", r.keys["bob"], pb}, "--approver is required"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob"}, "name the playbook"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--propose", "--reject", pb}, "exclude each other"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--reject", pb}, "--reason"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", pb, pb}, "one playbook"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--propose", pb, pb}, "given twice"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--plan-digest", "xyz", pb}, "--plan-digest"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--expires", "soon", pb}, "--expires"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--expires", "-1h", pb}, "--expires"},
		{[]string{"--key", r.keys["bob"], "--approver", "Bob Smith", pb}, "not a person id"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--repo", "not a repo", pb}, "OWNER/NAME"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--head", "main", pb}, "headCommit"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--pr", "-3", pb}, "--pr"},
		{[]string{"--key", "/no/such/key", "--approver", "bob", pb}, "--key"},
		{[]string{"--key", pb, "--approver", "bob", pb}, "parse private key"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", outside}, "--repo-root"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--repo-root", r.root, outside}, "outside the repository"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", r.path("playbooks/none.yaml")}, "no such file"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--policies", "/no/such/dir", pb}, "--policies"},
		{[]string{"--key", r.keys["bob"], "--approver", "bob", "--server", "ftp://x", pb}, "--server"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, append([]string{"--data-dir", r.dataDir, "approve"}, tc.args...)...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) || out != "" {
				t.Fatalf("code %d, stdout %q, stderr %q; want exit 2 mentioning %q", code, out, errOut, tc.want)
			}
		})
	}
}

func TestApproveRefusesInvalidPlaybook(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "bob:approver")
	r.write(t, "playbooks/bad.yaml", []byte("apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: bad\nspec:\n  action: block_ip\n  targets: [999.1.1.1]\n  justification: x\n  severity: high\n  environment: production\n"))
	out := filepath.Join(t.TempDir(), "e.json")
	code, _, errOut := runCLI(t, "--data-dir", r.dataDir, "approve", "--key", r.keys["bob"], "--approver", "bob", "--out", out, r.path("playbooks/bad.yaml"))
	if code != exitFailure || !strings.Contains(errOut, "playbooks/bad.yaml:7:") || !strings.Contains(errOut, "nothing signed") {
		t.Fatalf("%d %q", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("an envelope was written for an invalid playbook")
	}
}

func TestApproveOutRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "bob:approver")
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{os.DevNull, link, dir} {
		code, _, errOut := runCLI(t, "--data-dir", r.dataDir, "approve", "--key", r.keys["bob"], "--approver", "bob", "--plan-digest", strings.Repeat("a", 64), "--out", out, r.path(testPlaybookPath))
		if code != exitFailure || !strings.Contains(errOut, "not a regular file") {
			t.Fatalf("--out %s: %d %q", out, code, errOut)
		}
	}
	if fi, err := os.Lstat(os.DevNull); err != nil || fi.Mode().IsRegular() {
		t.Fatalf("%s was replaced", os.DevNull)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatal("wrote through the symlink")
	}
}

func TestApproveEncryptedKey(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "bob:approver")
	prefix := filepath.Join(t.TempDir(), "enc")
	env := map[string]string{"WRIT_KEY_PASSWORD": "correct horse"}
	if code, _, errOut := runCLIEnv(t, env, "keygen", "--out", prefix, "--password", "--algorithm", keys.ECDSAP384); code != exitOK {
		t.Fatal(errOut)
	}
	args := []string{"--data-dir", r.dataDir, "approve", "--key", prefix + ".key", "--approver", "bob", "--plan-digest", strings.Repeat("a", 64), r.path(testPlaybookPath)}
	code, out, errOut := runCLIEnv(t, env, args...)
	if code != exitOK {
		t.Fatalf("%d %s", code, errOut)
	}
	if strings.Contains(out+errOut, "correct horse") {
		t.Fatal("the password was printed")
	}
	code, _, errOut = runCLI(t, args...)
	if code != exitUsage || !strings.Contains(errOut, "password") {
		t.Fatalf("without a password: %d %q", code, errOut)
	}
	code, _, errOut = runCLIEnv(t, map[string]string{"WRIT_KEY_PASSWORD": "wrong"}, args...)
	if code != exitUsage || !strings.Contains(errOut, "--key") {
		t.Fatalf("wrong password: %d %q", code, errOut)
	}
}

func TestApproveServer(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "bob:approver")
	type seen struct {
		method, path, contentType, auth string
		body                            []byte
	}
	got := make(chan seen, 1)
	status := http.StatusCreated
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		got <- seen{req.Method, req.URL.Path, req.Header.Get("Content-Type"), req.Header.Get("Authorization"), body}
		if req.Header.Get("Authorization") == "Bearer wrong" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error":"token lacks the approver role\u001b[2J"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, `{"id":17,"verdict":"recorded"}`)
	}))
	defer srv.Close()
	args := []string{"--data-dir", r.dataDir, "approve", "--key", r.keys["bob"], "--approver", "bob", "--plan-digest", strings.Repeat("a", 64),
		"--server", srv.URL + "/writ/", r.path(testPlaybookPath)}

	code, out, errOut := runCLIEnv(t, map[string]string{"WRIT_TOKEN": "s3cret-token"}, args...)
	if code != exitOK {
		t.Fatalf("%d %s", code, errOut)
	}
	req := <-got
	if req.method != http.MethodPost || req.path != "/writ/api/v1/approvals" || req.contentType != "application/vnd.dsse.envelope.v1+json" || req.auth != "Bearer s3cret-token" {
		t.Fatalf("request %s %s %q %q", req.method, req.path, req.contentType, req.auth)
	}
	e, err := approval.Parse(req.body)
	if err != nil || e.Statement.Predicate.Approver != "bob" {
		t.Fatalf("posted body: %v", err)
	}
	if strings.TrimSpace(out) != `{"id":17,"verdict":"recorded"}` || strings.Contains(out+errOut, "s3cret-token") {
		t.Fatalf("stdout %q stderr %q", out, errOut)
	}

	code, out, errOut = runCLIEnv(t, map[string]string{"WRIT_TOKEN": "wrong"}, args...)
	<-got
	if code != exitFailure || !strings.Contains(errOut, "403 Forbidden: token lacks the approver role[2J") || out != "" {
		t.Fatalf("refused: %d %q %q", code, out, errOut)
	}
	if strings.Contains(errOut, "\x1b") {
		t.Fatal("a control character from the server reached the terminal")
	}

	// An unreachable server is a failure, not a usage error.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	args[len(args)-2] = dead.URL
	if code, _, errOut := runCLI(t, args...); code != exitFailure || !strings.Contains(errOut, "send approval") {
		t.Fatalf("unreachable: %d %q", code, errOut)
	}
}

func TestServerMessage(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"error":"bad envelope"}`:   "bad envelope",
		`{"message":"no"}`:           "no",
		"plain\ntext  answer":        "plain text answer",
		"":                           "(no message)",
		strings.Repeat("x", 600):     strings.Repeat("x", 500) + "…",
		`{"detail":"a\u0007b"}`:      "ab",
		`{"error":42,"message":"m"}`: "m",
	} {
		if got := serverMessage([]byte(body)); got != want {
			t.Errorf("serverMessage(%q) = %q; want %q", body, got, want)
		}
	}
}

func TestRedactServerURL(t *testing.T) {
	t.Parallel()
	got := redactServerURL("https://user:pw@writ.example/api?token=abc&x=1")
	if strings.Contains(got, "pw") || strings.Contains(got, "abc") || !strings.Contains(got, "writ.example") {
		t.Fatalf("%q", got)
	}
}

// --github posts an approval as a PR review and a proposal as a comment,
// the envelope in a ```writ block that the GitHub integration reads back.
func TestApproveGitHub(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst", "bob:approver", "carol:approver")
	fake := githubfake.New(t, "acme", "secops")
	fake.AddToken("bob-token", "bob-gh")
	fake.AddToken("alice-token", "alice-gh")
	fake.AddToken("carol-token", "carol-gh")
	fake.AddPullRequest(githubfake.PullRequest{Number: 42, Author: "alice-gh", BaseRef: "main", HeadRef: "pr", HeadSHA: strings.Repeat("c", 40)})
	run := func(token string, args ...string) (int, string, string) {
		all := append([]string{"--data-dir", r.dataDir, "approve", "--github", "--github-url", fake.URL(), "--repo", "acme/secops", "--pr", "42"}, args...)
		return runCLIEnv(t, map[string]string{"GITHUB_TOKEN": token}, append(all, r.path(testPlaybookPath))...)
	}
	code, out, errOut := run("bob-token", "--key", r.keys["bob"], "--approver", "bob", "--plan-digest", strings.Repeat("a", 64), "--head", strings.Repeat("c", 40))
	if code != exitOK || out != "" || !strings.Contains(errOut, "posted the approve as review") || strings.Contains(errOut, "bob-token") {
		t.Fatalf("approve: %d %q %q", code, out, errOut)
	}
	code, _, errOut = run("alice-token", "--key", r.keys["alice"], "--approver", "alice", "--propose")
	if code != exitOK || !strings.Contains(errOut, "posted the proposal as comment") {
		t.Fatalf("propose: %d %q", code, errOut)
	}
	code, _, errOut = run("carol-token", "--key", r.keys["carol"], "--approver", "carol", "--reject", "--reason", "our CDN")
	if code != exitOK {
		t.Fatalf("reject: %d %q", code, errOut)
	}
	pr := fake.Pull(42)
	if len(pr.Reviews) != 2 || len(pr.Comments) != 1 {
		t.Fatalf("%d reviews, %d comments; want 2 and 1", len(pr.Reviews), len(pr.Comments))
	}
	checks := []struct {
		body, state, login, decision string
	}{
		{pr.Reviews[0].Body, pr.Reviews[0].State, pr.Reviews[0].Login, approval.Approve},
		{pr.Reviews[1].Body, pr.Reviews[1].State, pr.Reviews[1].Login, approval.Reject},
		{pr.Comments[0].Body, "", pr.Comments[0].Login, approval.Propose},
	}
	wantState := map[string]string{approval.Approve: "APPROVED", approval.Reject: "CHANGES_REQUESTED"}
	for _, c := range checks {
		envs, err := github.ExtractEnvelopes(c.body)
		if err != nil || len(envs) != 1 {
			t.Fatalf("%s: %d envelopes, %v in %q", c.decision, len(envs), err, c.body)
		}
		e, err := approval.Parse(envs[0])
		if err != nil || e.Statement.Predicate.Decision != c.decision || e.Statement.Predicate.PullRequest != 42 ||
			e.Statement.Predicate.Repository != "acme/secops" {
			t.Fatalf("%s: %+v %v", c.decision, e, err)
		}
		if c.state != wantState[c.decision] {
			t.Errorf("%s: review state %q", c.decision, c.state)
		}
	}
	if pr.Reviews[0].CommitID != strings.Repeat("c", 40) {
		t.Errorf("the review is not on the reviewed commit: %s", pr.Reviews[0].CommitID)
	}

	// GitHub's refusal is a failure with its message.
	code, _, errOut = run("alice-token", "--key", r.keys["alice"], "--approver", "alice", "--plan-digest", strings.Repeat("a", 64))
	if code != exitFailure || !strings.Contains(errOut, "Can not approve your own pull request") {
		t.Fatalf("self-approval on GitHub: %d %q", code, errOut)
	}
	code, _, errOut = run("nobody", "--key", r.keys["bob"], "--approver", "bob", "--plan-digest", strings.Repeat("a", 64))
	if code != exitFailure || !strings.Contains(errOut, "401") {
		t.Fatalf("bad token: %d %q", code, errOut)
	}
}

func TestApproveGitHubUsageErrors(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "bob:approver")
	base := []string{"--data-dir", r.dataDir, "approve", "--key", r.keys["bob"], "--approver", "bob", "--plan-digest", strings.Repeat("a", 64)}
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"GITHUB_TOKEN": "t"}, []string{"--github", "--pr", "1"}, "--repo OWNER/NAME"},
		{map[string]string{"GITHUB_TOKEN": "t"}, []string{"--github", "--repo", "acme/secops"}, "--pr"},
		{nil, []string{"--github", "--repo", "acme/secops", "--pr", "1"}, "GITHUB_TOKEN"},
		{map[string]string{"GITHUB_TOKEN": "t"}, []string{"--github", "--repo", "acme/secops", "--pr", "1", "--server", "http://x"}, "exclude each other"},
		{nil, []string{"--github-url", "https://ghe.example.com"}, "--github-url needs --github"},
		{map[string]string{"GITHUB_TOKEN": "t"}, []string{"--github", "--repo", "acme/secops", "--pr", "1", "--github-url", "ftp://x"}, "not an http(s) URL"},
	}
	for _, c := range cases {
		code, _, errOut := runCLIEnv(t, c.env, append(append(slices.Clone(base), c.args...), r.path(testPlaybookPath))...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: %d %q; want usage error %q", c.args, code, errOut, c.want)
		}
	}
}

// --revert signs the revert of a playbook: a deleted one is read from the
// last commit that held it, and the statement names the operation, so it
// counts for the revert and never for the apply (nor the other way round).
func TestApproveRevertOfDeletedPlaybook(t *testing.T) {
	t.Parallel()
	r := newApprovalRepo(t, "alice:analyst", "bob:approver")
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", r.root}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	git("add", "-A")
	git("commit", "-q", "-m", "add")
	src, err := os.ReadFile(r.path(testPlaybookPath))
	if err != nil {
		t.Fatal(err)
	}
	git("rm", "-q", testPlaybookPath)
	git("commit", "-q", "-m", "remove")

	// Without --revert a missing file is a usage error.
	code, _, errOut := runCLI(t, "--data-dir", r.dataDir, "approve", "--key", r.keys["alice"], "--approver", "alice", "--propose",
		r.path(testPlaybookPath))
	if code != exitUsage || !strings.Contains(errOut, "no such file") {
		t.Fatalf("apply of a deleted file: %d %s", code, errOut)
	}
	file := r.approve(t, "alice", "--propose", "--revert", r.path(testPlaybookPath))
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env, err := approval.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := env.Statement.Predicate
	if p.Operation != approval.OperationRevert || env.Statement.Subject[0].SHA256() != playbook.Digest(src) || p.Repository == "" {
		t.Fatalf("revert proposal: %+v %+v", p, env.Statement.Subject)
	}
	// It counts for the revert, not for the apply.
	kr, problems := approval.ParseKeyring(".writ/approvers.yaml", mustRead(t, r.path(".writ/approvers.yaml")))
	if problems != nil {
		t.Fatal(problems)
	}
	for op, want := range map[string]bool{approval.OperationRevert: true, approval.OperationApply: false} {
		v := approval.Verify(approval.Input{Subject: approval.Subject{Path: testPlaybookPath, Digest: playbook.Digest(src)}, Operation: op,
			Repository: p.Repository, PolicyDigest: p.PolicyDigest, PlanDigest: strings.Repeat("a", 64), Keyring: kr,
			Envelopes: []approval.Submitted{{Envelope: raw}}, Now: time.Now()})
		if v.QuorumMet != want {
			t.Errorf("%s: quorum %v; want %v (%s)", op, v.QuorumMet, want, v.Summary())
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
