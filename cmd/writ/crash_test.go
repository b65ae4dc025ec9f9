package main

import (
	"context"
	"crypto"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/action/webhook"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

// crashRig is a content repository, a database and the files writ serve
// runs on, for tests that kill the server.
type crashRig struct {
	t       *testing.T
	repo    *gittest.Repo
	dbURL   string
	st      *store.Store
	dataDir string
	config  string
	list    string // blocklist file
	journal string
	alice   crypto.Signer
	policy  string // policy digest
	// identity is the repository identity writ serve derives from the
	// bare repository's path: statements must name it.
	identity string
	// hook, when set, is the backend instead of the blocklist file: a
	// webhook receiver the test controls (newCrashRigHook).
	hook *crashHook
}

func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	r := &crashRig{t: t, dataDir: filepath.Join(traversableTempDir(t), "state")}
	alice, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	r.alice = alice
	pub, _ := keys.MarshalPublic(alice.Public())
	var ap strings.Builder
	ap.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n  - id: alice\n    roles: [analyst]\n    keys:\n      - |\n")
	for _, l := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
		ap.WriteString("        " + l + "\n")
	}
	files := map[string]string{".writ/approvers.yaml": ap.String()}
	seed, err := policies.Files(true)
	for p, c := range seed {
		files[p] = c
	}
	if err != nil {
		t.Fatal(err)
	}
	r.repo = gittest.New(t, files)
	if r.identity, err = gitsrc.Identity(r.repo.Bare); err != nil {
		t.Fatal(err)
	}
	r.policy, err = policy.DigestFS(os.DirFS(r.repo.Work), "policies")
	if err != nil {
		t.Fatal(err)
	}
	r.dbURL = dbtest.URL(t)
	r.st, err = store.Open(context.Background(), store.Options{URL: r.dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.st.Close)
	dir := t.TempDir()
	r.list, r.journal = filepath.Join(dir, "staging.txt"), filepath.Join(dir, "staging.journal")
	r.config = filepath.Join(dir, "writ.yaml")
	cfg := fmt.Sprintf(`apiVersion: writ/v1
kind: ServerConfig
backends:
  - name: staging-list
    type: blocklist
    actions: [block_ip]
    environments: ["*"]
    blocklist: {path: %s, journal: %s}
`, r.list, r.journal)
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// newCrashRigHook is a crash rig whose backend is a webhook receiver in
// the test process (crashHook) rather than the blocklist file, so that the
// test can stop an execution inside the backend.
func newCrashRigHook(t *testing.T) *crashRig {
	t.Helper()
	r := newCrashRig(t)
	r.hook = newCrashHook(t)
	cfg := fmt.Sprintf(`apiVersion: writ/v1
kind: ServerConfig
backends:
  - name: staging-hook
    type: webhook
    actions: [block_ip]
    environments: ["*"]
    settings:
      url: %[1]s/actions
      statusURL: %[1]s/status
      secretEnv: %[2]s
      allowInsecureHTTP: true
      timeout: 5m
`, r.hook.srv.URL, crashHookSecretEnv)
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// backend is the rig's backend as the server builds it, for plans.
func (r *crashRig) backend() action.Backend {
	r.t.Helper()
	if r.hook == nil {
		b, err := blocklist.New(blocklist.Options{Path: filepath.Join(r.t.TempDir(), "empty.txt"), Name: "blocklist:staging-list"})
		if err != nil {
			r.t.Fatal(err)
		}
		return b
	}
	secret, err := config.ResolveSecret(func(string) string { return crashHookSecret }, crashHookSecretEnv, "")
	if err != nil {
		r.t.Fatal(err)
	}
	b, err := webhook.New(webhook.Options{Name: "webhook:staging-hook", URL: r.hook.srv.URL + "/actions", StatusURL: r.hook.srv.URL + "/status",
		Secret: secret, AllowHTTP: true})
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// addPlaybook merges an allowed playbook and stores its analyst's signed
// proposal (the digests are those the server will compute).
func (r *crashRig) addPlaybook(i int) (name string, targets []string) {
	r.t.Helper()
	name = fmt.Sprintf("block-%03d", i)
	targets = []string{fmt.Sprintf("203.0.113.%d", i%250+1), fmt.Sprintf("198.51.%d.0/24", i%250)}
	src := fmt.Sprintf("apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: %s\nspec:\n  action: block_ip\n  targets: [%s]\n"+
		"  justification: crash test\n  severity: low\n  environment: staging\n", name, strings.Join(targets, ", "))
	path := "playbooks/" + name + ".yaml"
	r.repo.Write(path, src)
	r.repo.Commit("add " + name)
	r.repo.Push()
	pb, problems := playbook.Parse(path, []byte(src), playbook.Options{})
	if problems != nil {
		r.t.Fatal(problems)
	}
	// The plan before anything ran: every target would be blocked.
	plan, err := r.backend().Plan(context.Background(), action.RequestFor(pb, action.Apply))
	if err != nil {
		r.t.Fatal(err)
	}
	s, _ := keys.Signer(r.alice)
	now := time.Now()
	raw, err := approval.Sign(s, approval.NewStatement([]approval.Subject{{Path: path, Digest: pb.Digest}}, approval.Predicate{
		Decision: "propose", Approver: "alice", Repository: r.identity, PolicyDigest: r.policy, PlanDigest: plan.Digest(),
		IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour),
	}))
	if err != nil {
		r.t.Fatal(err)
	}
	env, err := approval.Parse(raw)
	if err != nil {
		r.t.Fatal(err)
	}
	rec := store.Approval{Envelope: raw, EnvelopeSHA256: env.SHA256, StatementSHA256: env.StatementSHA256, Decision: "propose", Approver: "alice",
		PolicyDigest: r.policy, PlanDigest: plan.Digest(), IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour), Source: "cli",
		Subjects: []store.ApprovalSubject{{Digest: pb.Digest, Name: path}}}
	if _, _, err := r.st.InsertApproval(context.Background(), rec); err != nil {
		r.t.Fatal(err)
	}
	return name, targets
}

// start runs writ serve as a child process (this test binary as writ).
func (r *crashRig) start() *exec.Cmd {
	r.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	self, _ := os.Executable()
	cmd := exec.Command(self, "serve", "--repo", r.repo.Bare, "--database", r.dbURL, "--data-dir", r.dataDir,
		"--config", r.config, "--listen", addr, "--poll-interval", "50ms", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "WRIT_TEST_MAIN=1", crashHookSecretEnv+"="+crashHookSecret)
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	return cmd
}

// crashWait bounds every wait of the crash test for a state it needs: long
// enough for a loaded machine, short enough to fail with a message rather
// than the test binary's timeout.
const crashWait = 3 * time.Minute

// unfinished lists the playbooks whose apply has not completed, with the
// idempotency key of that apply.
func (r *crashRig) unfinished(names map[string][]string) map[string]string {
	r.t.Helper()
	out := map[string]string{}
	for name := range names {
		v, err := r.st.LatestPlaybookVersion(context.Background(), name)
		switch {
		case err != nil:
			out[name] = ""
		case v.Status != store.StatusCompleted:
			out[name] = fmt.Sprintf("writ:%s:%s:apply", v.Name, v.Digest)
		}
	}
	return out
}

// waitGate waits until the armed receiver holds an apply request of cmd,
// and returns the request's idempotency key. exited is closed when cmd
// has exited.
func (r *crashRig) waitGate(cmd *exec.Cmd, exited <-chan struct{}, held <-chan string, mode string) string {
	r.t.Helper()
	select {
	case key := <-held:
		return key
	case <-exited:
		r.t.Fatalf("writ serve exited before its backend held a request (%s)", mode)
	case <-time.After(crashWait):
		_ = cmd.Process.Kill()
		r.t.Fatalf("no execution reached the backend's apply (%s) within %s", mode, crashWait)
	}
	return ""
}

// Killing writ with SIGKILL at random points, 50 times, while playbooks
// are merged and executed: afterwards every playbook was applied exactly
// once (counted by the webhook receiver that is the backend), every
// execution finished, and the audit chain verifies.
func TestCrashDuringExecutions(t *testing.T) {
	r := newCrashRigHook(t)
	want := map[string][]string{}
	next := 0
	add := func(n int) {
		for range n {
			name, targets := r.addPlaybook(next)
			want[name] = targets
			next++
		}
	}
	add(5)
	kills, inFlight := 0, 0
	stopped := map[string]int{} // idempotency key -> kills inside its Apply
	for kills < 50 {
		if kills%2 == 0 {
			// Kill at a random moment: during start-up, a pass, an execution.
			cmd := r.start()
			time.Sleep(time.Duration(20+rand.IntN(400)) * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		} else {
			// Kill inside an execution, at a point the backend reports:
			// before it applied anything, or after it applied everything
			// and before writ recorded that (the receiver holds the
			// request). Operations stopped before go
			// through (they are resumed and finish), so that every such
			// kill lands in an execution of its own; make sure there is
			// one.
			fresh := 0
			for _, key := range r.unfinished(want) {
				if stopped[key] == 0 {
					fresh++
				}
			}
			if fresh == 0 {
				add(1)
			}
			mode := "before"
			if kills%4 == 3 {
				mode = "after"
			}
			pass := map[string]bool{}
			for key := range stopped {
				pass[key] = true
			}
			held := r.hook.arm(mode, pass)
			cmd := r.start()
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			key := r.waitGate(cmd, exited, held, mode)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			r.hook.disarm()
			stopped[key]++
			inFlight++
		}
		kills++
		if kills%5 == 0 {
			add(3)
		}
	}
	// A last, undisturbed run finishes everything.
	cmd := r.start()
	ctx := context.Background()
	deadline := time.Now().Add(crashWait)
	for {
		left := len(r.unfinished(want))
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("%d of %d playbooks completed %s after the crashes", len(want)-left, len(want), crashWait)
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final writ serve: %v", err)
	}

	// Exactly once at the backend.
	count, blocked := r.hook.counts()
	for name, targets := range want {
		for _, tg := range targets {
			if n := count[name+" block "+tg]; n != 1 {
				t.Errorf("%s: %s blocked %d times at the backend; want exactly once", name, tg, n)
			}
			if !blocked[tg] {
				t.Errorf("%s: %s is not blocked at the backend", name, tg)
			}
		}
	}
	execs, err := r.st.ListExecutions(ctx, store.ExecutionFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(execs) != len(want) {
		t.Errorf("%d executions for %d playbooks", len(execs), len(want))
	}
	resumed, resumptions := 0, 0
	for _, e := range execs {
		if e.State != store.ExecCompleted {
			t.Errorf("execution %d of %s is %s", e.ID, e.Name, e.State)
		}
		if e.Attempts > 1 {
			resumed++
			resumptions += e.Attempts - 1
		}
	}
	// The audit chain verifies with the key writ made on its first start.
	pubPEM, err := os.ReadFile(filepath.Join(r.dataDir, "audit", "audit.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyDatabase(ctx, r.st, audit.VerifyOptions{Trusted: audit.NewKeySet(pub)})
	if err != nil || rep.Bad != nil {
		t.Fatalf("audit verify: %v %v", err, rep.Bad)
	}
	// A kill inside an execution leaves it executing: the next writ claims
	// it again (an attempt more) and finishes it through Plan and an Apply
	// of what is left. Every such kill must show as a resumption.
	if inFlight != 25 || len(stopped) != inFlight || resumptions < inFlight {
		t.Errorf("%d kills inside an execution but %d resumptions: the crash path was not exercised", inFlight, resumptions)
	}
	t.Logf("%d kills (%d inside an execution, in %d executions); %d playbooks; %d resumptions of %d executions; %d audit entries; %d actions at the backend",
		kills, inFlight, len(stopped), len(want), resumptions, resumed, rep.Entries, len(count))
}
