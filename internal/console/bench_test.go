package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// fillContained records 500 playbooks in force with 20 targets each
// (10,000 contained targets: IPv4 addresses and /24 prefixes, users and
// hosts), each applied through the store functions the reconciler uses.
func fillContained(b *testing.B, st *store.Store) {
	b.Helper()
	ctx := context.Background()
	verdict, _ := json.Marshal(map[string]any{"quorum_met": true, "proposer": "alice", "counted": []string{"bob", "carol"}})
	for pb := range 500 {
		action, targets := "block_ip", make([]string, 20)
		for j := range targets {
			n := pb*20 + j
			switch pb % 4 {
			case 0:
				targets[j] = fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
			case 1:
				targets[j] = fmt.Sprintf("172.%d.%d.0/24", 16+n>>8&15, n&255)
			case 2:
				action, targets[j] = "suspend_user", fmt.Sprintf("user%05d@example.com", n)
			default:
				action, targets[j] = "isolate_host", fmt.Sprintf("host-%05d", n)
			}
		}
		name := fmt.Sprintf("pb-%04d", pb)
		content := fmt.Sprintf("apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: %s\n  ticket: INC-%d\nspec:\n  action: %s\n"+
			"  environment: production\n  severity: high\n  justification: bench\n  targets: [%s]\n", name, pb, action, strings.Join(targets, ", "))
		commit := fmt.Sprintf("%040x", pb+1)
		v, _, err := st.EnsurePlaybookVersion(ctx, store.PlaybookVersion{Name: name, Path: "playbooks/" + name + ".yaml",
			Digest: playbook.Digest([]byte(content)), Content: []byte(content), Action: action, Environment: "production", Severity: "high", CommitSHA: commit})
		if err != nil {
			b.Fatal(err)
		}
		if err := st.SetActive(ctx, store.ActivePlaybook{Path: v.Path, Name: v.Name, VersionID: v.ID, SinceCommit: commit}); err != nil {
			b.Fatal(err)
		}
		e, _, err := st.CreateExecution(ctx, store.Execution{VersionID: v.ID, Name: v.Name, Digest: v.Digest, Path: v.Path, Action: action,
			Environment: "production", Operation: "apply", CommitSHA: commit, Targets: targets, Trigger: "merge", ChangeType: "create",
			State: store.ExecWaiting, ReasonCode: "intended", Reason: "recorded"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.RecordJudgement(ctx, e.ID, store.Judged{State: store.ExecPending, ReasonCode: "ready", Reason: "ready", Verdict: verdict}); err != nil {
			b.Fatal(err)
		}
		if _, err := st.ClaimExecution(ctx, time.Now().Add(time.Second)); err != nil {
			b.Fatal(err)
		}
		results := make([]store.TargetResult, len(targets))
		for j, t := range targets {
			results[j] = store.TargetResult{Target: t, Planned: "would_change", Result: "changed"}
		}
		if err := st.SaveTargetResults(ctx, e.ID, results); err != nil {
			b.Fatal(err)
		}
		if err := st.FinishExecution(ctx, e.ID, store.ExecCompleted, "", "done", "finished"); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.DB().Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
}

// benchPages gets paths as a signed-in viewer through the whole server
// (guard, session lookup, query, render) and reports p50 and p99.
func benchPages(b *testing.B, want string, paths ...string) {
	e := newPagesEnv(b, envOptions{})
	fillContained(b, e.st)
	client := &http.Client{}
	get := func(path string) string {
		req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, e.http.URL+path, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: e.sessions["viewer"]})
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return string(body)
	}
	if body := get(paths[0]); !strings.Contains(body, want) {
		b.Fatalf("GET %s lacks %q", paths[0], want)
	}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		get(paths[i%len(paths)])
		times = append(times, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[min(len(times)-1, len(times)*99/100)].Microseconds())/1000, "p99-ms")
}

// BenchmarkContainmentPage: the containment page with 10,000 contained
// targets (its first 500 rows and the count).
//
//	go test -run '^$' -bench ContainmentPage -benchtime 200x ./internal/console
func BenchmarkContainmentPage(b *testing.B) {
	benchPages(b, "10000 targets contained", "/")
}

// BenchmarkContainmentSearch: a search by address among 10,000 contained
// targets: an address blocked itself, and one inside a blocked /24.
func BenchmarkContainmentSearch(b *testing.B) {
	benchPages(b, "1 target contained", "/?q=10.0.0.7", "/?q=172.16.20.99", "/?q=user00047%40example.com")
}
