package blocklist

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/writ-sec/writ/internal/action"
)

func req(op action.Operation, targets ...string) action.Request {
	return action.Request{Playbook: "block-c2", Digest: strings.Repeat("a", 64), Action: "block_ip",
		Environment: "production", Operation: op, Targets: targets}
}

func newBackend(t *testing.T, f Format) *Backend {
	t.Helper()
	dir := t.TempDir()
	b, err := New(Options{Path: filepath.Join(dir, "sub", "blocklist.txt"), Format: f, Journal: filepath.Join(dir, "journal")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func results(rs []action.TargetResult) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Target+"="+r.Result)
	}
	return strings.Join(s, " ")
}

func planString(p *action.Plan) string {
	var s []string
	for _, t := range p.Targets {
		s = append(s, t.Target+"="+t.Result)
	}
	return strings.Join(s, " ")
}

func TestApplyPlanRevertEveryFormat(t *testing.T) {
	t.Parallel()
	want := map[Format]string{
		Plain: "# " + header + "\n198.51.100.0/24\n203.0.113.7\n2001:db8::/48\n",
		Nginx: "# " + header + "\ndeny 198.51.100.0/24;\ndeny 203.0.113.7;\ndeny 2001:db8::/48;\n",
		IPSet: "# " + header + "\ncreate writ-blocklist hash:net family inet -exist\ncreate writ-blocklist6 hash:net family inet6 -exist\n" +
			"add writ-blocklist 198.51.100.0/24 -exist\nadd writ-blocklist 203.0.113.7 -exist\nadd writ-blocklist6 2001:db8::/48 -exist\n",
	}
	for f, content := range want {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			b := newBackend(t, f)
			targets := []string{"203.0.113.7", "198.51.100.0/24", "2001:db8::/48"}

			p, err := b.Plan(ctx, req(action.Apply, targets...))
			if err != nil {
				t.Fatal(err)
			}
			if got := planString(p); got != "203.0.113.7=would_block 198.51.100.0/24=would_block 2001:db8::/48=would_block" {
				t.Fatalf("plan before: %s", got)
			}
			if _, err := os.Stat(b.Path()); !os.IsNotExist(err) {
				t.Fatal("Plan wrote the file")
			}
			rs, err := b.Apply(ctx, req(action.Apply, targets...))
			if err != nil || results(rs) != "203.0.113.7=changed 198.51.100.0/24=changed 2001:db8::/48=changed" {
				t.Fatalf("apply: %s, %v", results(rs), err)
			}
			got, _ := os.ReadFile(b.Path())
			if string(got) != content {
				t.Fatalf("file:\n%s\nwant:\n%s", got, content)
			}
			// Idempotent: applying again changes nothing.
			rs, err = b.Apply(ctx, req(action.Apply, targets...))
			if err != nil || results(rs) != "203.0.113.7=unchanged 198.51.100.0/24=unchanged 2001:db8::/48=unchanged" {
				t.Fatalf("second apply: %s, %v", results(rs), err)
			}
			p, _ = b.Plan(ctx, req(action.Apply, "203.0.113.7", "198.51.100.9"))
			if got := planString(p); got != "203.0.113.7=already_blocked 198.51.100.9=covered_by" || p.Targets[1].Detail != "inside 198.51.100.0/24" {
				t.Fatalf("plan after: %s %+v", got, p.Targets)
			}
			p, _ = b.Plan(ctx, req(action.Revert, "203.0.113.7", "192.0.2.1"))
			if got := planString(p); got != "203.0.113.7=would_unblock 192.0.2.1=not_blocked" {
				t.Fatalf("revert plan: %s", got)
			}
			rs, err = b.Revert(ctx, req(action.Revert, "203.0.113.7", "192.0.2.1"))
			if err != nil || results(rs) != "203.0.113.7=changed 192.0.2.1=unchanged" {
				t.Fatalf("revert: %s %v", results(rs), err)
			}
			entries, _ := b.Entries()
			if len(entries) != 2 {
				t.Fatalf("entries after revert: %v", entries)
			}
			journal, _ := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(b.Path())), "journal"))
			if n := strings.Count(string(journal), " block "); n != 3 {
				t.Fatalf("journal has %d block lines; want 3 (one per change):\n%s", n, journal)
			}
			if n := strings.Count(string(journal), " unblock "); n != 1 {
				t.Fatalf("journal has %d unblock lines; want 1", n)
			}
		})
	}
}

func TestRefusesFileEditedByHand(t *testing.T) {
	t.Parallel()
	b := newBackend(t, Nginx)
	if err := os.MkdirAll(filepath.Dir(b.Path()), 0o755); err != nil {
		t.Fatal(err)
	}
	orig := "deny 192.0.2.1;\nallow all;\n"
	if err := os.WriteFile(b.Path(), []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := b.Apply(context.Background(), req(action.Apply, "203.0.113.7"))
	if err == nil || !strings.Contains(err.Error(), "blocklist.txt:2") {
		t.Fatalf("err = %v; want it to name line 2", err)
	}
	got, _ := os.ReadFile(b.Path())
	if string(got) != orig {
		t.Fatal("a hand-edited file was overwritten")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	b := newBackend(t, Plain)
	for name, r := range map[string]action.Request{
		"not an ip": req(action.Apply, "fin-ws-12"),
		"host bits": req(action.Apply, "10.1.2.3/8"),
		"none":      req(action.Apply),
		"params": func() action.Request {
			r := req(action.Apply, "192.0.2.1")
			r.Params = map[string]any{"ttl": 5}
			return r
		}(),
	} {
		if err := b.Validate(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := b.Validate(req(action.Apply, "192.0.2.1", "2001:db8::1")); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Path: "relative.txt"}); err == nil {
		t.Error("relative path accepted")
	}
	if _, err := New(Options{Path: "/tmp/x", Format: IPSet, SetName: "bad name;"}); err == nil {
		t.Error("bad ipset name accepted")
	}
}

// Concurrent writers (goroutines standing in for processes; the lock is a
// flock on a file, which also serializes processes) lose no update.
func TestConcurrentAppliesLoseNothing(t *testing.T) {
	t.Parallel()
	b := newBackend(t, Plain)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b2, _ := New(b.opts) // a separate instance, as another process would have
			if _, err := b2.Apply(context.Background(), req(action.Apply, "192.0.2."+strconv.Itoa(i+1))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	entries, err := b.Entries()
	if err != nil || len(entries) != 20 {
		t.Fatalf("%d entries, %v; want 20", len(entries), err)
	}
}

func TestPlanDigestIsStable(t *testing.T) {
	t.Parallel()
	a := &action.Plan{Action: "block_ip", Backend: "blocklist", Operation: action.Apply, Targets: []action.TargetPlan{{Target: "b", Result: "would_block"}, {Target: "a", Result: "already_blocked"}}}
	b := &action.Plan{Action: "block_ip", Backend: "blocklist", Operation: action.Apply, Targets: []action.TargetPlan{{Target: "a", Result: "already_blocked"}, {Target: "b", Result: "would_block"}}}
	if a.Digest() != b.Digest() || len(a.Digest()) != 64 {
		t.Fatal("digest depends on target order")
	}
	b.Targets[1].Result = "already_blocked"
	if a.Digest() == b.Digest() {
		t.Fatal("digest ignores a changed result")
	}
}

// With ReadOnce, every Plan answers from the file as the first Plan read
// it (writ plan: one read for thousands of playbooks); without, each Plan
// reads the file as it is.
func TestPlanReadOnce(t *testing.T) {
	ctx := context.Background()
	for _, once := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "blocklist.txt")
		if err := os.WriteFile(path, []byte("203.0.113.7\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := New(Options{Path: path, ReadOnce: once})
		if err != nil {
			t.Fatal(err)
		}
		first, err := b.Plan(ctx, req(action.Apply, "203.0.113.7", "198.51.100.9"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("203.0.113.7\n198.51.100.9\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		second, err := b.Plan(ctx, req(action.Apply, "203.0.113.7", "198.51.100.9"))
		if err != nil {
			t.Fatal(err)
		}
		want := "203.0.113.7=already_blocked 198.51.100.9=already_blocked"
		if once {
			want = "203.0.113.7=already_blocked 198.51.100.9=would_block"
		}
		if planString(first) != "203.0.113.7=already_blocked 198.51.100.9=would_block" || planString(second) != want {
			t.Errorf("ReadOnce %v: plans %q then %q, want the second %q", once, planString(first), planString(second), want)
		}
	}
}
