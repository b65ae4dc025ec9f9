package nftables

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/nftables/netnstest"
	"github.com/writ-sec/writ/internal/playbook"
)

// feed is n targets as a threat feed (a targets file) holds them: mostly
// IPv4 addresses, some /24 and /28 prefixes, some IPv6 addresses and /64s,
// with extra among them first.
func feed(n int, extra ...string) []string {
	out := append(make([]string, 0, n), extra...)
	seen := map[string]bool{}
	for _, t := range extra {
		seen[t] = true
	}
	for i := 0; len(out) < n; i++ {
		var t string
		switch {
		case i%50 == 0:
			t = fmt.Sprintf("100.%d.%d.0/24", 64+(i>>16)%64, (i>>8)&255)
		case i%50 == 1:
			t = fmt.Sprintf("11.%d.%d.%d/28", (i>>16)&255, (i>>8)&255, i&0xf0)
		case i%10 == 2:
			t = fmt.Sprintf("2001:db8:%x:%x::/64", (i>>16)&0xffff, i&0xffff)
		case i%10 == 3:
			t = fmt.Sprintf("2001:db8:ffff::%x:%x", (i>>16)&0xffff, i&0xffff)
		default:
			t = fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

func counts(p *action.Plan) map[string]int {
	m := map[string]int{}
	for _, t := range p.Targets {
		m[t.Result]++
	}
	return m
}

// A targets file's 100,000 targets are blocked in one nftables transaction
// (the ruleset generation moves by exactly one) and released in one; the
// traffic of a blocked source is dropped meanwhile, another source's is
// not.
func TestApplyAndRevert100000InOneTransaction(t *testing.T) {
	netnstest.NeedRoot(t)
	ctx := context.Background()
	fw, peer := netnstest.Pair(t)
	dst := netnstest.Listen(t, fw, "198.18.0.1:0")
	b, err := New(Options{NetNS: fw})
	if err != nil {
		t.Fatal(err)
	}
	targets := feed(playbook.MaxFileTargets, "198.18.0.2")
	if len(targets) != 100_000 {
		t.Fatalf("%d targets", len(targets))
	}

	p, err := b.Plan(ctx, request(action.Apply, targets...))
	if err != nil {
		t.Fatal(err)
	}
	if c := counts(p); c[action.WouldBlock] != len(targets) {
		t.Fatalf("plan before: %v", c)
	}
	gen := netnstest.Generation(t, fw)
	start := time.Now()
	rs, err := b.Apply(ctx, request(action.Apply, targets...))
	took := time.Since(start)
	if err != nil || len(rs) != len(targets) {
		t.Fatalf("apply: %d results, %v", len(rs), err)
	}
	if after := netnstest.Generation(t, fw); after != gen+1 {
		t.Fatalf("apply took %d transactions, want 1", after-gen)
	}
	t.Logf("applied %d targets in %s", len(targets), took.Round(time.Millisecond))
	entries, err := b.Entries(ctx)
	if err != nil || len(entries) != len(targets) {
		t.Fatalf("%d entries after apply, %v", len(entries), err)
	}
	if netnstest.Reaches(t, peer, "198.18.0.2", dst) {
		t.Error("traffic from a blocked source got through")
	}
	if !netnstest.Reaches(t, peer, "198.18.0.3", dst) {
		t.Error("traffic from an unblocked source was dropped")
	}
	p, err = b.Plan(ctx, request(action.Apply, targets...))
	if err != nil {
		t.Fatal(err)
	}
	if c := counts(p); c[action.AlreadyBlocked] != len(targets) {
		t.Fatalf("plan after: %v", c)
	}

	// The revert releases them all, in one transaction too.
	p, err = b.Plan(ctx, request(action.Revert, targets...))
	if err != nil || counts(p)[action.WouldUnblock] != len(targets) {
		t.Fatalf("revert plan: %v %v", counts(p), err)
	}
	gen = netnstest.Generation(t, fw)
	start = time.Now()
	rs, err = b.Revert(ctx, request(action.Revert, targets...))
	took = time.Since(start)
	if err != nil || len(rs) != len(targets) || rs[0].Result != action.Changed {
		t.Fatalf("revert: %d results, %v", len(rs), err)
	}
	if after := netnstest.Generation(t, fw); after != gen+1 {
		t.Fatalf("revert took %d transactions, want 1", after-gen)
	}
	t.Logf("reverted %d targets in %s", len(targets), took.Round(time.Millisecond))
	if entries, err := b.Entries(ctx); err != nil || len(entries) != 0 {
		t.Fatalf("%d entries after revert, %v", len(entries), err)
	}
	if !netnstest.Reaches(t, peer, "198.18.0.2", dst) {
		t.Error("traffic still dropped after the revert")
	}
}

// naivePlan is the plan as the backend computed it before its catalog:
// every target against every entry. The catalog must plan the same.
func naivePlan(entries []netip.Prefix, req action.Request) []action.TargetPlan {
	covering := func(p netip.Prefix) netip.Prefix {
		for _, e := range entries {
			if e != p && e.Addr().Is4() == p.Addr().Is4() && e.Bits() < p.Bits() && e.Contains(p.Addr()) {
				return e
			}
		}
		return netip.Prefix{}
	}
	inside := func(p netip.Prefix) []netip.Prefix {
		var out []netip.Prefix
		for _, e := range entries {
			if e != p && e.Addr().Is4() == p.Addr().Is4() && e.Bits() > p.Bits() && p.Contains(e.Addr()) {
				out = append(out, e)
			}
		}
		return out
	}
	var out []action.TargetPlan
	for _, t := range req.Targets {
		pfx, _ := playbook.ParseIPTarget(t)
		tp := action.TargetPlan{Target: t}
		switch {
		case req.Operation == action.Revert:
			tp.Result = action.NotBlocked
			if slices.Contains(entries, pfx) {
				tp.Result = action.WouldUnblock
				if c := covering(pfx); c.IsValid() {
					tp.Detail = "stays blocked by " + format(c)
				}
			}
		case slices.Contains(entries, pfx):
			tp.Result = action.AlreadyBlocked
		case covering(pfx).IsValid():
			tp.Result, tp.Detail = action.CoveredBy, "inside "+format(covering(pfx))
		default:
			tp.Result = action.WouldBlock
			if in := inside(pfx); len(in) > 0 {
				tp.Result, tp.Detail = Overlaps, "would block; overlaps "+format(in[0])
				if len(in) > 1 {
					tp.Detail += fmt.Sprintf(" and %d more", len(in)-1)
				}
			}
		}
		out = append(out, tp)
	}
	return out
}

// The catalog answers as comparing every target with every entry did, on
// random nested entries and targets of both families.
func TestCatalogPlansAsBefore(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(4, 20))
	random := func() netip.Prefix {
		if r.IntN(3) == 0 {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(r.IntN(4)), 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(r.IntN(8))})
			p, _ := a.Prefix([]int{32, 40, 48, 64, 120, 126, 128}[r.IntN(7)])
			return p
		}
		a := netip.AddrFrom4([4]byte{10, byte(r.IntN(3)), byte(r.IntN(4)), byte(r.IntN(16))})
		p, _ := a.Prefix([]int{8, 14, 16, 22, 24, 28, 30, 31, 32}[r.IntN(9)])
		return p
	}
	for round := range 200 {
		seen := map[netip.Prefix]bool{}
		var entries []netip.Prefix
		for range r.IntN(30) {
			if p := random(); !seen[p] {
				seen[p] = true
				entries = append(entries, p)
			}
		}
		var targets []string
		for range 1 + r.IntN(30) {
			targets = append(targets, format(random()))
		}
		cat := newCatalog(entries)
		slices.SortFunc(entries, comparePrefix) // as readEntries gives them
		for _, op := range []action.Operation{action.Apply, action.Revert} {
			req := request(op, targets...)
			got := planWith(cat, req)
			if want := naivePlan(entries, req); !slices.Equal(got, want) {
				t.Fatalf("round %d, %s over %v:\n got  %v\n want %v", round, op, entries, got, want)
			}
		}
	}
}

// planWith plans a request against a catalog as Plan does against the
// entries it reads.
func planWith(cat *catalog, req action.Request) []action.TargetPlan {
	b := &Backend{opts: Options{Name: "nftables"}}
	p, err := b.planEntries(context.Background(), cat, req)
	if err != nil {
		panic(err)
	}
	return p.Targets
}

// BenchmarkApply100000 blocks a targets file's 100,000 targets (addresses
// and prefixes, IPv4 and IPv6) in an empty table: one transaction.
func BenchmarkApply100000(b *testing.B) {
	netnstest.NeedRoot(b)
	targets := feed(100_000)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		be, _ := New(Options{NetNS: netnstest.New(b)})
		b.StartTimer()
		if rs, err := be.Apply(ctx, request(action.Apply, targets...)); err != nil || len(rs) != len(targets) {
			b.Fatalf("%d results, %v", len(rs), err)
		}
	}
}

// BenchmarkRevert100000 releases them again: one transaction.
func BenchmarkRevert100000(b *testing.B) {
	netnstest.NeedRoot(b)
	targets := feed(100_000)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		be, _ := New(Options{NetNS: netnstest.New(b)})
		if _, err := be.Apply(ctx, request(action.Apply, targets...)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if rs, err := be.Revert(ctx, request(action.Revert, targets...)); err != nil || len(rs) != len(targets) {
			b.Fatalf("%d results, %v", len(rs), err)
		}
	}
}

// BenchmarkPlan100000 dry-runs 100,000 targets against a table holding
// them: read the sets, plan each target.
func BenchmarkPlan100000(b *testing.B) {
	netnstest.NeedRoot(b)
	targets := feed(100_000)
	ctx := context.Background()
	be, _ := New(Options{NetNS: netnstest.New(b)})
	if _, err := be.Apply(ctx, request(action.Apply, targets...)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if p, err := be.Plan(ctx, request(action.Apply, targets...)); err != nil || len(p.Targets) != len(targets) {
			b.Fatalf("%v", err)
		}
	}
}
