package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
)

// Paths of what decides whether playbooks run (trust rule 1).
const (
	policiesDir  = "policies"
	writDir      = ".writ"
	approversRel = ".writ/approvers.yaml"
)

// trust is what a commit's tree says decides: its policy set and its
// approvers keyring.
type trust struct {
	commit       string
	policies     *policy.Set
	policyErr    error // the set is fail-closed when set
	keyring      *approval.Keyring
	keyringErr   error // nil keyring: nobody can approve
	policiesHash string
	writHash     string
	// retryAt, when set, is when the cached trust goes stale: a policy set
	// that did not compile in time (policy.ErrCompileTimeout) may compile
	// on a less busy machine, and must not deny everything for good, but a
	// pull request's slow set must not be recompiled at every event either.
	retryAt time.Time
}

// compileRetry is how long a policy set that did not compile in time stays
// cached before writ tries again.
const compileRetry = time.Minute

// metaKey identifies the content of policies/ and .writ/ at a commit: equal
// keys mean equal trust, whatever the commit.
func (t *trust) metaKey() string { return t.policiesHash + "/" + t.writHash }

type trustCache struct {
	mu    sync.Mutex
	max   int
	order []string
	byKey map[string]*trust
}

func newTrustCache(n int) *trustCache {
	return &trustCache{max: n, byKey: map[string]*trust{}}
}

func (c *trustCache) get(key string) *trust {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[key]
}

func (c *trustCache) put(key string, t *trust) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; ok {
		c.byKey[key] = t
		return
	}
	if len(c.order) >= c.max {
		delete(c.byKey, c.order[0])
		c.order = c.order[1:]
	}
	c.order = append(c.order, key)
	c.byKey[key] = t
}

// metaHashes returns the tree hashes of policies/ and .writ/ at a commit.
func (r *Reconciler) metaHashes(sha string) (string, string, error) {
	ph, err := r.opts.Source.TreeHash(sha, policiesDir)
	if err != nil {
		return "", "", err
	}
	wh, err := r.opts.Source.TreeHash(sha, writDir)
	if err != nil {
		return "", "", err
	}
	return ph, wh, nil
}

// trustAt loads (or reuses) the policies and keyring of a commit's tree.
// Broken policies give a fail-closed set; a broken approvers file gives no
// keyring (nobody can approve); neither is an error of the pass.
func (r *Reconciler) trustAt(ctx context.Context, sha string) (*trust, error) {
	ph, wh, err := r.metaHashes(sha)
	if err != nil {
		return nil, err
	}
	key := ph + "/" + wh
	if t := r.trust.get(key); t != nil && (t.retryAt.IsZero() || r.opts.Now().Before(t.retryAt)) {
		c := *t
		c.commit = sha
		return &c, nil
	}
	fsys, err := r.opts.Source.FS(sha)
	if err != nil {
		return nil, err
	}
	t := &trust{commit: sha, policiesHash: ph, writHash: wh}
	t.policies, t.policyErr = r.loadPolicies(fsys, ph != "")
	if t.policyErr != nil {
		r.log.WarnContext(ctx, "policies at the trusted commit do not load: every playbook is denied",
			slog.String("commit", sha), slog.Any("error", t.policyErr))
		if errors.Is(t.policyErr, policy.ErrCompileTimeout) {
			t.retryAt = r.opts.Now().Add(compileRetry)
		}
	}
	t.keyring, t.keyringErr = loadKeyring(fsys)
	if t.keyringErr != nil {
		r.log.WarnContext(ctx, "approvers file at the trusted commit is not usable: no approval can count",
			slog.String("commit", sha), slog.Any("error", t.keyringErr))
	}
	r.trust.put(key, t)
	return t, nil
}

func (r *Reconciler) loadPolicies(tree fs.FS, inTree bool) (*policy.Set, error) {
	opts := policy.Options{Root: policiesDir, CompileTimeout: r.opts.PolicyCompileTimeout}
	if inTree {
		return policy.LoadFS(tree, policiesDir, opts)
	}
	if r.opts.DefaultPolicies == nil {
		set, err := policy.LoadFS(tree, policiesDir, opts)
		if err == nil {
			err = errors.New("the repository has no policies/ and no default policies are configured")
		}
		return set, err
	}
	opts.Root = "policies (embedded defaults)"
	return policy.LoadFS(r.opts.DefaultPolicies, ".", opts)
}

var errNoApprovers = errors.New("the repository has no " + approversRel)

func loadKeyring(tree fs.FS) (*approval.Keyring, error) {
	data, prob, err := playbook.ReadFile(tree, approversRel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoApprovers
	}
	if err != nil {
		return nil, err
	}
	if prob != nil {
		return nil, diag.Problems{*prob}
	}
	k, problems := approval.ParseKeyring(approversRel, data)
	if problems != nil {
		return nil, problems
	}
	return k, nil
}

// newPolicyDigest is the digest a meta-change approval must cite for the
// policies at a commit.
func (r *Reconciler) newPolicyDigest(sha string) (string, error) {
	fsys, err := r.opts.Source.FS(sha)
	if err != nil {
		return "", err
	}
	if ph, _ := r.opts.Source.TreeHash(sha, policiesDir); ph == "" {
		if r.opts.DefaultPolicies == nil {
			return "", fmt.Errorf("no policies at %s", sha)
		}
		return policy.DigestFS(r.opts.DefaultPolicies, ".")
	}
	return policy.DigestFS(fsys, policiesDir)
}
