package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
)

// replica runs writ serve as a separate process on the rig's database, with
// its own data directory and the shared configuration.
func (r *crashRig) replica(name string) *exec.Cmd {
	r.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	self, _ := os.Executable()
	dataDir := filepath.Join(filepath.Dir(r.dataDir), "replica-"+name)
	cmd := exec.Command(self, "serve", "--repo", r.repo.Bare, "--database", r.dbURL, "--data-dir", dataDir,
		"--config", r.config, "--listen", addr, "--poll-interval", "100ms", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "WRIT_TEST_MAIN=1")
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// holder is the replica id writ records for a process: host-pid.
func holder(cmd *exec.Cmd) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, cmd.Process.Pid)
}

// Two replicas share one database: the leader is killed with SIGKILL in
// the middle of work; the other takes over, nothing is executed twice, and
// the audit chain verifies. (How fast the takeover is is measured and
// logged, not asserted: a loaded machine is slow, not wrong.)
func TestFailoverBetweenReplicas(t *testing.T) {
	r := newCrashRig(t)
	// Both replicas sign the audit log with the same configured key.
	priv, _ := keys.Generate(keys.Ed25519)
	pemKey, _ := keys.MarshalPrivate(priv, nil)
	keyFile := filepath.Join(t.TempDir(), "audit.key")
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(r.config)
	cfg = append(cfg, []byte("audit:\n  signingKeyFile: "+keyFile+"\n")...)
	if err := os.WriteFile(r.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := map[string][]string{}
	next := 0
	add := func(n int) {
		for range n {
			name, targets := r.addPlaybook(next)
			want[name] = targets
			next++
		}
	}
	waitLeader := func(not string, within time.Duration) (string, time.Duration) {
		t0 := time.Now()
		for {
			li, err := r.st.Leader(ctx)
			if err == nil && li.Holder != "" && li.Holder != not && !strings.HasPrefix(li.Holder, "fenced") {
				return li.Holder, time.Since(t0)
			}
			if time.Since(t0) > within {
				t.Fatalf("no new leader within %s (last %+v, %v)", within, li, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	a := r.replica("a")
	first, _ := waitLeader("", time.Minute)
	if first != holder(a) {
		t.Fatalf("leader %s; want the first replica %s", first, holder(a))
	}
	b := r.replica("b")
	add(6)
	// Let the leader work: it has executed something, and more is waiting.
	completed := func() int {
		n := 0
		for name := range want {
			if v, err := r.st.LatestPlaybookVersion(ctx, name); err == nil && v.Status == store.StatusCompleted {
				n++
			}
		}
		return n
	}
	for t0 := time.Now(); completed() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Since(t0) > 3*time.Minute {
			t.Fatal("the first leader executed nothing within 3m")
		}
	}
	add(6)
	// Kill the leader mid-work.
	_ = a.Process.Signal(syscall.SIGKILL)
	_ = a.Wait()
	second, took := waitLeader(first, 3*time.Minute)
	if second != holder(b) {
		t.Fatalf("new leader %s; want %s", second, holder(b))
	}
	t.Logf("takeover after %s", took.Round(time.Millisecond))
	add(4)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		done := completed()
		if done == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d playbooks completed after the failover", done, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = b.Process.Signal(syscall.SIGTERM)
	if err := b.Wait(); err != nil {
		t.Fatalf("replica b: %v", err)
	}
	journal, _ := os.ReadFile(r.journal)
	count := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(journal)), "\n") {
		if f := strings.Fields(l); len(f) == 4 {
			count[strings.Split(f[1], ":")[1]+" "+f[2]+" "+f[3]]++
		}
	}
	for name, targets := range want {
		for _, tg := range targets {
			if n := count[name+" block "+tg]; n != 1 {
				t.Errorf("%s: %s blocked %d times; want exactly once", name, tg, n)
			}
		}
	}
	pub, _ := audit.NewPublicKey(priv.Public())
	rep, err := audit.VerifyDatabase(ctx, r.st, audit.VerifyOptions{Trusted: audit.NewKeySet(pub)})
	if err != nil || rep.Bad != nil {
		t.Fatalf("audit verify: %v %v", err, rep.Bad)
	}
	t.Logf("%d playbooks, %d audit entries", len(want), rep.Entries)
}
