package webhook

import (
	"net/http"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
)

// Status and result responses come from a remote receiver: whatever the
// bytes, a decoded answer covers each requested target exactly once with a
// known state or result.
func FuzzReceiverAnswers(f *testing.F) {
	f.Add([]byte(`{"targets":[{"target":"h1","state":"applied"},{"target":"h2","state":"not_found","detail":"x"}]}`), "h1,h2")
	f.Add([]byte(`{"targets":[{"target":"h1","result":"changed"},{"target":"h2","result":"failed"}]}`), "h1,h2")
	f.Add([]byte(`{"targets":[{"target":"h1","state":"applied"},{"target":"h1","state":"applied"}]}`), "h1")
	f.Add([]byte(`{"targets":null}`), "h1")
	f.Add([]byte(`ok`), "a,b,c")
	f.Fuzz(func(t *testing.T, body []byte, list string) {
		targets := strings.Split(list, ",")
		seen := map[string]bool{}
		for _, x := range targets {
			if seen[x] {
				return // Validate refuses repeated targets before anything is sent
			}
			seen[x] = true
		}
		if states, err := parseStatus(body, targets); err == nil {
			if len(states) != len(targets) {
				t.Fatalf("%d states for %d targets", len(states), len(targets))
			}
			for _, x := range targets {
				switch states[x].State {
				case StateApplied, StateNotApplied, StateNotFound:
				default:
					t.Fatalf("target %q: state %q", x, states[x].State)
				}
			}
		}
		resp := &response{status: 200, header: http.Header{"Content-Type": {"application/json"}}, body: body}
		results, err := parseResults(resp, targets)
		if err != nil {
			return
		}
		if len(results) != len(targets) {
			t.Fatalf("%d results for %d targets", len(results), len(targets))
		}
		for i, r := range results {
			if r.Target != targets[i] {
				t.Fatalf("result %d is for %q, not %q", i, r.Target, targets[i])
			}
			switch r.Result {
			case action.Changed, action.Unchanged, action.Failed:
			default:
				t.Fatalf("result %q", r.Result)
			}
		}
	})
}
