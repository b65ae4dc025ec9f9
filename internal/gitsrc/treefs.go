package gitsrc

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// FS returns the tree of a commit as a read-only file system. Symlinks are
// reported as symlinks (fs.Lstat) and are never followed, so nothing read
// through it can point outside the repository; submodules are irregular
// files. Trees are decoded as Changes decodes them: an entry writ will not
// read, met on the way to a name or in a directory listed, fails with a
// *MalformedError (ErrMalformed, wrapped in an *fs.PathError), and so does
// listing more than Options.MaxTreeEntries entries in all (a walk of a tree
// that shares subtrees could otherwise last for ever) or a directory
// deeper than Options.MaxTreeDepth.
func (s *Source) FS(sha string) (fs.FS, error) {
	c, err := s.commit(sha)
	if err != nil {
		return nil, err
	}
	return &treeFS{s: s, commit: sha, root: c.TreeHash, when: c.Committer.When,
		trees: map[plumbing.Hash]*dirTree{}, budget: s.opts.MaxTreeEntries}, nil
}

type treeFS struct {
	s      *Source
	commit string
	root   plumbing.Hash
	when   time.Time

	mu    sync.Mutex
	trees map[plumbing.Hash]*dirTree // decoded trees, by hash
	// budget is how many more entries ReadDir may list.
	budget int
}

// dirTree is a decoded tree with its names indexed.
type dirTree struct {
	entries []entry
	byName  map[string]int // index of the entry; -1 for a name held twice
}

var (
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
	_ fs.ReadLinkFS = (*treeFS)(nil)
	_ fs.ReadFileFS = (*treeFS)(nil)
)

type entryInfo struct {
	name string
	size int64
	mode fs.FileMode
	when time.Time
}

func (e *entryInfo) Name() string               { return e.name }
func (e *entryInfo) Size() int64                { return e.size }
func (e *entryInfo) Mode() fs.FileMode          { return e.mode }
func (e *entryInfo) ModTime() time.Time         { return e.when }
func (e *entryInfo) IsDir() bool                { return e.mode.IsDir() }
func (e *entryInfo) Sys() any                   { return nil }
func (e *entryInfo) Type() fs.FileMode          { return e.mode.Type() }
func (e *entryInfo) Info() (fs.FileInfo, error) { return e, nil }

func goMode(m filemode.FileMode) fs.FileMode {
	switch m {
	case filemode.Dir:
		return fs.ModeDir | 0o555
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	case filemode.Submodule:
		return fs.ModeIrregular
	case filemode.Executable:
		return 0o555
	}
	return 0o444
}

// tree decodes (once) the tree h found at path.
func (f *treeFS) tree(h plumbing.Hash, path string) (*dirTree, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.trees[h]; ok {
		return t, nil
	}
	entries, err := f.s.readTree(h)
	if err != nil {
		return nil, locate(err, f.commit, path)
	}
	t := &dirTree{entries: entries, byName: make(map[string]int, len(entries))}
	for i := range entries {
		if _, dup := t.byName[entries[i].name]; dup {
			t.byName[entries[i].name] = -1
		} else {
			t.byName[entries[i].name] = i
		}
	}
	f.trees[h] = t
	return t, nil
}

// lookup returns the entry at name without following symlinks, and the
// hash of what it names. Only the entries on the way are judged.
func (f *treeFS) lookup(op, name string) (*entryInfo, plumbing.Hash, error) {
	if !fs.ValidPath(name) {
		return nil, plumbing.ZeroHash, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return &entryInfo{name: ".", mode: fs.ModeDir | 0o555, when: f.when}, f.root, nil
	}
	fail := func(err error) (*entryInfo, plumbing.Hash, error) {
		return nil, plumbing.ZeroHash, &fs.PathError{Op: op, Path: name, Err: err}
	}
	h, dir := f.root, ""
	parts := strings.Split(name, "/")
	var e *entry
	for i, part := range parts {
		if i > 0 {
			// Walking through a symlinked directory would follow the link.
			if !e.isDir() {
				return fail(fs.ErrNotExist)
			}
			h, dir = e.hash, join(dir, parts[i-1])
		}
		t, err := f.tree(h, dir)
		if err != nil {
			return fail(err)
		}
		idx, ok := t.byName[part]
		switch {
		case !ok:
			return fail(fs.ErrNotExist)
		case idx < 0:
			return fail(malformed(f.commit, join(dir, part), ProblemDuplicate, "the directory holds this name twice"))
		}
		e = &t.entries[idx]
		if e.problem != "" {
			return fail(malformed(f.commit, join(dir, part), e.problem, e.detail))
		}
	}
	info := &entryInfo{name: parts[len(parts)-1], mode: goMode(e.mode), when: f.when}
	if e.mode.IsFile() {
		size, err := f.s.repo.Storer.EncodedObjectSize(e.hash)
		if err != nil {
			return fail(err)
		}
		info.size = size
	}
	return info, e.hash, nil
}

func (f *treeFS) Lstat(name string) (fs.FileInfo, error) {
	info, _, err := f.lookup("lstat", name)
	if err != nil {
		return nil, err
	}
	return info, nil
}

// Stat does not follow symlinks either: a git tree has nothing to follow
// them to that is safe.
func (f *treeFS) Stat(name string) (fs.FileInfo, error) { return f.Lstat(name) }

func (f *treeFS) ReadLink(name string) (string, error) {
	info, h, err := f.lookup("readlink", name)
	if err != nil {
		return "", err
	}
	if info.mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	rc, err := f.blob(h, name)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	defer rc.Close()
	target, err := io.ReadAll(io.LimitReader(rc, maxNameBytes+1))
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	if len(target) > maxNameBytes {
		return "", &fs.PathError{Op: "readlink", Path: name,
			Err: malformed(f.commit, name, ProblemTooLarge, fmt.Sprintf("the link's target is longer than %d bytes", maxNameBytes))}
	}
	return string(target), nil
}

// blob opens the blob h found at path.
func (f *treeFS) blob(h plumbing.Hash, path string) (io.ReadCloser, error) {
	obj, err := f.s.repo.Storer.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return nil, err
	}
	if obj.Type() != plumbing.BlobObject {
		return nil, malformed(f.commit, path, ProblemBadObject, fmt.Sprintf("names a %s where a file belongs", obj.Type()))
	}
	return obj.Reader()
}

func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	info, h, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	dir := name
	if name == "." {
		dir = ""
	} else if depth := strings.Count(name, "/") + 1; depth > f.s.opts.MaxTreeDepth {
		return nil, &fs.PathError{Op: "readdir", Path: name,
			Err: malformed(f.commit, dir, ProblemTooDeep, fmt.Sprintf("directories nested more than %d deep", f.s.opts.MaxTreeDepth))}
	}
	t, err := f.tree(h, dir)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	if i, p, why := firstProblem(t.entries, nil); i >= 0 {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: malformed(f.commit, join(dir, t.entries[i].name), p, why)}
	}
	f.mu.Lock()
	f.budget -= len(t.entries)
	over := f.budget < 0
	f.mu.Unlock()
	if over {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: malformed(f.commit, dir, ProblemTooLarge,
			fmt.Sprintf("more than %d tree entries listed; writ reads at most that many from one commit", f.s.opts.MaxTreeEntries))}
	}
	out := make([]fs.DirEntry, 0, len(t.entries))
	for _, e := range t.entries {
		ei := &entryInfo{name: e.name, mode: goMode(e.mode), when: f.when}
		if e.mode.IsFile() {
			if size, err := f.s.repo.Storer.EncodedObjectSize(e.hash); err == nil {
				ei.size = size
			}
		}
		out = append(out, ei)
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

func (f *treeFS) ReadFile(name string) ([]byte, error) {
	file, err := f.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return io.ReadAll(file)
}

func (f *treeFS) Open(name string) (fs.File, error) {
	info, h, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		entries, err := f.ReadDir(name)
		if err != nil {
			return nil, err
		}
		return &dirFile{info: info, entries: entries}, nil
	}
	if !info.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("not a regular file (%s)", info.Mode().Type())}
	}
	r, err := f.blob(h, name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &blobFile{info: info, rc: r}, nil
}

type blobFile struct {
	info *entryInfo
	rc   io.ReadCloser
}

func (b *blobFile) Stat() (fs.FileInfo, error) { return b.info, nil }
func (b *blobFile) Read(p []byte) (int, error) { return b.rc.Read(p) }
func (b *blobFile) Close() error               { return b.rc.Close() }

type dirFile struct {
	info    *entryInfo
	entries []fs.DirEntry
	off     int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}
func (d *dirFile) Close() error { return nil }
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return rest[:n], nil
}
