package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/policies"
)

func init() { register(newPlanCmd) }

type planParams struct {
	policies     string
	environments string
	format       string
	// jobs is how many playbooks are judged at once (0: one per core).
	jobs  int
	paths []string
}

func newPlanCmd(env *cliEnv, g *globals) *cobra.Command {
	p := planParams{}
	cmd := &cobra.Command{
		Use:   "plan [--policies DIR] [--environment FILE] [--format text|json] PLAYBOOK...",
		Short: "Validate playbooks, decide them with the policies and dry-run them, executing nothing",
		Long: `Plan validates each playbook (as writ validate does), evaluates the policies
(data.writ.decision) for it and, unless it is denied, dry-runs it on its
action's backend: what it would change, read from live state. Nothing is
executed.

Policies come from --policies DIR, else policies/ in the working directory
when there is one, else the default policies built into writ. Environments
(input.environment) come from --environment FILE, a YAML file such as

  environments:
    production: {production: true}
    staging:    {production: false}

else these two defaults. A playbook for an unknown environment is denied.
PLAYBOOK is a file, a directory of playbooks or a repository root (its
playbooks/); default ".".

Playbooks are read and judged on every core (--jobs); the output lists
them in path order whatever the number of workers.

A playbook with spec.targetsFile reads it from the repository the playbook
is in (the directory holding its playbooks/ directory). The text output
shows a plan's counts per result and its first 20 targets.

--format json writes an array with one object per playbook: path, name,
digest, policy_digest, decision (allow, deny or require_approval), reasons,
rules_fired, approvals_required, approver_roles, and plan (null when there
is no dry-run, else every target), with plan_digest or plan_error, and
targets_file (path, sha256, targets, duplicates_merged) when it has one.

Exit status: 0 nothing denied, 1 a playbook is denied (or its dry-run
failed), 2 invalid input (a playbook, the environments file or the flags).`,
		Example: `  writ plan playbooks/network/block-c2-beacon.yaml
  writ plan --format json --environment environments.yaml .`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p.paths = args
			if code := runPlan(cmd.Context(), g, p, env.stdout, env.stderr); code != exitOK {
				return exitWith(code, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&p.policies, "policies", "", "directory of the policy set (default: ./policies, else the built-in defaults)")
	cmd.Flags().StringVar(&p.environments, "environment", "", "YAML file describing the environments (default: production and staging)")
	cmd.Flags().StringVar(&p.format, "format", "text", "output format: text or json")
	cmd.Flags().IntVar(&p.jobs, "jobs", 0, "playbooks read and judged at once (default: one per core); the output is the same whatever the number")
	return cmd
}

// planEntry is the plan of one playbook, as `writ plan --format json`
// writes it.
type planEntry struct {
	Path              string          `json:"path"`
	Name              string          `json:"name"`
	Digest            string          `json:"digest"`
	PolicyDigest      string          `json:"policy_digest"`
	Decision          policy.Outcome  `json:"decision"`
	Reasons           []policy.Reason `json:"reasons"`
	RulesFired        []string        `json:"rules_fired"`
	ApprovalsRequired int             `json:"approvals_required"`
	ApproverRoles     []string        `json:"approver_roles"`
	Plan              *action.Plan    `json:"plan"`
	PlanDigest        string          `json:"plan_digest,omitempty"`
	PlanError         string          `json:"plan_error,omitempty"`
	// TargetsFile describes spec.targetsFile, when the playbook has one.
	TargetsFile *targetsFileView `json:"targets_file,omitempty"`
}

// targetsFileView is a playbook's targets file as the plan shows it.
type targetsFileView struct {
	Path       string `json:"path"`
	SHA256     string `json:"sha256"`
	Targets    int    `json:"targets"`
	Duplicates int    `json:"duplicates_merged"`
}

func runPlan(ctx context.Context, g *globals, p planParams, stdout, stderr io.Writer) int {
	if p.format != "text" && p.format != "json" {
		fmt.Fprintf(stderr, "writ: --format must be text or json, not %q\n", p.format)
		return exitUsage
	}
	if len(p.paths) == 0 {
		p.paths = []string{"."}
	}
	envs := policy.DefaultEnvironments()
	if p.environments != "" {
		e, err := policy.LoadEnvironments(p.environments)
		if err != nil {
			writeProblemsOrError(stderr, err)
			return exitUsage
		}
		envs = e
	}

	// The policies compile on one core while the playbooks are read and
	// validated on the others; what each reports is printed after, in
	// this order. No logger: every reason of a failed decision is in the
	// output.
	type loaded struct {
		set    *policy.Set
		source string
		usage  bool
		err    error
	}
	policyDone := make(chan loaded, 1)
	go func() {
		var l loaded
		l.set, l.source, l.usage, l.err = loadPolicySet(p.policies, policy.Options{}, policies.FS)
		policyDone <- l
	}()
	type validated struct {
		r   validateResult
		err error
	}
	results := make([]validated, 0, len(p.paths))
	for _, arg := range p.paths {
		r, err := validatePath(arg, validateOptions{skipPolicies: true, jobs: p.jobs, release: true})
		results = append(results, validated{r, err})
		if err != nil {
			break
		}
	}
	l := <-policyDone
	set, source, usage, err := l.set, l.source, l.usage, l.err
	if usage {
		fmt.Fprintln(stderr, "writ:", err)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "writ: the policies (%s) do not load, so every playbook is denied:\n", source)
		writeProblemsOrError(stderr, err)
	}

	// Validate, as writ validate does; invalid playbooks are reported and
	// not planned.
	var (
		pbs      []*playbook.Playbook
		problems diag.Problems
	)
	for _, v := range results {
		r, err := v.r, v.err
		if err != nil {
			fmt.Fprintln(stderr, "writ:", err)
			if errors.Is(err, fs.ErrNotExist) {
				return exitUsage
			}
			return exitFailure
		}
		pbs = append(pbs, r.playbooks...)
		for _, pr := range r.problems {
			// A repository root's policies were checked above, as the
			// policy set (or are not the set in use).
			switch pr.Code {
			case policy.CodeCompile, policy.CodeData, policy.CodeFile:
				continue
			}
			problems = append(problems, pr)
		}
	}
	problems = append(problems, playbook.CheckUniqueNames(pbs)...)
	problems.Sort()
	if len(problems) > 0 {
		_ = diag.WriteText(stderr, problems)
	}
	slices.SortFunc(pbs, func(a, b *playbook.Playbook) int { return cmp.Compare(a.Path, b.Path) })

	reg, err := planRegistry(ctx, g)
	if err != nil {
		fmt.Fprintln(stderr, "writ: action backends:", err)
		return exitFailure
	}
	// Each playbook is judged on its own, on every core; the entries keep
	// the playbooks' order.
	entries := make([]planEntry, len(pbs))
	_ = parallel(len(pbs), p.jobs, func(i int) error {
		entries[i] = planPlaybook(ctx, set, envs, reg, pbs[i])
		return nil
	})
	denied, planFailed := false, false
	for _, e := range entries {
		denied = denied || e.Decision == policy.Deny
		planFailed = planFailed || e.PlanError != ""
	}

	var werr error
	if p.format == "json" {
		werr = writePlanJSON(stdout, entries, p.jobs)
	} else {
		werr = writePlanText(stdout, entries, source, set.Digest())
	}
	if werr != nil {
		fmt.Fprintln(stderr, "writ:", werr)
		return exitFailure
	}
	switch {
	case problems.HasErrors():
		return exitUsage
	case denied || planFailed:
		return exitFailure
	}
	return exitOK
}

// planPlaybook judges the apply of one playbook (judgement.Judge, as the
// server does): the decision and, unless it is denied, the dry-run.
func planPlaybook(ctx context.Context, set *policy.Set, envs policy.Environments, reg *action.Registry, pb *playbook.Playbook) planEntry {
	op := judgement.Operation{Kind: action.Apply, Trigger: judgement.Proposed, ChangeType: "create", Playbook: pb}
	j := judgement.Judge(ctx, op, judgement.Trust{Policies: set, Environments: envs}, judgement.Inputs{Planner: reg, Now: time.Now()})
	d := j.Decision
	e := planEntry{
		Path:              pb.Path,
		Name:              pb.Metadata.Name,
		Digest:            pb.Digest,
		PolicyDigest:      d.PolicyDigest,
		Decision:          d.Outcome,
		Reasons:           d.Reasons,
		RulesFired:        d.RulesFired,
		ApprovalsRequired: d.ApprovalsRequired,
		ApproverRoles:     d.ApproverRoles,
	}
	if tf := pb.TargetsFile; tf != nil {
		e.TargetsFile = &targetsFileView{Path: tf.Path, SHA256: tf.Digest, Targets: len(pb.Spec.Targets), Duplicates: tf.Duplicates}
	}
	switch {
	case d.Outcome == policy.Deny:
	case errors.Is(j.PlanError, action.ErrNoBackend):
		// Nothing to dry-run against: no plan, and nothing failed.
	case j.PlanError != nil:
		e.PlanError = j.PlanError.Error()
	case j.Plan != nil:
		e.Plan = j.Plan
		e.PlanDigest = j.PlanDigest
	}
	return e
}

// writePlanJSON writes entries as json.Encoder with a two-space indent
// would, byte for byte, each entry encoded on its own core.
func writePlanJSON(w io.Writer, entries []planEntry, jobs int) error {
	if len(entries) == 0 {
		_, err := io.WriteString(w, "[]\n")
		return err
	}
	parts := make([][]byte, len(entries))
	err := parallel(len(entries), jobs, func(i int) error {
		var err error
		parts[i], err = json.MarshalIndent(entries[i], "  ", "  ")
		return err
	})
	if err != nil {
		return err
	}
	size := 4
	for _, b := range parts {
		size += len(b) + 4
	}
	buf := make([]byte, 0, size)
	buf = append(buf, "[\n"...)
	for i, b := range parts {
		buf = append(buf, "  "...)
		buf = append(buf, b...)
		if i < len(parts)-1 {
			buf = append(buf, ',')
		}
		buf = append(buf, '\n')
	}
	buf = append(buf, "]\n"...)
	_, err = w.Write(buf)
	return err
}

func writePlanText(w io.Writer, entries []planEntry, source, digest string) error {
	var b strings.Builder
	counts := map[policy.Outcome]int{}
	for _, e := range entries {
		counts[e.Decision]++
		fmt.Fprintf(&b, "%s (%s)\n", e.Name, e.Path)
		switch e.Decision {
		case policy.RequireApproval:
			noun := "approval"
			if e.ApprovalsRequired > 1 {
				noun = "approvals"
			}
			fmt.Fprintf(&b, "  decision: require_approval (%d %s from %s)\n", e.ApprovalsRequired, noun, strings.Join(e.ApproverRoles, " or "))
		default:
			fmt.Fprintf(&b, "  decision: %s\n", e.Decision)
		}
		for _, r := range e.Reasons {
			fmt.Fprintf(&b, "    %-8s %s: %s\n", marker(r.Kind), r.Rule, r.Message)
			if r.Location != "" {
				fmt.Fprintf(&b, "      at %s\n", r.Location)
			}
		}
		fmt.Fprintf(&b, "  digest: %s\n", e.Digest)
		if tf := e.TargetsFile; tf != nil {
			fmt.Fprintf(&b, "  targets file: %s, %s targets, sha256 %s", tf.Path, action.Thousands(tf.Targets), tf.SHA256)
			if tf.Duplicates > 0 {
				fmt.Fprintf(&b, " (%s repeated lines merged)", action.Thousands(tf.Duplicates))
			}
			b.WriteString("\n")
		}
		switch {
		case e.PlanError != "":
			fmt.Fprintf(&b, "  plan: failed: %s\n", e.PlanError)
		case e.Plan != nil:
			fmt.Fprintf(&b, "  plan: %s on %s, digest %s\n", e.Plan.Operation, e.Plan.Backend, e.PlanDigest)
			shown, more := e.Plan.Shown()
			if more > 0 {
				fmt.Fprintf(&b, "    %s targets: %s; the first %d:\n", action.Thousands(len(e.Plan.Targets)), e.Plan.CountsText(), len(shown))
			}
			for _, t := range shown {
				detail := ""
				if t.Detail != "" {
					detail = " (" + t.Detail + ")"
				}
				fmt.Fprintf(&b, "    %s: %s%s\n", t.Target, t.Result, detail)
			}
			if more > 0 {
				fmt.Fprintf(&b, "    … and %s more (--format json lists every target)\n", action.Thousands(more))
			}
		}
	}
	fmt.Fprintf(&b, "policies: %s, digest %s\n", source, digest)
	noun := "playbooks"
	if len(entries) == 1 {
		noun = "playbook"
	}
	fmt.Fprintf(&b, "%d %s: %d allowed, %d need approval, %d denied\n",
		len(entries), noun, counts[policy.Allow], counts[policy.RequireApproval], counts[policy.Deny])
	_, err := io.WriteString(w, b.String())
	return err
}

func marker(k policy.ReasonKind) string {
	if k == policy.KindDeny {
		return "deny"
	}
	return "approval"
}

// writeProblemsOrError prints located problems one per line, or the error.
func writeProblemsOrError(w io.Writer, err error) {
	if ps := policy.ProblemsOf(err); ps != nil {
		_ = diag.WriteText(w, ps)
		return
	}
	fmt.Fprintln(w, "writ:", err)
}
