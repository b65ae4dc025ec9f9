// Package gitsrc reads the content repository with go-git: it opens a local
// repository or keeps a bare clone of a remote one, fetches the tracked
// branch, walks new commits in first-parent order, lists what each changed,
// tells fast-forwards from rewritten history, and serves a commit's tree as
// a read-only fs.FS.
//
// Commits are untrusted: gitsrc decodes their trees itself and reports
// content it will not read (unsafe names, bad modes, duplicate or unsorted
// entries, trees too deep or too large) as a *MalformedError wrapping
// ErrMalformed, which callers tell from errors of the repository or the
// network with errors.Is.
package gitsrc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Options configures a source.
type Options struct {
	// URL is a remote (https://, ssh://, git@host:path, file://) or the path
	// of a local repository (working tree or bare), which is read in place.
	URL string
	// Branch is the tracked branch. Default "main".
	Branch string
	// CacheDir is where a remote is cloned (bare). Required for remotes.
	CacheDir string
	// Username and Password (a token) for HTTPS. PasswordFunc, when set,
	// is asked for the password before every clone and fetch: for tokens
	// that expire, such as GitHub App installation tokens.
	Username     string
	Password     string
	PasswordFunc func(ctx context.Context) (string, error)
	// SSHKeyFile (and SSHKeyPassphrase) for SSH; KnownHostsFile checks the
	// server's host key (required for SSH: no trust on first use).
	SSHKeyFile       string
	SSHKeyPassphrase string
	KnownHostsFile   string
	// Timeout bounds one clone or fetch. Default 2m.
	Timeout time.Duration
	// MaxTreeEntries bounds the tree entries read for one diff (Changes,
	// ListFiles) or listed through one FS: git shares identical subtrees,
	// so a small push can describe billions of paths. Past it the content
	// is malformed (ProblemTooLarge). Default DefaultMaxTreeEntries.
	MaxTreeEntries int
	// MaxTreeDepth bounds how deep directories nest (ProblemTooDeep past
	// it). Default DefaultMaxTreeDepth.
	MaxTreeDepth int
}

func (o *Options) setDefaults() {
	if o.Branch == "" {
		o.Branch = "main"
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.MaxTreeEntries == 0 {
		o.MaxTreeEntries = DefaultMaxTreeEntries
	}
	if o.MaxTreeDepth == 0 {
		o.MaxTreeDepth = DefaultMaxTreeDepth
	}
}

var branchRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._/-]{1,200}$`) })

func (o *Options) validate() error {
	if o.URL == "" {
		return errors.New("gitsrc: repository URL or path is required")
	}
	if !branchRE().MatchString(o.Branch) || strings.Contains(o.Branch, "..") || strings.HasPrefix(o.Branch, "-") {
		return fmt.Errorf("gitsrc: invalid branch name %q", o.Branch)
	}
	if !o.local() && o.CacheDir == "" {
		return errors.New("gitsrc: a cache directory is required to clone a remote repository")
	}
	if o.MaxTreeEntries < 0 || o.MaxTreeDepth < 0 {
		return fmt.Errorf("gitsrc: tree limits must not be negative (entries %d, depth %d)", o.MaxTreeEntries, o.MaxTreeDepth)
	}
	if o.isSSH() && o.KnownHostsFile == "" {
		return errors.New("gitsrc: SSH needs a known_hosts file (host keys are never trusted on first use)")
	}
	return nil
}

// local reports whether URL names a repository on this machine read in
// place.
func (o *Options) local() bool {
	if strings.Contains(o.URL, "://") {
		return false
	}
	if scpLike(o.URL) {
		return false
	}
	return true
}

func (o *Options) isSSH() bool {
	return strings.HasPrefix(o.URL, "ssh://") || scpLike(o.URL)
}

// scpLike matches git@host:path (no scheme, a colon before any slash).
func scpLike(u string) bool {
	i := strings.Index(u, ":")
	return i > 0 && !strings.Contains(u[:i], "/") && !strings.Contains(u, "://")
}

// Source is a repository that follows one branch.
type Source struct {
	opts   Options
	repo   *git.Repository
	remote bool
	mu     sync.Mutex // serializes fetches
}

// Open opens a local repository, or clones (bare, single branch) or
// re-opens the clone of a remote one in CacheDir.
func Open(ctx context.Context, opts Options) (*Source, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Source{opts: opts, remote: !opts.local()}
	if !s.remote {
		// EnableDotGitCommonDir: a linked worktree (git worktree add)
		// keeps its branches and objects in the main repository's .git.
		repo, err := git.PlainOpenWithOptions(opts.URL, &git.PlainOpenOptions{DetectDotGit: false, EnableDotGitCommonDir: true})
		if err != nil {
			return nil, fmt.Errorf("gitsrc: open %s: %w", opts.URL, err)
		}
		s.repo = repo
		return s, nil
	}
	dir := filepath.Join(opts.CacheDir, "repo.git")
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("gitsrc: %w", err)
		}
		auth, aerr := s.auth(ctx)
		if aerr != nil {
			return nil, aerr
		}
		cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
		repo, err = git.PlainCloneContext(cctx, dir, true, &git.CloneOptions{
			URL:           opts.URL,
			Auth:          auth,
			ReferenceName: plumbing.NewBranchReferenceName(opts.Branch),
			SingleBranch:  true,
			Tags:          git.NoTags,
		})
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("gitsrc: clone %s: %w", RedactURL(opts.URL), redactErr(err, opts))
		}
	} else if err != nil {
		return nil, fmt.Errorf("gitsrc: open clone %s: %w", dir, err)
	}
	s.repo = repo
	return s, nil
}

// Repository is the underlying go-git repository.
func (s *Source) Repository() *git.Repository { return s.repo }

// Branch is the tracked branch.
func (s *Source) Branch() string { return s.opts.Branch }

func (s *Source) auth(ctx context.Context) (transport.AuthMethod, error) {
	switch {
	case s.opts.isSSH():
		if s.opts.SSHKeyFile == "" {
			return nil, errors.New("gitsrc: SSH needs a key file")
		}
		keys, err := gitssh.NewPublicKeysFromFile("git", s.opts.SSHKeyFile, s.opts.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("gitsrc: SSH key %s: %w", s.opts.SSHKeyFile, err)
		}
		cb, err := knownhosts.New(s.opts.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("gitsrc: known_hosts %s: %w", s.opts.KnownHostsFile, err)
		}
		keys.HostKeyCallback = ssh.HostKeyCallback(cb)
		return keys, nil
	case s.opts.PasswordFunc != nil:
		pw, err := s.opts.PasswordFunc(ctx)
		if err != nil {
			return nil, fmt.Errorf("gitsrc: repository credentials: %w", err)
		}
		return &http.BasicAuth{Username: cmpOr(s.opts.Username, "x-access-token"), Password: pw}, nil
	case s.opts.Password != "":
		return &http.BasicAuth{Username: cmpOr(s.opts.Username, "x-access-token"), Password: s.opts.Password}, nil
	}
	return nil, nil
}

// Fetch updates the clone of a remote (a no-op for a local repository) and
// returns the tracked branch's head. The local branch follows the remote even
// through a force push: history checks compare against what writ processed,
// not against the ref.
func (s *Source) Fetch(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.remote {
		auth, err := s.auth(ctx)
		if err != nil {
			return "", err
		}
		cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		defer cancel()
		ref := plumbing.NewBranchReferenceName(s.opts.Branch)
		err = s.repo.FetchContext(cctx, &git.FetchOptions{
			RemoteName: "origin",
			RefSpecs:   []config.RefSpec{config.RefSpec(fmt.Sprintf("+%s:%s", ref, ref))},
			Auth:       auth,
			Tags:       git.NoTags,
			Force:      true,
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return "", fmt.Errorf("gitsrc: fetch %s: %w", RedactURL(s.opts.URL), redactErr(err, s.opts))
		}
	}
	return s.head()
}

func (s *Source) head() (string, error) {
	ref, err := s.repo.Reference(plumbing.NewBranchReferenceName(s.opts.Branch), true)
	if err != nil {
		return "", fmt.Errorf("gitsrc: branch %s: %w", s.opts.Branch, err)
	}
	return ref.Hash().String(), nil
}

// FetchRef fetches one extra ref of a remote (e.g. refs/pull/42/head) into
// refs/writ/fetched/..., and returns the commit it points to. For a local
// repository it resolves the ref in place.
func (s *Source) FetchRef(ctx context.Context, name string) (string, error) {
	if !strings.HasPrefix(name, "refs/") || !branchRE().MatchString(strings.TrimPrefix(name, "refs/")) || strings.Contains(name, "..") {
		return "", fmt.Errorf("gitsrc: invalid ref %q", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	local := plumbing.ReferenceName(name)
	if s.remote {
		auth, err := s.auth(ctx)
		if err != nil {
			return "", err
		}
		local = plumbing.ReferenceName("refs/writ/fetched/" + strings.TrimPrefix(name, "refs/"))
		cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		defer cancel()
		err = s.repo.FetchContext(cctx, &git.FetchOptions{
			RemoteName: "origin",
			RefSpecs:   []config.RefSpec{config.RefSpec(fmt.Sprintf("+%s:%s", name, local))},
			Auth:       auth,
			Tags:       git.NoTags,
			Force:      true,
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return "", fmt.Errorf("gitsrc: fetch %s from %s: %w", name, RedactURL(s.opts.URL), redactErr(err, s.opts))
		}
	}
	ref, err := s.repo.Reference(local, true)
	if err != nil {
		return "", fmt.Errorf("gitsrc: ref %s: %w", name, err)
	}
	return ref.Hash().String(), nil
}

func (s *Source) commit(sha string) (*object.Commit, error) {
	if !plumbing.IsHash(sha) {
		return nil, fmt.Errorf("gitsrc: %q is not a commit id", sha)
	}
	c, err := s.repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return nil, fmt.Errorf("gitsrc: commit %s: %w", sha, err)
	}
	return c, nil
}

// Commit describes one commit.
type Commit struct {
	SHA     string
	Parent  string // first parent; "" for a root commit
	Parents int
	Subject string
	Author  string // as recorded in git: informative only, never trusted
	Time    time.Time
}

func describe(c *object.Commit) Commit {
	out := Commit{SHA: c.Hash.String(), Parents: c.NumParents(), Author: c.Author.Email, Time: c.Committer.When.UTC()}
	if len(c.ParentHashes) > 0 {
		out.Parent = c.ParentHashes[0].String()
	}
	out.Subject, _, _ = strings.Cut(c.Message, "\n")
	return out
}

// CommitInfo describes one commit by id.
func (s *Source) CommitInfo(sha string) (Commit, error) {
	c, err := s.commit(sha)
	if err != nil {
		return Commit{}, err
	}
	return describe(c), nil
}

// IsAncestor reports whether old is new or an ancestor of new: whether
// moving the branch from old to new was a fast-forward.
func (s *Source) IsAncestor(ctx context.Context, old, new string) (bool, error) {
	if old == new {
		return true, nil
	}
	o, err := s.commit(old)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return false, nil // a commit this repository never had cannot be an ancestor
	}
	if err != nil {
		return false, err
	}
	n, err := s.commit(new)
	if err != nil {
		return false, err
	}
	ok, err := o.IsAncestor(n)
	if err != nil {
		return false, fmt.Errorf("gitsrc: is %s an ancestor of %s: %w", old, new, err)
	}
	return ok, nil
}

// ErrNotFastForward means the branch moved to a commit that does not
// descend from the last processed one (force push, rewritten history).
var ErrNotFastForward = errors.New("branch history was rewritten (not a fast-forward)")

// FirstParentChain lists the commits from old (exclusive) to new
// (inclusive), oldest first, following first parents: for a merged pull
// request that is the merge commit, judged against the branch before it.
// old "" lists only new. It fails with ErrNotFastForward when old is not on
// new's first-parent chain, and stops after limit commits.
func (s *Source) FirstParentChain(ctx context.Context, old, new string, limit int) ([]Commit, error) {
	var chain []Commit
	c, err := s.commit(new)
	if err != nil {
		return nil, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.Hash.String() == old {
			break
		}
		chain = append(chain, describe(c))
		if old == "" {
			break
		}
		if c.NumParents() == 0 {
			return nil, fmt.Errorf("gitsrc: %s is not on the first-parent history of %s: %w", old, new, ErrNotFastForward)
		}
		if limit > 0 && len(chain) > limit {
			return nil, fmt.Errorf("gitsrc: more than %d commits between %s and %s", limit, old, new)
		}
		c, err = c.Parent(0)
		if err != nil {
			return nil, fmt.Errorf("gitsrc: parent of %s: %w", chain[len(chain)-1].SHA, err)
		}
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// MergeBase is the best common ancestor of two commits (the point a pull
// request's files are compared from).
func (s *Source) MergeBase(a, b string) (string, error) {
	ca, err := s.commit(a)
	if err != nil {
		return "", err
	}
	cb, err := s.commit(b)
	if err != nil {
		return "", err
	}
	bases, err := ca.MergeBase(cb)
	if err != nil {
		return "", fmt.Errorf("gitsrc: merge base of %s and %s: %w", a, b, err)
	}
	if len(bases) == 0 {
		return "", fmt.Errorf("gitsrc: %s and %s share no history", a, b)
	}
	return bases[0].Hash.String(), nil
}

// RedactURL removes credentials from a URL for messages and logs.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User(u.User.Username())
	if _, ok := u.User.Password(); !ok && u.User.Username() != "" {
		return u.String()
	}
	return u.String()
}

// redactErr strips any credential the transport may have echoed.
func redactErr(err error, o Options) error {
	msg := err.Error()
	for _, secret := range []string{o.Password, o.SSHKeyPassphrase} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
		}
	}
	if u, perr := url.Parse(o.URL); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
