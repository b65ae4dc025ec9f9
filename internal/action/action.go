// Package action holds the action interface every backend implements
// (Validate, Plan, Apply, Revert: docs/backends.md), the dry-run plan and its
// digest that approvals bind to, and the registry that picks a backend per
// action and environment.
package action

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Operation is what an execution does.
type Operation string

// Operations.
const (
	Apply  Operation = "apply"
	Revert Operation = "revert"
)

// Request is one action on a set of targets. Backends never see the
// playbook file, only this.
type Request struct {
	Playbook    string         // metadata.name
	Digest      string         // playbook digest
	Action      string         // e.g. block_ip
	Environment string         // e.g. production
	Operation   Operation      // apply or revert
	Targets     []string       // canonical targets
	Params      map[string]any // spec.params
	// IdempotencyKey is stable for one (playbook, digest, operation): a
	// backend that talks to a remote service sends it so a retried request
	// is recognized.
	IdempotencyKey string
}

// Key is the idempotency key of a request: name, digest and operation.
func (r Request) Key() string {
	if r.IdempotencyKey != "" {
		return r.IdempotencyKey
	}
	return fmt.Sprintf("%s@%s/%s", r.Playbook, r.Digest, r.Operation)
}

// Planned results per target.
const (
	WouldBlock       = "would_block"
	AlreadyBlocked   = "already_blocked"
	CoveredBy        = "covered_by" // inside a blocked range already
	WouldUnblock     = "would_unblock"
	NotBlocked       = "not_blocked"
	WouldSuspend     = "would_suspend"
	AlreadySuspended = "already_suspended"
	WouldUnsuspend   = "would_unsuspend"
	NotSuspended     = "not_suspended"
	WouldIsolate     = "would_isolate"
	AlreadyIsolated  = "already_isolated"
	WouldRelease     = "would_release"
	NotIsolated      = "not_isolated"
	NotFound         = "not_found"
	WouldSend        = "would_send"
)

// Applied results per target.
const (
	Changed   = "changed"   // the backend changed live state
	Unchanged = "unchanged" // live state was already as desired
	Failed    = "failed"
)

// TargetPlan is what would happen to one target.
type TargetPlan struct {
	Target string `json:"target"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Plan is a dry-run: what a request would change, read from live state.
type Plan struct {
	Action      string       `json:"action"`
	Backend     string       `json:"backend"`
	Environment string       `json:"environment"`
	Operation   Operation    `json:"operation"`
	Targets     []TargetPlan `json:"targets"`
}

// Digest is the hex sha256 of the plan's canonical JSON (targets sorted).
// Approvals cite it: if live state changes what a playbook would do, earlier
// approvals no longer apply.
func (p *Plan) Digest() string {
	c := *p
	c.Targets = slices.Clone(p.Targets)
	slices.SortFunc(c.Targets, func(a, b TargetPlan) int { return strings.Compare(a.Target, b.Target) })
	b, err := json.Marshal(c)
	if err != nil {
		// A Plan holds only strings; Marshal cannot fail.
		panic(fmt.Sprintf("action: marshal plan: %v", err))
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ShownTargets is how many targets people are shown of one plan or list
// of targets (the CLI's text, the pull request check, the console, writ
// approve): the counts per result say the rest. JSON output and the API
// keep every target.
const ShownTargets = 20

// ResultCount is how many targets of a plan have one result.
type ResultCount struct {
	Result string `json:"result"`
	Count  int    `json:"count"`
}

// Counts counts the plan's targets per result, the most frequent first
// (then by result).
func (p *Plan) Counts() []ResultCount {
	by := map[string]int{}
	for _, t := range p.Targets {
		by[t.Result]++
	}
	out := make([]ResultCount, 0, len(by))
	for r, n := range by {
		out = append(out, ResultCount{Result: r, Count: n})
	}
	slices.SortFunc(out, func(a, b ResultCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Result, b.Result)
	})
	return out
}

// CountsText says the counts in words, e.g. "99,998 would_block,
// 2 already_blocked".
func (p *Plan) CountsText() string {
	parts := make([]string, 0, 4)
	for _, c := range p.Counts() {
		parts = append(parts, fmt.Sprintf("%s %s", Thousands(c.Count), c.Result))
	}
	return strings.Join(parts, ", ")
}

// Shown returns the targets people are shown: the first ShownTargets in
// the plan's order, and how many more there are.
func (p *Plan) Shown() ([]TargetPlan, int) {
	if len(p.Targets) <= ShownTargets {
		return p.Targets, 0
	}
	return p.Targets[:ShownTargets], len(p.Targets) - ShownTargets
}

// Thousands writes n with comma thousands separators (100,000).
func Thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + Thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Changes reports whether applying the plan would change live state.
func (p *Plan) Changes() bool {
	for _, t := range p.Targets {
		switch t.Result {
		case WouldBlock, WouldUnblock, WouldSuspend, WouldUnsuspend, WouldIsolate, WouldRelease, WouldSend:
			return true
		}
	}
	return false
}

// done maps a planned change to the result the same target plans once the
// change has happened.
var done = map[string][]string{
	WouldBlock:     {AlreadyBlocked, CoveredBy},
	WouldUnblock:   {NotBlocked},
	WouldSuspend:   {AlreadySuspended},
	WouldUnsuspend: {NotSuspended},
	WouldIsolate:   {AlreadyIsolated},
	WouldRelease:   {NotIsolated},
}

// ProgressedFrom reports whether p, a plan read again after an interrupted
// or failed attempt, is what approved becomes when some of its changes have
// happened: the same backend, action, environment, operation and targets,
// each target planned as approved or as the state its approved change
// leads to. Anything else (a target someone else changed the other way, a
// new or missing target) means live state moved under the operation.
func (p *Plan) ProgressedFrom(approved *Plan) bool {
	if approved == nil || p.Action != approved.Action || p.Backend != approved.Backend ||
		p.Environment != approved.Environment || p.Operation != approved.Operation || len(p.Targets) != len(approved.Targets) {
		return false
	}
	want := make(map[string]string, len(approved.Targets))
	for _, t := range approved.Targets {
		want[t.Target] = t.Result
	}
	for _, t := range p.Targets {
		was, ok := want[t.Target]
		if !ok {
			return false
		}
		if t.Result != was && !slices.Contains(done[was], t.Result) {
			return false
		}
	}
	return true
}

// TargetResult is what happened to one target.
type TargetResult struct {
	Target string `json:"target"`
	Result string `json:"result"` // changed, unchanged, failed
	Detail string `json:"detail,omitempty"`
}

// Backend carries out one kind of action against one live system. Every
// method must be safe to call again after a crash: Apply and Revert are
// idempotent and read live state before changing it.
type Backend interface {
	// Name identifies the configured backend (e.g. "blocklist:production").
	Name() string
	// Validate checks the request's targets and params for this backend.
	Validate(req Request) error
	// Plan reads live state and says per target what the request's
	// operation (apply or revert) would change, changing nothing.
	Plan(ctx context.Context, req Request) (*Plan, error)
	// Apply contains the targets (blocks, suspends, isolates) where they are
	// not already. It returns per-target results; an error with results
	// means some targets failed.
	Apply(ctx context.Context, req Request) ([]TargetResult, error)
	// Revert releases the targets where they are contained.
	Revert(ctx context.Context, req Request) ([]TargetResult, error)
}

// ErrTransient marks errors worth retrying (timeouts, 5xx, rate limits).
var ErrTransient = errors.New("transient backend error")

// ErrNoBackend is returned when no backend is configured for an action in
// an environment.
var ErrNoBackend = errors.New("no backend configured")

// Factory makes the backend of an action for one environment, for
// backends configured once for every environment (e.g. one blocklist file
// per environment).
type Factory func(environment string) (Backend, error)

// Registry maps (action, environment) to a backend.
type Registry struct {
	mu        sync.Mutex
	byKey     map[string]Backend // "action/environment" or "action/*"
	factories map[string]Factory // by action
}

// NewRegistry makes an empty registry.
func NewRegistry() *Registry {
	return &Registry{byKey: map[string]Backend{}, factories: map[string]Factory{}}
}

// RegisterFactory makes backends for an action on first use in each
// environment without a backend of its own.
func (r *Registry) RegisterFactory(actionName string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.factories[actionName] = f
}

// Register binds a backend to an action in an environment; environment "*"
// is the fallback for environments without their own.
func (r *Registry) Register(actionName, environment string, b Backend) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byKey[actionName+"/"+environment] = b
}

// Lookup finds the backend for an action in an environment.
func (r *Registry) Lookup(actionName, environment string) (Backend, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.byKey[actionName+"/"+environment]; ok {
		return b, nil
	}
	if f, ok := r.factories[actionName]; ok {
		b, err := f(environment)
		if err != nil {
			return nil, fmt.Errorf("backend for %s in environment %s: %w", actionName, environment, err)
		}
		r.byKey[actionName+"/"+environment] = b
		return b, nil
	}
	if b, ok := r.byKey[actionName+"/*"]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("%w for %s in environment %s", ErrNoBackend, actionName, environment)
}

// Actions lists the actions with at least one backend.
func (r *Registry) Actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for a := range r.factories {
		seen[a] = true
	}
	for k := range r.byKey {
		a, _, _ := strings.Cut(k, "/")
		seen[a] = true
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Plan validates the request and dry-runs it on its backend.
func (r *Registry) Plan(ctx context.Context, req Request) (*Plan, error) {
	b, err := r.Lookup(req.Action, req.Environment)
	if err != nil {
		return nil, err
	}
	if err := b.Validate(req); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	p, err := b.Plan(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("plan %s on %s: %w", req.Action, b.Name(), err)
	}
	return p, nil
}

// Execute validates the request and applies it on its backend.
func (r *Registry) Execute(ctx context.Context, req Request) ([]TargetResult, error) {
	b, err := r.Lookup(req.Action, req.Environment)
	if err != nil {
		return nil, err
	}
	if err := b.Validate(req); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	var res []TargetResult
	switch req.Operation {
	case Apply:
		res, err = b.Apply(ctx, req)
	case Revert:
		res, err = b.Revert(ctx, req)
	default:
		return nil, fmt.Errorf("unknown operation %q", req.Operation)
	}
	if err != nil {
		return res, fmt.Errorf("%s %s on %s: %w", req.Operation, req.Action, b.Name(), err)
	}
	return res, nil
}
