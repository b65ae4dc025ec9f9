// Package policy holds writ's policy sets: Rego v1 policies and their data,
// loaded from any fs.FS (a directory or a git tree at a commit), compiled
// once with OPA into a prepared query, and evaluated as data.writ.decision
// for one playbook at a time (the contract: docs/policies.md). It also runs a set's Rego tests
// the way `opa test` does, and describes the server's environments.
//
// Every failure fails closed: a policy set that does not compile, a decision
// of the wrong shape, a missing data.writ.decision, a runtime error or an
// evaluation past its deadline is a DENY whose reasons say which file and
// rule, never an ALLOW.
package policy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Query is what writ evaluates.
const Query = "data.writ.decision"

// Outcome of a decision.
type Outcome string

// Outcomes. The strings appear in JSON output and in the audit log.
const (
	Allow           Outcome = "allow"
	Deny            Outcome = "deny"
	RequireApproval Outcome = "require_approval"
)

// ReasonKind says whether a reason refuses a playbook or asks for approval.
type ReasonKind string

// Reason kinds.
const (
	KindDeny            ReasonKind = "deny"
	KindRequireApproval ReasonKind = "require_approval"
)

// Rule names writ itself gives to the reasons of fail-closed decisions.
const (
	RuleCompile     = "writ.policy.compile"     // the policy set did not load or compile
	RuleShape       = "writ.policy.shape"       // data.writ.decision has the wrong shape or is missing
	RuleRuntime     = "writ.policy.runtime"     // evaluation failed (when the rule is unknown)
	RuleTimeout     = "writ.policy.timeout"     // evaluation ran past its deadline
	RuleEnvironment = "writ.policy.environment" // the playbook's environment is unknown
	RuleDecision    = "data.writ.decision"      // a reason given as a plain string by data.writ.decision
)

// Reason is one reason of a decision.
type Reason struct {
	Kind ReasonKind `json:"kind"`
	// Rule names what gave the reason: a check (e.g. "reserved_addresses"
	// for the default policies), a Rego rule path, or one of the Rule*
	// constants for fail-closed decisions.
	Rule    string `json:"rule"`
	Message string `json:"message"`
	// Location is path:line:col in the policy set, when known.
	Location string `json:"location,omitempty"`
}

func (r Reason) String() string {
	if r.Location != "" {
		return fmt.Sprintf("%s: %s: %s", r.Location, r.Rule, r.Message)
	}
	return fmt.Sprintf("%s: %s", r.Rule, r.Message)
}

// Decision is the verdict of a policy set on one playbook.
type Decision struct {
	Outcome Outcome  `json:"outcome"`
	Reasons []Reason `json:"reasons"`
	// RulesFired lists the rules that gave a reason, sorted and unique.
	RulesFired []string `json:"rules_fired"`
	// ApprovalsRequired is 0 unless the outcome is require_approval; then it
	// is at least 1.
	ApprovalsRequired int `json:"approvals_required"`
	// ApproverRoles are the roles whose approvals count (require_approval
	// only; default ["approver"]).
	ApproverRoles []string `json:"approver_roles"`
	// PolicyDigest identifies the policy set that decided.
	PolicyDigest string `json:"policy_digest"`
	// Emergency: the policies allow break-glass for this operation (the
	// decision's emergency field; never with a denial). Only an apply of a
	// playbook marked emergency asks (input.emergency).
	Emergency bool `json:"emergency,omitempty"`
}

// ReasonsOf returns the reasons of one kind.
func (d Decision) ReasonsOf(kind ReasonKind) []Reason {
	var out []Reason
	for _, r := range d.Reasons {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// Change describes the change that proposes a playbook (input.change).
type Change struct {
	// Type is create or update (an apply), delete (the revert of a deleted
	// playbook), update (also the revert of the targets an update drops)
	// or expiry (the revert expiresAfter scheduled); drift for a heal (an
	// apply re-applying targets a drift check found missing).
	Type        string `json:"type"`
	Author      string `json:"author"`
	PullRequest int    `json:"pullRequest,omitempty"`
}

// Input is what a policy set sees of one playbook.
type Input struct {
	// Operation is input.operation: apply or revert ("" is apply). Every
	// change to live systems is judged on its own.
	Operation string
	// Playbook is input.playbook: playbook.Playbook.PolicyInput().
	Playbook map[string]any
	Change   Change
	// Emergency is input.emergency: the operation asks for break-glass
	// (the apply of a playbook marked emergency: true). The policies say
	// whether they allow it in the decision's emergency field.
	Emergency bool
	// Environment is input.environment: the server's description of the
	// playbook's environment, with its name (Environments.Lookup). Nil means
	// the environment is unknown, and the decision is DENY.
	Environment map[string]any
}

// Options configure loading and evaluating a policy set. The zero value is
// ready to use.
type Options struct {
	// Root is how the policy directory is named in problems and reasons,
	// e.g. "policies" or the path the user typed. Files appear as
	// Root/relative-path. Empty: their path in the fs.FS.
	Root string
	// EvalTimeout bounds one evaluation (default 2s).
	EvalTimeout time.Duration
	// CompileTimeout bounds parsing and compiling the set (default 10s).
	// Policies changed by a pull request are compiled too, so a policy set
	// built to be slow to compile must not hold a core for minutes: past
	// the deadline the set is fail-closed. OPA's compiler cannot be
	// interrupted mid-stage; writ checks the deadline between files and
	// between the compiler's stages.
	CompileTimeout time.Duration
	// MaxFileBytes bounds one file (default 4 MiB), MaxTotalBytes all of them
	// (default 64 MiB), MaxRegoBytes the Rego among them (default 8 MiB:
	// OPA takes about two seconds and 300 MB of allocations to compile one
	// MiB of Rego; data is cheap), MaxFiles their number (default 10000).
	MaxFileBytes  int64
	MaxTotalBytes int64
	MaxRegoBytes  int64
	MaxFiles      int
	// AllowNetwork lets policies call http.send and net.lookup_ip_addr.
	// Off by default: a decision must not depend on, or reach, the network.
	AllowNetwork bool
	// Clock gives time.now_ns during evaluation (default time.Now).
	Clock func() time.Time
	// Logger receives a warning for every fail-closed decision (default:
	// discard).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.EvalTimeout == 0 {
		o.EvalTimeout = 2 * time.Second
	}
	if o.CompileTimeout == 0 {
		o.CompileTimeout = 10 * time.Second
	}
	if o.MaxRegoBytes == 0 {
		o.MaxRegoBytes = 8 << 20
	}
	if o.MaxFileBytes == 0 {
		o.MaxFileBytes = 4 << 20
	}
	if o.MaxTotalBytes == 0 {
		o.MaxTotalBytes = 64 << 20
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = 10000
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.EvalTimeout < 0 {
		errs = append(errs, fmt.Errorf("policy options: EvalTimeout %s is negative", o.EvalTimeout))
	}
	if o.CompileTimeout < 0 {
		errs = append(errs, fmt.Errorf("policy options: CompileTimeout %s is negative", o.CompileTimeout))
	}
	if o.MaxFileBytes < 0 || o.MaxTotalBytes < 0 || o.MaxRegoBytes < 0 || o.MaxFiles < 0 {
		errs = append(errs, errors.New("policy options: limits must not be negative"))
	}
	return errors.Join(errs...)
}

// Set is a compiled policy set. It is safe for concurrent use.
type Set struct {
	digest string
	files  []string // shown paths of the files loaded for evaluation
	opts   Options

	// failed holds the reasons every decision denies with when the set
	// could not be loaded; query is unset then.
	failed   []Reason
	query    rego.PreparedEvalQuery
	compiler *ast.Compiler
	// constants are the values of the rules that depend on the set
	// alone, evaluated when it loaded (constants.go).
	constants constants
	// decisionAt is path:line:col of the first rule defining
	// data.writ.decision.
	decisionAt string
	// indexMin is how many targets an input needs for its target index
	// (indexMinTargets; tests lower it).
	indexMin int
}

// Digest returns the policy set's digest (see DigestFS).
func (s *Set) Digest() string { return s.digest }

// Files returns the files loaded for evaluation (data and non-test Rego),
// as shown in problems.
func (s *Set) Files() []string { return slices.Clone(s.files) }

// Failed reports whether the set is fail-closed: it could not be loaded, and
// every decision is DENY.
func (s *Set) Failed() bool { return s == nil || s.failed != nil }

// Decide evaluates data.writ.decision for one playbook. It never fails: any
// problem is a DENY whose reasons say what went wrong and where.
func (s *Set) Decide(ctx context.Context, in Input) Decision {
	if s == nil {
		return denied("", []Reason{{Kind: KindDeny, Rule: RuleCompile, Message: "no policy set is loaded"}})
	}
	if s.failed != nil {
		return denied(s.digest, s.failed)
	}
	if in.Environment == nil {
		env := "(none)"
		if spec, ok := in.Playbook["spec"].(map[string]any); ok {
			if e, ok := spec["environment"].(string); ok {
				env = fmt.Sprintf("%q", e)
			}
		}
		return s.fail(ctx, Reason{Kind: KindDeny, Rule: RuleEnvironment,
			Message: fmt.Sprintf("environment %s is not one of the server's environments: writ does not act on unknown environments", env)})
	}
	value, err := inputValue(in, s.indexMin)
	if err != nil {
		return s.fail(ctx, Reason{Kind: KindDeny, Rule: RuleRuntime, Message: fmt.Sprintf("input is not JSON-compatible: %v", err)})
	}
	if err := ctx.Err(); err != nil {
		return s.fail(ctx, Reason{Kind: KindDeny, Rule: RuleTimeout, Location: s.decisionAt,
			Message: fmt.Sprintf("evaluation of %s was cancelled before it started: %v", Query, err)})
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.EvalTimeout)
	defer cancel()
	rs, err := s.eval(ctx, value)
	if err != nil {
		return s.fail(ctx, s.runtimeReason(ctx, err))
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return s.fail(ctx, Reason{Kind: KindDeny, Rule: RuleShape, Location: s.decisionAt,
			Message: Query + " is undefined for this playbook: its rule body did not hold; writ denies what the policies do not decide"})
	}
	if len(rs) > 1 {
		return s.fail(ctx, Reason{Kind: KindDeny, Rule: RuleShape, Location: s.decisionAt,
			Message: fmt.Sprintf("%s has %d values; it must have one", Query, len(rs))})
	}
	d, problems := parseDecision(rs[0].Expressions[0].Value)
	if len(problems) > 0 {
		reasons := make([]Reason, len(problems))
		for i, p := range problems {
			reasons[i] = Reason{Kind: KindDeny, Rule: RuleShape, Location: s.decisionAt, Message: Query + ": " + p}
		}
		return s.fail(ctx, reasons...)
	}
	d.PolicyDigest = s.digest
	// Only an operation that asks for break-glass may be let break it,
	// whatever the policies answer for others.
	d.Emergency = d.Emergency && in.Emergency
	return d
}

// eval runs the prepared query; a panic inside OPA is an error, so it
// denies instead of taking the process down.
func (s *Set) eval(ctx context.Context, value ast.Value) (rs rego.ResultSet, err error) {
	defer func() {
		if p := recover(); p != nil {
			rs, err = nil, fmt.Errorf("OPA panicked: %v", p)
		}
	}()
	// OPA cancels on ctx's deadline through a cancel of writ's own,
	// registered with context.AfterFunc, rather than a goroutine per
	// evaluation; metrics are not collected.
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	return s.query.Eval(ctx, rego.EvalParsedInput(value), rego.EvalTime(s.opts.Clock()),
		rego.EvalExternalCancel(cancel), rego.EvalMetrics(metrics.NoOp()),
		rego.EvalVirtualCache(newConstantCache(s.constants)))
}

// fail logs and returns a DENY for reasons.
func (s *Set) fail(ctx context.Context, reasons ...Reason) Decision {
	for _, r := range reasons {
		s.opts.Logger.WarnContext(ctx, "policy evaluation failed; denying",
			slog.String("rule", r.Rule), slog.String("location", r.Location), slog.String("reason", r.Message))
	}
	return denied(s.digest, reasons)
}

func denied(digest string, reasons []Reason) Decision {
	rs := slices.Clone(reasons)
	return finish(Decision{Outcome: Deny, Reasons: rs, PolicyDigest: digest})
}

// finish sorts reasons (deny first) and fills RulesFired.
func finish(d Decision) Decision {
	slices.SortStableFunc(d.Reasons, func(a, b Reason) int {
		ka, kb := 0, 0
		if a.Kind != KindDeny {
			ka = 1
		}
		if b.Kind != KindDeny {
			kb = 1
		}
		return cmp.Or(cmp.Compare(ka, kb), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Message, b.Message))
	})
	d.Reasons = slices.CompactFunc(d.Reasons, func(a, b Reason) bool { return a == b })
	d.Reasons = capReasons(d.Reasons)
	rules := make([]string, 0, len(d.Reasons))
	for _, r := range d.Reasons {
		rules = append(rules, r.Rule)
	}
	slices.Sort(rules)
	d.RulesFired = slices.Compact(rules)
	if d.Reasons == nil {
		d.Reasons = []Reason{}
	}
	if d.ApproverRoles == nil {
		d.ApproverRoles = []string{}
	}
	return d
}

// MaxReasonsPerRule is how many reasons of one kind a decision keeps per
// rule: a check that fires on each of 100,000 targets says so with the
// first ones and a count, so that the decision stays readable and fits
// where it is recorded (an execution, its audit entries). The outcome,
// the approvals and the roles are decided before: only the list is cut.
const MaxReasonsPerRule = 20

// capReasons keeps the first MaxReasonsPerRule reasons of each kind and
// rule of a sorted list, and says how many more there were.
func capReasons(rs []Reason) []Reason {
	out := rs[:0:0]
	for i := 0; i < len(rs); {
		j := i
		for j < len(rs) && rs[j].Kind == rs[i].Kind && rs[j].Rule == rs[i].Rule {
			j++
		}
		if j-i <= MaxReasonsPerRule {
			out = append(out, rs[i:j]...)
		} else {
			out = append(out, rs[i:i+MaxReasonsPerRule]...)
			out = append(out, Reason{Kind: rs[i].Kind, Rule: rs[i].Rule, Location: rs[i].Location,
				Message: fmt.Sprintf("… and %d more reasons of this rule (writ lists the first %d)", j-i-MaxReasonsPerRule, MaxReasonsPerRule)})
		}
		i = j
	}
	return out
}

// inputValue builds input as an AST value directly, skipping a JSON round
// trip on the hot path.
func inputValue(in Input, indexMin int) (ast.Value, error) {
	change := map[string]any{"type": in.Change.Type, "author": in.Change.Author}
	if in.Change.PullRequest != 0 {
		change["pullRequest"] = int64(in.Change.PullRequest)
	}
	playbook := in.Playbook
	if playbook == nil {
		playbook = map[string]any{}
	}
	op := in.Operation
	if op == "" {
		op = "apply"
	}
	input := map[string]any{
		"operation":   op,
		"playbook":    playbook,
		"change":      change,
		"environment": in.Environment,
		"emergency":   in.Emergency,
	}
	if spec, ok := playbook["spec"].(map[string]any); ok && targetCount(spec["targets"]) >= indexMin {
		if index := targetIndex(spec["targets"]); index != nil {
			input["target_index"] = index
		}
	}
	return ast.InterfaceToValue(input)
}
