package action_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
)

func TestRegistryLookup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := action.NewRegistry()
	prod, _ := blocklist.New(blocklist.Options{Path: filepath.Join(dir, "prod.txt"), Name: "blocklist:prod-edge"})
	r.Register("block_ip", "production", prod)
	made := 0
	r.RegisterFactory("block_ip", func(env string) (action.Backend, error) {
		made++
		return blocklist.New(blocklist.Options{Path: filepath.Join(dir, env+".txt"), Name: "blocklist:" + env})
	})
	b, err := r.Lookup("block_ip", "production")
	if err != nil || b.Name() != "blocklist:prod-edge" {
		t.Fatalf("production: %v %v", b, err)
	}
	for range 2 {
		b, err = r.Lookup("block_ip", "staging")
		if err != nil || b.Name() != "blocklist:staging" {
			t.Fatalf("staging: %v %v", b, err)
		}
	}
	if made != 1 {
		t.Fatalf("factory called %d times; want 1 (cached)", made)
	}
	if _, err := r.Lookup("suspend_user", "production"); !errors.Is(err, action.ErrNoBackend) {
		t.Fatalf("suspend_user: %v; want ErrNoBackend", err)
	}
	req := action.Request{Playbook: "p", Digest: "d", Action: "block_ip", Environment: "staging", Operation: action.Apply, Targets: []string{"192.0.2.1"}}
	p, err := r.Plan(context.Background(), req)
	if err != nil || p.Targets[0].Result != action.WouldBlock || p.Backend != "blocklist:staging" {
		t.Fatalf("plan: %+v %v", p, err)
	}
	if !p.Changes() {
		t.Fatal("a would_block plan reports no changes")
	}
	if _, err := r.Execute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	req.Operation = "explode"
	if _, err := r.Execute(context.Background(), req); err == nil {
		t.Fatal("unknown operation accepted")
	}
	req.Targets = []string{"not-an-ip"}
	req.Operation = action.Apply
	if _, err := r.Plan(context.Background(), req); err == nil {
		t.Fatal("invalid target planned")
	}
}

func TestPlanProgressedFrom(t *testing.T) {
	t.Parallel()
	plan := func(results ...string) *action.Plan {
		p := &action.Plan{Action: "block_ip", Backend: "blocklist:x", Environment: "staging", Operation: action.Apply}
		for i, r := range results {
			p.Targets = append(p.Targets, action.TargetPlan{Target: fmt.Sprintf("203.0.113.%d", i+1), Result: r})
		}
		return p
	}
	approved := plan(action.WouldBlock, action.WouldBlock, action.AlreadyBlocked)
	for _, tc := range []struct {
		name string
		p    *action.Plan
		want bool
	}{
		{"unchanged", plan(action.WouldBlock, action.WouldBlock, action.AlreadyBlocked), true},
		{"half done", plan(action.AlreadyBlocked, action.WouldBlock, action.AlreadyBlocked), true},
		{"all done", plan(action.AlreadyBlocked, action.CoveredBy, action.AlreadyBlocked), true},
		{"released by someone", plan(action.WouldBlock, action.WouldBlock, action.WouldBlock), false},
		{"a target more", plan(action.WouldBlock, action.WouldBlock, action.AlreadyBlocked, action.WouldBlock), false},
		{"a target less", plan(action.WouldBlock, action.WouldBlock), false},
		{"another backend", func() *action.Plan {
			p := plan(action.WouldBlock, action.WouldBlock, action.AlreadyBlocked)
			p.Backend = "nftables:edge"
			return p
		}(), false},
		{"another operation", func() *action.Plan {
			p := plan(action.WouldBlock, action.WouldBlock, action.AlreadyBlocked)
			p.Operation = action.Revert
			return p
		}(), false},
	} {
		if got := tc.p.ProgressedFrom(approved); got != tc.want {
			t.Errorf("%s: ProgressedFrom = %v; want %v", tc.name, got, tc.want)
		}
	}
	if plan(action.WouldBlock).ProgressedFrom(nil) {
		t.Error("progressed from no plan")
	}
}
