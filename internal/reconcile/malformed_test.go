package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/store"
)

// pushRaw commits, on top of parent, parent's tree with entries added to
// dir, written raw (names and modes unchecked), and pushes it to the bare
// repository's main as an attacker's tooling would; git would refuse to
// check such a tree out, so later commits on top are written the same way,
// as a forge's merge button writes them. It returns the commit.
func (e *env) pushRaw(parent, msg, dir string, entries ...gittest.TreeEntry) string {
	e.t.Helper()
	c := e.repo.CommitTree(e.repo.TreeWith(parent, dir, entries...), parent, msg)
	e.repo.PushCommit(c, "main")
	return c
}

func (e *env) blob(name, content string) gittest.TreeEntry {
	return gittest.TreeEntry{Mode: "100644", Name: name, Hash: e.repo.Blob(content)}
}

func (e *env) dirEntry(name string, entries ...gittest.TreeEntry) gittest.TreeEntry {
	return gittest.TreeEntry{Mode: gittest.Dir, Name: name, Hash: e.repo.Tree(entries...)}
}

// audited returns the payloads of the audit entries of one event, oldest
// first.
func (e *env) audited(event string) []map[string]any {
	e.t.Helper()
	rows, err := e.st.AuditEntriesFiltered(e.ctx, store.AuditFilter{Event: event}, 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, row := range rows {
		ent, err := audit.Decode(row.Entry)
		if err != nil {
			e.t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(ent.Payload, &m); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// recorded reports whether a playbook name was ever recorded.
func (e *env) recorded(name string) bool {
	e.t.Helper()
	_, err := e.st.LatestPlaybookVersion(e.ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatal(err)
	}
	return err == nil
}

// inForce sets up what the attack must not stop: a staging playbook in
// force that expires after 2h, and a production playbook proposed and
// awaiting its approval.
func (e *env) inForce() {
	e.t.Helper()
	e.pass()
	e.merge("temp", map[string]string{pbPath("block-temp"): playbookYAML("block-temp", "INC-20", "203.0.113.30", "low", "staging", "  expiresAfter: 2h\n")})
	e.merge("prod", map[string]string{pbPath("block-prod"): playbookYAML("block-prod", "INC-21", "203.0.113.31", "high", "production", "")})
	e.pass()
	e.approveVersion("block-temp", "apply", map[string]string{"alice": "propose"})
	e.approveVersion("block-prod", "apply", map[string]string{"alice": "propose"})
	e.pass()
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.30"}) {
		e.t.Fatalf("staging before the attack: %v", got)
	}
	if st, reason := e.status("block-prod"); st != store.StatusAwaitingApproval {
		e.t.Fatalf("block-prod before the attack: %s (%s)", st, reason)
	}
}

// goesOn checks that the rest went on in the pass that met the attack:
// block-prod, approved meanwhile, ran; block-temp, due meanwhile, expired;
// the playbook merged after the attack (block-next) was judged and runs
// once proposed.
func (e *env) goesOn() {
	e.t.Helper()
	if st, reason := e.status("block-prod"); st != store.StatusCompleted {
		e.t.Fatalf("approved block-prod did not run: %s (%s)", st, reason)
	}
	if got := e.blocked("production"); !slices.Equal(got, []string{"203.0.113.31"}) {
		e.t.Fatalf("production blocklist %v", got)
	}
	if st, reason := e.status("block-temp"); st != store.StatusExpired {
		e.t.Fatalf("block-temp did not expire: %s (%s)", st, reason)
	}
	if st, reason := e.status("block-next"); st != store.StatusAwaitingApproval || !strings.Contains(reason, "no signed proposal") {
		e.t.Fatalf("block-next, merged after the attack: %s (%s)", st, reason)
	}
	e.approveVersion("block-next", "apply", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status("block-next"); st != store.StatusCompleted {
		e.t.Fatalf("block-next after its proposal: %s (%s)", st, reason)
	}
	if got := e.blocked("staging"); !slices.Equal(got, []string{"203.0.113.32"}) {
		e.t.Fatalf("staging blocklist %v", got)
	}
}

// The reproduced attack, through the loop: one commit whose tree holds a
// directory named ".." under playbooks/ (a playbook inside, and a valid
// playbook beside it) is pushed to the bare repository, and a normal
// playbook is merged on top. Before, every pass failed on that commit
// ("gitsrc: diff ...: directory not found"): nothing was judged, executed
// or expired, and no alert was raised. Now the commit is refused on record
// (commit.refused naming it, the entry and the problem), none of its
// playbooks is processed, the branch moves past it, and in the same pass
// the next commit's playbook is judged, approved work runs and an expiry
// due meanwhile fires.
func TestMalformedCommitIsRefusedAndTheRestGoesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.inForce()
	base := e.repo.Git("rev-parse", "origin/main")
	evil := e.blob("evil.yaml", playbookYAML("evil", "INC-66", "203.0.113.66", "low", "staging", ""))
	attack := e.pushRaw(base, "the attack", "playbooks",
		e.dirEntry("..", evil),
		e.blob("block-beside.yaml", playbookYAML("block-beside", "INC-67", "203.0.113.67", "low", "staging", "")))
	next := e.pushRaw(attack, "Merge block-next", "playbooks", e.blob("block-next.yaml", playbookYAML("block-next", "INC-22", "203.0.113.32", "low", "staging", "")))
	e.approveVersion("block-prod", "apply", map[string]string{"bob": "approve"})
	e.clock.Advance(2*time.Hour + time.Minute)

	e.pass()
	st := e.rec.Status()
	if st.Processed != next || st.LastError != "" || len(st.Holds) != 0 {
		t.Fatalf("status after the attack: processed %.12s (want %.12s), error %q, holds %v", st.Processed, next, st.LastError, st.Holds)
	}
	refused := e.audited("commit.refused")
	if len(refused) != 1 || refused[0]["commit"] != attack || refused[0]["problem"] != string(gitsrc.ProblemUnsafeName) ||
		refused[0]["path"] != "playbooks/.." || !strings.Contains(refused[0]["reason"].(string), "parent") {
		t.Fatalf("refusals %v", refused)
	}
	for _, name := range []string{"evil", "block-beside"} {
		if e.recorded(name) {
			t.Fatalf("%s, from the refused commit, was processed", name)
		}
	}
	e.goesOn()
	e.pass()
	if st := e.rec.Status(); st.LastError != "" {
		t.Fatalf("a later pass failed: %s", st.LastError)
	}
	e.verifyAudit()
}

// Other malformed content, through the loop: each commit is refused on
// record with its problem, and the commit after it is processed. A file
// that names a tree is met only when the playbook is read: the valid
// playbook beside it is not processed either, and both are listed in the
// refusal.
func TestMalformedCommitsOfEveryKindAreRefused(t *testing.T) {
	t.Parallel()
	valid := playbookYAML("block-beside", "INC-67", "203.0.113.67", "low", "staging", "")
	cases := []struct {
		name    string
		entries func(e *env) []gittest.TreeEntry
		problem gitsrc.Problem
		listed  []string // playbooks_not_processed
	}{
		{"dot git", func(e *env) []gittest.TreeEntry {
			return []gittest.TreeEntry{e.dirEntry(".git", e.blob("config", "[core]\n"))}
		}, gitsrc.ProblemUnsafeName, nil},
		{"slash in a name", func(e *env) []gittest.TreeEntry {
			return []gittest.TreeEntry{e.blob("net/evil.yaml", valid)}
		}, gitsrc.ProblemUnsafeName, nil},
		{"not UTF-8", func(e *env) []gittest.TreeEntry {
			return []gittest.TreeEntry{e.blob("\xff\xfe.yaml", valid)}
		}, gitsrc.ProblemUnsafeName, nil},
		{"absurd mode", func(e *env) []gittest.TreeEntry {
			return []gittest.TreeEntry{{Mode: "107777", Name: "odd.yaml", Hash: e.repo.Blob(valid)}}
		}, gitsrc.ProblemBadMode, nil},
		{"file naming a tree", func(e *env) []gittest.TreeEntry {
			return []gittest.TreeEntry{
				e.blob("block-beside.yaml", valid),
				{Mode: "100644", Name: "evil.yaml", Hash: e.repo.Tree(e.blob("x", "x\n"))},
			}
		}, gitsrc.ProblemBadObject, []string{pbPath("block-beside"), pbPath("evil")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.pass()
			base := e.repo.Git("rev-parse", "origin/main")
			attack := e.pushRaw(base, tc.name, "playbooks", tc.entries(e)...)
			next := e.pushRaw(attack, "next", "docs", e.blob("next.md", "x\n"))
			e.pass()
			if st := e.rec.Status(); st.Processed != next || st.LastError != "" {
				t.Fatalf("status: processed %.12s (want %.12s), error %q", st.Processed, next, st.LastError)
			}
			refused := e.audited("commit.refused")
			if len(refused) != 1 || refused[0]["commit"] != attack || refused[0]["problem"] != string(tc.problem) {
				t.Fatalf("refusals %v", refused)
			}
			var listed []string
			if l, ok := refused[0]["playbooks_not_processed"].([]any); ok {
				for _, p := range l {
					listed = append(listed, p.(string))
				}
			}
			slices.Sort(listed)
			if !slices.Equal(listed, tc.listed) {
				t.Fatalf("listed %v; want %v", listed, tc.listed)
			}
			if e.recorded("block-beside") {
				t.Fatal("the valid playbook of the refused commit was processed")
			}
			e.verifyAudit()
		})
	}
}

// A tree shared into billions of paths stops at the source's limit and is
// refused like any malformed commit, instead of holding the pass.
func TestTreeBombIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src, err := gitsrc.Open(e.ctx, gitsrc.Options{URL: e.repo.Bare, MaxTreeEntries: 2000})
	if err != nil {
		t.Fatal(err)
	}
	e.rec.opts.Source = src
	e.pass()
	bomb := e.repo.Tree(e.blob("x.yaml", "x\n"))
	for range 40 {
		bomb = e.repo.Tree(gittest.TreeEntry{Mode: gittest.Dir, Name: "a", Hash: bomb}, gittest.TreeEntry{Mode: gittest.Dir, Name: "b", Hash: bomb})
	}
	base := e.repo.Git("rev-parse", "origin/main")
	attack := e.pushRaw(base, "bomb", "playbooks", gittest.TreeEntry{Mode: gittest.Dir, Name: "bomb", Hash: bomb})
	e.pass()
	refused := e.audited("commit.refused")
	if st := e.rec.Status(); st.Processed != attack || st.LastError != "" || len(refused) != 1 || refused[0]["problem"] != string(gitsrc.ProblemTooLarge) {
		t.Fatalf("status %+v; refusals %v", st, refused)
	}
}

// A malformed tree under policies/ is refused like any, and what decides
// cannot be adopted from it: writ holds (policy.change_held, the status,
// /readyz) and keeps judging with the last trusted policies, commits after
// it are processed, and a commit that mends the tree releases the hold.
func TestMalformedPoliciesHoldTheTrustedVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	trusted := e.rec.Status().Adopted
	base := e.repo.Git("rev-parse", "origin/main")
	permissive := "package writ\n\ndecision := {\"deny\": set(), \"require_approval\": set(), \"approvals_required\": 0, \"approver_roles\": set()}\n"
	attack := e.pushRaw(base, "policies with a dot-dot", "policies", e.dirEntry("..", e.blob("decision.rego", permissive)))
	next := e.pushRaw(attack, "Merge block-prod", "playbooks", e.blob("block-prod.yaml", playbookYAML("block-prod", "INC-30", "203.0.113.40", "low", "production", "")))
	e.pass()
	st := e.rec.Status()
	if st.Processed != next || st.Adopted != trusted || st.LastError != "" {
		t.Fatalf("status: %+v", st)
	}
	if len(st.Holds) == 0 || !strings.Contains(st.Holds[0], "malformed (unsafe_name at \"policies/..\")") {
		t.Fatalf("holds %v", st.Holds)
	}
	if held := e.audited("policy.change_held"); len(held) == 0 || held[0]["malformed"] == nil {
		t.Fatalf("no malformed hold audited: %v", held)
	}
	if refused := e.audited("commit.refused"); len(refused) != 1 || refused[0]["path"] != "policies/.." {
		t.Fatalf("refusals %v", refused)
	}
	// Judged by the trusted policies: production still needs an approval.
	e.approveVersion("block-prod", "apply", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status("block-prod"); st != store.StatusAwaitingApproval {
		t.Fatalf("block-prod judged by the malformed policies: %s (%s)", st, reason)
	}
	// Mending the tree (the policies are the trusted ones again) releases
	// the holds.
	mended := e.repo.CommitTree(e.repo.TreeWith(base, "playbooks", e.blob("block-prod.yaml", playbookYAML("block-prod", "INC-30", "203.0.113.40", "low", "production", ""))), next, "mend")
	e.repo.PushCommit(mended, "main")
	e.pass()
	if st := e.rec.Status(); st.Processed != mended || st.Adopted != trusted || len(st.Holds) != 0 || st.LastError != "" {
		t.Fatalf("after mending: %+v", st)
	}
	e.verifyAudit()
}

// The pull request check path: Evaluate turns a malformed change into an
// evaluation that fails (Malformed), not an error its caller would retry
// for ever, whether the problem is in the tree the change adds or met only
// when a playbook is read. A valid change is judged as usual.
func TestEvaluateRefusesMalformedChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	base := e.repo.Git("rev-parse", "origin/main")
	valid := playbookYAML("block-pr", "INC-50", "203.0.113.80", "low", "staging", "")
	for i, tc := range []struct {
		name    string
		entry   gittest.TreeEntry
		problem gitsrc.Problem
	}{
		{"dot-dot", e.dirEntry("..", e.blob("evil.yaml", valid)), gitsrc.ProblemUnsafeName},
		{"file naming a tree", gittest.TreeEntry{Mode: "100644", Name: "evil.yaml", Hash: e.repo.Tree(e.blob("x", "x\n"))}, gitsrc.ProblemBadObject},
		{"valid", e.blob("block-pr.yaml", valid), ""},
	} {
		head := e.repo.CommitTree(e.repo.TreeWith(base, "playbooks", tc.entry), base, tc.name)
		e.repo.PushCommit(head, fmt.Sprintf("pr-%d", i))
		ev, err := e.rec.Evaluate(e.ctx, base, head, i+1)
		if err != nil {
			t.Fatalf("%s: Evaluate: %v", tc.name, err)
		}
		switch {
		case tc.problem == "" && (ev.Malformed != nil || len(ev.Playbooks) != 1 || ev.Playbooks[0].Outcome() != "awaiting"):
			t.Fatalf("%s: %+v", tc.name, ev)
		case tc.problem != "" && (ev.Malformed == nil || ev.Malformed.Problem != tc.problem || ev.Malformed.Commit != head || len(ev.Playbooks) != 0):
			t.Fatalf("%s: malformed %+v, playbooks %d", tc.name, ev.Malformed, len(ev.Playbooks))
		}
	}
}

// Symlinks (one pointing out of the repository) and submodules are
// well-formed git: a commit holding them under playbooks/ is processed,
// each is recorded as an invalid playbook (never followed, never run), and
// the valid playbook beside them is judged.
func TestSymlinksAndSubmodulesAreInvalidPlaybooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.pass()
	base := e.repo.Git("rev-parse", "origin/main")
	c := e.pushRaw(base, "links", "playbooks",
		gittest.TreeEntry{Mode: "120000", Name: "link.yaml", Hash: e.repo.Blob("../../../../etc/passwd")},
		gittest.TreeEntry{Mode: "160000", Name: "sub.yaml", Hash: base},
		e.blob("block-ok.yaml", playbookYAML("block-ok", "INC-60", "203.0.113.90", "low", "staging", "")))
	e.pass()
	if st := e.rec.Status(); st.Processed != c || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
	if refused := e.audited("commit.refused"); len(refused) != 0 {
		t.Fatalf("refused: %v", refused)
	}
	invalid := map[string]string{}
	for _, p := range e.audited("playbook.invalid") {
		invalid[p["path"].(string)] = p["problems"].(string)
	}
	for _, name := range []string{"link", "sub"} {
		if !strings.Contains(invalid[pbPath(name)], "not a regular file") {
			t.Fatalf("%s: %q (all: %v)", name, invalid[pbPath(name)], invalid)
		}
	}
	if st, reason := e.status("block-ok"); st != store.StatusAwaitingApproval {
		t.Fatalf("block-ok: %s (%s)", st, reason)
	}
}

// A first start on a head whose playbooks/ holds a ".." directory used to
// walk into it and back out through the root for ever (until writ ran out
// of file descriptors or stack). It now fails the pass with the problem,
// and starts once the head is mended.
func TestFirstStartOnAMalformedHead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := e.repo.Git("rev-parse", "origin/main")
	e.pushRaw(base, "the attack", "playbooks", e.dirEntry("..", e.blob("evil.yaml", "x\n")))
	err := e.rec.ReconcileOnce(e.ctx)
	var bad *gitsrc.MalformedError
	if !errors.As(err, &bad) || bad.Path != "playbooks/.." {
		t.Fatalf("first pass: %v; want the malformed entry", err)
	}
	if st := e.rec.Status(); st.Processed != "" || !strings.Contains(st.LastError, `"playbooks/.."`) {
		t.Fatalf("status %+v", st)
	}
	mended := e.repo.CommitTree(e.repo.TreeWith(base, "playbooks", e.blob("block-ok.yaml", playbookYAML("block-ok", "INC-61", "203.0.113.91", "low", "staging", ""))), base, "mend")
	e.repo.PushCommit(mended, "main")
	e.pass()
	if st := e.rec.Status(); st.Processed != mended {
		t.Fatalf("after mending: %+v", st)
	}
	if st, _ := e.status("block-ok"); st != store.StatusAwaitingApproval {
		t.Fatalf("block-ok: %s", st)
	}
}
