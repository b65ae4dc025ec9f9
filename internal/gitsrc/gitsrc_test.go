package gitsrc_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/playbook"
)

func changes(t *testing.T, s *gitsrc.Source, from, to string) string {
	t.Helper()
	cs, err := s.Changes(context.Background(), from, to)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, string(c.Type)+" "+c.Path)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// Both ways of reading a repository: in place (a local bare repository) and
// through a clone of a remote (file:// URL, the same code path as https).
func sources(t *testing.T, r *gittest.Repo) map[string]*gitsrc.Source {
	t.Helper()
	ctx := context.Background()
	local, err := gitsrc.Open(ctx, gitsrc.Options{URL: r.Bare})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := gitsrc.Open(ctx, gitsrc.Options{URL: "file://" + r.Bare, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*gitsrc.Source{"local": local, "remote": remote}
}

func TestWalkMergedCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := gittest.New(t, map[string]string{"policies/writ.rego": "package writ\n"})
	base := r.Head()
	for name, s := range sources(t, r) {
		t.Run(name, func(t *testing.T) {
			head, err := s.Fetch(ctx)
			if err != nil || head != base {
				t.Fatalf("head %s, %v; want %s", head, err, base)
			}
		})
	}

	// An analyst's branch with two commits, merged with a merge commit.
	r.Branch("block-c2")
	r.Write("playbooks/net/block.yaml", "a: 1\n")
	r.Commit("add playbook")
	r.Write("playbooks/net/block.yaml", "a: 2\n")
	r.Write(".writ/approvers.yaml", "people: []\n")
	r.Commit("edit playbook")
	r.Checkout("main")
	merge := r.Merge("block-c2")
	r.Push()
	// A direct commit on main after the merge.
	r.Remove("policies/writ.rego")
	last := r.Commit("drop policy")
	r.Push()

	for name, s := range sources(t, r) {
		t.Run(name, func(t *testing.T) {
			head, err := s.Fetch(ctx)
			if err != nil || head != last {
				t.Fatalf("head %s, %v; want %s", head, err, last)
			}
			chain, err := s.FirstParentChain(ctx, base, head, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 2 || chain[0].SHA != merge || chain[1].SHA != last {
				t.Fatalf("chain %+v; want the merge then the direct commit (first parents only)", chain)
			}
			if chain[0].Parent != base || chain[0].Parents != 2 {
				t.Fatalf("merge commit's first parent %s; want %s", chain[0].Parent, base)
			}
			// The merge judged against its first parent shows the whole PR.
			if got := changes(t, s, chain[0].Parent, chain[0].SHA); got != "added .writ/approvers.yaml, added playbooks/net/block.yaml" {
				t.Fatalf("merge changes: %s", got)
			}
			if got := changes(t, s, chain[1].Parent, chain[1].SHA); got != "deleted policies/writ.rego" {
				t.Fatalf("direct commit changes: %s", got)
			}
			if ok, err := s.IsAncestor(ctx, base, head); err != nil || !ok {
				t.Fatalf("IsAncestor(base, head) = %v, %v", ok, err)
			}
			one, err := s.FirstParentChain(ctx, "", head, 0)
			if err != nil || len(one) != 1 || one[0].SHA != head {
				t.Fatalf("chain from nothing: %+v %v", one, err)
			}
		})
	}
}

func TestForcePushIsNotAFastForward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := gittest.New(t, nil)
	r.Write("playbooks/a.yaml", "x\n")
	processed := r.Commit("a")
	r.Push()
	srcs := sources(t, r)
	for _, s := range srcs {
		if _, err := s.Fetch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Rewrite history: drop the commit and push something else over it.
	r.Git("reset", "--quiet", "--hard", "HEAD~1")
	r.Write("playbooks/b.yaml", "y\n")
	rewritten := r.Commit("b instead")
	r.ForcePush()
	for name, s := range srcs {
		t.Run(name, func(t *testing.T) {
			head, err := s.Fetch(ctx)
			if err != nil || head != rewritten {
				t.Fatalf("fetch after force push: %s %v", head, err)
			}
			ok, err := s.IsAncestor(ctx, processed, head)
			if err != nil || ok {
				t.Fatalf("IsAncestor = %v, %v; want false", ok, err)
			}
			if _, err := s.FirstParentChain(ctx, processed, head, 100); !errors.Is(err, gitsrc.ErrNotFastForward) {
				t.Fatalf("chain: %v; want ErrNotFastForward", err)
			}
		})
	}
	// A fresh clone that never saw the processed commit cannot prove the
	// history: that too is not a fast-forward.
	fresh, err := gitsrc.Open(ctx, gitsrc.Options{URL: "file://" + r.Bare, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	head, _ := fresh.Fetch(ctx)
	if ok, err := fresh.IsAncestor(ctx, processed, head); err != nil || ok {
		t.Fatalf("fresh clone: IsAncestor = %v, %v; want false, nil", ok, err)
	}
}

func TestTreeFS(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, map[string]string{
		"playbooks/net/block.yaml": "apiVersion: writ/v1\n",
		"policies/data.yaml":       "limits: {}\n",
	})
	if err := os.Symlink("/etc/passwd", filepath.Join(r.Work, "playbooks", "evil.yaml")); err != nil {
		t.Fatal(err)
	}
	sha := r.Commit("symlink")
	r.Push()
	s, err := gitsrc.Open(context.Background(), gitsrc.Options{URL: r.Bare})
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := s.FS(sha)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(fsys, "playbooks/net/block.yaml")
	if err != nil || string(b) != "apiVersion: writ/v1\n" {
		t.Fatalf("read: %q %v", b, err)
	}
	var walked []string
	if err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		walked = append(walked, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := ". playbooks playbooks/evil.yaml playbooks/net playbooks/net/block.yaml policies policies/data.yaml"
	if got := strings.Join(walked, " "); got != want {
		t.Fatalf("walk: %s\nwant: %s", got, want)
	}
	if _, err := fsys.Open("playbooks/evil.yaml"); err == nil {
		t.Fatal("opened a symlink")
	}
	// The playbook loader reports the symlink instead of reading through it.
	_, problems, err := playbook.LoadFS(fsys, playbook.Dir, playbook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(problems.Error(), "playbooks/evil.yaml:1:1: not a regular file") {
		t.Fatalf("problems: %v", problems)
	}
	for _, bad := range []string{"../etc/passwd", "/etc/passwd", "playbooks/../../x", ""} {
		if _, err := fsys.Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	if _, err := fs.Stat(fsys, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	h1, _ := s.TreeHash(sha, "policies")
	h2, _ := s.TreeHash(sha, "missing")
	if len(h1) != 40 || h2 != "" {
		t.Fatalf("TreeHash: %q %q", h1, h2)
	}
}

func TestFetchPullRequestRef(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := gittest.New(t, nil)
	r.Branch("feature")
	r.Write("playbooks/p.yaml", "x\n")
	head := r.Commit("pr head")
	r.PushRef("refs/pull/7/head")
	for name, s := range sources(t, r) {
		t.Run(name, func(t *testing.T) {
			got, err := s.FetchRef(ctx, "refs/pull/7/head")
			if err != nil || got != head {
				t.Fatalf("FetchRef = %s, %v; want %s", got, err, head)
			}
			if _, err := s.FetchRef(ctx, "refs/../../etc"); err == nil {
				t.Fatal("accepted a ref with ..")
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, o := range map[string]gitsrc.Options{
		"empty":              {},
		"remote no cache":    {URL: "https://example.com/x.git"},
		"ssh no known_hosts": {URL: "git@example.com:org/repo.git", CacheDir: "/tmp/x"},
		"bad branch":         {URL: "/tmp/x", Branch: "--upload-pack=evil"},
	} {
		if _, err := gitsrc.Open(ctx, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := gitsrc.RedactURL("https://user:tok3n@example.com/org/repo.git"); strings.Contains(got, "tok3n") {
		t.Fatalf("RedactURL leaked: %s", got)
	}
}

// A linked worktree (git worktree add) keeps its branches in the main
// repository's .git: writ follows main from inside one, as `writ serve
// --repo .` does in a worktree checkout.
func TestOpenLinkedWorktree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := gittest.New(t, map[string]string{"policies/writ.rego": "package writ\n"})
	wt := filepath.Join(t.TempDir(), "wt")
	r.Git("worktree", "add", "--quiet", "--detach", wt)
	s, err := gitsrc.Open(ctx, gitsrc.Options{URL: wt})
	if err != nil {
		t.Fatal(err)
	}
	head, err := s.Fetch(ctx)
	if err != nil || head != r.Head() {
		t.Fatalf("head %s, %v; want main at %s", head, err, r.Head())
	}
	// A commit on main made from the main checkout is seen from the worktree.
	r.Write("playbooks/a.yaml", "a: 1\n")
	next := r.Commit("add a")
	if head, err := s.Fetch(ctx); err != nil || head != next {
		t.Fatalf("after a commit: head %s, %v; want %s", head, err, next)
	}
}
