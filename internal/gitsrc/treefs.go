package gitsrc

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// FS returns the tree of a commit as a read-only file system. Symlinks are
// reported as symlinks (fs.Lstat) and are never followed, so nothing read
// through it can point outside the repository; submodules are irregular
// files.
func (s *Source) FS(sha string) (fs.FS, error) {
	c, err := s.commit(sha)
	if err != nil {
		return nil, err
	}
	t, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("gitsrc: tree of %s: %w", sha, err)
	}
	return &treeFS{root: t, when: c.Committer.When}, nil
}

type treeFS struct {
	root *object.Tree
	when time.Time
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

// lookup returns the entry at name without following symlinks.
func (f *treeFS) lookup(op, name string) (*entryInfo, *object.TreeEntry, error) {
	if !fs.ValidPath(name) {
		return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return &entryInfo{name: ".", mode: fs.ModeDir | 0o555, when: f.when}, nil, nil
	}
	// Walking through a symlinked directory would follow the link.
	if dir := path.Dir(name); dir != "." {
		de, err := f.root.FindEntry(dir)
		if err == nil && de.Mode != filemode.Dir {
			return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
	}
	e, err := f.root.FindEntry(name)
	if err != nil {
		if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrFileNotFound) {
			return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		return nil, nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	info := &entryInfo{name: path.Base(name), mode: goMode(e.Mode), when: f.when}
	if e.Mode.IsFile() {
		size, err := f.root.Size(name)
		if err != nil {
			return nil, nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		info.size = size
	}
	return info, e, nil
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
	info, _, err := f.lookup("readlink", name)
	if err != nil {
		return "", err
	}
	if info.mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	file, err := f.root.File(name)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	target, err := file.Contents()
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return target, nil
}

func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	info, _, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	t := f.root
	if name != "." {
		if t, err = f.root.Tree(name); err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
		}
	}
	out := make([]fs.DirEntry, 0, len(t.Entries))
	for _, e := range t.Entries {
		ei := &entryInfo{name: e.Name, mode: goMode(e.Mode), when: f.when}
		if e.Mode.IsFile() {
			if size, err := t.Size(e.Name); err == nil {
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
	info, _, err := f.lookup("open", name)
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
	file, err := f.root.File(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	r, err := file.Reader()
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
