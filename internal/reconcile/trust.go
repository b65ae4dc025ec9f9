package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/trust"
)

// Paths of what decides whether playbooks run.
const (
	policiesDir = trust.PoliciesDir
	writDir     = trust.WritDir
)

// trusted is what a commit's tree says decides (trust.Trust), with the tree
// hashes it was read from.
type trusted struct {
	*trust.Trust
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
func (t *trusted) metaKey() string { return t.policiesHash + "/" + t.writHash }

type trustCache struct {
	mu    sync.Mutex
	max   int
	order []string
	byKey map[string]*trusted
}

func newTrustCache(n int) *trustCache {
	return &trustCache{max: n, byKey: map[string]*trusted{}}
}

func (c *trustCache) get(key string) *trusted {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[key]
}

func (c *trustCache) put(key string, t *trusted) {
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
	ph, err := r.opts.Source.TreeHash(sha, trust.PoliciesDir)
	if err != nil {
		return "", "", err
	}
	wh, err := r.opts.Source.TreeHash(sha, trust.WritDir)
	if err != nil {
		return "", "", err
	}
	return ph, wh, nil
}

// trustAt loads (or reuses) the policies and keyring of a commit's tree.
// Broken policies give a fail-closed set; a broken approvers file gives no
// keyring (nobody can approve); neither is an error of the pass.
func (r *Reconciler) trustAt(ctx context.Context, sha string) (*trusted, error) {
	ph, wh, err := r.metaHashes(sha)
	if err != nil {
		return nil, err
	}
	key := ph + "/" + wh
	if t := r.trust.get(key); t != nil && (t.retryAt.IsZero() || r.opts.Now().Before(t.retryAt)) {
		c := *t
		tc := *t.Trust
		tc.Commit = sha
		c.Trust = &tc
		return &c, nil
	}
	fsys, err := r.opts.Source.FS(sha)
	if err != nil {
		return nil, err
	}
	t := &trusted{
		Trust:        trust.Load(sha, fsys, trust.LoadOptions{DefaultPolicies: r.opts.DefaultPolicies, CompileTimeout: r.opts.PolicyCompileTimeout}),
		policiesHash: ph, writHash: wh,
	}
	if t.PolicyErr != nil {
		r.log.WarnContext(ctx, "policies at the trusted commit do not load: every playbook is denied",
			slog.String("commit", sha), slog.Any("error", t.PolicyErr))
		if errors.Is(t.PolicyErr, policy.ErrCompileTimeout) {
			t.retryAt = r.opts.Now().Add(compileRetry)
		}
	}
	if t.KeyringErr != nil {
		r.log.WarnContext(ctx, "approvers file at the trusted commit is not usable: no approval can count",
			slog.String("commit", sha), slog.Any("error", t.KeyringErr))
	}
	r.trust.put(key, t)
	return t, nil
}

// currentTrust is the trust in force now: the adopted commit's.
func (r *Reconciler) currentTrust(ctx context.Context) (*trusted, error) {
	st, err := r.opts.Store.RepoState(ctx)
	if err != nil {
		return nil, err
	}
	return r.trustAt(ctx, st.AdoptedSHA)
}

// KeyringInForce is the approvers file in force (the adopted commit's):
// whom notifications reach. It is nil, without error, when that file does
// not load (nobody can approve either); an error is a failure to read it
// (the database, the repository), worth trying again.
func (r *Reconciler) KeyringInForce(ctx context.Context) (*approval.Keyring, error) {
	t, err := r.currentTrust(ctx)
	if err != nil {
		return nil, err
	}
	return t.Keyring, nil
}

// judging is the trust a judgement runs under.
func (r *Reconciler) judging(t *trusted) judgement.Trust {
	return judgement.Trust{
		Policies: t.Policies, Keyring: t.Keyring, KeyringErr: t.KeyringErr,
		Repository: r.opts.Repository, Environments: r.opts.Environments, Approval: r.opts.Approval,
	}
}
