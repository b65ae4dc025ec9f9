// Package report renders a change's evaluation (reconcile.Evaluation) as
// the Markdown every forge shows on its pull or merge request: the
// conclusion, a one-line title and the summary (playbooks, decisions,
// approvals, plans, the change to policies/ or .writ/, and the signed
// statements read on the change). A forge names its words (pull request,
// merge request, #7 or !7), how an approver signs there, and its length
// limit; what a forge alone shows (GitHub's annotations and review
// requests) stays in the forge's package.
package report

import (
	"fmt"
	"slices"
	"strings"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/reconcile"
)

// Conclusions of a report.
const (
	ConclusionSuccess        = "success"
	ConclusionActionRequired = "action_required"
	ConclusionFailure        = "failure"
)

// MaxTitle is writ's bound on a title, in characters (see Chars).
const MaxTitle = 255

// SummaryCut ends a summary cut to the forge's limit.
const SummaryCut = "\n\n… (truncated: the full evaluation is in writ's API and audit log)"

// Forge is how a forge words a report.
type Forge struct {
	// Change is what a change is called: "pull request", "merge request".
	Change string
	// Ref prefixes a change's number: "#", "!".
	Ref string
	// Sign is how an approver signs there: the forge's flags of
	// `writ approve` for the change (e.g. "--github --repo O/R --pr 7"),
	// set in the command lines shown.
	Sign string
	// ProposalWhere says where a proposal is read from, in parentheses
	// after "the analyst's signed proposal".
	ProposalWhere string
	// StatementsNote closes the list of signed statements read.
	StatementsNote string
	// SummaryLimit bounds the summary, in characters (see Chars).
	SummaryLimit int
}

// Statement is one text read for signed statements, as listed.
type Statement struct {
	// What names it: "review 12 by @bob".
	What string
	// Outcome is a store.Statement* outcome.
	Outcome string
	Message string
}

// Input is what a report is made of.
type Input struct {
	Forge      Forge
	Branch     string
	Number     int
	Eval       *reconcile.Evaluation
	Statements []Statement
}

// Report is a change's conclusion, title and summary.
type Report struct {
	Conclusion string
	Title      string
	Summary    string
}

// Outcome is a playbook's evaluation outcome, with a deleted file that
// held nothing valid counted as done ("removed").
func Outcome(p *reconcile.PlaybookEvaluation) string {
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

// Build renders an evaluation.
func Build(in Input) Report {
	ev := in.Eval
	var r Report
	counts := map[string]int{}
	failed, waiting := false, false
	for i := range ev.Playbooks {
		o := Outcome(&ev.Playbooks[i])
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
	r.Title = title(in.Forge, ev, counts)
	r.Summary = summary(in)
	return r
}

func title(f Forge, ev *reconcile.Evaluation, counts map[string]int) string {
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
		t = fmt.Sprintf("%s changed: more than the %d writ judges in one %s", Plural(ev.TooManyPlaybooks, "playbook"), ev.PlaybookLimit, f.Change)
	case n == 0 && ev.Meta == nil:
		t = "No playbooks, policies or approvers changed"
	case n == 0:
		t = "No playbooks changed"
	default:
		t = fmt.Sprintf("%s: %s", Plural(n, "playbook"), strings.Join(parts, ", "))
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
	return FitChars(t, MaxTitle, TruncatedMark)
}

// Plural is "1 noun" or "n nouns".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// mdInert rewrites text so that neither forge's Markdown (GitHub's,
// GitLab's) makes anything of it: the characters that open inline markup
// (code, emphasis, links and images, HTML and entities, strikethrough,
// table cells) are backslash-escaped, except the underscore, which result
// codes are full of (would_block) and which links nothing; a mention (@user, @group, @all) and
// an address the forges would link by themselves (https://…, www.…,
// user@host) are broken by a zero-width space, which they do not link;
// and line breaks become spaces, so the text stays on its line and can
// never start a heading, a list, a quote or a quick action.
var mdInert = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "[", `\[`, "]", `\]`,
	"<", `\<`, ">", `\>`, "|", `\|`, "~", `\~`, "&", `\&`,
	"@", "@\u200b", "://", ":\u200b//", "www.", "www\u200b.",
	"\r\n", " ", "\n", " ", "\r", " ",
)

// MD is text for a Markdown line or table cell, inert: what a pull
// request, a comment or a backend's answer carries (a playbook's values in
// a problem, a refused envelope's text, a policy's reason) is shown as
// written and never renders as a link, a mention, HTML or markup in the
// report writ posts.
func MD(s string) string { return mdInert.Replace(s) }

// codeInert keeps inline code on its line and in its table cell.
var codeInert = strings.NewReplacer("`", "'", "|", `\|`, "\r\n", " ", "\n", " ", "\r", " ")

// Code is s as inline code, which renders nothing: a backtick inside
// becomes a quote (it would end the span), a pipe is escaped (it would end
// a table cell) and line breaks become spaces (a blank line would end the
// span and the paragraph).
func Code(s string) string { return "`" + codeInert.Replace(s) + "`" }

func summary(in Input) string {
	ev := in.Eval
	f := in.Forge
	var b strings.Builder
	if m := ev.Malformed; m != nil {
		fmt.Fprintf(&b, "writ did not judge %s%d at %s: its tree holds content writ will not read.\n\n", f.Ref, in.Number, Code(Short(ev.Head)))
		fmt.Fprintf(&b, "- commit: %s\n- entry: %s\n- problem: %s (%s)\n\n", Code(m.Commit), Code(fmt.Sprintf("%q", m.Path)), MD(m.Detail), Code(string(m.Problem)))
		b.WriteString("Merged, such a commit is refused as a whole: none of its playbook changes would be processed. " +
			"Rename or remove the entry (split the change, for a tree too large) and push again.\n")
		statementSection(&b, f, in.Statements)
		return capSummary(f, b.String())
	}
	fmt.Fprintf(&b, "writ judged %s%d at %s as its merge into %s would be judged now: by the policies and approvers in force (commit %s), never by the ones this %s changes.\n\n",
		f.Ref, in.Number, Code(Short(ev.Head)), Code(in.Branch), Code(Short(ev.TrustedCommit)), f.Change)
	fmt.Fprintf(&b, "Policy set: %s\n\n", Code(ev.PolicyDigest))
	if ev.TooManyPlaybooks > 0 {
		fmt.Fprintf(&b, "This %[3]s changes %[1]d playbook files; writ judges at most %[2]d in one %[3]s, because each is decided and dry-run against live systems at every push. None was judged. Split the change into smaller %[3]ss. (Once merged, writ processes every playbook of a commit, judged as usual: only this preview is bounded.)\n\n",
			ev.TooManyPlaybooks, ev.PlaybookLimit, f.Change)
	}
	if len(ev.Playbooks) > 0 {
		b.WriteString("| playbook | change | outcome | approvals |\n|---|---|---|---|\n")
		for i := range ev.Playbooks {
			p := &ev.Playbooks[i]
			o := Outcome(p)
			appr := "–"
			if p.Verdict != nil {
				appr = MD(p.Verdict.Summary())
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", Code(p.Path), p.Change, outcomeLabel[o], appr)
		}
		b.WriteString("\n")
	}
	for i := range ev.Playbooks {
		playbookSection(&b, in, &ev.Playbooks[i])
	}
	if ev.Meta != nil {
		metaSection(&b, in)
	}
	statementSection(&b, f, in.Statements)
	return capSummary(f, b.String())
}

// capSummary keeps a summary within the forge's limit, cut on a character
// boundary.
func capSummary(f Forge, s string) string {
	if f.SummaryLimit <= 0 {
		return s
	}
	return FitChars(s, f.SummaryLimit, SummaryCut)
}

// Short is a commit's first 12 hex digits.
func Short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func playbookSection(b *strings.Builder, in Input, p *reconcile.PlaybookEvaluation) {
	o := Outcome(p)
	name := ""
	if p.Name != "" {
		name = " — " + MD(p.Name)
	}
	fmt.Fprintf(b, "### %s%s: %s\n\n", Code(p.Path), name, outcomeLabel[o])
	if len(p.Problems) > 0 {
		for _, pr := range p.Problems {
			where := ""
			if pr.Path != "" && pr.Path != p.Path {
				where = Code(pr.Path) + " " // a targets file's line
			}
			fmt.Fprintf(b, "- %sline %d, column %d: %s\n", where, max(pr.Line, 1), max(pr.Col, 1), MD(pr.Message))
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
		fmt.Fprintf(b, "- Targets file: %s, %s targets (sha256 %s)", Code(tf.Path), action.Thousands(len(pb.Spec.Targets)), Code(tf.Digest))
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
			fmt.Fprintf(b, " — %s from %s", Plural(d.ApprovalsRequired, "approval"), strings.Join(roles, " or "))
		}
		b.WriteString("\n")
		for _, r := range d.Reasons {
			fmt.Fprintf(b, "  - %s (%s)\n", MD(r.Message), Code(r.Rule))
		}
	}
	if v := p.Verdict; v != nil {
		fmt.Fprintf(b, "- Approvals: %s\n", MD(v.Summary()))
		for _, c := range v.Counted {
			fmt.Fprintf(b, "  - counted: %s (%s)\n", MD(c.Approver), MD(c.Role))
		}
		if v.Missing > 0 {
			fmt.Fprintf(b, "  - missing: %d\n", v.Missing)
		}
		if v.ProposalMissing {
			fmt.Fprintf(b, "  - missing: the analyst's signed proposal (%s)\n", in.Forge.ProposalWhere)
		}
		for _, n := range v.NotCounted {
			who := n.Approver
			if who == "" {
				who = "unknown signer"
			}
			fmt.Fprintf(b, "  - not counted: %s — %s: %s\n", MD(who), n.Code, MD(n.Message))
		}
		for _, r := range v.Rejected {
			fmt.Fprintf(b, "  - rejected by %s: %s\n", MD(r.Approver), MD(r.Reason))
		}
	}
	if p.PlanError != "" {
		fmt.Fprintf(b, "- Plan: cannot plan yet: %s\n", MD(p.PlanError))
	}
	if pl := p.Plan; pl != nil {
		fmt.Fprintf(b, "- Plan (%s with %s in %s)", pl.Operation, Code(pl.Backend), Code(pl.Environment))
		shown, more := pl.Shown()
		if more > 0 {
			fmt.Fprintf(b, ", %s targets: %s; the first %d:", action.Thousands(len(pl.Targets)), MD(pl.CountsText()), len(shown))
		} else {
			b.WriteString(":")
		}
		b.WriteString("\n\n")
		if len(pl.Targets) == 0 {
			b.WriteString("  nothing to change\n")
		} else {
			b.WriteString("  | target | result | detail |\n  |---|---|---|\n")
			for _, t := range shown {
				fmt.Fprintf(b, "  | %s | %s | %s |\n", Code(t.Target), MD(t.Result), MD(t.Detail))
			}
			if more > 0 {
				fmt.Fprintf(b, "\n  … and %s more: the whole plan is in writ's API (the dry-run and the operation's plan).\n", action.Thousands(more))
			}
		}
		b.WriteString("\n")
	}
	if p.Digest != "" && p.PlanDigest != "" {
		fmt.Fprintf(b, "Approvals must cite: playbook %s, policy set %s, plan %s.\n\n", Code(p.Digest), Code(in.Eval.PolicyDigest), Code(p.PlanDigest))
		if o == "awaiting" {
			// The statements are about this operation: a deleted playbook's
			// revert needs --revert (its proposal too: --propose --revert).
			revert := ""
			if p.Operation == "revert" {
				revert = "--revert "
			}
			fmt.Fprintf(b, "```sh\nwrit approve --key KEY --approver ID %s --head %s \\\n    %s--plan-digest %s %s\n```\n\n",
				in.Forge.Sign, in.Eval.Head, revert, p.PlanDigest, p.Path)
			if p.Verdict != nil && p.Verdict.ProposalMissing {
				fmt.Fprintf(b, "It also needs its analyst's signed proposal: `writ approve --key KEY --approver ID %s --propose %s%s`.\n\n",
					in.Forge.Sign, revert, p.Path)
			}
		}
	}
}

func metaSection(b *strings.Builder, in Input) {
	m := in.Eval.Meta
	b.WriteString("### Change to policies/ or .writ/\n\n")
	b.WriteString("What decides whether playbooks run changes here; it takes effect only with the admins' signed approvals.\n\n")
	for _, s := range m.Subjects {
		fmt.Fprintf(b, "- subject %s, sha256 %s, replacing %s\n", Code(s.Path), Code(s.Digest), Code(m.Transition.Replaces[s.Path]))
	}
	fmt.Fprintf(b, "- Trusted commit it changes: %s\n", Code(m.Transition.TrustedCommit))
	fmt.Fprintf(b, "- Admin approvals: %s\n", MD(m.Verdict.Summary()))
	for _, n := range m.Verdict.NotCounted {
		fmt.Fprintf(b, "  - not counted: %s — %s: %s\n", MD(n.Approver), n.Code, MD(n.Message))
	}
	if m.ShadowError != "" {
		fmt.Fprintf(b, "- ❌ The changed policies do not load: %s\n", MD(display.Line(m.ShadowError, 2000)))
	}
	if !m.Verdict.QuorumMet {
		fmt.Fprintf(b, "\nAn admin signs this change (it stays valid for the merge of this %s while nothing else changes what decides):\n\n"+
			"```sh\nwrit approve --key KEY --approver ID %s --trust-change \\\n    --trusted-commit %s --head %s\n```\n",
			in.Forge.Change, in.Forge.Sign, m.Transition.TrustedCommit, in.Eval.Head)
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
			fmt.Fprintf(b, "| %s | %s (not in force) | %s |\n", Code(p), d.Outcome, MD(strings.Join(rs, "; ")))
		}
		b.WriteString("\n")
	}
}

// Outcomes of reading a text for signed statements (as store records them).
var outcomeIcon = map[string]string{"accepted": "✅", "refused": "❌", "no_envelope": "⚠️", "withdrawn": "↩️", "ignored": "–"}

func statementSection(b *strings.Builder, f Forge, stmts []Statement) {
	if len(stmts) == 0 {
		return
	}
	fmt.Fprintf(b, "### Signed statements read on this %s\n\n", f.Change)
	for _, g := range stmts {
		fmt.Fprintf(b, "- %s %s: %s\n", outcomeIcon[g.Outcome], g.What, MD(g.Message))
	}
	b.WriteString("\n" + f.StatementsNote + "\n")
}
