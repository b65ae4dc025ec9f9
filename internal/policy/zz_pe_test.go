package policy

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/playbook"
)

func TestZZCompare(t *testing.T) {
	ctx := context.Background()
	a, err := LoadFS(os.DirFS("../../policies"), ".", Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadFS(os.DirFS(os.Getenv("ZZDIR")), ".", Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile("../../playbooks/network/block-c2-beacon.yaml")
	pb, _ := playbook.Parse("playbooks/network/block-c2-beacon.yaml", data, playbook.Options{})
	env, _ := DefaultEnvironments().Lookup(pb.Spec.Environment)
	in := Input{Playbook: pb.PolicyInput(), Change: Change{Type: "create", Author: "alice"}, Environment: env}
	t.Logf("%+v\n%+v", a.Decide(ctx, in), b.Decide(ctx, in))
	var ta, tb time.Duration
	for range 10 {
		t0 := time.Now()
		for range 500 {
			a.Decide(ctx, in)
		}
		ta += time.Since(t0)
		t0 = time.Now()
		for range 500 {
			b.Decide(ctx, in)
		}
		tb += time.Since(t0)
	}
	t.Logf("A %v/op  B %v/op", ta/5000, tb/5000)
}
