package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/policy"
)

func init() { register(newApprovalsCmd) }

func newApprovalsCmd(env *cliEnv, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "Work with signed approvals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError("name a subcommand: %s", "verify")
		},
	}
	cmd.AddCommand(newApprovalsVerifyCmd(env, g))
	return cmd
}

type approvalsVerifyParams struct {
	approvers    string
	policies     string
	environments string
	planDigest   string
	playbook     string
	repoRoot     string
	repo         string
	revert       bool
	required     int
	requiredSet  bool
	roles        []string
	at           string
	maxAge       time.Duration
	clockSkew    time.Duration
	format       string
	envelopes    []string
}

func newApprovalsVerifyCmd(env *cliEnv, g *globals) *cobra.Command {
	p := approvalsVerifyParams{}
	cmd := &cobra.Command{
		Use:   "verify --approvers FILE --playbook PATH [flags] ENVELOPE...",
		Short: "Check signed approvals of a playbook against an approvers file",
		Long: `Verify judges approval envelopes (from writ approve, or cosign attest-blob
with writ's predicate type) for one operation on one playbook (its apply,
or with --revert its revert) as the server does: each must be signed by a
key of the approvers file, by the person it names, about this exact
operation, playbook, policy set and plan, in this repository (--repo, by
default derived from the checkout as writ serve derives it), unexpired;
the proposer never counts as an approver; each person counts once; a
signed rejection by a qualified approver blocks.

How many approvals, and from which roles, is decided by the policies
(--policies, else the repository's policies/, else the built-in ones) with
the environments of --environments (default: production and staging), or
given with --approvals-required and --approver-roles. The plan digest is
--plan-digest, else a local dry-run.

It prints every envelope's fate and the verdict. Exit status: 0 the quorum
is met, 1 it is not (or the policies deny the playbook), 2 usage error.`,
		Example: `  writ approvals verify --approvers .writ/approvers.yaml \
      --playbook playbooks/network/block-c2-beacon.yaml alice.json bob.json carol.json
  writ approvals verify --approvers approvers.yaml --approvals-required 1 \
      --plan-digest 77ab... --playbook block.yaml bob.cosign.json`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p.envelopes = args
			p.requiredSet = cmd.Flags().Changed("approvals-required")
			code, err := runApprovalsVerify(cmd.Context(), g, env, p)
			if err != nil {
				return err
			}
			if code != exitOK {
				return exitWith(code, nil)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.approvers, "approvers", "", "the approvers file (.writ/approvers.yaml of the target branch)")
	f.StringVar(&p.playbook, "playbook", "", "the playbook file the envelopes approve")
	f.StringVar(&p.policies, "policies", "", "policy directory (default: the repository's policies/, else the built-in policies)")
	f.StringVar(&p.environments, "environments", "", "environments file the policies see (default: production and staging)")
	f.StringVar(&p.planDigest, "plan-digest", "", "the plan digest approvals must cite (default: dry-run the playbook locally)")
	f.StringVar(&p.repoRoot, "repo-root", "", "repository root the playbook path is relative to (default: the git repository holding it)")
	f.StringVar(&p.repo, "repo", "", "repository OWNER/NAME statements must name (default: derived from the checkout's origin remote or path)")
	f.BoolVar(&p.revert, "revert", false, "judge the revert of the playbook instead of its apply")
	f.IntVar(&p.required, "approvals-required", 0, "approvals needed, instead of asking the policies")
	f.StringSliceVar(&p.roles, "approver-roles", nil, "roles whose approvals count, with --approvals-required (default approver)")
	f.StringVar(&p.at, "at", "", "judge as of this time (RFC 3339; default now)")
	f.DurationVar(&p.maxAge, "max-age", approval.DefaultMaxAge, "how long an approval counts after it was issued")
	f.DurationVar(&p.clockSkew, "clock-skew", approval.DefaultClockSkew, "how far in the future issuedAt may be")
	f.StringVar(&p.format, "format", "text", "output format: text or json")
	return cmd
}

// verifyReport is the JSON output of writ approvals verify.
type verifyReport struct {
	Playbook          string            `json:"playbook"`
	Digest            string            `json:"digest"`
	PolicyDigest      string            `json:"policyDigest"`
	PlanDigest        string            `json:"planDigest"`
	Outcome           string            `json:"outcome,omitempty"`
	ApprovalsRequired int               `json:"approvalsRequired"`
	ApproverRoles     []string          `json:"approverRoles"`
	Envelopes         []envelopeOutcome `json:"envelopes"`
	Verdict           approval.Verdict  `json:"verdict"`
	Summary           string            `json:"summary"`
}

type envelopeOutcome struct {
	File     string `json:"file"`
	Status   string `json:"status"` // proposal, counted, rejection, not_counted
	Approver string `json:"approver,omitempty"`
	Code     string `json:"code,omitempty"`
	Message  string `json:"message,omitempty"`
}

func runApprovalsVerify(ctx context.Context, g *globals, env *cliEnv, p approvalsVerifyParams) (int, error) {
	switch {
	case p.approvers == "":
		return 0, usageError("--approvers is required: the approvers file of the target branch")
	case p.playbook == "":
		return 0, usageError("--playbook is required")
	case len(p.envelopes) == 0:
		return 0, usageError("name the envelope files to verify")
	case p.format != "text" && p.format != "json":
		return 0, usageError("--format must be text or json, not %q", p.format)
	case p.planDigest != "" && !hexDigestRE.MatchString(p.planDigest):
		return 0, usageError("--plan-digest %q is not 64 lowercase hex digits", p.planDigest)
	case p.requiredSet && p.required < 0:
		return 0, usageError("--approvals-required %d is negative", p.required)
	case len(p.roles) > 0 && !p.requiredSet:
		return 0, usageError("--approver-roles goes with --approvals-required")
	case p.maxAge < 0 || p.clockSkew < 0:
		return 0, usageError("--max-age and --clock-skew must not be negative")
	}
	now := time.Now()
	if p.at != "" {
		t, err := time.Parse(time.RFC3339, p.at)
		if err != nil {
			return 0, usageError("--at %q is not an RFC 3339 time", p.at)
		}
		now = t
	}

	krData, err := config.ReadFile(p.approvers, approval.MaxKeyringBytes)
	if err != nil {
		return 0, usageError("--approvers: %v", err)
	}
	kr, problems := approval.ParseKeyring(p.approvers, krData)
	if problems != nil {
		return 0, usageError("invalid approvers file:\n%v", problems)
	}

	root, err := subjectRepoRoot(p.repoRoot, p.playbook)
	if err != nil {
		// Outside a repository the path as given names the playbook;
		// cosign-style subjects (a base name) still match by digest.
		root, err = filepath.Abs(filepath.Dir(p.playbook))
		if err != nil {
			return 0, usageError("%v", err)
		}
		if root, err = filepath.EvalSymlinks(root); err != nil {
			return 0, usageError("%v", err)
		}
	}
	pbs, err := loadSubjectPlaybooks(root, []string{p.playbook}, nil, nil)
	if err != nil {
		return 0, err
	}
	pb := pbs[0]
	if p.repo == "" {
		if p.repo = repoIdentity(root); p.repo == "" {
			return 0, usageError("no repository identity could be derived from %s: pass --repo OWNER/NAME", root)
		}
	} else if !gitsrc.ValidIdentity(p.repo) {
		return 0, usageError("--repo %q is not OWNER/NAME", p.repo)
	}
	op := judgement.Operation{Kind: action.Apply, Trigger: judgement.Proposed, ChangeType: "create", Playbook: pb}
	if p.revert {
		op.Kind, op.ChangeType = action.Revert, "delete"
	}

	subs := make([]approval.Submitted, len(p.envelopes))
	for i, file := range p.envelopes {
		data, err := readEnvelopeFile(file)
		if err != nil {
			return 0, usageError("envelope %s: %v", file, err)
		}
		subs[i] = approval.Submitted{Envelope: data, Source: "cli", SourceRef: file}
	}
	rep := verifyReport{Playbook: pb.Path, Digest: pb.Digest}
	rep.PlanDigest = p.planDigest
	if rep.PlanDigest == "" {
		if rep.PlanDigest, err = localPlanDigest(ctx, g, pb, op.Kind); err != nil {
			return 0, exitWith(exitFailure, err)
		}
	}
	aopts := approval.Options{MaxAge: p.maxAge, ClockSkew: p.clockSkew}
	var v approval.Verdict
	if p.requiredSet {
		// Explicit requirements: the statements alone, no policies.
		for _, r := range p.roles {
			if !slices.Contains(approval.Roles, r) {
				return 0, usageError("--approver-roles: %q is not one of %s", r, strings.Join(approval.Roles, ", "))
			}
		}
		rep.PolicyDigest, _, err = policySetDigest(root, p.policies)
		if err != nil {
			return 0, err
		}
		rep.ApprovalsRequired, rep.ApproverRoles = p.required, p.roles
		v = approval.Verify(approval.Input{
			Subject: approval.Subject{Path: pb.Path, Digest: pb.Digest}, Operation: string(op.Kind), Repository: p.repo,
			ApprovalsRequired: p.required, ApproverRoles: p.roles, PolicyDigest: rep.PolicyDigest, PlanDigest: rep.PlanDigest,
			Keyring: kr, Envelopes: subs, Now: now, Options: aopts,
		})
	} else {
		// The judgement the server makes (judgement.Judge), with the plan
		// digest given or dry-run here.
		set, envs, err := loadVerifyPolicies(root, p)
		if err != nil {
			return 0, err
		}
		j := judgement.Judge(ctx, op, judgement.Trust{Policies: set, Keyring: kr, Repository: p.repo, Environments: envs, Approval: aopts},
			judgement.Inputs{PlanDigest: rep.PlanDigest, Envelopes: subs, Now: now})
		rep.PolicyDigest = set.Digest()
		rep.Outcome = string(j.Decision.Outcome)
		if j.Outcome == judgement.Denied {
			fmt.Fprintf(env.stdout, "%s: denied by the policies; no approval can allow it:\n", pb.Path)
			for _, r := range j.Decision.ReasonsOf(policy.KindDeny) {
				fmt.Fprintf(env.stdout, "  %s\n", r)
			}
			return exitFailure, nil
		}
		rep.ApprovalsRequired, rep.ApproverRoles = j.Decision.ApprovalsRequired, j.Decision.ApproverRoles
		v = *j.Verdict
	}
	if len(rep.ApproverRoles) == 0 {
		rep.ApproverRoles = []string{approval.RoleApprover}
	}
	if v.Err != nil {
		return 0, exitWith(exitFailure, fmt.Errorf("verify: %w", v.Err))
	}
	rep.Verdict = v
	rep.Summary = v.Summary()
	rep.Envelopes = envelopeOutcomes(p.envelopes, v)

	if p.format == "json" {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 0, exitWith(exitFailure, err)
		}
	} else if err := writeVerifyText(env.stdout, rep); err != nil {
		return 0, exitWith(exitFailure, err)
	}
	if !v.QuorumMet {
		return exitFailure, nil
	}
	return exitOK, nil
}

// loadVerifyPolicies loads the policy set and the environments the
// judgement of writ approvals verify uses.
func loadVerifyPolicies(root string, p approvalsVerifyParams) (*policy.Set, policy.Environments, error) {
	fsys, shown, err := approvalPolicyDir(root, p.policies)
	if err != nil {
		return nil, nil, err
	}
	set, err := policy.LoadFS(fsys, ".", policy.Options{Root: shown})
	if err != nil {
		return nil, nil, exitWith(exitFailure, fmt.Errorf("load policies %s: %w", shown, err))
	}
	envs := policy.DefaultEnvironments()
	if p.environments != "" {
		if envs, err = policy.LoadEnvironments(p.environments); err != nil {
			return nil, nil, usageError("--environments: %v", err)
		}
	}
	return set, envs, nil
}

// envelopeOutcomes says, per envelope file, what became of it.
func envelopeOutcomes(files []string, v approval.Verdict) []envelopeOutcome {
	out := make([]envelopeOutcome, len(files))
	for i, f := range files {
		out[i] = envelopeOutcome{File: f}
	}
	for _, p := range v.Proposals {
		out[p.EnvelopeIndex].Status, out[p.EnvelopeIndex].Approver = "proposal", p.Proposer
	}
	for _, c := range v.Counted {
		out[c.EnvelopeIndex].Status, out[c.EnvelopeIndex].Approver = "counted", c.Approver
		out[c.EnvelopeIndex].Message = fmt.Sprintf("as %s, until %s", c.Role, c.ValidUntil.UTC().Format(time.RFC3339))
	}
	for _, r := range v.Rejected {
		out[r.EnvelopeIndex].Status, out[r.EnvelopeIndex].Approver = "rejection", r.Approver
		out[r.EnvelopeIndex].Message = r.Reason
	}
	for _, n := range v.NotCounted {
		o := &out[n.EnvelopeIndex]
		o.Status, o.Approver, o.Code, o.Message = "not_counted", n.Approver, string(n.Code), n.Message
	}
	return out
}

func writeVerifyText(w io.Writer, rep verifyReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "playbook\t%s (sha256 %s)\n", rep.Playbook, rep.Digest)
	need := fmt.Sprintf("%d approval%s from %s", rep.ApprovalsRequired, map[bool]string{true: "", false: "s"}[rep.ApprovalsRequired == 1], strings.Join(rep.ApproverRoles, " or "))
	if rep.Outcome != "" {
		need = rep.Outcome + ": " + need
	}
	fmt.Fprintf(tw, "policy\t%s (policy set %s)\n", need, rep.PolicyDigest)
	fmt.Fprintf(tw, "plan\t%s\n", rep.PlanDigest)
	for _, e := range rep.Envelopes {
		switch e.Status {
		case "proposal":
			fmt.Fprintf(tw, "%s\tproposal by %s\n", e.File, e.Approver)
		case "counted":
			fmt.Fprintf(tw, "%s\tcounted: %s %s\n", e.File, e.Approver, e.Message)
		case "rejection":
			fmt.Fprintf(tw, "%s\tREJECTED by %s: %s\n", e.File, e.Approver, flattenText(e.Message, 500))
		default:
			fmt.Fprintf(tw, "%s\tnot counted: %s: %s\n", e.File, e.Code, flattenText(e.Message, 500))
		}
	}
	fmt.Fprintf(tw, "verdict\t%s\n", rep.Summary)
	return tw.Flush()
}

// readEnvelopeFile reads at most one byte more than an envelope may have:
// an oversized one is then refused by the verifier, with the others judged.
func readEnvelopeFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, approval.MaxEnvelopeBytes+1))
}
