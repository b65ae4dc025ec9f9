package reconcile

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/playbook"
)

// benchRepo makes a repository holding n playbooks (all denied by the
// default policies, so setting it up executes nothing) and bootstraps the
// reconciler on it.
func benchRepo(b *testing.B, n int) *env {
	e := newEnv(b)
	for i := range n {
		// Loopback targets: denied, decided without a backend.
		e.repo.Write(fmt.Sprintf("playbooks/team-%02d/pb-%05d.yaml", i%50, i),
			playbookYAML(fmt.Sprintf("pb-%05d", i), fmt.Sprintf("INC-%d", i), "127.0.0.1", "low", "staging", ""))
	}
	e.repo.Commit(fmt.Sprintf("%d playbooks", n))
	e.repo.Push()
	start := time.Now()
	e.pass()
	b.Logf("bootstrap of %d playbooks: %s", n, time.Since(start).Round(time.Millisecond))
	return e
}

// benchOneChange measures one pass over a commit that adds one playbook,
// with the git work outside the timer. The new playbook waits for its
// proposal, so no backend runs: what is measured is the reconciler.
func benchOneChange(b *testing.B, n int) {
	e := benchRepo(b, n)
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		name := fmt.Sprintf("new-%05d", i)
		e.repo.Write("playbooks/new/"+name+".yaml", playbookYAML(name, "INC-X", fmt.Sprintf("203.0.113.%d", i%250+1), "low", "staging", ""))
		e.repo.Commit("add " + name)
		e.repo.Push()
		b.StartTimer()
		e.pass()
	}
	b.StopTimer()
	if st, _ := e.status(fmt.Sprintf("new-%05d", i)); st == "" {
		b.Fatal("the last playbook was not processed")
	}
}

func BenchmarkReconcileOneChangeIn100(b *testing.B)   { benchOneChange(b, 100) }
func BenchmarkReconcileOneChangeIn10000(b *testing.B) { benchOneChange(b, 10000) }

// benchLatency measures from the push of a merge (and, with nudge, the
// nudge that follows it) to the start of the playbook's execution, with the
// reconciler's loop running as in writ serve. The analyst's proposal is
// stored before the merge, as it would arrive during the pull request.
func benchLatency(b *testing.B, nudge bool, poll time.Duration) {
	e := newEnv(b)
	e.rec.opts.PollInterval = poll
	e.rec.opts.Now = time.Now // real time: the loop sleeps on it
	e.pass()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = e.rec.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	trust, err := e.rec.currentTrust(e.ctx)
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		name := fmt.Sprintf("fast-%04d", i)
		src := playbookYAML(name, "INC-L", fmt.Sprintf("203.0.113.%d", i%250+1), "low", "staging", "")
		pb, problems := playbook.Parse(pbPath(name), []byte(src), playbook.Options{})
		if problems != nil {
			b.Fatal(problems)
		}
		plan, err := e.rec.opts.Backends.Plan(e.ctx, action.RequestFor(pb, action.Apply))
		if err != nil {
			b.Fatal(err)
		}
		e.submit(e.sign("alice", "propose", []approval.Subject{{Path: pb.Path, Digest: pb.Digest}}, trust.Policies.Digest(), plan.Digest(), time.Now()))
		e.repo.Write(pbPath(name), src)
		e.repo.Commit("add " + name)
		b.StartTimer()
		e.repo.Push()
		t0 := time.Now()
		if nudge {
			e.rec.Nudge()
		}
		for {
			x, err := e.st.ExecutionByKey(e.ctx, name, pb.Digest, "apply")
			if err == nil && x.StartedAt != nil {
				lat = append(lat, x.StartedAt.Sub(t0))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		b.ReportMetric(float64(lat[n/2].Milliseconds()), "p50-ms")
		b.ReportMetric(float64(lat[(n*99)/100].Milliseconds()), "p99-ms")
		b.ReportMetric(float64(lat[n-1].Milliseconds()), "max-ms")
	}
}

func BenchmarkMergeToExecutionNudged(b *testing.B)   { benchLatency(b, true, 30*time.Second) }
func BenchmarkMergeToExecutionPolled2s(b *testing.B) { benchLatency(b, false, 2*time.Second) }
