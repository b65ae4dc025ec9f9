package nftables

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/nftables/netnstest"
)

func request(op action.Operation, targets ...string) action.Request {
	return action.Request{Playbook: "block-c2", Digest: strings.Repeat("a", 64), Action: "block_ip",
		Environment: "production", Operation: op, Targets: targets}
}

func summary(rs []action.TargetResult) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Target+"="+r.Result)
	}
	return strings.Join(s, " ")
}

func planSummary(p *action.Plan) string {
	var s []string
	for _, t := range p.Targets {
		s = append(s, t.Target+"="+t.Result)
	}
	return strings.Join(s, " ")
}

// The end-to-end behaviour in a namespace of the test's own: the set holds
// the targets, traffic from a blocked source is dropped while another
// source passes, applying twice changes nothing, revert restores traffic,
// and a table someone else owns is never touched.
func TestBlockTrafficBetweenNamespaces(t *testing.T) {
	netnstest.NeedRoot(t)
	ctx := context.Background()
	fw, peer := netnstest.Pair(t)
	// Someone else's rule set in the same namespace.
	netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "add", "table", "inet", "theirs")
	netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "add", "set", "inet", "theirs", "keep", "{ type ipv4_addr; }")
	netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "add", "element", "inet", "theirs", "keep", "{ 192.0.2.99 }")
	theirsBefore := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "table", "inet", "theirs")

	dst4 := netnstest.Listen(t, fw, "198.18.0.1:0")
	dst6 := netnstest.Listen(t, fw, "[2001:db8:18::1]:0")
	if !netnstest.Reaches(t, peer, "198.18.0.2", dst4) || !netnstest.Reaches(t, peer, "198.18.0.3", dst4) || !netnstest.Reaches(t, peer, "2001:db8:18::2", dst6) {
		t.Fatal("the namespaces do not reach each other before anything is blocked")
	}

	b, err := New(Options{NetNS: fw})
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{"198.18.0.2", "2001:db8:18::2", "203.0.113.0/24"}
	p, err := b.Plan(ctx, request(action.Apply, targets...))
	if err != nil {
		t.Fatal(err)
	}
	if got := planSummary(p); got != "198.18.0.2=would_block 2001:db8:18::2=would_block 203.0.113.0/24=would_block" {
		t.Fatalf("plan: %s", got)
	}
	rs, err := b.Apply(ctx, request(action.Apply, targets...))
	if err != nil || summary(rs) != "198.18.0.2=changed 2001:db8:18::2=changed 203.0.113.0/24=changed" {
		t.Fatalf("apply: %s %v", summary(rs), err)
	}
	listing := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "table", "inet", "writ")
	for _, want := range []string{"198.18.0.2", "2001:db8:18::2", "203.0.113.0/24", "ip saddr @blocked4", "ip6 saddr @blocked6", "hook input"} {
		if !strings.Contains(listing, want) {
			t.Errorf("nft list table inet writ lacks %q:\n%s", want, listing)
		}
	}
	if netnstest.Reaches(t, peer, "198.18.0.2", dst4) {
		t.Error("traffic from the blocked IPv4 source got through")
	}
	if !netnstest.Reaches(t, peer, "198.18.0.3", dst4) {
		t.Error("traffic from an unblocked IPv4 source was dropped")
	}
	if netnstest.Reaches(t, peer, "2001:db8:18::2", dst6) {
		t.Error("traffic from the blocked IPv6 source got through")
	}
	if !netnstest.Reaches(t, peer, "2001:db8:18::3", dst6) {
		t.Error("traffic from an unblocked IPv6 source was dropped")
	}

	// Idempotent.
	rs, err = b.Apply(ctx, request(action.Apply, targets...))
	if err != nil || summary(rs) != "198.18.0.2=unchanged 2001:db8:18::2=unchanged 203.0.113.0/24=unchanged" {
		t.Fatalf("second apply: %s %v", summary(rs), err)
	}
	if again := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "table", "inet", "writ"); strings.Count(again, "drop") != strings.Count(listing, "drop") {
		t.Fatalf("a second apply changed the rules:\n%s", again)
	}
	p, _ = b.Plan(ctx, request(action.Apply, "198.18.0.2", "203.0.113.9", "203.0.0.0/16"))
	if got := planSummary(p); got != "198.18.0.2=already_blocked 203.0.113.9=covered_by 203.0.0.0/16=overlaps" {
		t.Fatalf("plan after apply: %s", got)
	}

	rs, err = b.Revert(ctx, request(action.Revert, "198.18.0.2", "2001:db8:18::2"))
	if err != nil || summary(rs) != "198.18.0.2=changed 2001:db8:18::2=changed" {
		t.Fatalf("revert: %s %v", summary(rs), err)
	}
	if !netnstest.Reaches(t, peer, "198.18.0.2", dst4) || !netnstest.Reaches(t, peer, "2001:db8:18::2", dst6) {
		t.Error("traffic still dropped after revert")
	}
	entries, err := b.Entries(ctx)
	if err != nil || len(entries) != 1 || entries[0].String() != "203.0.113.0/24" {
		t.Fatalf("entries after revert: %v %v", entries, err)
	}
	if after := netnstest.Run(t, "ip", "netns", "exec", fw, "nft", "list", "table", "inet", "theirs"); after != theirsBefore {
		t.Fatalf("another table was touched:\nbefore:\n%s\nafter:\n%s", theirsBefore, after)
	}
}

// Overlapping entries are kept exactly: releasing a range does not release
// an address inside it that was blocked on its own.
func TestOverlappingEntriesKeepTheirOwnLife(t *testing.T) {
	netnstest.NeedRoot(t)
	ctx := context.Background()
	ns := netnstest.New(t)
	b, _ := New(Options{NetNS: ns, Table: "writ_overlap"})
	if _, err := b.Apply(ctx, request(action.Apply, "198.51.100.0/24", "198.51.100.7", "198.51.101.0/24")); err != nil {
		t.Fatal(err)
	}
	listing := netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "set", "inet", "writ_overlap", "blocked4")
	// Adjacent and nested entries merge into one range in the drop set.
	if !strings.Contains(listing, "198.51.100.0/23") {
		t.Fatalf("blocked4 is not the merged union:\n%s", listing)
	}
	if _, err := b.Revert(ctx, request(action.Revert, "198.51.100.0/24")); err != nil {
		t.Fatal(err)
	}
	listing = netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "set", "inet", "writ_overlap", "blocked4")
	if !strings.Contains(listing, "198.51.100.7") || strings.Contains(listing, "198.51.100.0/24") {
		t.Fatalf("after releasing the /24, .7 must stay blocked alone:\n%s", listing)
	}
}

func TestRangesAndEncoding(t *testing.T) {
	t.Parallel()
	ps := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	got := fmt.Sprint(ranges(ps("10.0.0.0/24", "10.0.1.0/24", "10.0.0.5/32", "10.0.3.0/24", "255.255.255.255/32")))
	want := "[[10.0.0.0 10.0.1.255] [10.0.3.0 10.0.3.255] [255.255.255.255 255.255.255.255]]"
	if got != want {
		t.Fatalf("ranges = %s; want %s", got, want)
	}
	els := intervalElements(ranges(ps("255.255.255.0/24")))
	if len(els) != 1 {
		t.Fatalf("a range reaching the top needs no end element: %d elements", len(els))
	}
	for _, s := range []string{"203.0.113.7/32", "198.51.100.0/24", "2001:db8::/48", "::1/128"} {
		p := netip.MustParsePrefix(s)
		back, err := decodeEntry(encodeEntry(p))
		if err != nil || back != p {
			t.Fatalf("round trip %s: %v %v", s, back, err)
		}
	}
	if _, err := decodeEntry([]byte{1, 2, 3}); err == nil {
		t.Fatal("decoded a short key")
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{{Table: "bad table"}, {NetNS: "../etc"}, {Table: strings.Repeat("t", 40)}} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	b, _ := New(Options{})
	if err := b.Validate(request(action.Apply, "fin-ws-12")); err == nil {
		t.Error("a host name validated as an IP target")
	}
}
