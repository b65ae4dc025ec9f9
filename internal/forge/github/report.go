package github

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	gh "github.com/google/go-github/v88/github"

	"github.com/writ-sec/writ/internal/approval"
	fr "github.com/writ-sec/writ/internal/forge/report"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// Check run conclusions writ uses.
const (
	ConclusionSuccess        = fr.ConclusionSuccess
	ConclusionActionRequired = fr.ConclusionActionRequired
	ConclusionFailure        = fr.ConclusionFailure
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

// buildReport turns an evaluation into a check run: the Markdown is
// internal/forge/report's, the annotations and reviewers GitHub's.
func buildReport(in reportInput) report {
	var stmts []fr.Statement
	for _, g := range in.Statements {
		var what string
		switch g.Kind {
		case store.GitHubReview:
			what = fmt.Sprintf("review %d by @%s", g.RefID, g.Login)
		case store.GitHubComment:
			what = fmt.Sprintf("comment %d by @%s", g.RefID, g.Login)
		default:
			what = fmt.Sprintf("description by @%s", g.Login)
		}
		stmts = append(stmts, fr.Statement{What: what, Outcome: g.Outcome, Message: g.Message})
	}
	r := fr.Build(fr.Input{Forge: forgeWords(in.Repository, in.PR.Number), Branch: in.Branch, Number: in.PR.Number,
		Eval: in.Eval, Statements: stmts})
	return report{Conclusion: r.Conclusion, Title: r.Title, Summary: r.Summary,
		Annotations: annotations(in.Eval), Reviewers: reviewers(in)}
}

// forgeWords is how a report is worded on GitHub.
func forgeWords(repository string, number int) fr.Forge {
	return fr.Forge{
		Change: "pull request", Ref: "#",
		Sign:          fmt.Sprintf("--github --repo %s --pr %d", repository, number),
		ProposalWhere: "in the description or a comment by its author",
		StatementsNote: "A review counts only through the signed writ statement in its body (a ```writ block), verified with the approvers file in force; " +
			"the review's author must be the signer's `github` login. Whether an accepted statement counts is decided above.",
		SummaryLimit: maxSummary,
	}
}

// summaryCut ends a summary cut to GitHub's limit.
const summaryCut = fr.SummaryCut

// capSummary keeps a summary within GitHub's limit, cut on a character
// boundary.
func capSummary(s string) string { return fitChars(s, maxSummary, summaryCut) }

func outcome(p *reconcile.PlaybookEvaluation) string { return fr.Outcome(p) }

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
