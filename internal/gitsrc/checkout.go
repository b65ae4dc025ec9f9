package gitsrc

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// OpenCheckout opens the git repository holding dir (a working tree, or a
// linked worktree) for reading commits on a signer's machine: `writ
// approve` reads the trusted and the changed trees, and a deleted
// playbook's last content, from it. Nothing is fetched or written.
func OpenCheckout(dir string) (*Source, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("gitsrc: open the repository at %s: %w", dir, err)
	}
	opts := Options{URL: dir}
	opts.setDefaults()
	return &Source{opts: opts, repo: repo}, nil
}

// Resolve names a commit by revision (a commit id, a branch, a tag,
// HEAD, HEAD~1, ...).
func (s *Source) Resolve(rev string) (string, error) {
	h, err := s.repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", fmt.Errorf("gitsrc: revision %q: %w", rev, err)
	}
	return h.String(), nil
}

// Origin is the URL of the remote named origin ("" when there is none).
func (s *Source) Origin() string {
	r, err := s.repo.Remote("origin")
	if err != nil || len(r.Config().URLs) == 0 {
		return ""
	}
	return r.Config().URLs[0]
}

// LastContent returns the content a path had in the latest commit that
// held it, walking first parents from commit (at most limit commits):
// the version a deletion removes. fs.ErrNotExist when none held it.
func (s *Source) LastContent(commit, path string, limit int) (data []byte, at string, err error) {
	sha := commit
	for range limit {
		fsys, err := s.FS(sha)
		if err != nil {
			return nil, "", err
		}
		b, err := fs.ReadFile(fsys, path)
		if err == nil {
			return b, sha, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("gitsrc: %s at %.12s: %w", path, sha, err)
		}
		c, err := s.CommitInfo(sha)
		if err != nil {
			return nil, "", err
		}
		if c.Parent == "" {
			break
		}
		sha = c.Parent
	}
	return nil, "", fmt.Errorf("gitsrc: %s in the %d commits up to %.12s: %w", path, limit, commit, fs.ErrNotExist)
}
