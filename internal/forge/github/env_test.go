package github

import (
	"context"
	"crypto"
	"encoding/json"
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
	"github.com/writ-sec/writ/internal/forge/github/githubfake"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

const (
	testOwner = "acme"
	testName  = "secops"
	testToken = "ghp_writtesttoken"
	botLogin  = "writ-bot"
)

var testSecret = []byte("webhook secret for tests")

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

// Advance moves the clock forward by d.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// person is someone in the approvers file, with their private key.
type person struct {
	id     string
	login  string
	roles  []string
	signer crypto.Signer
}

var roster = []struct {
	id, login string
	roles     []string
}{
	{"alice", "alice-gh", []string{"analyst"}},
	{"bob", "bob-gh", []string{"approver"}},
	{"carol", "carol-gh", []string{"approver"}},
	{"dave", "dave-gh", []string{"admin"}},
	{"erin", "erin-gh", []string{"admin"}},
	{"mallory", "mallory-gh", []string{"analyst"}},
}

// env is a content repository (a bare "server" repository and a clone),
// PostgreSQL, an audit log, a blocklist backend, a reconciler, the fake
// GitHub and the integration, with its webhook receiver on loopback.
type env struct {
	t      testing.TB
	ctx    context.Context
	repo   *gittest.Repo
	st     *store.Store
	rec    *reconcile.Reconciler
	src    *gitsrc.Source
	gh     *githubfake.Server
	svc    *Service
	hook   *httptest.Server
	clock  *clock
	dir    string
	people map[string]*person
}

type envOptions struct {
	// tune adjusts the service's options before it is made.
	tune func(o *Options)
	// reconcile adjusts the reconciler's options before it is made.
	reconcile func(o *reconcile.Options)
}

func newEnv(t testing.TB, eo ...envOptions) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clock: &clock{now: time.Now().UTC().Truncate(time.Second)}, dir: t.TempDir(), people: map[string]*person{}}
	files := map[string]string{}
	seed, err := policies.Files(false)
	for p, c := range seed {
		files[p] = c
	}
	if err != nil {
		t.Fatal(err)
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
	ro := reconcile.Options{
		Source: e.src, Store: e.st, Audit: alog, Backends: reg, DefaultPolicies: policies.FS, Now: e.clock.Now,
		Repository: testOwner + "/" + testName, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond, Logger: testLogger(t),
	}
	for _, o := range eo {
		if o.reconcile != nil {
			o.reconcile(&ro)
		}
	}
	e.rec, err = reconcile.New(ro)
	if err != nil {
		t.Fatal(err)
	}
	e.gh = githubfake.New(t, testOwner, testName)
	e.gh.AddToken(testToken, botLogin)
	for _, p := range roster {
		e.gh.AddUser(p.login)
	}
	client, err := NewClient(ClientOptions{BaseURL: e.gh.URL(), Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Repository: testOwner + "/" + testName, Client: client, Engine: e.rec, Source: e.src, Store: e.st,
		WebhookSecret: testSecret, PollInterval: 10 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		APIBackoff: 10 * time.Millisecond, RefreshInterval: -1, Now: e.clock.Now, Logger: testLogger(t),
	}
	for _, o := range eo {
		if o.tune != nil {
			o.tune(&opts)
		}
	}
	e.svc, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.hook = httptest.NewServer(e.svc.Handler())
	t.Cleanup(e.hook.Close)
	e.pass() // follow the branch: the approvers in force
	return e
}

// approversFile lists the roster with GitHub logins and fresh keys.
func (e *env) approversFile() string {
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	for _, p := range roster {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			e.t.Fatal(err)
		}
		e.people[p.id] = &person{id: p.id, login: p.login, roles: p.roles, signer: k}
		pub, err := keys.MarshalPublic(k.Public())
		if err != nil {
			e.t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - id: %s\n    github: %s\n    roles: [%s]\n    keys:\n      - |\n", p.id, p.login, strings.Join(p.roles, ", "))
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

// pr is a pull request under test.
type pr struct {
	number int
	branch string
	head   string
	// opened is the GUID of its "opened" delivery.
	opened string
}

// openPR commits files on a new branch from main, publishes it as
// refs/pull/N/head, opens it on the fake GitHub as author with body, and
// delivers pull_request.opened.
func (e *env) openPR(number int, author, body string, files map[string]string, remove ...string) *pr {
	e.t.Helper()
	e.repo.Checkout("main")
	branch := fmt.Sprintf("pr-%d", number)
	e.repo.Branch(branch)
	for p, c := range files {
		e.repo.Write(p, c)
	}
	for _, p := range remove {
		e.repo.Remove(p)
	}
	head := e.repo.Commit(fmt.Sprintf("change %d", number))
	e.repo.PushRef("refs/heads/" + branch)
	e.repo.PushRef(fmt.Sprintf("refs/pull/%d/head", number))
	base := e.mainHead()
	e.repo.Checkout("main")
	e.gh.AddPullRequest(githubfake.PullRequest{Number: number, Author: author, Body: body, BaseRef: "main", BaseSHA: base,
		HeadRef: branch, HeadSHA: head})
	p := &pr{number: number, branch: branch, head: head}
	p.opened = e.deliverPR(p, "opened").GUID
	return p
}

func (e *env) mainHead() string {
	e.t.Helper()
	return e.repo.Git("rev-parse", "origin/main")
}

// fixture loads a payload fixture as a map.
func (e *env) fixture(name string) map[string]any {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "github", name))
	if err != nil {
		e.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf("fixture %s: %v", name, err)
	}
	m["repository"] = e.gh.RepositoryJSON()
	return m
}

// deliver posts a payload to the receiver and fails unless it is queued.
func (e *env) deliver(event string, payload map[string]any) githubfake.Answer {
	e.t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := githubfake.Deliver(e.ctx, nil, e.hook.URL+WebhookPath, testSecret, githubfake.Delivery{Event: event, Payload: b})
	if err != nil {
		e.t.Fatal(err)
	}
	if a.Status != http.StatusAccepted || !strings.Contains(a.Body, `"queued"`) {
		e.t.Fatalf("delivery of %s: %d %s", event, a.Status, a.Body)
	}
	return a
}

func (e *env) deliverPR(p *pr, action string) githubfake.Answer {
	e.t.Helper()
	name := "pull_request.opened.json"
	if action == "synchronize" {
		name = "pull_request.synchronize.json"
	}
	m := e.fixture(name)
	m["action"] = action
	m["number"] = p.number
	m["pull_request"] = e.gh.PullRequestJSON(p.number)
	m["sender"] = e.gh.SenderJSON(e.gh.Pull(p.number).Author)
	if action == "edited" {
		m["changes"] = map[string]any{"body": map[string]any{"from": ""}}
	}
	return e.deliver("pull_request", m)
}

// review submits a review on the fake GitHub and delivers its event.
func (e *env) review(p *pr, login, state, body string) int64 {
	e.t.Helper()
	rv := e.gh.AddReview(p.number, login, state, body)
	m := e.fixture("pull_request_review.submitted.json")
	m["review"] = e.gh.ReviewObject(p.number, rv.ID)
	m["pull_request"] = e.gh.PullRequestJSON(p.number)
	m["sender"] = e.gh.SenderJSON(login)
	e.deliver("pull_request_review", m)
	return rv.ID
}

// editReview edits a review's body and delivers the event, as GitHub
// sends it: action edited, the old body under changes.
func (e *env) editReview(p *pr, id int64, login, body string) {
	e.t.Helper()
	old := e.gh.EditReview(p.number, id, body)
	m := e.fixture("pull_request_review.submitted.json")
	m["action"] = "edited"
	m["changes"] = map[string]any{"body": map[string]any{"from": old}}
	m["review"] = e.gh.ReviewObject(p.number, id)
	m["pull_request"] = e.gh.PullRequestJSON(p.number)
	m["sender"] = e.gh.SenderJSON(login)
	e.deliver("pull_request_review", m)
}

// dismiss dismisses a review and delivers the event.
func (e *env) dismiss(p *pr, id int64, by string) {
	e.t.Helper()
	e.gh.DismissReview(p.number, id)
	m := e.fixture("pull_request_review.dismissed.json")
	m["review"] = e.gh.ReviewObject(p.number, id)
	m["pull_request"] = e.gh.PullRequestJSON(p.number)
	m["sender"] = e.gh.SenderJSON(by)
	e.deliver("pull_request_review", m)
}

// process runs the processor until nothing is due and fails on errors.
func (e *env) process() {
	e.t.Helper()
	if _, err := e.svc.ProcessPending(e.ctx); err != nil {
		e.t.Fatalf("process: %v", err)
	}
	counts, err := e.st.DeliveryCounts(e.ctx, "github")
	if err != nil {
		e.t.Fatal(err)
	}
	if counts[store.DeliveryQueued] != 0 || counts[store.DeliveryFailed] != 0 {
		e.t.Fatalf("deliveries left: %v", counts)
	}
}

// check is the latest writ check run on a head commit.
func (e *env) check(head string) githubfake.CheckRun {
	e.t.Helper()
	run, ok := e.gh.LatestCheckRun(head, DefaultCheckName)
	if !ok {
		e.t.Fatalf("no check run on %.12s", head)
	}
	return run
}

// sign makes an envelope by a person.
func (e *env) sign(who, decision string, subjects []approval.Subject, policyDigest, planDigest string, pr int) []byte {
	e.t.Helper()
	p := e.people[who]
	s, err := keys.Signer(p.signer)
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clock.Now()
	st := approval.NewStatement(subjects, approval.Predicate{
		Decision: decision, Approver: who, Repository: testOwner + "/" + testName, PullRequest: pr,
		PolicyDigest: policyDigest, PlanDigest: planDigest,
		Reason: decision + " in test", IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour),
	})
	env, err := approval.Sign(s, st)
	if err != nil {
		e.t.Fatal(err)
	}
	return env
}

// evaluation judges a pull request as the check does.
func (e *env) evaluation(p *pr) *reconcile.Evaluation {
	e.t.Helper()
	ev, err := e.rec.Evaluate(e.ctx, e.mainHead(), p.head, p.number)
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

// testLogger logs to the test's output when WRIT_TEST_LOG is set.
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
