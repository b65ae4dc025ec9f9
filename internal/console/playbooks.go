package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// Playbooks and executions: what the API's GET /api/v1/playbooks,
// /playbooks/{name} and /executions/{id} answer, as pages, from the same
// store calls.

// playbookStatuses are the values of the status filter.
var playbookStatuses = []string{
	store.StatusProposed, store.StatusPlanned, store.StatusAwaitingApproval, store.StatusApproved, store.StatusDenied,
	store.StatusRejected, store.StatusExecuting, store.StatusCompleted, store.StatusFailed, store.StatusReverted, store.StatusExpired,
}

// dnsLabel is the shape of playbook and environment names.
var dnsLabel = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`) })

// badQuery answers a query parameter the page cannot use: 400, naming it.
func (c *Console) badQuery(w http.ResponseWriter, r *http.Request, name, problem string) {
	c.errorPage(w, r, http.StatusBadRequest, fmt.Sprintf("Query parameter %q: %s.", name, problem))
}

// playbookRow is a playbook in the list.
type playbookRow struct {
	*store.PlaybookVersion
	// Targets is the number of targets of the current version; -1 when
	// its content does not parse any more.
	Targets int
	Last    *store.Execution
}

func (c *Console) playbooksPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status, err := queryValue(q, "status", 64)
	if err != nil {
		c.badQuery(w, r, "status", err.Error())
		return
	}
	if status != "" && !slices.Contains(playbookStatuses, status) {
		c.badQuery(w, r, "status", fmt.Sprintf("%q is not a playbook status (one of %s)", status, strings.Join(playbookStatuses, ", ")))
		return
	}
	env, err := queryValue(q, "environment", 64)
	if err != nil {
		c.badQuery(w, r, "environment", err.Error())
		return
	}
	if env != "" && !dnsLabel().MatchString(env) {
		c.badQuery(w, r, "environment", fmt.Sprintf("%q is not an environment name (lowercase letters, digits and '-')", env))
		return
	}
	ctx, cancel := pageContext(r)
	defer cancel()
	list, err := c.opts.Store.CurrentPlaybooks(ctx, store.CurrentPlaybookFilter{Status: status, Environment: env})
	if err != nil {
		c.fail(w, r, "list playbooks", err)
		return
	}
	names := make([]string, len(list))
	for i, v := range list {
		names[i] = v.Name
	}
	last, err := c.opts.Store.LastExecutions(ctx, names)
	if err != nil {
		c.fail(w, r, "list playbooks", err)
		return
	}
	rows := make([]playbookRow, len(list))
	for i, v := range list {
		rows[i] = playbookRow{PlaybookVersion: v, Targets: targetCount(v), Last: last[v.Name]}
	}
	c.render(w, r, http.StatusOK, "playbooks.html", "Playbooks", map[string]any{
		"Playbooks": rows, "Status": status, "Environment": env, "Statuses": playbookStatuses,
	})
}

// targetCount is the number of targets a stored version names (inline,
// or in the targets file stored with it). A version's content never
// changes, so the counts are kept by digest: a targets file of 100,000
// lines is read once, not on every page.
func targetCount(v *store.PlaybookVersion) int {
	counts.mu.Lock()
	n, ok := counts.m[v.Digest]
	counts.mu.Unlock()
	if ok {
		return n
	}
	n = -1
	if p, problems := playbook.ParseStored(v.Path, v.Content, v.TargetsFile, playbook.Options{}); problems == nil && p != nil {
		n = len(p.Spec.Targets)
	}
	counts.mu.Lock()
	defer counts.mu.Unlock()
	if len(counts.m) >= maxCounts {
		clear(counts.m)
	}
	counts.m[v.Digest] = n
	return n
}

// counts caches targetCount by content digest, up to maxCounts versions.
var counts = struct {
	mu sync.Mutex
	m  map[string]int
}{m: map[string]int{}}

const maxCounts = 10000

// verdictView is the part of an execution's verdict (reconcile's
// verdictJSON) the pages show.
type verdictView struct {
	QuorumMet  bool                `json:"quorum_met"`
	Required   int                 `json:"required"`
	Missing    int                 `json:"missing"`
	Counted    []string            `json:"counted"`
	Proposer   string              `json:"proposer"`
	Summary    string              `json:"summary"`
	NotCounted []verdictNotCounted `json:"not_counted"`
	Rejected   []verdictRejection  `json:"rejected"`
}

type verdictNotCounted struct {
	Approver string `json:"approver"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

type verdictRejection struct {
	Approver string `json:"approver"`
	Reason   string `json:"reason"`
}

func verdictOf(e *store.Execution) *verdictView {
	if len(e.Verdict) == 0 {
		return nil
	}
	var v verdictView
	if err := json.Unmarshal(e.Verdict, &v); err != nil {
		return nil
	}
	return &v
}

// countedIn is how one operation's last judgement took an approval.
type countedIn struct {
	Execution int64
	Operation string
	// State is counted, not_counted or rejected (a class of .state).
	State  string
	Detail string
}

// approvalRow is an approval received for a version of the playbook.
type approvalRow struct {
	*store.Approval
	Version int64
	Counted []countedIn
}

// operationRow is an execution in the playbook's list.
type operationRow struct {
	*store.Execution
	Verdict *verdictView
}

// versionRow is a version with its status history.
type versionRow struct {
	*store.PlaybookVersion
	History []store.StatusChange
}

// maxVersionsShown bounds the versions (with their history and
// approvals) a playbook page reads.
const maxVersionsShown = 50

func (c *Console) playbookPage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !dnsLabel().MatchString(name) {
		c.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no playbook named %q: a playbook name is a DNS label.", name))
		return
	}
	ctx, cancel := pageContext(r)
	defer cancel()
	cur, err := c.opts.Store.LatestPlaybookVersion(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		c.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no playbook named %q.", name))
		return
	}
	if err != nil {
		c.fail(w, r, "load the playbook", err)
		return
	}
	all, err := c.opts.Store.PlaybookVersionsByName(ctx, name)
	if err != nil {
		c.fail(w, r, "load the playbook's versions", err)
		return
	}
	more := len(all) > maxVersionsShown
	all = all[:min(len(all), maxVersionsShown)]
	versions := make([]versionRow, 0, len(all))
	for _, v := range all {
		h, err := c.opts.Store.PlaybookHistory(ctx, v.ID)
		if err != nil {
			c.fail(w, r, "load the playbook's history", err)
			return
		}
		versions = append(versions, versionRow{PlaybookVersion: v, History: h})
	}
	execs, err := c.opts.Store.ListExecutions(ctx, store.ExecutionFilter{Name: name, Limit: 100})
	if err != nil {
		c.fail(w, r, "load the playbook's operations", err)
		return
	}
	ops := make([]operationRow, len(execs))
	for i, e := range execs {
		ops[i] = operationRow{Execution: e, Verdict: verdictOf(e)}
	}
	var approvals []approvalRow
	for _, v := range all {
		list, err := c.opts.Store.ListApprovals(ctx, store.ApprovalFilter{Digest: v.Digest, Withdrawn: true, Limit: 100})
		if err != nil {
			c.fail(w, r, "load the playbook's approvals", err)
			return
		}
		for _, a := range list {
			approvals = append(approvals, approvalRow{Approval: a, Version: v.ID, Counted: countedBy(a, v.Digest, ops)})
		}
	}
	c.render(w, r, http.StatusOK, "playbook.html", "Playbook "+name, map[string]any{
		"Current": cur, "Content": string(cur.Content), "Targets": targetCount(cur), "Versions": versions, "MoreVersions": more,
		"Operations": ops, "Approvals": approvals,
	})
}

// countedBy says how the last judgement of each operation on the
// approval's digest took the approver's statement. The verdict names
// approvers, so this is per approver, as the verdict is.
func countedBy(a *store.Approval, digest string, ops []operationRow) []countedIn {
	var out []countedIn
	for _, op := range ops {
		if op.Digest != digest || op.Verdict == nil {
			continue
		}
		v := op.Verdict
		ci := countedIn{Execution: op.ID, Operation: op.Operation}
		switch {
		case a.Decision == "approve" && slices.Contains(v.Counted, a.Approver):
			ci.State, ci.Detail = "counted", "counted"
		case a.Decision == "propose" && v.Proposer == a.Approver:
			ci.State, ci.Detail = "counted", "the proposal"
		case a.Decision == "reject" && slices.ContainsFunc(v.Rejected, func(r verdictRejection) bool { return r.Approver == a.Approver }):
			ci.State, ci.Detail = "rejected", "the rejection holds"
		default:
			for _, n := range v.NotCounted {
				if n.Approver == a.Approver {
					ci.State, ci.Detail = "not_counted", "not counted: "+n.Code+": "+n.Message
					break
				}
			}
		}
		if ci.State == "" {
			ci.State, ci.Detail = "not_counted", "not counted"
		}
		out = append(out, ci)
	}
	return out
}

// executionPage shows one operation: its state and reason, timings,
// per-target results (the backend's error in detail), plan and verdict.
func (c *Console) executionPage(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		c.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no execution %q: an execution id is a positive number.", raw))
		return
	}
	ctx, cancel := pageContext(r)
	defer cancel()
	e, err := c.opts.Store.ExecutionByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		c.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no execution %d.", id))
		return
	}
	if err != nil {
		c.fail(w, r, "load the execution", err)
		return
	}
	targets, err := c.opts.Store.ExecutionTargets(ctx, id)
	if err != nil {
		c.fail(w, r, "load the execution's targets", err)
		return
	}
	targets = e.WithPending(targets)
	var took string
	if e.StartedAt != nil && e.FinishedAt != nil {
		took = e.FinishedAt.Sub(*e.StartedAt).Round(time.Millisecond).String()
	}
	c.render(w, r, http.StatusOK, "execution.html", fmt.Sprintf("Execution %d", id), map[string]any{
		"E": e, "Targets": targets, "Results": viewResults(targets), "Named": viewTargets(e.Targets), "Plan": viewPlan(e.Plan),
		"Verdict": verdictOf(e), "Took": took, "Failed": failedOf(e, targets),
	})
}

// failedView sums up a failed operation's targets and what can be done
// about it: a retry (the targets not applied), or, for a partly applied
// playbook, its removal from the branch (a revert of what it applied).
type failedView struct {
	Applied, Failed, Pending int
	Apply                    bool
}

func failedOf(e *store.Execution, targets []store.TargetResult) *failedView {
	if e.State != store.ExecFailed {
		return nil
	}
	f := &failedView{Apply: e.Operation == "apply"}
	for _, t := range targets {
		switch t.Result {
		case "changed", "unchanged":
			f.Applied++
		case "failed":
			f.Failed++
		default:
			f.Pending++
		}
	}
	return f
}
