package notify

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/display"
)

// Description is what a notification says: what happened (Summary, one
// line; Details) and what to do next (Next). Text from the repository in
// it is made safe (Safe); a channel escapes it further for its markup.
type Description struct {
	Emoji   string
	Summary string
	Details []string
	Next    string
}

// payload holds the fields of the audit payloads notifications read.
type payload struct {
	Reason      string   `json:"reason"`
	ReasonCode  string   `json:"reason_code"`
	Action      string   `json:"action"`
	Environment string   `json:"environment"`
	Targets     []string `json:"targets"`
	Total       int      `json:"targets_total"`
	Operation   string   `json:"operation"`
	Error       string   `json:"error"`
	Commit      string   `json:"commit"`
	Head        string   `json:"head"`
	How         string   `json:"how"`
	Recovery    bool     `json:"recovery"`
	Problem     string   `json:"problem"`
	Problems    string   `json:"problems"`
	Path        string   `json:"path"`
	Execution   int64    `json:"execution"`
	Remaining   []string `json:"remaining"`
	Hold        int64    `json:"hold"`
	Backend     string   `json:"backend"`
	Mode        string   `json:"mode"`
	Counts      any      `json:"counts"`
	Deadline    string   `json:"deadline"`
	Signer      string   `json:"signer"`
	Resolution  string   `json:"resolution"`
	Decision    *struct {
		ApproverRoles     []string `json:"approver_roles"`
		ApprovalsRequired int      `json:"approvals_required"`
		Reasons           []struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"reasons"`
	} `json:"decision"`
	Malformed *struct {
		Problem string `json:"problem"`
		Path    string `json:"path"`
	} `json:"malformed"`
}

func payloadOf(e audit.Entry) payload {
	var p payload
	_ = json.Unmarshal(e.Payload, &p)
	return p
}

// approverRoles are the roles a waiting operation's decision asks for
// (default approver).
func (p payload) approverRoles() []string {
	if p.Decision != nil && len(p.Decision.ApproverRoles) > 0 {
		return p.Decision.ApproverRoles
	}
	return []string{"approver"}
}

// Describe says what an audit entry means and what to do next. esc
// escapes text from the repository (or a person) for the channel's markup,
// after Safe; consoleURL, when set, links the console.
func Describe(e audit.Entry, consoleURL string, esc func(string) string) Description {
	if esc == nil {
		esc = func(s string) string { return s }
	}
	t := func(s string) string { return esc(display.Safe(s)) }
	p := payloadOf(e)
	name := t(e.Subject.Name)
	targets := strings.Join(p.Targets, ", ")
	if p.Total > len(p.Targets) {
		// A long list (a targets file) is recorded as its first targets
		// and its length.
		targets = fmt.Sprintf("%d targets: %s, …", p.Total, targets)
	}
	what := fmt.Sprintf("%s %s on %s (%s)", t(p.Operation), t(p.Action), t(p.Environment), t(targets))
	link := func(path string) string {
		if consoleURL == "" {
			return ""
		}
		return " or in the console: " + strings.TrimRight(consoleURL, "/") + path
	}
	op := fmt.Sprintf("op-%d", p.Execution)
	switch e.Event {
	case audit.EventExecutionWaiting:
		return Description{":writing_hand:", fmt.Sprintf("Approval needed for %s: %s", name, what), []string{t(p.Reason)},
			fmt.Sprintf("%s (roles: %s) review and sign it: `writ approve %s`%s", plural(p.Decision != nil && p.Decision.ApprovalsRequired > 1, "an approver", "approvers"),
				t(strings.Join(p.approverRoles(), ", ")), op, link("/pending/"+op))}
	case audit.EventExecutionRejected:
		return Description{":no_entry_sign:", fmt.Sprintf("%s was rejected: %s", name, what), []string{t(p.Reason)},
			"Nothing runs. To run it after all, change the playbook (its ticket, say) and merge it for a fresh review; otherwise remove the playbook file."}
	case audit.EventExecutionDenied:
		var why []string
		if p.Decision != nil {
			for _, r := range p.Decision.Reasons {
				if r.Kind == "deny" {
					why = append(why, t(r.Message))
				}
			}
		}
		if len(why) == 0 {
			why = []string{t(p.Reason)}
		}
		return Description{":no_entry:", fmt.Sprintf("Policy denied %s: %s", name, what), why,
			"Nothing runs. Change the playbook so the policies allow it (`writ plan PLAYBOOK` shows their decision) and merge again, or remove it; policies change only with the admins' approvals."}
	case audit.EventPlaybookInvalid:
		return Description{":warning:", fmt.Sprintf("%s on the branch is not a valid playbook", t(firstNonEmpty(p.Path, e.Subject.Name))), lines(t(p.Problems)),
			fmt.Sprintf("Nothing of it runs. Fix or delete it in a new commit (`writ validate %s` shows the problems); GET /api/v1/playbooks lists it until then.", t(firstNonEmpty(p.Path, e.Subject.Name)))}
	case audit.EventCommitRefused:
		return Description{":no_entry:", fmt.Sprintf("writ refused commit %.12s: its tree is malformed (%s at %s)", p.Commit, t(p.Problem), t(fmt.Sprintf("%q", p.Path))),
			[]string{t(p.Reason)}, "None of its playbook changes was processed. Fix or remove the file in a new commit on the branch."}
	case audit.EventExecutionFailed:
		return Description{":x:", fmt.Sprintf("%s failed: %s", name, what), []string{t(firstNonEmpty(p.Error, p.Reason))},
			fmt.Sprintf("Once the cause is fixed, an executor retries it without new approvals: `writ retry %d`%s.", p.Execution, link(fmt.Sprintf("/executions/%d", p.Execution)))}
	case audit.EventExecutionCompleted:
		return Description{":white_check_mark:", fmt.Sprintf("%s executed: %s", name, what), []string{t(p.Reason)}, ""}
	case audit.EventExecutionStopped:
		return Description{":octagonal_sign:", fmt.Sprintf("%s was stopped right before it ran: %s", name, what), []string{t(p.Reason)},
			"It is judged again with what is in force now; `writ pending` shows what it waits for."}
	case audit.EventExecutionRetryRequested:
		left := ""
		if len(p.Remaining) > 0 && len(p.Remaining) < len(p.Targets) {
			left = "; only " + t(strings.Join(p.Remaining, ", ")) + " (the others were applied)"
		}
		return Description{":repeat:", fmt.Sprintf("%s asked to retry %s: %s%s", t(e.Actor.ID), name, what, left), nil,
			"It is checked at the moment of use before it runs."}
	case audit.EventRepositoryHistoryRewritten:
		return Description{":warning:", fmt.Sprintf("writ is holding (hold %d): the branch history was rewritten (head %.12s)", p.Hold, p.Head), nil,
			fmt.Sprintf("Nothing runs until an admin checks the new history and acknowledges the hold: POST /api/v1/holds/%d/acknowledge.", p.Hold)}
	case audit.EventPolicyChangeHeld:
		if m := p.Malformed; m != nil {
			return Description{":warning:", fmt.Sprintf("writ is holding: policies/ or .writ/ at %.12s is malformed (%s at %s) and cannot be adopted", p.Commit, t(m.Problem), t(fmt.Sprintf("%q", m.Path))),
				[]string{"The last trusted version stays in force."}, "Fix the file in a new commit; admins then sign the corrected change."}
		}
		return Description{":warning:", fmt.Sprintf("writ is holding: a change to policies/ or .writ/ at %.12s lacks its admin approvals", p.Commit),
			[]string{"The last trusted version stays in force."},
			fmt.Sprintf("Admins review and sign it: `writ approve trust-%d`%s", p.Hold, link(fmt.Sprintf("/pending/trust-%d", p.Hold)))}
	case audit.EventAuditRollbackHeld:
		return Description{":rotating_light:", fmt.Sprintf("writ is holding (hold %d): %s", p.Hold, t(p.Reason)), nil,
			fmt.Sprintf("Nothing executes until a quorum of admins, having checked the log, signs its acknowledgement: `writ approve audit-%d`.", p.Hold)}
	case audit.EventDriftDetected, audit.EventDriftResolved:
		return driftDescription(e, t)
	case audit.EventBreakGlassInvoked:
		return Description{":fire_engine:", fmt.Sprintf("Break-glass: %s applied %s on one emergency statement: %s", t(firstNonEmpty(p.Signer, e.Actor.ID)), name, what), nil,
			fmt.Sprintf("Approvers (roles: %s) sign its normal quorum before %s or it is reverted: `writ approve %s`%s",
				t(strings.Join(p.approverRoles(), ", ")), t(p.Deadline), op, link("/pending/"+op))}
	case audit.EventBreakGlassConfirmed:
		return Description{":white_check_mark:", fmt.Sprintf("Break-glass %s gathered its quorum in time: it stays in force", name), nil, ""}
	case audit.EventBreakGlassLapsed:
		return Description{":rewind:", fmt.Sprintf("Break-glass %s lapsed: no quorum by %s, its revert is scheduled", name, t(p.Deadline)), nil,
			"Review the emergency and its revert (`writ pending`); to keep the block, merge it again for a normal review."}
	case audit.EventRepositoryHoldAcknowledged:
		return Description{":unlock:", fmt.Sprintf("%s acknowledged hold %d (%s): writ resumes", t(e.Actor.ID), p.Hold, t(p.Resolution)), nil,
			"An override: check it was meant (`writ audit export --event repository.hold_acknowledged`)."}
	case audit.EventPolicyChangeAdopted:
		if p.Recovery {
			return Description{":rotating_light:", fmt.Sprintf("writ adopted the change to policies/ or .writ/ at %.12s with the server's RECOVERY keys (%s)", p.Commit, t(p.How)), nil,
				"An override: admins review the adopted policies and approvers now."}
		}
		return Description{":scroll:", fmt.Sprintf("writ adopted the change to policies/ or .writ/ at %.12s (%s)", p.Commit, t(p.How)), nil, ""}
	case audit.EventPolicyChangeDismissed:
		return Description{":no_entry:", fmt.Sprintf("%s dismissed the unapproved change to policies/ or .writ/ at %.12s: it stays unadopted", t(e.Actor.ID), p.Commit), nil,
			"An override: to adopt the change after all, admins sign it in a new commit."}
	case audit.EventAuditRollbackAcknowledged:
		return Description{":scroll:", fmt.Sprintf("The audit log rollback hold %d was acknowledged with signed statements (%s)", p.Hold, t(p.How)),
			[]string{"The log as it is now is the one writ expects."}, "An override: check the acknowledgement was meant (`writ audit verify`)."}
	case audit.EventExecutionManualStart:
		return Description{":arrow_forward:", fmt.Sprintf("%s started %s by hand: %s", t(e.Actor.ID), name, what), nil,
			"An override of its schedule: check it was meant."}
	}
	return Description{":information_source:", fmt.Sprintf("%s: %s", e.Event, name), nil, ""}
}

// Text is an event's Slack text (mrkdwn): what happened and what to do
// next.
func Text(e audit.Entry) string { return slackText(Describe(e, "", slackEscape)) }

func slackText(d Description) string {
	var b strings.Builder
	b.WriteString(d.Emoji + " " + d.Summary + ".")
	for _, l := range d.Details {
		if l != "" {
			b.WriteString(" " + l)
		}
	}
	if d.Next != "" {
		b.WriteString("\n*Next:* " + d.Next)
	}
	return b.String()
}

// plainText is an email body's text.
func plainText(d Description) string {
	var b strings.Builder
	b.WriteString(d.Summary + ".\n")
	for _, l := range d.Details {
		if l != "" {
			b.WriteString("\n" + l + "\n")
		}
	}
	if d.Next != "" {
		b.WriteString("\nWhat to do next:\n" + d.Next + "\n")
	}
	return b.String()
}

// oneLine is s on one line (a mail header).
func oneLine(s string) string {
	return display.Line(display.Safe(s), 0)
}

// slackEscape keeps text a pusher wrote (a file name) from being read as
// Slack markup: a mention such as <!channel>, or a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	ls := strings.Split(s, "\n")
	if len(ls) > 20 {
		ls = append(ls[:20], fmt.Sprintf("… and %d more", len(ls)-20))
	}
	return ls
}

func compactJSON(v any) string {
	if v == nil {
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func plural(many bool, one, more string) string {
	if many {
		return strings.ToUpper(more[:1]) + more[1:]
	}
	return strings.ToUpper(one[:1]) + one[1:]
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
