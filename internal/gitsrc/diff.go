package gitsrc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// ChangeType says how a file changed.
type ChangeType string

// Change types.
const (
	Added    ChangeType = "added"
	Modified ChangeType = "modified"
	Deleted  ChangeType = "deleted"
)

// Change is one changed file between two commits.
type Change struct {
	Path string
	Type ChangeType
}

// Changes lists the files (blobs, symlinks, submodules) that differ
// between two commits (from "" means the empty tree), without rename
// detection: a rename is a delete and an add. Equal subtrees are skipped.
//
// Every entry that to adds or changes is judged: a bad name, mode, order
// or duplicate, a tree nested deeper than Options.MaxTreeDepth or more
// than Options.MaxTreeEntries entries read fail with a *MalformedError
// (ErrMalformed) naming to. What to keeps unchanged from from is not
// judged again, and an entry of from that writ would not read is never
// listed as deleted: it was never read as anything.
func (s *Source) Changes(ctx context.Context, from, to string) ([]Change, error) {
	var fromRoot plumbing.Hash
	if from != "" {
		c, err := s.commit(from)
		if err != nil {
			return nil, err
		}
		fromRoot = c.TreeHash
	}
	c, err := s.commit(to)
	if err != nil {
		return nil, err
	}
	d := &differ{s: s, ctx: ctx, commit: to, budget: s.opts.MaxTreeEntries}
	if err := d.diff("", fromRoot, c.TreeHash, 0); err != nil {
		return nil, err
	}
	return d.out, nil
}

// ListFiles lists the files under dir ("" for the whole tree) at a commit,
// judged as Changes judges what a commit adds: every entry on the way and
// below. A dir that does not exist lists nothing.
func (s *Source) ListFiles(ctx context.Context, sha, dir string) ([]string, error) {
	c, err := s.commit(sha)
	if err != nil {
		return nil, err
	}
	h, depth := c.TreeHash, 0
	if dir != "" {
		var found bool
		if h, found, err = s.walkTo(sha, c.TreeHash, dir); err != nil || !found {
			return nil, err
		}
		depth = strings.Count(dir, "/") + 1
	}
	d := &differ{s: s, ctx: ctx, commit: sha, budget: s.opts.MaxTreeEntries}
	if err := d.diff(dir, plumbing.ZeroHash, h, depth); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(d.out))
	for _, ch := range d.out {
		out = append(out, ch.Path)
	}
	return out, nil
}

// differ compares two trees, judging what the newer one adds.
type differ struct {
	s      *Source
	ctx    context.Context
	commit string
	// budget is how many more entries may be read.
	budget int
	out    []Change
}

// read decodes a tree, counting its entries against the budget. A tree
// of from that does not decode is read as empty (side "from"): the commit
// that wrote it was refused for it, and nothing in it was ever read.
func (d *differ) read(h plumbing.Hash, path string, from bool) ([]entry, error) {
	if h.IsZero() {
		return nil, nil
	}
	if err := d.ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := d.s.readTree(h)
	if err != nil {
		var bad *MalformedError
		if from && errors.As(err, &bad) {
			return nil, nil
		}
		return nil, locate(err, d.commit, path)
	}
	d.budget -= len(entries)
	if d.budget < 0 {
		return nil, malformed(d.commit, path, ProblemTooLarge,
			fmt.Sprintf("more than %d tree entries to read; writ reads at most that many per commit", d.s.opts.MaxTreeEntries))
	}
	return entries, nil
}

// diff compares the trees at path (depth directories down), the ones a
// commit's parent and the commit hold there; a zero hash is an absent
// tree.
func (d *differ) diff(path string, fromH, toH plumbing.Hash, depth int) error {
	if fromH == toH {
		return nil
	}
	if depth > d.s.opts.MaxTreeDepth {
		return malformed(d.commit, path, ProblemTooDeep, fmt.Sprintf("directories nested more than %d deep", d.s.opts.MaxTreeDepth))
	}
	fromT, err := d.read(fromH, path, true)
	if err != nil {
		return err
	}
	toT, err := d.read(toH, path, false)
	if err != nil {
		return err
	}
	kept := make(map[entryKey]bool, len(fromT))
	for i := range fromT {
		kept[fromT[i].key()] = true
	}
	if i, p, why := firstProblem(toT, func(i int) bool { return !kept[toT[i].key()] }); i >= 0 {
		return malformed(d.commit, join(path, toT[i].name), p, why)
	}
	// What is left to compare is well-formed: an entry with a problem, or
	// a name held twice, is one to keeps from from, where it was refused
	// already; neither is read, so neither is listed.
	fromBy, toBy := usable(fromT), usable(toT)
	names := make([]string, 0, len(fromBy)+len(toBy))
	for n := range fromBy {
		names = append(names, n)
	}
	for n := range toBy {
		if _, ok := fromBy[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		f, inFrom := fromBy[n]
		t, inTo := toBy[n]
		p := join(path, n)
		var fromDir, toDir plumbing.Hash
		if inFrom && f.isDir() {
			fromDir = f.hash
		}
		if inTo && t.isDir() {
			toDir = t.hash
		}
		switch {
		case inFrom && inTo && !f.isDir() && !t.isDir():
			if f.hash != t.hash || f.mode != t.mode {
				d.out = append(d.out, Change{Path: p, Type: Modified})
			}
			continue
		case inFrom && !f.isDir():
			d.out = append(d.out, Change{Path: p, Type: Deleted})
		case inTo && !t.isDir():
			// Below: the directory of from goes first.
		}
		if err := d.diff(p, fromDir, toDir, depth+1); err != nil {
			return err
		}
		if inTo && !t.isDir() {
			d.out = append(d.out, Change{Path: p, Type: Added})
		}
	}
	return nil
}

// usable indexes the entries writ reads by name: none with a problem, and
// no name held twice (FS reads neither).
func usable(entries []entry) map[string]*entry {
	out := make(map[string]*entry, len(entries))
	twice := map[string]bool{}
	for i := range entries {
		e := &entries[i]
		if _, dup := out[e.name]; dup {
			twice[e.name] = true
		}
		out[e.name] = e
	}
	for n, e := range out {
		if twice[n] || e.problem != "" {
			delete(out, n)
		}
	}
	return out
}
