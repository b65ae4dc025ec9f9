package github

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/forge/github/githubfake"
	"github.com/writ-sec/writ/internal/reconcile"
)

// A pull request with invalid playbooks gets a failure check whose
// annotations sit on the exact lines and columns of the problems.
func TestInvalidPlaybookFailsWithAnnotations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	broken := "apiVersion: writ/v1\nkind: Playbook\nmetadata: {name: broken}\nspec:\n  action: block_ip\n  targets: [999.1.1.1]\n  justification: x\n  severity: low\n  environment: staging\n"
	unknown := playbookYAML("typo", "INC-1", "203.0.113.9", "low", "staging") + "  colour: red\n"
	p := e.openPR(3, "alice-gh", "", map[string]string{
		pbPath("broken"): broken,
		pbPath("typo"):   unknown,
		pbPath("fine"):   playbookYAML("fine", "INC-2", "203.0.113.10", "low", "staging"),
	})
	e.process()

	run := e.check(p.head)
	if run.Status != "completed" || run.Conclusion != ConclusionFailure {
		t.Fatalf("check: %s/%s: %s", run.Status, run.Conclusion, run.Title)
	}
	at := map[string]githubfake.Annotation{}
	for _, a := range run.Annotations {
		at[fmt.Sprintf("%s:%d", a.Path, a.StartLine)] = a
	}
	a, ok := at[pbPath("broken")+":6"]
	if !ok || a.StartColumn == nil || *a.StartColumn != 13 || a.AnnotationLevel != "failure" || !strings.Contains(a.Message, "999.1.1.1") {
		t.Fatalf("annotation of broken at 6:13 missing or wrong: %+v (all: %+v)", a, run.Annotations)
	}
	a, ok = at[pbPath("typo")+":12"]
	if !ok || !strings.Contains(a.Message, "colour") {
		t.Fatalf("annotation of the unknown field at line 12 missing: %+v", run.Annotations)
	}
	for _, want := range []string{"❌ invalid", pbPath("broken"), "line 6, column 13", pbPath("fine")} {
		if !strings.Contains(run.Summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, run.Summary)
		}
	}
}

// A pull request with more playbooks than the reconciler judges in one
// change fails its check unjudged, and says why.
func TestTooManyPlaybooksFailUnjudged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{reconcile: func(o *reconcile.Options) { o.MaxPlaybooksPerChange = 2 }})
	files := map[string]string{}
	for i := range 3 {
		name := fmt.Sprintf("block-%d", i)
		files[pbPath(name)] = playbookYAML(name, "INC-3", fmt.Sprintf("203.0.113.%d", 80+i), "low", "staging")
	}
	p := e.openPR(4, "alice-gh", "", files)
	e.process()
	run := e.check(p.head)
	if run.Status != "completed" || run.Conclusion != ConclusionFailure ||
		run.Title != "3 playbooks changed: more than the 2 writ judges in one pull request" {
		t.Fatalf("check: %s/%s: %s", run.Status, run.Conclusion, run.Title)
	}
	if !strings.Contains(run.Summary, "This pull request changes 3 playbook files; writ judges at most 2 in one pull request") ||
		strings.Contains(run.Summary, "| playbook |") {
		t.Fatalf("summary:\n%s", run.Summary)
	}
}

// Annotations go at most 50 per request: 60 problems take two writes of
// the same check run.
func TestAnnotationsAreBatched(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	files := map[string]string{}
	for i := range 60 {
		files[pbPath(fmt.Sprintf("bad-%02d", i))] = fmt.Sprintf("apiVersion: writ/v1\nkind: Playbook\nmetadata: {name: bad-%02d}\nspec:\n  action: block_ip\n  targets: [300.0.0.%d]\n  justification: x\n  severity: low\n  environment: staging\n", i, i)
	}
	p := e.openPR(4, "alice-gh", "", files)
	e.process()
	runs := e.gh.CheckRuns(p.head)
	if len(runs) != 1 {
		t.Fatalf("%d check runs; want one", len(runs))
	}
	run := runs[0]
	if run.Conclusion != ConclusionFailure || len(run.Annotations) != 60 {
		t.Fatalf("conclusion %s with %d annotations; want failure with 60", run.Conclusion, len(run.Annotations))
	}
	patches := 0
	for _, r := range e.gh.Requests() {
		if r.Method == "PATCH" && strings.Contains(r.Path, "/check-runs/") {
			patches++
			if r.Status != 200 {
				t.Fatalf("PATCH answered %d", r.Status)
			}
		}
	}
	if patches != 2 {
		t.Fatalf("%d PATCH requests; want 2 (50 + 10 annotations)", patches)
	}
	// Checking the same head again writes nothing new.
	before := len(e.gh.Requests())
	if _, err := e.svc.Check(e.ctx, prInfo{Number: p.number, BaseRef: "main", Author: "alice-gh"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.gh.Requests()[before:] {
		if strings.Contains(r.Path, "/check-runs") {
			t.Fatalf("an unchanged check was written again: %s %s", r.Method, r.Path)
		}
	}
	if got := e.check(p.head); len(got.Annotations) != 60 {
		t.Fatalf("annotations after a re-check: %d", len(got.Annotations))
	}
}

// The whole path: a valid playbook needing two approvals is
// action_required and writ asks the qualified approvers for reviews;
// reviews without an envelope, with a tampered envelope, or by a login
// that is not the signer's do not count; two signed reviews make it
// success; a dismissed review withdraws its approval; after the merge the
// playbook is executed.
func TestSignedReviewsApproveAndMergeExecutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.gh.SetMaxPerPage(2) // reviews and comments span pages (Link headers)
	path := pbPath("block-c2")
	content := playbookYAML("block-c2", "INC-7", "203.0.113.77", "critical", "production")

	// The analyst signs her proposal in the description. Its digest binds
	// the content; she computes it locally, as writ approve does.
	pre := e.openPR(7, "alice-gh", "Blocking the C2 server.", map[string]string{path: content})
	e.process()
	ev := e.evaluation(pre)
	pe := e.playbookEval(ev, path)
	subject := []approval.Subject{{Path: path, Digest: pe.Digest}}
	proposal := e.sign("alice", approval.Propose, subject, ev.PolicyDigest, "", 7)
	if run := e.check(pre.head); run.Conclusion != ConclusionActionRequired || !strings.Contains(run.Summary, "no signed proposal") {
		t.Fatalf("without a proposal: %s\n%s", run.Conclusion, run.Summary)
	}

	// The proposal arrives in a comment by its author (a proposal in the
	// description works the same way; see TestProposalInDescription).
	c := e.gh.AddComment(7, "alice-gh", FormatEnvelope("Signed proposal:", proposal))
	m := e.fixture("issue_comment.created.json")
	issue := m["issue"].(map[string]any)
	issue["number"] = 7
	m["comment"] = e.gh.CommentObject(7, c.ID)
	m["sender"] = e.gh.SenderJSON("alice-gh")
	e.deliver("issue_comment", m)
	e.process()
	run := e.check(pre.head)
	if run.Conclusion != ConclusionActionRequired || !strings.Contains(run.Summary, "0 of 2 approvals") || !strings.Contains(run.Summary, "proposed by alice") {
		t.Fatalf("after the proposal: %s\n%s", run.Conclusion, run.Summary)
	}
	for _, want := range []string{pe.PlanDigest, ev.PolicyDigest, "would_block", "writ approve --key KEY"} {
		if !strings.Contains(run.Summary, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	requested := e.gh.Pull(7).RequestedReviewers
	slices.Sort(requested)
	if !slices.Equal(requested, []string{"bob-gh", "carol-gh"}) {
		t.Fatalf("reviews requested from %v; want bob-gh and carol-gh (approvers, never the proposer)", requested)
	}

	approve := func(who string) []byte {
		return e.sign(who, approval.Approve, subject, ev.PolicyDigest, pe.PlanDigest, 7)
	}
	// A review without an envelope counts for nothing, and the check says so.
	e.review(pre, "mallory-gh", "APPROVED", "LGTM, ship it")
	// A tampered envelope: bob's signature over a statement changed after
	// signing (another reason).
	e.review(pre, "bob-gh", "APPROVED", FormatEnvelope("", tamper(t, approve("bob"))))
	// Carol's valid envelope, posted by someone else's account.
	e.review(pre, "mallory-gh", "APPROVED", FormatEnvelope("", approve("carol")))
	e.process()
	run = e.check(pre.head)
	if run.Conclusion != ConclusionActionRequired || !strings.Contains(run.Summary, "0 of 2 approvals") {
		t.Fatalf("after reviews that must not count: %s\n%s", run.Conclusion, run.Summary)
	}
	for _, want := range []string{"counts for nothing", "review 1004 by @bob-gh: refused: approval refused: not signed by a key", "submitted by GitHub user \"mallory-gh\", but \"carol\" is GitHub user \"carol-gh\""} {
		if !strings.Contains(strings.ToLower(run.Summary), strings.ToLower(want)) {
			t.Errorf("summary lacks %q:\n%s", want, run.Summary)
		}
	}

	// step processes what was delivered and expects the check's
	// conclusion (and, when want is set, a phrase of its summary).
	step := func(what, conclusion, want string) {
		t.Helper()
		e.process()
		if run := e.check(pre.head); run.Conclusion != conclusion || !strings.Contains(run.Summary, want) {
			t.Fatalf("%s: %s\n%s", what, run.Conclusion, run.Summary)
		}
	}
	// later moves the clock on, so that a new signature differs.
	later := func() {
		e.clock.mu.Lock()
		e.clock.now = e.clock.now.Add(2 * time.Second)
		e.clock.mu.Unlock()
	}

	// Two signed reviews by the signers' own accounts.
	e.review(pre, "bob-gh", "APPROVED", FormatEnvelope("Approved.", approve("bob")))
	step("after one approval", ConclusionActionRequired, "1 of 2 approvals")
	carolReview := e.review(pre, "carol-gh", "APPROVED", FormatEnvelope("Approved.", approve("carol")))
	step("after two approvals", ConclusionSuccess, "")

	// A dismissed review withdraws its approval.
	e.dismiss(pre, carolReview, "dave-gh")
	step("after the dismissal", ConclusionActionRequired, "dismissed")
	// Carol approves again (a new envelope: the dismissed one stays withdrawn).
	later()
	carolEnv := approve("carol")
	carolAgain := e.review(pre, "carol-gh", "APPROVED", FormatEnvelope("Approved again.", carolEnv))
	step("after carol approves again", ConclusionSuccess, "")
	// Editing the review's text around the same envelope keeps the
	// approval; an edit that drops the envelope withdraws it.
	e.editReview(pre, carolAgain, "carol-gh", "Approved again (typo fixed).\n\n"+FormatEnvelope("", carolEnv))
	step("after an edit that keeps the envelope", ConclusionSuccess, "")
	e.editReview(pre, carolAgain, "carol-gh", "Not yet: the ticket needs an update.")
	step("after an edit that drops the envelope", ConclusionActionRequired, "1 of 2 approvals")
	later()
	e.review(pre, "carol-gh", "APPROVED", FormatEnvelope("Approved.", approve("carol")))
	step("after carol approves a third time", ConclusionSuccess, "")

	// Squash-merge: the merged commit differs from the PR's head, the
	// content does not.
	merged := e.squashMerge(pre)
	e.gh.Merge(7, merged)
	e.deliverPush(merged)
	e.process()
	e.pass()
	if got := e.blocked("production"); !slices.Equal(got, []string{"203.0.113.77"}) {
		t.Fatalf("blocked after the merge: %v", got)
	}
	// Reviews were read across pages, following the Link header.
	paged := false
	for _, r := range e.gh.Requests() {
		if strings.HasSuffix(r.Path, "/pulls/7/reviews") && strings.Contains(r.Query, "page=3") {
			paged = true
		}
	}
	if !paged {
		t.Fatal("the reviews' third page was never read")
	}
}

// squashMerge squashes a PR branch into main and pushes it.
func (e *env) squashMerge(p *pr) string {
	e.t.Helper()
	e.repo.Checkout("main")
	e.repo.Git("merge", "--quiet", "--squash", p.branch)
	sha := e.repo.Commit(fmt.Sprintf("Squashed #%d", p.number))
	e.repo.Push()
	return sha
}

// deliverPush delivers a push of sha to main.
func (e *env) deliverPush(sha string) {
	e.t.Helper()
	m := e.fixture("push.json")
	m["ref"] = "refs/heads/main"
	m["after"] = sha
	commit := map[string]any{"id": sha, "tree_id": sha, "distinct": true, "message": "merge", "timestamp": "2026-01-01T00:00:00Z",
		"url": "https://example.invalid/commit/" + sha, "author": map[string]any{"name": "A", "email": "a@example.com"},
		"committer": map[string]any{"name": "A", "email": "a@example.com"}, "added": []any{}, "removed": []any{}, "modified": []any{}}
	m["commits"] = []any{commit}
	m["head_commit"] = commit
	e.deliver("push", m)
}

// tamper changes a signed statement's reason and keeps the signature.
func tamper(t *testing.T, raw []byte) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(env["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(payload), "approve in test", "approve in tess", 1)
	if changed == string(payload) {
		t.Fatal("nothing to tamper with")
	}
	env["payload"] = base64.StdEncoding.EncodeToString([]byte(changed))
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Reviews carrying junk envelopes are refused one by one in the check (a
// reviewer sees each and why), while the audit log gets the first few of a
// window one by one and the rest as one summary, counted by source and
// GitHub login. A valid signed review beside them is accepted.
func TestRefusedReviewsAreAuditedWithinBounds(t *testing.T) {
	t.Parallel()
	var refusals *audit.Bounded
	e := newEnv(t, envOptions{reconcile: func(o *reconcile.Options) {
		var err error
		refusals, err = reconcile.NewRefusalAuditor(audit.BoundedOptions{Log: o.Audit, Store: o.Store, Burst: 2, Now: o.Now})
		if err != nil {
			t.Fatal(err)
		}
		o.Refusals = refusals
	}})
	path := pbPath("block-junk")
	p := e.openPR(9, "alice-gh", "", map[string]string{path: playbookYAML("block-junk", "INC-9", "203.0.113.90", "critical", "production")})
	e.process()
	ev := e.evaluation(p)
	pe := e.playbookEval(ev, path)

	var junk []int64
	for i := range 6 {
		junk = append(junk, e.review(p, "mallory-gh", "COMMENTED", FormatEnvelope("", fmt.Appendf(nil, `{"junk":%d}`, i))))
	}
	good := e.review(p, "bob-gh", "APPROVED", FormatEnvelope("", e.sign("bob", approval.Approve,
		[]approval.Subject{{Path: path, Digest: pe.Digest}}, ev.PolicyDigest, pe.PlanDigest, 9)))
	e.process()

	run := e.check(p.head)
	for _, id := range junk {
		if want := fmt.Sprintf("review %d by @mallory-gh: refused: approval refused: malformed", id); !strings.Contains(run.Summary, want) {
			t.Errorf("the check lacks %q:\n%s", want, run.Summary)
		}
	}
	if st, err := e.st.GitHubStatementFor(e.ctx, testOwner+"/"+testName, "review", good); err != nil || st.Outcome != "accepted" {
		t.Fatalf("bob's signed review: %+v %v", st, err)
	}

	count := func(event audit.Event) []audit.Entry {
		t.Helper()
		es, err := e.st.AuditEntries(e.ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		var out []audit.Entry
		for _, x := range es {
			if x.Event == string(event) {
				d, err := audit.Decode(x.Entry)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, d)
			}
		}
		return out
	}
	if n := len(count(audit.EventApprovalRefused)); n != 2 {
		t.Fatalf("%d refusals audited one by one; want the burst, 2", n)
	}
	if n := len(count("approval.received")); n != 1 {
		t.Fatalf("%d envelopes received; want bob's", n)
	}
	refusals.Flush(e.ctx)
	sums := count(audit.EventApprovalRefusedSummary)
	if len(sums) != 1 {
		t.Fatalf("%d summaries; want 1", len(sums))
	}
	var s struct {
		Counted  int            `json:"counted"`
		ByReason map[string]int `json:"by_reason"`
		BySource map[string]int `json:"by_source"`
		ByClient map[string]int `json:"by_client"`
	}
	if err := json.Unmarshal(sums[0].Payload, &s); err != nil {
		t.Fatal(err)
	}
	if s.Counted != 4 || s.ByReason["malformed"] != 4 || s.BySource["github"] != 4 || s.ByClient["@mallory-gh"] != 4 {
		t.Fatalf("summary %s", sums[0].Payload)
	}
}

// Text a pull request or an outsider's comment carries reaches the check
// run's summary inert: a target that is not an address (quoted in its
// problem) and a refused envelope's text (quoted in its refusal) render
// as written, never as a link, a team mention or HTML under writ's name.
func TestReportShowsUntrustedTextInert(t *testing.T) {
	e := newEnv(t)
	const link = "[Approve in writ](https://evil.example/login)"
	const mention = "@acme/security-team"
	const html = `<a href=https://evil.example/x>details</a>`
	payload := link + " " + mention + " " + html
	p := e.openPR(31, "mallory-gh", "", map[string]string{
		pbPath("c2"): playbookYAML("c2", "INC-1", `'`+payload+`'`, "low", "staging"),
	})
	e.process()
	// A comment by an account that is nobody's login, with a block that
	// does not parse.
	body := "```writ\n{\"payloadType\":\"" + strings.ReplaceAll(payload, `"`, `\"`) + "\",\"payload\":\"e30=\",\"signatures\":[{\"sig\":\"AA==\"}]}\n```\n"
	c := e.gh.AddComment(31, "random-outsider", body)
	m := e.fixture("issue_comment.created.json")
	m["issue"].(map[string]any)["number"] = 31
	m["comment"] = e.gh.CommentObject(31, c.ID)
	m["sender"] = e.gh.SenderJSON("random-outsider")
	e.deliver("issue_comment", m)
	e.process()

	run := e.check(p.head)
	for _, live := range []string{link, mention, html, "](https://"} {
		if strings.Contains(run.Summary, live) {
			t.Errorf("the summary carries %q live:\n%s", live, run.Summary)
		}
	}
	// Both are still shown, escaped.
	if n := strings.Count(run.Summary, `\[Approve in writ\]`); n < 2 {
		t.Errorf("the problem and the refusal are not both shown (%d):\n%s", n, run.Summary)
	}
}
