package reconcile

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/store"
)

// Errors of the infrastructure still fail the pass (and the next pass
// tries again), but no longer keep operations already recorded from being
// judged, expired and executed: an object of the repository goes missing
// (a broken disk, say) and the commit that needs it cannot be processed;
// the approved playbook runs and the expiry fires anyway.
func TestPassGoesOnWhenCommitsFail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.inForce()
	e.merge("next", map[string]string{pbPath("block-next"): playbookYAML("block-next", "INC-22", "203.0.113.32", "low", "staging", "")})
	// The bare repository loses the new playbook's blob.
	blob := e.repo.Git("rev-parse", "HEAD:"+pbPath("block-next"))
	obj := e.repo.Bare + "/objects/" + blob[:2] + "/" + blob[2:]
	hidden := obj + ".hidden"
	if err := os.Rename(obj, hidden); err != nil {
		t.Fatal(err)
	}
	e.approveVersion("block-prod", "apply", map[string]string{"bob": "approve"})
	e.clock.Advance(2*time.Hour + time.Minute)
	err := e.rec.ReconcileOnce(e.ctx)
	if err == nil || errors.Is(err, gitsrc.ErrMalformed) || !strings.Contains(err.Error(), "reconcile commits") {
		t.Fatalf("pass: %v; want the commits step's error", err)
	}
	if st := e.rec.Status(); !strings.Contains(st.LastError, "reconcile commits") {
		t.Fatalf("status error %q", st.LastError)
	}
	if refused := e.audited("commit.refused"); len(refused) != 0 {
		t.Fatalf("an infrastructure error refused a commit: %v", refused)
	}
	if e.recorded("block-next") {
		t.Fatal("block-next processed without its blob")
	}
	if st, _ := e.status("block-prod"); st != store.StatusCompleted {
		t.Fatalf("approved block-prod did not run: %s", st)
	}
	if st, _ := e.status("block-temp"); st != store.StatusExpired {
		t.Fatalf("block-temp did not expire: %s", st)
	}
	// The object is back: the next pass processes the commit.
	if err := os.Rename(hidden, obj); err != nil {
		t.Fatal(err)
	}
	e.pass()
	if st, reason := e.status("block-next"); st != store.StatusAwaitingApproval {
		t.Fatalf("block-next after the repair: %s (%s)", st, reason)
	}
	if st := e.rec.Status(); st.LastError != "" {
		t.Fatalf("status error after the repair: %q", st.LastError)
	}
}

// When fetching fails (the git server is unreachable), recorded
// operations still run, unless rewritten history is held: then nothing
// does, as when the fetch succeeds.
func TestPassGoesOnWhenFetchFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src, err := gitsrc.Open(e.ctx, gitsrc.Options{URL: "file://" + e.repo.Bare, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	e.rec.opts.Source = src
	e.inForce()
	unreachable := func() func() {
		moved := e.repo.Bare + ".away"
		if err := os.Rename(e.repo.Bare, moved); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := os.Rename(moved, e.repo.Bare); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.approveVersion("block-prod", "apply", map[string]string{"bob": "approve"})
	back := unreachable()
	if err := e.rec.ReconcileOnce(e.ctx); err == nil || !strings.Contains(err.Error(), "reconcile fetch") {
		t.Fatalf("pass: %v; want the fetch step's error", err)
	}
	if st, _ := e.status("block-prod"); st != store.StatusCompleted {
		t.Fatalf("approved block-prod did not run while the server was away: %s", st)
	}
	back()

	// Rewritten history is held; then the server goes away again and an
	// approval arrives: nothing runs.
	e.repo.Git("reset", "--quiet", "--hard", "HEAD~1")
	e.repo.Write(pbPath("block-other"), playbookYAML("block-other", "INC-40", "203.0.113.50", "high", "production", ""))
	e.repo.Commit("rewritten")
	e.repo.ForcePush()
	e.pass()
	if st := e.rec.Status(); len(st.Holds) != 1 {
		t.Fatalf("holds %v", st.Holds)
	}
	e.clock.Advance(2*time.Hour + time.Minute) // block-temp comes due
	back = unreachable()
	defer back()
	if err := e.rec.ReconcileOnce(e.ctx); err == nil {
		t.Fatal("pass succeeded without the server")
	}
	if st, _ := e.status("block-temp"); st == store.StatusExpired {
		t.Fatal("an expiry ran while rewritten history is held")
	}
}
