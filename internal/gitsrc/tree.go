package gitsrc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// A commit's trees are untrusted input: anyone who can push writes them,
// and a bare repository accepts any tree object (git's receive.fsckObjects
// is off by default). writ therefore decodes trees itself, strictly, and
// every problem is an error of the commit (ErrMalformed), never a panic, a
// path outside the repository or an error of writ's infrastructure.

// ErrMalformed means a commit's content is something writ will not read:
// a tree entry with an unsafe name, an unknown mode, duplicate or unsorted
// entries, a tree nested too deep or too large, or an entry naming an
// object of the wrong type. It is a property of the commit: retrying does
// not help. Errors of this kind are *MalformedError values.
var ErrMalformed = errors.New("malformed git content")

// ErrUnsafePath is the ErrMalformed of a tree entry whose name could name
// something else than one file in its directory: "", ".", "..", ".git"
// (and the names Windows and macOS file systems take for it), a name
// holding a slash, a backslash or a control character, a name that is not
// UTF-8. errors.Is(err, ErrMalformed) holds for it too.
var ErrUnsafePath = fmt.Errorf("%w: unsafe path", ErrMalformed)

// Problem says what is wrong with a commit's content. It is stable: the
// audit log and checks carry it.
type Problem string

// Problems.
const (
	ProblemUnsafeName Problem = "unsafe_name"
	ProblemBadMode    Problem = "bad_mode"
	ProblemDuplicate  Problem = "duplicate_name"
	ProblemUnsorted   Problem = "unsorted_entries"
	ProblemTooDeep    Problem = "too_deep"
	ProblemTooLarge   Problem = "too_large"
	ProblemBadObject  Problem = "bad_object"
)

// MalformedError locates what is wrong with a commit's content.
type MalformedError struct {
	// Commit is the commit whose tree holds the problem.
	Commit string
	// Path is where in the tree, as git stores it ("" for the root). It
	// is untrusted: show it quoted (%q), as Error does. Names longer than
	// maxShownName bytes are cut.
	Path    string
	Problem Problem
	// Detail says it for people.
	Detail string
}

func (e *MalformedError) Error() string {
	where := "the root tree"
	if e.Path != "" {
		where = fmt.Sprintf("tree entry %q", e.Path)
	}
	return fmt.Sprintf("gitsrc: commit %.12s: %s: %s (%s)", e.Commit, where, e.Detail, e.Problem)
}

// Unwrap makes errors.Is(err, ErrMalformed) hold, and ErrUnsafePath for
// unsafe names.
func (e *MalformedError) Unwrap() error {
	if e.Problem == ProblemUnsafeName {
		return ErrUnsafePath
	}
	return ErrMalformed
}

// Limits of what writ reads from one tree. They bound the work a crafted
// tree can cause (git shares identical subtrees, so a small push can
// describe a tree of billions of paths).
const (
	// DefaultMaxTreeEntries is Options.MaxTreeEntries' default.
	DefaultMaxTreeEntries = 1_000_000
	// DefaultMaxTreeDepth is Options.MaxTreeDepth's default.
	DefaultMaxTreeDepth = 256
	// maxTreeBytes bounds one tree object.
	maxTreeBytes = 64 << 20
	// maxNameBytes bounds one entry's name (Linux allows 255).
	maxNameBytes = 4096
	// maxShownName bounds a name quoted in messages.
	maxShownName = 256
)

// entry is one decoded tree entry.
type entry struct {
	name string
	mode filemode.FileMode // canonical; 0 when bad
	hash plumbing.Hash
	// problem is what is wrong with the entry on its own (its name or its
	// mode), "" when nothing; detail says it for people.
	problem Problem
	detail  string
}

func (e *entry) isDir() bool { return e.problem == "" && e.mode == filemode.Dir }

// key identifies an entry by everything it holds.
type entryKey struct {
	name string
	mode filemode.FileMode
	hash plumbing.Hash
}

func (e *entry) key() entryKey { return entryKey{e.name, e.mode, e.hash} }

// sortName is the name git orders entries by: a directory's name is
// followed by "/".
func (e *entry) sortName() string {
	if e.mode == filemode.Dir {
		return e.name + "/"
	}
	return e.name
}

// modes are the tree entry modes writ reads, as git writes them; 100664
// and a zero-padded 040000 come from old git versions and are accepted,
// as git fsck accepts them.
var modes = map[string]filemode.FileMode{
	"40000":  filemode.Dir,
	"040000": filemode.Dir,
	"100644": filemode.Regular,
	"100664": filemode.Regular,
	"100755": filemode.Executable,
	"120000": filemode.Symlink,
	"160000": filemode.Submodule,
}

// parseTree decodes a tree object's content. An error (ProblemBadObject,
// without Commit and Path) means the bytes are not a tree at all; a
// problem of one entry (its name, its mode) is recorded in the entry, for
// the caller to judge: a problem in what a commit did not change is not
// that commit's.
func parseTree(data []byte) ([]entry, error) {
	var out []entry
	for len(data) > 0 {
		sp := bytes.IndexByte(data[:min(len(data), 8)], ' ')
		if sp < 0 {
			return nil, &MalformedError{Problem: ProblemBadObject, Detail: fmt.Sprintf("entry %d has no mode", len(out)+1)}
		}
		rawMode := string(data[:sp])
		data = data[sp+1:]
		nul := bytes.IndexByte(data, 0)
		if nul < 0 {
			return nil, &MalformedError{Problem: ProblemBadObject, Detail: fmt.Sprintf("entry %d has no end to its name", len(out)+1)}
		}
		name := string(data[:nul])
		data = data[nul+1:]
		if len(data) < len(plumbing.Hash{}) {
			return nil, &MalformedError{Problem: ProblemBadObject, Detail: fmt.Sprintf("entry %d has a truncated object id", len(out)+1)}
		}
		e := entry{name: name}
		copy(e.hash[:], data)
		data = data[len(e.hash):]
		if why := checkName(name); why != "" {
			e.problem, e.detail = ProblemUnsafeName, why
		} else if m, ok := modes[rawMode]; ok {
			e.mode = m
		} else {
			e.problem, e.detail = ProblemBadMode, fmt.Sprintf("mode %q is not one git writes", shorten(rawMode))
		}
		out = append(out, e)
	}
	return out, nil
}

// checkName says why a tree entry's name is unsafe, or "" when it is a
// plain file name.
func checkName(name string) string {
	switch {
	case name == "":
		return "the name is empty"
	case len(name) > maxNameBytes:
		return fmt.Sprintf("the name is longer than %d bytes", maxNameBytes)
	case !utf8.ValidString(name):
		return "the name is not UTF-8"
	case name == "." || name == "..":
		return fmt.Sprintf("%q names a directory itself or its parent", name)
	case strings.ContainsAny(name, `/\`):
		return "the name holds a path separator"
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "the name holds a control character"
	case isDotGit(name):
		return "the name is git's own directory (.git)"
	}
	return ""
}

// isDotGit reports whether a file system would take name for ".git":
// case-insensitive ones, NTFS (trailing dots and spaces, the short name
// git~1, alternate streams after ':') and HFS+ (ignored code points).
func isDotGit(name string) bool {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	name = strings.Map(func(r rune) rune {
		if hfsIgnored(r) {
			return -1
		}
		return r
	}, name)
	name = strings.ToLower(strings.TrimRight(name, ". "))
	return name == ".git" || name == "git~1"
}

// hfsIgnored are the code points HFS+ drops when it compares names.
func hfsIgnored(r rune) bool {
	switch {
	case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
		return true
	}
	return false
}

// firstProblem judges a tree's entries and returns the index of the first
// bad one and what is wrong (-1 when none). Only entries for which judged
// returns true are judged (nil: all); an order or duplicate problem is
// judged when either entry of the pair is.
func firstProblem(entries []entry, judged func(i int) bool) (int, Problem, string) {
	if judged == nil {
		judged = func(int) bool { return true }
	}
	seen := make(map[string]int, len(entries))
	for i := range entries {
		e := &entries[i]
		if judged(i) && e.problem != "" {
			return i, e.problem, e.detail
		}
		if j, dup := seen[e.name]; dup {
			if judged(i) || judged(j) {
				return i, ProblemDuplicate, "the directory holds this name twice"
			}
		} else {
			seen[e.name] = i
		}
		if i > 0 && entries[i-1].sortName() > e.sortName() && (judged(i) || judged(i-1)) {
			return i, ProblemUnsorted, "the directory's entries are not in git's order"
		}
	}
	return -1, "", ""
}

// readTree reads and decodes a tree object. A missing object is an error
// of the repository (receive-pack checks that a push is complete), not a
// MalformedError; an object of another type or too large is one, without
// Commit and Path, which the caller fills in.
func (s *Source) readTree(h plumbing.Hash) ([]entry, error) {
	obj, err := s.repo.Storer.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return nil, fmt.Errorf("gitsrc: tree %s: %w", h, err)
	}
	if obj.Type() != plumbing.TreeObject {
		return nil, &MalformedError{Problem: ProblemBadObject, Detail: fmt.Sprintf("names a %s where a tree belongs", obj.Type())}
	}
	if obj.Size() > maxTreeBytes {
		return nil, &MalformedError{Problem: ProblemTooLarge, Detail: fmt.Sprintf("the tree object is %d bytes; writ reads at most %d", obj.Size(), maxTreeBytes)}
	}
	rc, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("gitsrc: tree %s: %w", h, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxTreeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gitsrc: tree %s: %w", h, err)
	}
	return parseTree(data)
}

// locate fills in where a MalformedError happened; other errors pass.
func locate(err error, commit, path string) error {
	var me *MalformedError
	if errors.As(err, &me) && me.Commit == "" {
		me.Commit, me.Path = commit, shorten(path)
	}
	return err
}

// malformed makes a located MalformedError.
func malformed(commit, path string, p Problem, detail string) error {
	return &MalformedError{Commit: commit, Path: shorten(path), Problem: p, Detail: detail}
}

// shorten cuts an untrusted string for messages.
func shorten(s string) string {
	if len(s) <= maxShownName {
		return s
	}
	return s[:maxShownName] + "..."
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// find returns the entry named name in a decoded tree, or nil. A name held
// twice is ambiguous: an error.
func find(entries []entry, name string) (*entry, bool) {
	var found *entry
	for i := range entries {
		if entries[i].name == name {
			if found != nil {
				return nil, true
			}
			found = &entries[i]
		}
	}
	return found, false
}

// TreeHash returns the hash of the tree at path (e.g. "policies") in a
// commit, or "" when the path does not exist. Equal hashes mean equal
// content, which lets callers cache what they derive from a directory.
// Only the entries on the way to path are judged.
func (s *Source) TreeHash(sha, path string) (string, error) {
	c, err := s.commit(sha)
	if err != nil {
		return "", err
	}
	if path == "" || path == "." {
		return c.TreeHash.String(), nil
	}
	h, found, err := s.walkTo(sha, c.TreeHash, path)
	if err != nil || !found {
		return "", err
	}
	return h.String(), nil
}

// walkTo follows path (trusted, slash-separated) from a tree and returns
// the hash of what it names; found is false when it does not exist or goes
// through something that is not a directory.
func (s *Source) walkTo(commit string, root plumbing.Hash, path string) (plumbing.Hash, bool, error) {
	h := root
	parts := strings.Split(path, "/")
	dir := ""
	for i, part := range parts {
		entries, err := s.readTree(h)
		if err != nil {
			return plumbing.ZeroHash, false, locate(err, commit, dir)
		}
		e, dup := find(entries, part)
		here := join(dir, part)
		switch {
		case dup:
			return plumbing.ZeroHash, false, malformed(commit, here, ProblemDuplicate, "the directory holds this name twice")
		case e == nil:
			return plumbing.ZeroHash, false, nil
		case e.problem != "":
			return plumbing.ZeroHash, false, malformed(commit, here, e.problem, e.detail)
		case i < len(parts)-1 && !e.isDir():
			return plumbing.ZeroHash, false, nil
		}
		h, dir = e.hash, here
	}
	return h, true, nil
}
