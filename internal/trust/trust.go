// Package trust holds what decides whether anything runs: the policy set
// and the approvers keyring of the trusted commit (the commit whose
// policies/ and .writ/ writ has adopted), and the transition a change to
// them makes — the subjects an admin approval of that change covers and
// the content each replaces. The reconciler and `writ approve` compute a
// transition with the same function, so what an admin signs is exactly
// what the server checks (docs/design.md, trust rules 1, 7 and 8).
package trust

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
)

// Paths of what decides whether playbooks run.
const (
	PoliciesDir   = "policies"
	WritDir       = ".writ"
	ApproversPath = approval.KeyringPath
)

// IsTrustPath reports whether a repository path is part of what decides:
// policies/ or anything under .writ/.
func IsTrustPath(p string) bool {
	return p == PoliciesDir || strings.HasPrefix(p, PoliciesDir+"/") || p == WritDir || strings.HasPrefix(p, WritDir+"/")
}

// Trust is what a commit's tree says decides: its policy set and its
// approvers keyring.
type Trust struct {
	// Commit is the commit the trust was read from.
	Commit string
	// Policies is never nil: a set that does not load is fail-closed (every
	// decision denies) and PolicyErr says why.
	Policies  *policy.Set
	PolicyErr error
	// PolicyDigest is the digest statements about a change to what decides
	// cite as the trusted policy set (PolicyDigest of the tree): the set's
	// own digest when it loads, a digest of what is wrong when it does not,
	// so that the admins can still sign the change that mends it.
	PolicyDigest string
	// Keyring is nil when the approvers file is missing or invalid
	// (KeyringErr): then no approval can count.
	Keyring    *approval.Keyring
	KeyringErr error
}

// LoadOptions configure Load.
type LoadOptions struct {
	// DefaultPolicies are used when the tree has no policies/ directory (the
	// embedded defaults). Nil: such a tree denies everything.
	DefaultPolicies fs.FS
	// CompileTimeout bounds compiling the policies (policy.Options).
	CompileTimeout time.Duration
}

// ErrNoApprovers means the tree has no approvers file.
var ErrNoApprovers = errors.New("the repository has no " + ApproversPath)

// Load reads the policy set and the keyring of a commit's tree. Broken
// policies give a fail-closed set and a broken approvers file no keyring;
// neither is an error of Load, which does no I/O beyond the tree.
func Load(commit string, tree fs.FS, opts LoadOptions) *Trust {
	t := &Trust{Commit: commit}
	t.Policies, t.PolicyErr = loadPolicies(tree, opts)
	t.Keyring, t.KeyringErr = LoadKeyring(tree)
	t.PolicyDigest = TrustedPolicyDigest(tree, opts.DefaultPolicies)
	return t
}

func hasPolicies(tree fs.FS) bool {
	fi, err := fs.Stat(tree, PoliciesDir)
	return err == nil && fi.IsDir()
}

func loadPolicies(tree fs.FS, opts LoadOptions) (*policy.Set, error) {
	po := policy.Options{Root: PoliciesDir, CompileTimeout: opts.CompileTimeout}
	if hasPolicies(tree) {
		return policy.LoadFS(tree, PoliciesDir, po)
	}
	if opts.DefaultPolicies == nil {
		set, err := policy.LoadFS(tree, PoliciesDir, po)
		if err == nil {
			err = errors.New("the repository has no policies/ and no default policies are configured")
		}
		return set, err
	}
	po.Root = "policies (embedded defaults)"
	return policy.LoadFS(opts.DefaultPolicies, ".", po)
}

// LoadKeyring reads the approvers file of a tree strictly.
func LoadKeyring(tree fs.FS) (*approval.Keyring, error) {
	data, prob, err := playbook.ReadFile(tree, ApproversPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoApprovers
	}
	if err != nil {
		return nil, err
	}
	if prob != nil {
		return nil, diag.Problems{*prob}
	}
	k, problems := approval.ParseKeyring(ApproversPath, data)
	if problems != nil {
		return nil, problems
	}
	return k, nil
}

// Change is a change to what decides: the subjects an admin approval must
// cover (approval.PoliciesSubject with the new policy set's digest, and
// every file under .writ/ that differs, by its new content) and the
// transition it makes from the trusted commit.
type Change struct {
	Subjects   []approval.Subject
	Transition approval.Transition
}

// Digests lists the subjects' digests (to find the statements about them).
func (c *Change) Digests() []string {
	out := make([]string, 0, len(c.Subjects))
	for _, s := range c.Subjects {
		out = append(out, s.Digest)
	}
	return out
}

// Diff compares what decides in the trusted tree (base, read at
// trustedCommit) and in a changed one (head). It returns nil when they
// decide alike: the same policy set digest and the same files under
// .writ/. defaults are the embedded policies a tree without policies/ is
// judged by. A policy set that cannot be read still has a digest (of what
// is wrong with it), so an unreadable change is held, never an error.
func Diff(ctx context.Context, trustedCommit string, base, head, defaults fs.FS) (*Change, error) {
	c := &Change{Transition: approval.Transition{TrustedCommit: trustedCommit, Replaces: map[string]string{}}}
	oldSet, err := PolicyDigest(base, defaults)
	if err != nil {
		return nil, err
	}
	newSet, err := PolicyDigest(head, defaults)
	if err != nil {
		return nil, err
	}
	if oldSet != newSet {
		s := approval.PolicySetSubject(newSet)
		c.Subjects = append(c.Subjects, s)
		c.Transition.Replaces[s.Path] = approval.PolicySetSubject(oldSet).Digest
	}
	oldFiles, err := writFiles(base)
	if err != nil {
		return nil, err
	}
	newFiles, err := writFiles(head)
	if err != nil {
		return nil, err
	}
	var paths []string
	for p := range newFiles {
		paths = append(paths, p)
	}
	for p := range oldFiles {
		if _, ok := newFiles[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if oldFiles[p] == newFiles[p] {
			continue
		}
		s := approval.FileSubject(p, []byte(newFiles[p]))
		c.Subjects = append(c.Subjects, s)
		c.Transition.Replaces[p] = approval.FileSubject(p, []byte(oldFiles[p])).Digest
	}
	if len(c.Subjects) == 0 {
		return nil, nil
	}
	return c, nil
}

// PolicyDigest is the digest of the policy set a tree is judged by: its
// policies/ (policy.DigestFS), the defaults when it has none, or, when its
// files cannot be read as a policy set, a digest of what is wrong (so the
// change can be held and shown, never adopted by accident).
func PolicyDigest(tree, defaults fs.FS) (string, error) {
	if !hasPolicies(tree) {
		if defaults == nil {
			return unreadable("no policies/ and no defaults"), nil
		}
		return policy.DigestFS(defaults, ".")
	}
	d, err := policy.DigestFS(tree, PoliciesDir)
	var problems diag.Problems
	if errors.As(err, &problems) {
		return unreadable(problems.Error()), nil
	}
	return d, err
}

// TrustedPolicyDigest is the digest a statement about a change to what
// decides cites as the trusted policy set (Trust.PolicyDigest): never an
// error, so that a broken trusted set can still be mended with signatures.
func TrustedPolicyDigest(tree, defaults fs.FS) string {
	d, err := PolicyDigest(tree, defaults)
	if err != nil {
		return unreadable(err.Error())
	}
	return d
}

func unreadable(what string) string {
	h := sha256.Sum256([]byte("writ-unreadable-policy-set\n" + what))
	return hex.EncodeToString(h[:])
}

// writFiles reads every regular file under .writ/ of a tree.
func writFiles(tree fs.FS) (map[string]string, error) {
	out := map[string]string{}
	err := fs.WalkDir(tree, WritDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == WritDir {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, prob, err := playbook.ReadFile(tree, p)
		if err != nil {
			return err
		}
		if prob != nil {
			// A symlink or an oversized file still changes the tree: cover
			// it by a digest of its description.
			out[p] = "unreadable: " + prob.Message
			return nil
		}
		out[p] = string(data)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", WritDir, err)
	}
	return out, nil
}
