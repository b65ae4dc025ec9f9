package reconcile

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
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
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

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

// person is someone in the approvers file, with their private key.
type person struct {
	id     string
	roles  []string
	signer crypto.Signer
}

// env is a content repository (a bare "server" and an analyst's clone),
// a database, an audit log, blocklist backends and a reconciler.
type env struct {
	t      testing.TB
	ctx    context.Context
	repo   *gittest.Repo
	st     *store.Store
	audit  *audit.Log
	rec    *Reconciler
	clock  *clock
	dir    string
	people map[string]*person

	hookMu sync.Mutex
	// onApply, when set, runs before every backend Apply; an error it
	// returns is the Apply's (a transient backend failure, say).
	onApply func(req action.Request) error
}

// hooked is a backend whose Apply first runs the env's onApply: the tests'
// way to make something happen while the executor is busy.
type hooked struct {
	action.Backend
	e *env
}

func (h hooked) Apply(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	h.e.hookMu.Lock()
	fn := h.e.onApply
	h.e.hookMu.Unlock()
	if fn != nil {
		if err := fn(req); err != nil {
			return nil, err
		}
	}
	return h.Backend.Apply(ctx, req)
}

// setOnApply sets (or with nil clears) the Apply hook.
func (e *env) setOnApply(fn func(req action.Request) error) {
	e.hookMu.Lock()
	defer e.hookMu.Unlock()
	e.onApply = fn
}

var roster = []struct {
	id    string
	roles []string
}{
	{"alice", []string{"analyst"}},
	{"bob", []string{"approver"}},
	{"carol", []string{"approver"}},
	{"dave", []string{"admin"}},
	{"erin", []string{"admin"}},
	{"mallory", []string{"analyst"}},
}

// newEnv makes the environment; tune adjusts the reconciler's options
// before it is made.
func newEnv(t testing.TB, tune ...func(o *Options)) *env {
	t.Helper()
	return newEnvWith(t, roster, tune...)
}

// newEnvWith is newEnv with another approvers file.
func newEnvWith(t testing.TB, people []struct {
	id    string
	roles []string
}, tune ...func(o *Options)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, ctx: ctx, clock: &clock{now: time.Now().UTC().Truncate(time.Second)}, dir: t.TempDir(), people: map[string]*person{}}
	files := map[string]string{}
	// The default policies, as a content repository would carry them.
	seed, err := policies.Files(false)
	for p, c := range seed {
		files[p] = c
	}
	if err != nil {
		t.Fatal(err)
	}
	files[".writ/approvers.yaml"] = e.approversFile(people)
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
	e.audit, err = audit.NewLog(audit.LogOptions{Store: e.st, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	src, err := gitsrc.Open(ctx, gitsrc.Options{URL: e.repo.Bare})
	if err != nil {
		t.Fatal(err)
	}
	reg := action.NewRegistry()
	reg.RegisterFactory("block_ip", func(environment string) (action.Backend, error) {
		b, err := e.blocklist(environment)
		return hooked{Backend: b, e: e}, err
	})
	opts := Options{
		Source: src, Store: e.st, Audit: e.audit, Backends: reg,
		DefaultPolicies: policies.FS, Now: e.clock.Now, Repository: testRepo,
		RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
		Logger: testLogger(t),
	}
	for _, fn := range tune {
		fn(&opts)
	}
	e.rec, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// blocklist is the blocklist backend of an environment (the file writ's
// reconciler writes), for tests that change live state behind writ's back.
func (e *env) blocklist(environment string) (*blocklist.Backend, error) {
	return blocklist.New(blocklist.Options{
		Path:    filepath.Join(e.dir, "blocklist", environment+".txt"),
		Journal: filepath.Join(e.dir, "blocklist", environment+".journal"),
		Name:    "blocklist:" + environment,
	})
}

// approversFile writes .writ/approvers.yaml for people, making keys for
// those who have none yet.
func (e *env) approversFile(people []struct {
	id    string
	roles []string
}) string {
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	for _, p := range people {
		who, ok := e.people[p.id]
		if !ok {
			k, err := keys.Generate(keys.Ed25519)
			if err != nil {
				e.t.Fatal(err)
			}
			who = &person{id: p.id, roles: p.roles, signer: k}
			e.people[p.id] = who
		}
		pub, err := keys.MarshalPublic(who.signer.Public())
		if err != nil {
			e.t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - id: %s\n    email: %s@soc.example\n    roles: [%s]\n    keys:\n      - |\n", p.id, p.id, strings.Join(p.roles, ", "))
		for _, line := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
	}
	return b.String()
}

// pass runs one reconcile pass and fails the test on error.
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
%s`

func playbookYAML(name, ticket, targets, severity, environment, extra string) string {
	return fmt.Sprintf(playbookTmpl, name, ticket, targets, severity, environment, extra)
}

// merge commits files on a branch and merges it into main with a merge
// commit, as a forge would, and pushes; it returns the merge commit.
func (e *env) merge(branch string, files map[string]string, remove ...string) string {
	e.t.Helper()
	e.repo.Checkout("main")
	e.repo.Branch(branch)
	for p, c := range files {
		e.repo.Write(p, c)
	}
	for _, p := range remove {
		e.repo.Remove(p)
	}
	e.repo.Commit("change on " + branch)
	e.repo.Checkout("main")
	sha := e.repo.Merge(branch)
	e.repo.Push()
	return sha
}

// testRepo is the repository identity the tests' reconciler has.
const testRepo = "acme/secops"

// sign makes an envelope by person for a subject: about its apply, in the
// test repository.
func (e *env) sign(who, decision string, subjects []approval.Subject, policyDigest, planDigest string, issued time.Time) []byte {
	e.t.Helper()
	return e.signWith(who, approval.Predicate{Decision: decision, PolicyDigest: policyDigest, PlanDigest: planDigest, IssuedAt: issued}, subjects)
}

// signWith signs a predicate by person (the approver, repository, reason
// and expiry filled in when empty).
func (e *env) signWith(who string, pred approval.Predicate, subjects []approval.Subject) []byte {
	e.t.Helper()
	p := e.people[who]
	s, err := keys.Signer(p.signer)
	if err != nil {
		e.t.Fatal(err)
	}
	pred.Approver = who
	if pred.Repository == "" {
		pred.Repository = testRepo
	}
	if pred.Reason == "" {
		pred.Reason = pred.Decision + " in test"
	}
	if pred.IssuedAt.IsZero() {
		pred.IssuedAt = e.clock.Now()
	}
	if pred.ExpiresAt.IsZero() {
		pred.ExpiresAt = pred.IssuedAt.Add(24 * time.Hour)
	}
	env, err := approval.Sign(s, approval.NewStatement(subjects, pred))
	if err != nil {
		e.t.Fatal(err)
	}
	return env
}

// signMeta has an admin sign decision for the change to policies/ and
// .writ/ the branch head makes against what is in force, exactly as
// `writ approve` would.
func (e *env) signMeta(who, decision string) []byte {
	e.t.Helper()
	st, err := e.st.RepoState(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	adopted, err := e.rec.trustAt(e.ctx, st.AdoptedSHA)
	if err != nil {
		e.t.Fatal(err)
	}
	change, err := e.rec.metaChange(e.ctx, adopted, st.ProcessedSHA)
	if err != nil || change == nil {
		e.t.Fatalf("no change to what decides at %.12s: %v", st.ProcessedSHA, err)
	}
	t := change.Transition
	return e.signWith(who, approval.Predicate{Decision: decision, PolicyDigest: adopted.Policies.Digest(), Transition: &t}, change.Subjects)
}

// submit stores an envelope as the API would.
func (e *env) submit(raw []byte) {
	e.t.Helper()
	if _, err := e.rec.SubmitApproval(e.ctx, raw, approval.Submitted{Source: "api"}); err != nil {
		e.t.Fatalf("submit: %v", err)
	}
}

// approveVersion has each person sign decision for the playbook version's
// current waiting operation (its policy and plan digests, as the API shows
// them) and submits the envelopes.
func (e *env) approveVersion(name, op string, decisions map[string]string) {
	e.t.Helper()
	ex := e.execution(name, op)
	for who, decision := range decisions {
		raw := e.signWith(who, approval.Predicate{Decision: decision, Operation: ex.Operation, PolicyDigest: ex.PolicyDigest, PlanDigest: ex.PlanDigest},
			[]approval.Subject{{Path: ex.Path, Digest: ex.Digest}})
		e.submit(raw)
	}
}

// mergeProposed merges content as playbook name (on branch), and runs its
// apply once alice's signed proposal is in: all a staging playbook needs.
func (e *env) mergeProposed(branch, name, content string) {
	e.t.Helper()
	e.merge(branch, map[string]string{pbPath(name): content})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
}

// execution finds the latest execution of a playbook and operation.
func (e *env) execution(name, op string) *store.Execution {
	e.t.Helper()
	list, err := e.st.ListExecutions(e.ctx, store.ExecutionFilter{Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, x := range list {
		if x.Operation == op {
			return x
		}
	}
	e.t.Fatalf("no %s execution of %s", op, name)
	return nil
}

// status is a playbook's latest version's status and reason.
func (e *env) status(name string) (string, string) {
	e.t.Helper()
	v, err := e.st.LatestPlaybookVersion(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return v.Status, v.StatusReason
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

// journal counts the changes the backend made per (playbook key, change).
func (e *env) journal(environment string) map[string]int {
	e.t.Helper()
	b, _ := os.ReadFile(filepath.Join(e.dir, "blocklist", environment+".journal"))
	out := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 { // time, idempotency key, change, target
			out[f[1]+" "+f[2]]++
		}
	}
	return out
}

// verifyAudit checks the audit chain end to end.
func (e *env) verifyAudit() {
	e.t.Helper()
	pub, err := audit.NewPublicKey(e.audit.Key().Public())
	if err != nil {
		e.t.Fatal(err)
	}
	rep, err := audit.VerifyDatabase(e.ctx, e.st, audit.VerifyOptions{Trusted: audit.NewKeySet(pub)})
	if err != nil {
		e.t.Fatalf("audit verify: %v", err)
	}
	if rep.Bad != nil || rep.Entries == 0 {
		e.t.Fatalf("audit chain does not verify: %d entries, %v", rep.Entries, rep.Bad)
	}
}

func pbPath(name string) string { return "playbooks/" + name + ".yaml" }

var _ = playbook.Dir

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
