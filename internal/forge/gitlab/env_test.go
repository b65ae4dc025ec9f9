package gitlab

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/forge/envelope"
	"github.com/writ-sec/writ/internal/forge/gitlab/gitlabfake"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

const (
	testProject   = "acme/secops"
	testProjectID = 42
	testToken     = "glpat-writtesttoken"
	botLogin      = "project_42_bot_writ"
	testSecret    = "webhook secret token for tests"
)

// clock is a test clock the reconciler reads.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type person struct {
	id, login string
	roles     []string
	signer    crypto.Signer
}

// The roster's GitLab usernames differ from their GitHub logins: a
// statement counts only from the signer's logins.gitlab.
var roster = []struct {
	id, github, gitlab string
	roles              []string
}{
	{"alice", "alice-gh", "alice.gl", []string{"analyst"}},
	{"bob", "bob-gh", "bob_gl", []string{"approver"}},
	{"carol", "carol-gh", "carol-gl", []string{"approver"}},
	{"dave", "dave-gh", "dave-gl", []string{"admin"}},
	{"mallory", "mallory-gh", "mallory-gl", []string{"analyst"}},
}

// env is a content repository, PostgreSQL, an audit log, a blocklist
// backend, the reconciler, the fake GitLab and the integration, with its
// webhook receiver on loopback.
type env struct {
	t      testing.TB
	ctx    context.Context
	repo   *gittest.Repo
	st     *store.Store
	rec    *reconcile.Reconciler
	src    *gitsrc.Source
	gl     *gitlabfake.Server
	svc    *Service
	hook   *httptest.Server
	clock  *clock
	dir    string
	people map[string]*person
}

func newEnv(t testing.TB, tune ...func(o *Options)) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clock: &clock{now: time.Now().UTC().Truncate(time.Second)}, dir: t.TempDir(), people: map[string]*person{}}
	files := map[string]string{}
	seed, err := policies.Files(false)
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range seed {
		files[p] = c
	}
	files[".writ/approvers.yaml"] = e.approversFile()
	e.repo = gittest.New(t, files)
	e.st = dbtest.Store(t)
	key, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := audit.NewSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.NewLog(audit.LogOptions{Store: e.st, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	e.src, err = gitsrc.Open(e.ctx, gitsrc.Options{URL: e.repo.Bare})
	if err != nil {
		t.Fatal(err)
	}
	reg := action.NewRegistry()
	reg.RegisterFactory("block_ip", func(environment string) (action.Backend, error) {
		return blocklist.New(blocklist.Options{
			Path:    filepath.Join(e.dir, "blocklist", environment+".txt"),
			Journal: filepath.Join(e.dir, "blocklist", environment+".journal"),
			Name:    "blocklist:" + environment,
		})
	})
	e.rec, err = reconcile.New(reconcile.Options{
		Source: e.src, Store: e.st, Audit: alog, Backends: reg, DefaultPolicies: policies.FS, Now: e.clock.Now,
		Repository: testProject, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.gl = gitlabfake.New(t, testProject, testProjectID)
	e.gl.AddToken(testToken, botLogin)
	for _, p := range roster {
		e.gl.AddUser(p.gitlab)
	}
	opts := Options{
		BaseURL: e.gl.URL(), Token: testToken, Project: testProject, Engine: e.rec, Source: e.src, Store: e.st,
		WebhookSecret: []byte(testSecret), PollInterval: 10 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		APIBackoff: 10 * time.Millisecond, RefreshInterval: -1, Now: e.clock.Now, Logger: testLogger(t),
	}
	for _, f := range tune {
		f(&opts)
	}
	e.svc, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.hook = httptest.NewServer(e.svc.Handler())
	t.Cleanup(e.hook.Close)
	e.pass()
	return e
}

// approversFile lists the roster with both forges' logins and fresh keys.
func (e *env) approversFile() string {
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	for _, p := range roster {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			e.t.Fatal(err)
		}
		e.people[p.id] = &person{id: p.id, login: p.gitlab, roles: p.roles, signer: k}
		pub, err := keys.MarshalPublic(k.Public())
		if err != nil {
			e.t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - id: %s\n    logins: {github: %s, gitlab: %s}\n    roles: [%s]\n    keys:\n      - |\n", p.id, p.github, p.gitlab, strings.Join(p.roles, ", "))
		for _, line := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
	}
	return b.String()
}

func (e *env) pass() {
	e.t.Helper()
	if err := e.rec.ReconcileOnce(e.ctx); err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
}

const playbookTmpl = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: %s
  ticket: %s
spec:
  action: block_ip
  targets: [%s]
  justification: C2 beaconing seen by EDR
  severity: %s
  environment: %s
`

func playbookYAML(name, ticket, targets, severity, environment string) string {
	return fmt.Sprintf(playbookTmpl, name, ticket, targets, severity, environment)
}

func pbPath(name string) string { return "playbooks/" + name + ".yaml" }

// mr is a merge request under test.
type mr struct {
	iid    int64
	branch string
	head   string
}

// openMR commits files on a new branch from main, publishes it as
// refs/merge-requests/IID/head (as GitLab does), opens it on the fake
// GitLab and delivers the Merge Request Hook (open).
func (e *env) openMR(iid int64, author, description string, files map[string]string) *mr {
	e.t.Helper()
	e.repo.Checkout("main")
	branch := fmt.Sprintf("mr-%d", iid)
	e.repo.Branch(branch)
	for p, c := range files {
		e.repo.Write(p, c)
	}
	head := e.repo.Commit(fmt.Sprintf("change %d", iid))
	e.repo.PushRef("refs/heads/" + branch)
	e.repo.PushRef(fmt.Sprintf("refs/merge-requests/%d/head", iid))
	base := e.mainHead()
	e.repo.Checkout("main")
	e.gl.AddMergeRequest(gitlabfake.MergeRequest{IID: iid, Title: "change", Description: description, Author: author,
		SourceBranch: branch, TargetBranch: "main", SHA: head, BaseSHA: base})
	m := &mr{iid: iid, branch: branch, head: head}
	e.deliver(gitlabfake.EventMergeRequest, e.gl.MergeRequestHook(iid, "open", author))
	return m
}

func (e *env) mainHead() string {
	e.t.Helper()
	return e.repo.Git("rev-parse", "origin/main")
}

// deliver posts a payload to the receiver and fails unless it is queued.
func (e *env) deliver(event string, payload []byte) gitlabfake.Answer {
	e.t.Helper()
	a := e.send(gitlabfake.Delivery{Event: event, Payload: payload})
	if a.Status != http.StatusAccepted || !strings.Contains(a.Body, `"queued"`) {
		e.t.Fatalf("delivery of %s: %d %s", event, a.Status, a.Body)
	}
	return a
}

func (e *env) send(d gitlabfake.Delivery) gitlabfake.Answer {
	e.t.Helper()
	a, err := gitlabfake.Deliver(e.ctx, nil, e.hook.URL+WebhookPath, testSecret, d)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// note posts a note on the fake GitLab and delivers its Note Hook.
func (e *env) note(m *mr, author, body string) int64 {
	e.t.Helper()
	n := e.gl.AddNote(m.iid, author, body)
	e.deliver(gitlabfake.EventNote, e.gl.NoteHook(m.iid, n.ID, "create"))
	return n.ID
}

// editNote edits a note and delivers its Note Hook (update).
func (e *env) editNote(m *mr, id int64, body string) {
	e.t.Helper()
	e.gl.EditNote(m.iid, id, body)
	e.deliver(gitlabfake.EventNote, e.gl.NoteHook(m.iid, id, "update"))
}

// process runs the processor until nothing is due and fails on errors.
func (e *env) process() {
	e.t.Helper()
	if _, err := e.svc.ProcessPending(e.ctx); err != nil {
		e.t.Fatalf("process: %v", err)
	}
	counts, err := e.st.DeliveryCounts(e.ctx, "gitlab")
	if err != nil {
		e.t.Fatal(err)
	}
	if counts[store.DeliveryQueued] != 0 || counts[store.DeliveryFailed] != 0 {
		e.t.Fatalf("deliveries left: %v", counts)
	}
}

// status is the latest writ commit status on a head commit.
func (e *env) status(head string) gitlabfake.Status {
	e.t.Helper()
	st, ok := e.gl.LatestStatus(head, DefaultStatusName)
	if !ok {
		e.t.Fatalf("no commit status on %.12s", head)
	}
	return st
}

// report is writ's report note on a merge request: there is exactly one.
func (e *env) report(m *mr) gitlabfake.Note {
	e.t.Helper()
	notes := e.gl.NotesBy(m.iid, botLogin)
	if len(notes) != 1 {
		e.t.Fatalf("!%d has %d notes by writ; want one, edited in place", m.iid, len(notes))
	}
	return notes[0]
}

// sign makes an envelope by a person.
func (e *env) sign(who, decision string, subjects []approval.Subject, policyDigest, planDigest string, iid int64) []byte {
	e.t.Helper()
	p := e.people[who]
	s, err := keys.Signer(p.signer)
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clock.Now()
	st := approval.NewStatement(subjects, approval.Predicate{
		Decision: decision, Approver: who, Repository: testProject, PullRequest: int(iid),
		PolicyDigest: policyDigest, PlanDigest: planDigest,
		Reason: decision + " in test", IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour),
	})
	env, err := approval.Sign(s, st)
	if err != nil {
		e.t.Fatal(err)
	}
	return env
}

func block(intro string, env []byte) string { return envelope.Format(intro, env) }

func (e *env) evaluation(m *mr) *reconcile.Evaluation {
	e.t.Helper()
	ev, err := e.rec.Evaluate(e.ctx, e.mainHead(), m.head, int(m.iid))
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func (e *env) playbookEval(ev *reconcile.Evaluation, path string) *reconcile.PlaybookEvaluation {
	e.t.Helper()
	for i := range ev.Playbooks {
		if ev.Playbooks[i].Path == path {
			return &ev.Playbooks[i]
		}
	}
	e.t.Fatalf("no evaluation of %s", path)
	return nil
}

// blocked lists what the blocklist file of an environment holds.
func (e *env) blocked(environment string) []string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "blocklist", environment+".txt"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("WRIT_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
