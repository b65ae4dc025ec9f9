package policy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/policies"
)

// exampleInput is the input of an example playbook (block_ip of an address
// and a /24 in production) as writ builds it.
func exampleInput(b *testing.B) policy.Input {
	b.Helper()
	name := filepath.Join(repoRoot, "playbooks/network/block-c2-beacon.yaml")
	data, err := os.ReadFile(name)
	if err != nil {
		b.Fatal(err)
	}
	pb, problems := playbook.Parse("playbooks/network/block-c2-beacon.yaml", data, playbook.Options{})
	if problems != nil {
		b.Fatal(problems)
	}
	env, _ := policy.DefaultEnvironments().Lookup(pb.Spec.Environment)
	return policy.Input{Playbook: pb.PolicyInput(), Change: policy.Change{Type: "create", Author: "alice", PullRequest: 7}, Environment: env}
}

// writGC runs a benchmark with the garbage collector target the writ
// binary sets for itself (cmd/writ: GOGC=400 unless GOGC is set). To
// measure the code the binary runs, also build the benchmark with its PGO
// profile: go test -pgo=$PWD/cmd/writ/default.pgo (make bench does).
func writGC(b *testing.B) {
	if os.Getenv("GOGC") != "" {
		return
	}
	old := debug.SetGCPercent(400)
	b.Cleanup(func() { debug.SetGCPercent(old) })
}

// BenchmarkDecide is one prepared evaluation of the default policies for
// one playbook. It reports the latency distribution (p50, p99) and the
// decisions per second of one goroutine.
func BenchmarkDecide(b *testing.B) {
	writGC(b)
	set := loadDefaults(b)
	in := exampleInput(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<16)
	cpu := readCPU(b)
	start := time.Now()
	for b.Loop() {
		t0 := time.Now()
		d := set.Decide(ctx, in)
		lat = append(lat, time.Since(t0))
		if d.Outcome != policy.RequireApproval {
			b.Fatalf("%+v", d)
		}
	}
	reportLatency(b, lat, time.Since(start))
	reportCPU(b, cpu, len(lat))
}

// BenchmarkDecideManyTargets is the same with 100 targets (the default
// limit for block_ip).
func BenchmarkDecideManyTargets(b *testing.B) {
	writGC(b)
	set := loadDefaults(b)
	in := exampleInput(b)
	spec := in.Playbook["spec"].(map[string]any)
	targets := make([]any, 100)
	for i := range targets {
		targets[i] = fmt.Sprintf("203.0.%d.%d", i/50, i%50+1)
	}
	pbInput := map[string]any{}
	for k, v := range in.Playbook {
		pbInput[k] = v
	}
	newSpec := map[string]any{}
	for k, v := range spec {
		newSpec[k] = v
	}
	newSpec["targets"] = targets
	pbInput["spec"] = newSpec
	in.Playbook = pbInput
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<14)
	start := time.Now()
	for b.Loop() {
		t0 := time.Now()
		d := set.Decide(ctx, in)
		lat = append(lat, time.Since(t0))
		if d.Outcome != policy.RequireApproval {
			b.Fatalf("%+v", d)
		}
	}
	reportLatency(b, lat, time.Since(start))
}

func reportLatency(b *testing.B, lat []time.Duration, total time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Nanoseconds()) }
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
	b.ReportMetric(float64(len(lat))/total.Seconds(), "decisions/s")
}

// BenchmarkDecideParallel is decisions per second with every CPU deciding.
func BenchmarkDecideParallel(b *testing.B) {
	writGC(b)
	set := loadDefaults(b)
	in := exampleInput(b)
	ctx := context.Background()
	b.ResetTimer()
	cpu := readCPU(b)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d := set.Decide(ctx, in); d.Outcome != policy.RequireApproval {
				b.Errorf("%+v", d)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
	reportCPU(b, cpu, b.N)
}

// policySet200 is the default policy set plus generated checks: 200 .rego
// files in all.
func policySet200(b *testing.B) fstest.MapFS {
	b.Helper()
	fsys := fstest.MapFS{}
	entries, err := policies.FS.ReadDir(".")
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if policy.IsTestFile(e.Name()) {
			continue
		}
		data, _ := policies.FS.ReadFile(e.Name())
		fsys["p/"+e.Name()] = &fstest.MapFile{Data: data}
		if strings.HasSuffix(e.Name(), ".rego") {
			n++
		}
	}
	for i := n; i < 200; i++ {
		src := fmt.Sprintf(`# Generated check %[1]d.
package writ.checks.generated_%[1]d

import data.writ.lib.ip

threshold := %[1]d

denied_actions := {"nuke_%[1]d", "wipe_%[1]d"}

deny contains msg if {
	input.playbook.spec.action in denied_actions
	msg := sprintf("action %%s is refused by check %[1]d", [input.playbook.spec.action])
}

require_approval contains msg if {
	some target in ip.valid_targets
	startswith(target, "10.%[1]d.")
	msg := sprintf("%%s is in team %[1]d's range", [target])
}

approvals_required := 2 if count(input.playbook.spec.targets) > threshold
`, i)
		fsys[fmt.Sprintf("p/generated/check_%03d.rego", i)] = &fstest.MapFile{Data: []byte(src)}
	}
	return fsys
}

// BenchmarkCompile200Files loads and compiles a policy set of 200 files
// into a prepared query.
func BenchmarkCompile200Files(b *testing.B) {
	fsys := policySet200(b)
	files := 0
	for name := range fsys {
		if strings.HasSuffix(name, ".rego") {
			files++
		}
	}
	if files != 200 {
		b.Fatalf("%d files", files)
	}
	in := exampleInput(b)
	for b.Loop() {
		set, err := policy.LoadFS(fsys, "p", policy.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if d := set.Decide(context.Background(), in); d.Outcome != policy.RequireApproval {
			b.Fatalf("%+v", d)
		}
	}
}
