// Package gittest drives the real git CLI for tests: a bare "server"
// repository and a working clone that commits, branches, merges and pushes
// to it, as analysts and their forge would.
package gittest

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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

// TreeEntry is one entry of a raw tree object: Mode as git writes it in
// trees ("100644", "100755", "120000", "160000", "40000" for a
// directory), any Name, and the object id it points to.
type TreeEntry struct {
	Mode string
	Name string
	Hash string
}

// Dir is the mode of a directory entry.
const Dir = "40000"

// HashObject writes data as an object of kind ("blob", "tree", "commit")
// into the working clone's object store without any check (--literally),
// as an attacker's tooling would, and returns its id.
func (r *Repo) HashObject(kind string, data []byte) string {
	r.t.Helper()
	cmd := exec.Command("git", "hash-object", "-t", kind, "--literally", "-w", "--stdin")
	cmd.Dir = r.Work
	cmd.Stdin = strings.NewReader(string(data))
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git hash-object -t %s: %v\n%s", kind, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Blob writes content as a blob and returns its id.
func (r *Repo) Blob(content string) string {
	r.t.Helper()
	return r.HashObject("blob", []byte(content))
}

// Tree writes a tree object holding exactly entries, in the order given:
// no sorting, no check of names or modes, duplicates kept. It returns the
// tree's id.
func (r *Repo) Tree(entries ...TreeEntry) string {
	r.t.Helper()
	var b []byte
	for _, e := range entries {
		raw, err := hex.DecodeString(e.Hash)
		if err != nil || len(raw) != 20 {
			r.t.Fatalf("gittest: tree entry %q: bad object id %q", e.Name, e.Hash)
		}
		b = append(b, e.Mode...)
		b = append(b, ' ')
		b = append(b, e.Name...)
		b = append(b, 0)
		b = append(b, raw...)
	}
	return r.HashObject("tree", b)
}

// LsTree lists the entries of a tree (any tree-ish: "HEAD", "HEAD:dir", a
// tree id) as they are stored, or nil when the path does not exist.
func (r *Repo) LsTree(treeish string) []TreeEntry {
	r.t.Helper()
	cmd := exec.Command("git", "ls-tree", "-z", "--full-tree", treeish)
	cmd.Dir = r.Work
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	var list []TreeEntry
	for _, rec := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if rec == "" {
			continue
		}
		meta, name, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			r.t.Fatalf("gittest: ls-tree %s: unexpected line %q", treeish, rec)
		}
		list = append(list, TreeEntry{Mode: strings.TrimPrefix(f[0], "0"), Name: name, Hash: f[2]})
	}
	return list
}

// TreeWith returns a tree equal to the root tree of commit, except that
// the directory dir (slash-separated, created when missing) also holds
// entries, written raw: names and modes are not checked. The entries of
// dir are put in git's order (by name, a directory's name followed by
// "/"), so that only what the test makes wrong is wrong.
func (r *Repo) TreeWith(commit, dir string, entries ...TreeEntry) string {
	r.t.Helper()
	var parts []string
	if dir != "" {
		parts = strings.Split(dir, "/")
	}
	return r.treeWith(commit+"^{tree}", parts, entries)
}

func (r *Repo) treeWith(treeish string, parts []string, add []TreeEntry) string {
	var existing []TreeEntry
	if treeish != "" {
		existing = r.LsTree(treeish)
	}
	if len(parts) == 0 {
		all := append(existing, add...)
		sort.SliceStable(all, func(i, j int) bool { return sortName(all[i]) < sortName(all[j]) })
		return r.Tree(all...)
	}
	sub := ""
	out := existing[:0:0]
	for _, e := range existing {
		if e.Name == parts[0] && e.Mode == Dir {
			sub = e.Hash
			continue
		}
		out = append(out, e)
	}
	child := r.treeWith(sub, parts[1:], add)
	out = append(out, TreeEntry{Mode: Dir, Name: parts[0], Hash: child})
	sort.SliceStable(out, func(i, j int) bool { return sortName(out[i]) < sortName(out[j]) })
	return r.Tree(out...)
}

func sortName(e TreeEntry) string {
	if e.Mode == Dir {
		return e.Name + "/"
	}
	return e.Name
}

// CommitTree makes a commit of tree on top of parent ("" for a root
// commit) and returns its id.
func (r *Repo) CommitTree(tree, parent, msg string) string {
	r.t.Helper()
	args := []string{"commit-tree", tree, "-m", msg}
	if parent != "" {
		args = append(args, "-p", parent)
	}
	return r.Git(args...)
}

// PushCommit moves the bare repository's branch to commit (a fast-forward
// or not), as a push of objects made with the plumbing above would: the
// bare repository, like git's default, does not fsck what it receives.
// The working clone's own branch is left alone (git refuses to check out
// a malformed tree); its origin/branch follows.
func (r *Repo) PushCommit(commit, branch string) {
	r.t.Helper()
	r.Git("push", "--quiet", "--force", "origin", commit+":refs/heads/"+branch)
	r.Git("fetch", "--quiet", "origin")
}
