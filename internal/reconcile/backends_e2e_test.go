package reconcile

import (
	"slices"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/nftables"
	"github.com/writ-sec/writ/internal/action/nftables/netnstest"
	"github.com/writ-sec/writ/internal/store"
)

// The end to end: a merged, approved block_ip playbook ends with
// its addresses in writ's nftables sets inside a network namespace made by
// the test, traffic from them is dropped while another source passes, more
// passes change nothing, and deleting the playbook unblocks them. A table
// someone else owns in the namespace is never touched.
func TestBlockIPWithNftablesEndToEnd(t *testing.T) {
	netnstest.NeedRoot(t)
	t.Parallel()
	fw, peer := netnstest.Pair(t)
	netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "add", "table", "inet", "theirs")
	netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "add", "set", "inet", "theirs", "keep", "{ type ipv4_addr; }")
	netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "add", "element", "inet", "theirs", "keep", "{ 198.18.0.2 }")
	theirs := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "table", "inet", "theirs")
	dst4 := netnstest.Listen(t, fw, "198.18.0.1:0")
	dst6 := netnstest.Listen(t, fw, "[2001:db8:18::1]:0")
	if !netnstest.Reaches(t, peer, "198.18.0.2", dst4) || !netnstest.Reaches(t, peer, "2001:db8:18::2", dst6) {
		t.Fatal("the namespaces do not reach each other before anything is blocked")
	}

	e := newEnv(t)
	nb, err := nftables.New(nftables.Options{NetNS: fw, Name: "nftables:production"})
	if err != nil {
		t.Fatal(err)
	}
	reg := action.NewRegistry()
	reg.Register("block_ip", "production", nb)
	e.rec.opts.Backends = reg
	blocked := func() []string {
		t.Helper()
		entries, err := nb.Entries(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range entries {
			out = append(out, p.String())
		}
		return out
	}

	e.pass()
	name := "block-c2-beacon"
	e.merge("c2", map[string]string{pbPath(name): playbookYAML(name, "INC-4211", "198.18.0.2, 2001:db8:18::2", "high", "production", "")})
	e.pass()
	e.approveVersion(name, "apply", map[string]string{"alice": "propose"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusAwaitingApproval {
		t.Fatalf("before approval: %s (%s)", st, reason)
	}
	if got := blocked(); len(got) != 0 {
		t.Fatalf("blocked before approval: %v", got)
	}
	ex := e.execution(name, "apply")
	if ex.PlanDigest == "" {
		t.Fatal("the waiting execution has no plan digest from nftables")
	}

	e.approveVersion(name, "apply", map[string]string{"bob": "approve"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusCompleted {
		t.Fatalf("after approval: %s (%s)", st, reason)
	}
	if got := blocked(); !slices.Equal(got, []string{"198.18.0.2/32", "2001:db8:18::2/128"}) {
		t.Fatalf("nftables entries %v", got)
	}
	listing := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "table", "inet", "writ")
	for _, want := range []string{"198.18.0.2", "2001:db8:18::2", "ip saddr @blocked4 counter", "drop"} {
		if !strings.Contains(listing, want) {
			t.Fatalf("nft list table inet writ lacks %q:\n%s", want, listing)
		}
	}
	if netnstest.Reaches(t, peer, "198.18.0.2", dst4) || netnstest.Reaches(t, peer, "2001:db8:18::2", dst6) {
		t.Fatal("traffic from a blocked source got through")
	}
	if !netnstest.Reaches(t, peer, "198.18.0.3", dst4) || !netnstest.Reaches(t, peer, "2001:db8:18::3", dst6) {
		t.Fatal("traffic from an unblocked source was dropped")
	}

	// More passes execute nothing again.
	sets := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "set", "inet", "writ", "entries4")
	e.pass()
	e.pass()
	if again := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "set", "inet", "writ", "entries4"); again != sets {
		t.Fatalf("later passes changed the sets:\n%s\n%s", sets, again)
	}
	if list, _ := e.st.ListExecutions(e.ctx, store.ExecutionFilter{Name: name}); len(list) != 1 || list[0].Attempts != 1 {
		t.Fatalf("executions after more passes: %d", len(list))
	}

	// Deleting a production playbook is a production change too: its
	// revert waits for an approval, and the addresses stay blocked until then.
	e.merge("remove-c2", nil, pbPath(name))
	e.pass()
	if rv := e.execution(name, "revert"); rv.State != store.ExecWaiting {
		t.Fatalf("revert after deletion: %s", rv.State)
	}
	if got := blocked(); len(got) != 2 {
		t.Fatalf("unblocked before the deletion was approved: %v", got)
	}
	e.approveVersion(name, "revert", map[string]string{"alice": "propose", "bob": "approve"})
	e.pass()
	if st, reason := e.status(name); st != store.StatusReverted {
		t.Fatalf("after deletion: %s (%s)", st, reason)
	}
	if got := blocked(); len(got) != 0 {
		t.Fatalf("still blocked after the playbook was deleted: %v", got)
	}
	if !netnstest.Reaches(t, peer, "198.18.0.2", dst4) || !netnstest.Reaches(t, peer, "2001:db8:18::2", dst6) {
		t.Fatal("traffic still dropped after the revert")
	}
	if after := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "table", "inet", "theirs"); after != theirs {
		t.Fatalf("another table was touched:\nbefore:\n%s\nafter:\n%s", theirs, after)
	}
	e.verifyAudit()
}
