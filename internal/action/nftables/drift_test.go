package nftables

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/nftables/netnstest"
	"github.com/writ-sec/writ/internal/playbook"
)

func driftSummary(fs []action.DriftFinding) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Kind+":"+f.Target)
	}
	return strings.Join(s, " ")
}

// Writ's table edited by hand inside a network namespace: an address
// deleted from a drop set is missing (the plan says would_block, and an
// apply blocks it again), an address added to a drop set is unexpected,
// and writ's next rewrite keeps the addition (unexpected entries are
// reported, never removed by writ).
func TestDriftOfHandEditedSets(t *testing.T) {
	netnstest.NeedRoot(t)
	ctx := context.Background()
	ns := netnstest.New(t)
	b, err := New(Options{NetNS: ns, Name: "nftables:edge"})
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{"198.51.100.7", "198.51.100.9", "203.0.113.0/24", "2001:db8::5"}
	if _, err := b.Apply(ctx, request(action.Apply, targets...)); err != nil {
		t.Fatal(err)
	}
	held := []action.Request{request(action.Apply, targets...)}
	live, err := b.Inventory(ctx)
	if err != nil || slices.ContainsFunc(targets, func(t string) bool { return !live.Contains(t) }) || live.Contains("198.51.100.8") || len(live.Beyond(targets)) != 0 {
		t.Fatalf("inventory %v, %v", live, err)
	}
	if fs, err := action.CheckDrift(ctx, b, held, nil); err != nil || len(fs) != 0 {
		t.Fatalf("drift before any edit: %s %v", driftSummary(fs), err)
	}

	netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "delete", "element", "inet", "writ", "blocked4", "{ 198.51.100.7 }")
	netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "add", "element", "inet", "writ", "blocked4", "{ 192.0.2.50 }")
	fs, err := action.CheckDrift(ctx, b, held, nil)
	if err != nil || driftSummary(fs) != "missing:198.51.100.7 unexpected:192.0.2.50" {
		t.Fatalf("drift after the edit: %s %v", driftSummary(fs), err)
	}
	if fs[0].Playbook != "block-c2" {
		t.Fatalf("missing finding names playbook %q", fs[0].Playbook)
	}
	p, err := b.Plan(ctx, request(action.Apply, "198.51.100.7", "198.51.100.9"))
	if err != nil || planSummary(p) != "198.51.100.7=would_block 198.51.100.9=already_blocked" {
		t.Fatalf("plan after the edit: %s %v", planSummary(p), err)
	}
	// A target a playbook's release is under way for is expected: not
	// unexpected.
	if fs, _ := action.CheckDrift(ctx, b, held, map[string]bool{"192.0.2.50": true}); driftSummary(fs) != "missing:198.51.100.7" {
		t.Fatalf("drift with the addition expected: %s", driftSummary(fs))
	}

	rs, err := b.Apply(ctx, request(action.Apply, "198.51.100.7"))
	if err != nil || summary(rs) != "198.51.100.7=changed" {
		t.Fatalf("heal: %s %v", summary(rs), err)
	}
	listing := netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "set", "inet", "writ", "blocked4")
	for _, want := range []string{"198.51.100.7", "192.0.2.50"} {
		if !strings.Contains(listing, want) {
			t.Fatalf("blocked4 lacks %s after the heal:\n%s", want, listing)
		}
	}
	fs, err = action.CheckDrift(ctx, b, held, nil)
	if err != nil || driftSummary(fs) != "unexpected:192.0.2.50" {
		t.Fatalf("drift after the heal: %s %v", driftSummary(fs), err)
	}
	// An entry deleted from writ's catalog while its drop set still
	// blocks it is no drift: drift is judged by what the kernel enforces.
	netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "delete", "element", "inet", "writ", "entries6", "{ 2001:db8::5 . 128 }")
	if fs, _ := action.CheckDrift(ctx, b, held, nil); driftSummary(fs) != "unexpected:192.0.2.50" {
		t.Fatalf("drift after deleting a catalog entry: %s", driftSummary(fs))
	}
}

func TestSubtractAndRangeString(t *testing.T) {
	r := func(a, b string) [2]netipAddr { return [2]netipAddr{mustAddr(a), mustAddr(b)} }
	got := subtract([][2]netipAddr{r("10.0.0.0", "10.0.0.255"), r("10.0.2.0", "10.0.2.0")}, [][2]netipAddr{r("10.0.0.16", "10.0.0.31"), r("10.0.0.128", "10.0.1.10")})
	var s []string
	for _, x := range got {
		s = append(s, rangeString(x))
	}
	if strings.Join(s, " ") != "10.0.0.0/28 10.0.0.32-10.0.0.127 10.0.2.0" {
		t.Fatalf("subtract: %v", s)
	}
}

// BenchmarkDriftCheck100000 checks a table holding a targets file's
// 100,000 targets against the playbook that holds them: one dump of the
// entry and drop sets, and a lookup per target (target: under 1 s).
func BenchmarkDriftCheck100000(b *testing.B) {
	netnstest.NeedRoot(b)
	targets := feed(100_000)
	ctx := context.Background()
	be, _ := New(Options{NetNS: netnstest.New(b)})
	if _, err := be.Apply(ctx, request(action.Apply, targets...)); err != nil {
		b.Fatal(err)
	}
	canonical := make([]string, len(targets)) // as action.RequestFor spells them
	for i, t := range targets {
		p, err := playbook.ParseIPTarget(t)
		if err != nil {
			b.Fatal(err)
		}
		canonical[i] = format(p)
	}
	held := []action.Request{request(action.Apply, canonical...)}
	for b.Loop() {
		if fs, err := action.CheckDrift(ctx, be, held, nil); err != nil || len(fs) != 0 {
			b.Fatalf("%d findings, %v: %v", len(fs), err, fs[:min(len(fs), 8)])
		}
	}
}

type netipAddr = netip.Addr

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
