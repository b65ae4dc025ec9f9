// Package gittest drives the real git CLI for tests: a bare "server"
// repository and a working clone that commits, branches, merges and pushes
// to it, as analysts and their forge would.
package gittest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Repo is a bare repository and a working clone pushing to it.
type Repo struct {
	t    testing.TB
	Bare string // the bare repository (what writ follows)
	Work string // a working clone
}

// New makes an empty bare repository with a working clone on branch main,
// and one initial commit holding files (path -> content).
func New(t testing.TB, files map[string]string) *Repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("gittest: the git CLI is required: %v", err)
	}
	dir := t.TempDir()
	r := &Repo{t: t, Bare: filepath.Join(dir, "server.git"), Work: filepath.Join(dir, "work")}
	r.run(dir, "init", "--quiet", "--bare", "--initial-branch=main", r.Bare)
	r.run(dir, "clone", "--quiet", r.Bare, r.Work)
	r.Git("checkout", "--quiet", "-B", "main")
	for p, c := range files {
		r.Write(p, c)
	}
	if len(files) == 0 {
		r.Write("README.md", "content repository\n")
	}
	r.Commit("initial commit")
	r.Git("push", "--quiet", "origin", "main")
	return r
}

func (r *Repo) run(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Analyst", "GIT_AUTHOR_EMAIL=analyst@example.com",
		"GIT_COMMITTER_NAME=Analyst", "GIT_COMMITTER_EMAIL=analyst@example.com",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+filepath.Dir(r.Work),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Git runs git in the working clone and returns its trimmed output.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	return r.run(r.Work, args...)
}

// Write writes a file in the working clone (creating directories).
func (r *Repo) Write(path, content string) {
	r.t.Helper()
	full := filepath.Join(r.Work, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// Remove deletes a file in the working clone.
func (r *Repo) Remove(path string) {
	r.t.Helper()
	r.Git("rm", "--quiet", path)
}

// Commit stages everything and commits; it returns the commit id.
func (r *Repo) Commit(msg string) string {
	r.t.Helper()
	r.Git("add", "--all")
	r.Git("commit", "--quiet", "--allow-empty", "-m", msg)
	return r.Head()
}

// Head is the working clone's HEAD commit id.
func (r *Repo) Head() string {
	r.t.Helper()
	return r.Git("rev-parse", "HEAD")
}

// Push pushes the current branch to the bare repository.
func (r *Repo) Push() {
	r.t.Helper()
	r.Git("push", "--quiet", "origin", "HEAD")
}

// ForcePush force-pushes the current branch.
func (r *Repo) ForcePush() {
	r.t.Helper()
	r.Git("push", "--quiet", "--force", "origin", "HEAD")
}

// Branch creates and switches to a new branch from the current commit.
func (r *Repo) Branch(name string) {
	r.t.Helper()
	r.Git("checkout", "--quiet", "-b", name)
}

// Checkout switches branches.
func (r *Repo) Checkout(name string) {
	r.t.Helper()
	r.Git("checkout", "--quiet", name)
}

// Merge merges branch into the current one with a merge commit (as a forge's
// "merge" button does) and returns the merge commit id.
func (r *Repo) Merge(branch string) string {
	r.t.Helper()
	r.Git("merge", "--quiet", "--no-ff", "-m", "Merge branch "+branch, branch)
	return r.Head()
}

// PushRef pushes the current HEAD to an arbitrary ref of the bare
// repository (e.g. refs/pull/1/head, as GitHub keeps for pull requests).
func (r *Repo) PushRef(ref string) {
	r.t.Helper()
	r.Git("push", "--quiet", "--force", "origin", "HEAD:"+ref)
}
