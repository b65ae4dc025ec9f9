package reconcile

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

// BenchmarkTimeOfUseCheck measures the check an execution makes right
// before its backend call (docs/design.md, checked at the moment of use):
// the trust in force, the statements of the playbook from the database, a
// fresh decision, a fresh plan from the blocklist backend and the
// verification of the proposal and approval. It reports the latency's
// percentiles: what the check adds to an execution.
func BenchmarkTimeOfUseCheck(b *testing.B) {
	e := newEnv(b)
	e.pass()
	// Production: a proposal and an approval to verify.
	e.merge("p", map[string]string{pbPath("tou"): playbookYAML("tou", "INC-1", "203.0.113.77", "low", "production", "")})
	e.pass()
	e.approveVersion("tou", "apply", map[string]string{"alice": "propose"})
	e.pass()
	e.approveVersion("tou", "apply", map[string]string{"bob": "approve"})
	// Judged ready (pending), not run: judge only.
	if err := e.rec.judgeByID(e.ctx, e.execution("tou", "apply").ID); err != nil {
		b.Fatal(err)
	}
	x := e.execution("tou", "apply")
	if x.State != store.ExecPending {
		b.Fatalf("not pending: %s (%s)", x.State, x.Reason)
	}
	x.State, x.Attempts = store.ExecExecuting, 1 // as claimed
	op, _, err := e.rec.operation(e.ctx, x)
	if err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t0 := time.Now()
		j, err := e.rec.checkAtUse(e.ctx, x, op)
		lat = append(lat, time.Since(t0))
		if err != nil || j.Outcome != "ready" {
			b.Fatalf("check: %v %s (%s)", err, j.Outcome, j.Reason.Text)
		}
	}
	reportPercentiles(b, lat)
}

// BenchmarkRejudgeAfterTrustChange measures the pass that adopts a change
// to the policies and judges again the 1,000 operations waiting for
// approval (each a production playbook with its analyst's proposal): the
// new set has a new digest, so every judgement is recorded anew.
func BenchmarkRejudgeAfterTrustChange(b *testing.B) {
	const n = 1000
	e := newEnv(b)
	e.pass()
	files := map[string]string{}
	for i := range n {
		files[fmt.Sprintf("playbooks/wait/pb-%04d.yaml", i)] = playbookYAML(fmt.Sprintf("pb-%04d", i), fmt.Sprintf("INC-%d", i),
			fmt.Sprintf("198.51.%d.%d", i/250, i%250+1), "low", "production", "")
	}
	e.merge("many", files)
	t0 := time.Now()
	e.pass()
	b.Logf("%d operations recorded and judged in %s", n, time.Since(t0).Round(time.Millisecond))
	data, err := fs.ReadFile(policies.FS, "data.yaml")
	if err != nil {
		b.Fatal(err)
	}
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		// A policy change that leaves these playbooks waiting: a new
		// allow-listed network elsewhere.
		changed := strings.Replace(string(data), "    allowlisted_networks:\n",
			fmt.Sprintf("    allowlisted_networks:\n      10.%d.0.0/16: lab %d\n", round, round), 1)
		e.merge(fmt.Sprintf("policy-%d", round), map[string]string{"policies/data.yaml": changed})
		e.pass()
		e.submit(e.signMeta("dave", "approve"))
		e.submit(e.signMeta("erin", "approve"))
		b.StartTimer()
		e.pass() // adopts, then judges the 1,000 again
		b.StopTimer()
		st := e.rec.Status()
		if st.Adopted != st.Processed {
			b.Fatalf("not adopted: %+v", st)
		}
		list, err := e.st.UndoneExecutions(e.ctx)
		if err != nil || len(list) != n {
			b.Fatalf("%d waiting, %v", len(list), err)
		}
		adopted, _ := e.rec.trustAt(e.ctx, st.Adopted)
		if i := slices.IndexFunc(list, func(x *store.Execution) bool { return x.PolicyDigest != adopted.Policies.Digest() }); i >= 0 {
			b.Fatalf("execution %d was not judged by the adopted set", list[i].ID)
		}
		b.StartTimer()
	}
}

// reportPercentiles reports p50, p99 and max of latencies in milliseconds.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}
