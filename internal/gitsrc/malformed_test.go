package gitsrc_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
)

const goodPlaybook = "apiVersion: writ/v1\n"

// pushTree commits tree on top of the bare repository's main and pushes
// it; it returns the commit.
func pushTree(t *testing.T, r *gittest.Repo, tree, msg string) string {
	t.Helper()
	c := r.CommitTree(tree, r.Git("rev-parse", "origin/main"), msg)
	r.PushCommit(c, "main")
	return c
}

func file(r *gittest.Repo, name, content string) gittest.TreeEntry {
	return gittest.TreeEntry{Mode: "100644", Name: name, Hash: r.Blob(content)}
}

func dir(r *gittest.Repo, name string, entries ...gittest.TreeEntry) gittest.TreeEntry {
	return gittest.TreeEntry{Mode: gittest.Dir, Name: name, Hash: r.Tree(entries...)}
}

func openLocal(t *testing.T, r *gittest.Repo, opts gitsrc.Options) *gitsrc.Source {
	t.Helper()
	opts.URL = r.Bare
	s, err := gitsrc.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openClone reads the working clone in place: objects made there need no
// push (git's own client refuses to send some of them, such as a tree
// that does not decode, which other clients send).
func openClone(t *testing.T, r *gittest.Repo) *gitsrc.Source {
	t.Helper()
	opts := gitsrc.Options{URL: r.Work}
	s, err := gitsrc.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every kind of tree entry writ will not read, written under playbooks/,
// makes Changes fail with a MalformedError that names the commit, the
// entry and the problem, never a panic or an untyped error; what the
// commit does not touch is not judged again in the next one, and a
// commit that removes the entry lists nothing for it.
func TestChangesRefuseMalformedTrees(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, map[string]string{"playbooks/ok.yaml": goodPlaybook, "policies/p.rego": "package writ\n"})
	evil := func() gittest.TreeEntry { return file(r, "evil.yaml", goodPlaybook) }
	cases := []struct {
		name    string
		entries []gittest.TreeEntry // added to playbooks/ (kept in git's order)
		raw     bool                // playbooks/ is exactly entries, in this order
		problem gitsrc.Problem
		path    string
		unsafe  bool
	}{
		{name: "dot-dot directory", entries: []gittest.TreeEntry{dir(r, "..", evil())}, problem: gitsrc.ProblemUnsafeName, path: "playbooks/..", unsafe: true},
		{name: "dot directory", entries: []gittest.TreeEntry{dir(r, ".", evil())}, problem: gitsrc.ProblemUnsafeName, path: "playbooks/.", unsafe: true},
		{name: "dot-dot file", entries: []gittest.TreeEntry{file(r, "..", goodPlaybook)}, problem: gitsrc.ProblemUnsafeName, path: "playbooks/..", unsafe: true},
		{name: "dot git", entries: []gittest.TreeEntry{dir(r, ".git", file(r, "config", "[core]\n"))}, problem: gitsrc.ProblemUnsafeName, path: "playbooks/.git", unsafe: true},
		{name: "dot git upper case", entries: []gittest.TreeEntry{dir(r, ".GIT", evil())}, problem: gitsrc.ProblemUnsafeName, unsafe: true},
		{name: "dot git NTFS trailing dot", entries: []gittest.TreeEntry{dir(r, ".git.", evil())}, problem: gitsrc.ProblemUnsafeName, unsafe: true},
		{name: "dot git NTFS short name", entries: []gittest.TreeEntry{dir(r, "GIT~1", evil())}, problem: gitsrc.ProblemUnsafeName, unsafe: true},
		{name: "dot git HFS ignorable", entries: []gittest.TreeEntry{dir(r, ".g\u200cit", evil())}, problem: gitsrc.ProblemUnsafeName, unsafe: true},
		{name: "slash in a name", entries: []gittest.TreeEntry{file(r, "net/block.yaml", goodPlaybook)}, problem: gitsrc.ProblemUnsafeName, path: "playbooks/net/block.yaml", unsafe: true},
		{name: "backslash in a name", entries: []gittest.TreeEntry{file(r, `..\..\x.yaml`, goodPlaybook)}, problem: gitsrc.ProblemUnsafeName, unsafe: true},
		{name: "control character", entries: []gittest.TreeEntry{file(r, "a\nb.yaml", goodPlaybook)}, problem: gitsrc.ProblemUnsafeName, unsafe: true},
		{name: "not UTF-8", entries: []gittest.TreeEntry{file(r, "\xff\xfe.yaml", goodPlaybook)}, problem: gitsrc.ProblemUnsafeName, unsafe: true},
		{name: "empty name", entries: []gittest.TreeEntry{file(r, "", goodPlaybook)}, problem: gitsrc.ProblemUnsafeName, unsafe: true},
		{name: "absurd mode", entries: []gittest.TreeEntry{{Mode: "177777", Name: "x.yaml", Hash: r.Blob(goodPlaybook)}}, problem: gitsrc.ProblemBadMode, path: "playbooks/x.yaml"},
		{name: "short mode", entries: []gittest.TreeEntry{{Mode: "644", Name: "x.yaml", Hash: r.Blob(goodPlaybook)}}, problem: gitsrc.ProblemBadMode},
		{name: "directory naming a blob", entries: []gittest.TreeEntry{{Mode: gittest.Dir, Name: "sub", Hash: r.Blob(goodPlaybook)}}, problem: gitsrc.ProblemBadObject, path: "playbooks/sub"},
		{name: "duplicate names", raw: true, entries: []gittest.TreeEntry{file(r, "a.yaml", goodPlaybook), file(r, "a.yaml", "apiVersion: writ/v2\n")}, problem: gitsrc.ProblemDuplicate, path: "playbooks/a.yaml"},
		{name: "file and directory of one name", raw: true, entries: []gittest.TreeEntry{file(r, "a", goodPlaybook), dir(r, "a", evil())}, problem: gitsrc.ProblemDuplicate, path: "playbooks/a"},
		{name: "unsorted", raw: true, entries: []gittest.TreeEntry{file(r, "b.yaml", goodPlaybook), file(r, "a.yaml", goodPlaybook)}, problem: gitsrc.ProblemUnsorted, path: "playbooks/a.yaml"},
	}
	s := openClone(t, r)
	base := r.Head()
	clean := r.LsTree(base + ":playbooks")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// playbooks/ holds the clean entries and the case's, in git's
			// order, or exactly the case's; the next commit adds a file at
			// the end (in order), written raw too.
			list := append(slices.Clone(clean), tc.entries...)
			gitOrder(list)
			if tc.raw {
				list = slices.Clone(tc.entries)
			}
			bad := r.CommitTree(replaceRoot(t, r, base, "playbooks", r.Tree(list...)), base, tc.name)
			list = append(list, file(r, "next.yaml", goodPlaybook))
			if !tc.raw {
				gitOrder(list)
			}
			next := r.CommitTree(replaceRoot(t, r, base, "playbooks", r.Tree(list...)), bad, "next")
			_, err := s.Changes(context.Background(), base, bad)
			var me *gitsrc.MalformedError
			if !errors.As(err, &me) || !errors.Is(err, gitsrc.ErrMalformed) {
				t.Fatalf("Changes: %v; want a MalformedError", err)
			}
			if me.Commit != bad || me.Problem != tc.problem || (tc.path != "" && me.Path != tc.path) {
				t.Fatalf("got %+v; want problem %s at %q of %s", me, tc.problem, tc.path, bad)
			}
			if errors.Is(err, gitsrc.ErrUnsafePath) != tc.unsafe {
				t.Fatalf("errors.Is(%v, ErrUnsafePath) = %v", err, !tc.unsafe)
			}
			// The next commit adds a file beside it: only what it changes
			// is judged, and the file reads.
			if got := changes(t, s, bad, next); got != "added playbooks/next.yaml" {
				t.Fatalf("next commit: %s", got)
			}
			fsys, err := s.FS(next)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := fs.ReadFile(fsys, "playbooks/next.yaml"); err != nil || string(b) != goodPlaybook {
				t.Fatalf("read the good file beside it: %q, %v", b, err)
			}
			// A walk meets the entry and stops with the same kind of error
			// (a walk into ".." used to recurse until the process ran out
			// of file descriptors or stack).
			werr := fs.WalkDir(fsys, "playbooks", func(_ string, _ fs.DirEntry, err error) error { return err })
			if !errors.Is(werr, gitsrc.ErrMalformed) {
				t.Fatalf("walk: %v; want ErrMalformed", werr)
			}
			// Putting the clean tree back never lists the entry, which was
			// never read as anything.
			fixed := r.CommitTree(r.Git("rev-parse", base+"^{tree}"), next, "fix")
			cs, err := s.Changes(context.Background(), next, fixed)
			if err != nil {
				t.Fatalf("fix commit: %v", err)
			}
			for _, c := range cs {
				if tc.problem != gitsrc.ProblemUnsorted && (c.Path == me.Path || strings.HasPrefix(c.Path, me.Path+"/")) {
					t.Fatalf("fix commit lists %s %q", c.Type, c.Path)
				}
			}
		})
	}
}

// A tree object that does not decode is malformed where it is used, and
// the commit that replaces it lists nothing from it.
func TestUndecodableTree(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, map[string]string{"playbooks/ok.yaml": goodPlaybook})
	s := openClone(t, r)
	base := r.Head()
	for _, garbage := range []string{"100644 truncated\x00abc", "100644 no-terminator", "no-mode-at-all", "1006440000 x\x00" + strings.Repeat("a", 20)} {
		bad := r.CommitTree(replaceRoot(t, r, base, "playbooks", r.HashObject("tree", []byte(garbage))), base, "garbage")
		_, err := s.Changes(context.Background(), base, bad)
		var me *gitsrc.MalformedError
		if !errors.As(err, &me) || me.Problem != gitsrc.ProblemBadObject || me.Path != "playbooks" || me.Commit != bad {
			t.Fatalf("%q: Changes: %v; want bad_object at playbooks", garbage, err)
		}
		if _, err := s.ListFiles(context.Background(), bad, "playbooks"); !errors.Is(err, gitsrc.ErrMalformed) {
			t.Fatalf("%q: ListFiles: %v", garbage, err)
		}
		fixed := r.CommitTree(r.Git("rev-parse", base+"^{tree}"), bad, "fix")
		if got := changes(t, s, bad, fixed); got != "added playbooks/ok.yaml" {
			t.Fatalf("%q: fix commit: %s", garbage, got)
		}
	}
	// A root tree that does not decode.
	bad := r.CommitTree(r.HashObject("tree", []byte("40000 x")), base, "garbage root")
	if _, err := s.Changes(context.Background(), base, bad); !errors.Is(err, gitsrc.ErrMalformed) {
		t.Fatalf("root: %v", err)
	}
	if _, err := s.TreeHash(bad, "policies"); !errors.Is(err, gitsrc.ErrMalformed) {
		t.Fatalf("TreeHash at a garbage root: %v", err)
	}
}

// replaceRoot is the root tree of commit with the entry name replaced by
// the tree h.
func replaceRoot(t *testing.T, r *gittest.Repo, commit, name, h string) string {
	t.Helper()
	var out []gittest.TreeEntry
	for _, e := range r.LsTree(commit + "^{tree}") {
		if e.Name != name {
			out = append(out, e)
		}
	}
	out = append(out, gittest.TreeEntry{Mode: gittest.Dir, Name: name, Hash: h})
	gitOrder(out)
	return r.Tree(out...)
}

// gitOrder sorts entries as git does: by name, a directory's followed by
// "/".
func gitOrder(list []gittest.TreeEntry) {
	slices.SortStableFunc(list, func(a, b gittest.TreeEntry) int {
		an, bn := a.Name, b.Name
		if a.Mode == gittest.Dir {
			an += "/"
		}
		if b.Mode == gittest.Dir {
			bn += "/"
		}
		return strings.Compare(an, bn)
	})
}

// Git shares identical subtrees: 40 levels of two names for one subtree
// describe 2^40 paths in 40 small objects. Changes, ListFiles and a walk
// of the FS stop at MaxTreeEntries; directories nested past MaxTreeDepth
// are refused too.
func TestTreeBombsAndDeepTreesAreBounded(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, map[string]string{"README.md": "x\n"})
	bomb := r.Tree(file(r, "x.yaml", goodPlaybook))
	for range 40 {
		bomb = r.Tree(gittest.TreeEntry{Mode: gittest.Dir, Name: "a", Hash: bomb}, gittest.TreeEntry{Mode: gittest.Dir, Name: "b", Hash: bomb})
	}
	deep := r.Tree(file(r, "x.yaml", goodPlaybook))
	for range 8 {
		deep = r.Tree(gittest.TreeEntry{Mode: gittest.Dir, Name: "d", Hash: deep})
	}
	base := r.Head()
	for name, tc := range map[string]struct {
		h       string
		opts    gitsrc.Options
		problem gitsrc.Problem
	}{
		"bomb": {bomb, gitsrc.Options{MaxTreeEntries: 5000}, gitsrc.ProblemTooLarge},
		"deep": {deep, gitsrc.Options{MaxTreeDepth: 6}, gitsrc.ProblemTooDeep},
	} {
		t.Run(name, func(t *testing.T) {
			s := openLocal(t, r, tc.opts)
			c := r.CommitTree(r.TreeWith(base, "", gittest.TreeEntry{Mode: gittest.Dir, Name: "playbooks", Hash: tc.h}), base, name)
			r.PushCommit(c, name)
			_, err := s.Changes(context.Background(), base, c)
			var me *gitsrc.MalformedError
			if !errors.As(err, &me) || me.Problem != tc.problem || me.Commit != c {
				t.Fatalf("Changes: %v; want %s", err, tc.problem)
			}
			if _, err := s.ListFiles(context.Background(), c, "playbooks"); !errors.As(err, &me) || me.Problem != tc.problem {
				t.Fatalf("ListFiles: %v; want %s", err, tc.problem)
			}
			fsys, err := s.FS(c)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			err = fs.WalkDir(fsys, ".", func(_ string, _ fs.DirEntry, err error) error {
				n++
				return err
			})
			if !errors.As(err, &me) || me.Problem != tc.problem {
				t.Fatalf("walk of %d entries: %v; want %s", n, err, tc.problem)
			}
		})
	}
}

// Changes agrees with git's own diff-tree on ordinary commits: files
// added, changed, removed, a file becoming a directory and back, mode and
// type changes, symlinks and submodules.
func TestChangesAgreeWithGit(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, map[string]string{"playbooks/a.yaml": "a\n", "playbooks/net/b.yaml": "b\n", "docs/x.md": "x\n", "tool": "#!/bin/sh\n"})
	s := openLocal(t, r, gitsrc.Options{})
	// Each step changes the working clone (or, for what a checkout cannot
	// hold, the index) and commits.
	worktree := func(f func()) func() { return func() { f(); r.Git("add", "--all") } }
	steps := []func(){
		worktree(func() { r.Write("playbooks/a.yaml", "a2\n"); r.Write("playbooks/c.yaml", "c\n"); r.Remove("docs/x.md") }),
		worktree(func() { r.Remove("playbooks/net/b.yaml"); r.Write("playbooks/net", "now a file\n") }),
		worktree(func() {
			r.Remove("playbooks/net")
			r.Write("playbooks/net/d.yaml", "d\n")
			r.Write("playbooks/net/e/f.yaml", "f\n")
		}),
		func() { r.Git("update-index", "--chmod=+x", "playbooks/a.yaml") },
		func() { r.Git("rm", "--quiet", "--cached", "tool") },
		func() {
			r.Git("update-index", "--add", "--cacheinfo", "160000,"+r.Head()+",vendor/sub")
			r.Git("update-index", "--add", "--cacheinfo", "120000,"+r.Blob("/etc/passwd")+",playbooks/link.yaml")
		},
		func() { r.Git("update-index", "--cacheinfo", "100644,"+r.Blob("x\n")+",playbooks/link.yaml") },
		func() { r.Git("update-index", "--force-remove", "vendor/sub") },
	}
	for i, step := range steps {
		before := r.Head()
		step()
		r.Git("commit", "--quiet", "--allow-empty", "-m", fmt.Sprintf("step %d", i))
		after := r.Head()
		r.Push()
		var want []string
		out := r.Git("diff-tree", "-r", "--no-renames", "--name-status", "-z", before, after)
		fields := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
		for j := 0; j+1 < len(fields); j += 2 {
			status := map[string]string{"A": "added", "D": "deleted", "M": "modified", "T": "modified"}[fields[j]]
			want = append(want, status+" "+fields[j+1])
		}
		slices.Sort(want)
		if len(want) == 0 {
			t.Fatalf("step %d changed nothing", i)
		}
		if got := changes(t, s, before, after); got != strings.Join(want, ", ") {
			t.Fatalf("step %d: Changes %s\ngit diff-tree %s", i, got, strings.Join(want, ", "))
		}
	}
	files, err := s.ListFiles(context.Background(), r.Head(), "playbooks")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(r.Git("ls-tree", "-r", "--name-only", "HEAD", "playbooks"))
	slices.Sort(files)
	if !slices.Equal(files, want) {
		t.Fatalf("ListFiles %v; git ls-tree %v", files, want)
	}
}

// The tree FS is a well-behaved fs.FS.
func TestTreeFSConforms(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, map[string]string{"playbooks/net/block.yaml": goodPlaybook, "policies/data.yaml": "x: 1\n", "README.md": "hi\n"})
	s := openLocal(t, r, gitsrc.Options{})
	fsys, err := s.FS(r.Head())
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "playbooks/net/block.yaml", "policies/data.yaml", "README.md"); err != nil {
		t.Fatal(err)
	}
}

// A file entry that names a tree is refused when read, not sooner: only
// what writ reads is read.
func TestFileNamingATreeIsMalformedWhenRead(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, map[string]string{"playbooks/ok.yaml": goodPlaybook})
	c := pushTree(t, r, r.TreeWith(r.Head(), "playbooks", gittest.TreeEntry{Mode: "100644", Name: "x.yaml", Hash: r.Tree(file(r, "y", "y\n"))}), "blob is a tree")
	s := openLocal(t, r, gitsrc.Options{})
	fsys, err := s.FS(c)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fs.ReadFile(fsys, "playbooks/x.yaml")
	var me *gitsrc.MalformedError
	if !errors.As(err, &me) || me.Problem != gitsrc.ProblemBadObject || me.Path != "playbooks/x.yaml" {
		t.Fatalf("read: %v; want bad_object at playbooks/x.yaml", err)
	}
}
