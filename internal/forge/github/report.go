package github

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	gh "github.com/google/go-github/v88/github"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// Check run conclusions writ uses.
const (
	ConclusionSuccess        = "success"
	ConclusionActionRequired = "action_required"
	ConclusionFailure        = "failure"
)

// AnnotationsPerWrite is how many annotations GitHub takes in one request
// (the text limits are in truncate.go).
const AnnotationsPerWrite = 50

// report is a pull request's check, ready to be written.
type report struct {
	Conclusion  string
	Title       string
	Summary     string
	Annotations []*gh.CheckRunAnnotation
	// Reviewers are the GitHub logins qualified to give a missing approval.
	Reviewers []string
}

type reportInput struct {
	Repository string
	Branch     string
	PR         prInfo
	Eval       *reconcile.Evaluation
	Statements []*store.GitHubStatement
	Keyring    *approval.Keyring
}

// outcome is a playbook's evaluation outcome, with a deleted file that
// held nothing valid counted as done.
func outcome(p *reconcile.PlaybookEvaluation) string {
	if p.Change == gitsrc.Deleted && p.Playbook == nil && len(p.Problems) == 0 {
		return "removed"
	}
	return p.Outcome()
}

var outcomeLabel = map[string]string{
	"invalid":  "❌ invalid",
	"deny":     "⛔ denied by policy",
	"rejected": "⛔ rejected",
	"awaiting": "⏳ awaiting",
	"ready":    "✅ ready",
	"removed":  "✅ removed (nothing was in force)",
}

// buildReport turns an evaluation into a check run.
func buildReport(in reportInput) report {
	ev := in.Eval
	var r report
	counts := map[string]int{}
	failed, waiting := false, false
	for i := range ev.Playbooks {
		o := outcome(&ev.Playbooks[i])
		counts[o]++
		switch o {
		case "invalid", "deny", "rejected":
			failed = true
		case "awaiting":
			waiting = true
		}
	}
	if ev.TooManyPlaybooks > 0 || ev.Malformed != nil {
		failed = true
	}
	if m := ev.Meta; m != nil {
		switch {
		case m.ShadowError != "" || len(m.Verdict.Rejected) > 0:
			failed = true
		case !m.Verdict.QuorumMet:
			waiting = true
		}
	}
	switch {
	case failed:
		r.Conclusion = ConclusionFailure
	case waiting:
		r.Conclusion = ConclusionActionRequired
	default:
		r.Conclusion = ConclusionSuccess
	}
	r.Title = title(ev, counts)
	r.Summary = summary(in, counts)
	r.Annotations = annotations(ev)
	r.Reviewers = reviewers(in)
	return r
}

func title(ev *reconcile.Evaluation, counts map[string]int) string {
	n := len(ev.Playbooks)
	var parts []string
	for _, o := range []string{"invalid", "deny", "rejected", "awaiting", "ready", "removed"} {
		if c := counts[o]; c > 0 {
			label := map[string]string{"invalid": "invalid", "deny": "denied", "rejected": "rejected",
				"awaiting": "awaiting approval", "ready": "ready", "removed": "removed"}[o]
			parts = append(parts, fmt.Sprintf("%d %s", c, label))
		}
	}
	var t string
	switch {
	case ev.Malformed != nil:
		t = fmt.Sprintf("Not judged: the tree is malformed (%s at %q)", ev.Malformed.Problem, ev.Malformed.Path)
	case ev.TooManyPlaybooks > 0:
		t = fmt.Sprintf("%s changed: more than the %d writ judges in one pull request", plural(ev.TooManyPlaybooks, "playbook"), ev.PlaybookLimit)
	case n == 0 && ev.Meta == nil:
		t = "No playbooks, policies or approvers changed"
	case n == 0:
		t = "No playbooks changed"
	default:
		t = fmt.Sprintf("%s: %s", plural(n, "playbook"), strings.Join(parts, ", "))
	}
	if m := ev.Meta; m != nil {
		switch {
		case m.ShadowError != "":
			t += "; the changed policies do not load"
		case m.Verdict.QuorumMet:
			t += "; policy/approver change approved"
		default:
			t += "; policy/approver change needs admin approvals"
		}
	}
	return fitChars(t, maxTitle, truncatedMark)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// md escapes text for a Markdown table cell or a line.
func md(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "\r", "")
}

func code(s string) string { return "`" + strings.ReplaceAll(s, "`", "'") + "`" }

func summary(in reportInput, counts map[string]int) string {
	ev := in.Eval
	var b strings.Builder
	if m := ev.Malformed; m != nil {
		fmt.Fprintf(&b, "writ did not judge #%d at %s: its tree holds content writ will not read.\n\n", in.PR.Number, code(short(ev.Head)))
		fmt.Fprintf(&b, "- commit: %s\n- entry: %s\n- problem: %s (%s)\n\n", code(m.Commit), code(fmt.Sprintf("%q", m.Path)), md(m.Detail), code(string(m.Problem)))
		b.WriteString("Merged, such a commit is refused as a whole: none of its playbook changes would be processed. " +
			"Rename or remove the entry (split the change, for a tree too large) and push again.\n")
		reviewSection(&b, in.Statements)
		return capSummary(b.String())
	}
	fmt.Fprintf(&b, "writ judged #%d at %s as its merge into %s would be judged now: by the policies and approvers in force (commit %s), never by the ones this pull request changes.\n\n",
		in.PR.Number, code(short(ev.Head)), code(in.Branch), code(short(ev.TrustedCommit)))
	fmt.Fprintf(&b, "Policy set: %s\n\n", code(ev.PolicyDigest))
	if ev.TooManyPlaybooks > 0 {
		fmt.Fprintf(&b, "This pull request changes %d playbook files; writ judges at most %d in one pull request, because each is decided and dry-run against live systems at every push. None was judged. Split the change into smaller pull requests. (Once merged, writ processes every playbook of a commit, judged as usual: only this preview is bounded.)\n\n",
			ev.TooManyPlaybooks, ev.PlaybookLimit)
	}
	if len(ev.Playbooks) > 0 {
		b.WriteString("| playbook | change | outcome | approvals |\n|---|---|---|---|\n")
		for i := range ev.Playbooks {
			p := &ev.Playbooks[i]
			o := outcome(p)
			appr := "–"
			if p.Verdict != nil {
				appr = md(p.Verdict.Summary())
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", code(p.Path), p.Change, outcomeLabel[o], appr)
		}
		b.WriteString("\n")
	}
	for i := range ev.Playbooks {
		playbookSection(&b, in, &ev.Playbooks[i])
	}
	if ev.Meta != nil {
		metaSection(&b, in)
	}
	reviewSection(&b, in.Statements)
	return capSummary(b.String())
}

// summaryCut ends a summary cut to GitHub's limit.
const summaryCut = "\n\n… (truncated: the full evaluation is in writ's API and audit log)"

// capSummary keeps a summary within GitHub's limit, cut on a character
// boundary.
func capSummary(s string) string { return fitChars(s, maxSummary, summaryCut) }

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func playbookSection(b *strings.Builder, in reportInput, p *reconcile.PlaybookEvaluation) {
	o := outcome(p)
	name := ""
	if p.Name != "" {
		name = " — " + md(p.Name)
	}
	fmt.Fprintf(b, "### %s%s: %s\n\n", code(p.Path), name, outcomeLabel[o])
	if len(p.Problems) > 0 {
		for _, pr := range p.Problems {
			where := ""
			if pr.Path != "" && pr.Path != p.Path {
				where = code(pr.Path) + " " // a targets file's line
			}
			fmt.Fprintf(b, "- %sline %d, column %d: %s\n", where, max(pr.Line, 1), max(pr.Col, 1), md(pr.Message))
		}
		b.WriteString("\n")
		return
	}
	if o == "removed" {
		b.WriteString("The file held no valid playbook, so nothing is reverted.\n\n")
		return
	}
	fmt.Fprintf(b, "- Operation: **%s** (%s)\n", p.Operation, p.ChangeType)
	if pb := p.Playbook; pb != nil && pb.TargetsFile != nil {
		tf := pb.TargetsFile
		fmt.Fprintf(b, "- Targets file: %s, %s targets (sha256 %s)", code(tf.Path), action.Thousands(len(pb.Spec.Targets)), code(tf.Digest))
		if tf.Duplicates > 0 {
			fmt.Fprintf(b, ", %s repeated lines merged", action.Thousands(tf.Duplicates))
		}
		b.WriteString(": approvals cover it with the playbook\n")
	}
	if d := p.Decision; d != nil {
		fmt.Fprintf(b, "- Decision: **%s**", d.Outcome)
		if d.Outcome == policy.RequireApproval {
			roles := d.ApproverRoles
			if len(roles) == 0 {
				roles = []string{approval.RoleApprover}
			}
			fmt.Fprintf(b, " — %s from %s", plural(d.ApprovalsRequired, "approval"), strings.Join(roles, " or "))
		}
		b.WriteString("\n")
		for _, r := range d.Reasons {
			fmt.Fprintf(b, "  - %s (%s)\n", md(r.Message), code(r.Rule))
		}
	}
	if v := p.Verdict; v != nil {
		fmt.Fprintf(b, "- Approvals: %s\n", md(v.Summary()))
		for _, c := range v.Counted {
			fmt.Fprintf(b, "  - counted: %s (%s)\n", md(c.Approver), md(c.Role))
		}
		if v.Missing > 0 {
			fmt.Fprintf(b, "  - missing: %d\n", v.Missing)
		}
		if v.ProposalMissing {
			b.WriteString("  - missing: the analyst's signed proposal (in the description or a comment by its author)\n")
		}
		for _, n := range v.NotCounted {
			who := n.Approver
			if who == "" {
				who = "unknown signer"
			}
			fmt.Fprintf(b, "  - not counted: %s — %s: %s\n", md(who), n.Code, md(n.Message))
		}
		for _, r := range v.Rejected {
			fmt.Fprintf(b, "  - rejected by %s: %s\n", md(r.Approver), md(r.Reason))
		}
	}
	if p.PlanError != "" {
		fmt.Fprintf(b, "- Plan: cannot plan yet: %s\n", md(p.PlanError))
	}
	if pl := p.Plan; pl != nil {
		fmt.Fprintf(b, "- Plan (%s with %s in %s)", pl.Operation, code(pl.Backend), code(pl.Environment))
		shown, more := pl.Shown()
		if more > 0 {
			fmt.Fprintf(b, ", %s targets: %s; the first %d:", action.Thousands(len(pl.Targets)), md(pl.CountsText()), len(shown))
		} else {
			b.WriteString(":")
		}
		b.WriteString("\n\n")
		if len(pl.Targets) == 0 {
			b.WriteString("  nothing to change\n")
		} else {
			b.WriteString("  | target | result | detail |\n  |---|---|---|\n")
			for _, t := range shown {
				fmt.Fprintf(b, "  | %s | %s | %s |\n", code(t.Target), md(t.Result), md(t.Detail))
			}
			if more > 0 {
				fmt.Fprintf(b, "\n  … and %s more: the whole plan is in writ's API (the dry-run and the operation's plan).\n", action.Thousands(more))
			}
		}
		b.WriteString("\n")
	}
	if p.Digest != "" && p.PlanDigest != "" {
		fmt.Fprintf(b, "Approvals must cite: playbook %s, policy set %s, plan %s.\n\n", code(p.Digest), code(in.Eval.PolicyDigest), code(p.PlanDigest))
		if o == "awaiting" {
			// The statements are about this operation: a deleted playbook's
			// revert needs --revert (its proposal too: --propose --revert).
			revert := ""
			if p.Operation == "revert" {
				revert = "--revert "
			}
			fmt.Fprintf(b, "```sh\nwrit approve --key KEY --approver ID --github --repo %s --pr %d --head %s \\\n    %s--plan-digest %s %s\n```\n\n",
				in.Repository, in.PR.Number, in.Eval.Head, revert, p.PlanDigest, p.Path)
			if p.Verdict != nil && p.Verdict.ProposalMissing {
				fmt.Fprintf(b, "It also needs its analyst's signed proposal: `writ approve --key KEY --approver ID --github --repo %s --pr %d --propose %s%s`.\n\n",
					in.Repository, in.PR.Number, revert, p.Path)
			}
		}
	}
}

func metaSection(b *strings.Builder, in reportInput) {
	m := in.Eval.Meta
	b.WriteString("### Change to policies/ or .writ/\n\n")
	b.WriteString("What decides whether playbooks run changes here; it takes effect only with the admins' signed approvals.\n\n")
	for _, s := range m.Subjects {
		fmt.Fprintf(b, "- subject %s, sha256 %s, replacing %s\n", code(s.Path), code(s.Digest), code(m.Transition.Replaces[s.Path]))
	}
	fmt.Fprintf(b, "- Trusted commit it changes: %s\n", code(m.Transition.TrustedCommit))
	fmt.Fprintf(b, "- Admin approvals: %s\n", md(m.Verdict.Summary()))
	for _, n := range m.Verdict.NotCounted {
		fmt.Fprintf(b, "  - not counted: %s — %s: %s\n", md(n.Approver), n.Code, md(n.Message))
	}
	if m.ShadowError != "" {
		fmt.Fprintf(b, "- ❌ The changed policies do not load: %s\n", md(display.Line(m.ShadowError, 2000)))
	}
	if !m.Verdict.QuorumMet {
		fmt.Fprintf(b, "\nAn admin signs this change (it stays valid for the merge of this pull request while nothing else changes what decides):\n\n"+
			"```sh\nwrit approve --key KEY --approver ID --github --repo %s --pr %d --trust-change \\\n    --trusted-commit %s --head %s\n```\n",
			in.Repository, in.PR.Number, m.Transition.TrustedCommit, in.Eval.Head)
	}
	b.WriteString("\n")
	if len(m.Shadow) > 0 {
		b.WriteString("**Not in force** — what the changed policies would decide (shown for review; the policies in force decided above):\n\n")
		b.WriteString("| playbook | decision (not in force) | reasons |\n|---|---|---|\n")
		var paths []string
		for p := range m.Shadow {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		for _, p := range paths {
			d := m.Shadow[p]
			var rs []string
			for _, r := range d.Reasons {
				rs = append(rs, r.Message)
			}
			fmt.Fprintf(b, "| %s | %s (not in force) | %s |\n", code(p), d.Outcome, md(strings.Join(rs, "; ")))
		}
		b.WriteString("\n")
	}
}

func reviewSection(b *strings.Builder, stmts []*store.GitHubStatement) {
	if len(stmts) == 0 {
		return
	}
	b.WriteString("### Signed statements read on this pull request\n\n")
	for _, g := range stmts {
		var what string
		switch g.Kind {
		case store.GitHubReview:
			what = fmt.Sprintf("review %d by @%s", g.RefID, g.Login)
		case store.GitHubComment:
			what = fmt.Sprintf("comment %d by @%s", g.RefID, g.Login)
		default:
			what = fmt.Sprintf("description by @%s", g.Login)
		}
		icon := map[string]string{store.StatementAccepted: "✅", store.StatementRefused: "❌", store.StatementNoEnvelope: "⚠️",
			store.StatementWithdrawn: "↩️", store.StatementIgnored: "–"}[g.Outcome]
		fmt.Fprintf(b, "- %s %s: %s\n", icon, what, md(g.Message))
	}
	b.WriteString("\nA review counts only through the signed writ statement in its body (a ```writ block), verified with the approvers file in force; the review's author must be the signer's `github` login. Whether an accepted statement counts is decided above.\n")
}

// annotations place each problem on its file's line and column.
func annotations(ev *reconcile.Evaluation) []*gh.CheckRunAnnotation {
	var out []*gh.CheckRunAnnotation
	add := func(path string, line, col int, level, title, msg string) {
		a := &gh.CheckRunAnnotation{
			Path: gh.Ptr(path), StartLine: gh.Ptr(max(line, 1)), EndLine: gh.Ptr(max(line, 1)),
			AnnotationLevel: gh.Ptr(level), Title: gh.Ptr(fitChars(title, maxAnnotationTitle, truncatedMark)),
			Message: gh.Ptr(fitBytes(msg, maxAnnotationMessage, truncatedMark)),
		}
		if col > 0 {
			a.StartColumn, a.EndColumn = gh.Ptr(col), gh.Ptr(col)
		}
		out = append(out, a)
	}
	for i := range ev.Playbooks {
		p := &ev.Playbooks[i]
		for _, pr := range p.Problems {
			level := "failure"
			if pr.Severity == "warning" {
				level = "warning"
			}
			t := "invalid playbook"
			if pr.Code != "" {
				t = "invalid playbook: " + pr.Code
			}
			// A problem of a targets file is annotated on that file.
			path := cmp.Or(pr.Path, p.Path)
			add(path, pr.Line, pr.Col, level, t, pr.Message)
		}
		if p.Playbook == nil || p.Change == gitsrc.Deleted {
			continue
		}
		switch outcome(p) {
		case "deny":
			pos := p.Playbook.Pos("/spec/action")
			for _, r := range p.Decision.Reasons {
				if r.Kind == policy.KindDeny {
					add(p.Path, pos.Line, pos.Col, "failure", "denied by policy: "+r.Rule, r.Message)
				}
			}
		case "rejected":
			pos := p.Playbook.Pos("/metadata/name")
			for _, r := range p.Verdict.Rejected {
				add(p.Path, pos.Line, pos.Col, "failure", "rejected by "+r.Approver, r.Reason)
			}
		}
	}
	return out
}

// reviewers are the GitHub logins of the people qualified to give a
// missing approval: the trusted approvers file's people with a qualifying
// role (the decision's approver roles; admins for a change to policies/
// or .writ/), enabled, with a login — never the proposer, the pull
// request's author or someone already counted.
func reviewers(in reportInput) []string {
	if in.Keyring == nil {
		return nil
	}
	want := map[string]bool{}
	excluded := map[string]bool{}
	consider := func(roles []string, v *approval.Verdict) {
		for _, p := range v.Proposals {
			excluded[p.Proposer] = true
		}
		if v.Proposer != "" {
			excluded[v.Proposer] = true
		}
		for _, c := range v.Counted {
			excluded[c.Approver] = true
		}
		if v.Missing <= 0 {
			return
		}
		for _, person := range in.Keyring.People() {
			if person.Disabled || person.Login(approval.ForgeGitHub) == "" {
				continue
			}
			if slices.ContainsFunc(roles, person.Has) {
				want[person.ID] = true
			}
		}
	}
	for i := range in.Eval.Playbooks {
		p := &in.Eval.Playbooks[i]
		if outcome(p) != "awaiting" || p.Verdict == nil || p.Decision == nil {
			continue
		}
		roles := p.Decision.ApproverRoles
		if len(roles) == 0 {
			roles = []string{approval.RoleApprover}
		}
		consider(roles, p.Verdict)
	}
	if m := in.Eval.Meta; m != nil && !m.Verdict.QuorumMet && m.ShadowError == "" {
		consider([]string{approval.RoleAdmin}, &m.Verdict)
	}
	var out []string
	for id := range want {
		if excluded[id] {
			continue
		}
		person, _ := in.Keyring.Person(id)
		if strings.EqualFold(person.Login(approval.ForgeGitHub), in.PR.Author) {
			continue
		}
		out = append(out, person.Login(approval.ForgeGitHub))
	}
	slices.Sort(out)
	return out
}
