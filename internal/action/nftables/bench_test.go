package nftables

import (
	"context"
	"fmt"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/nftables/netnstest"
)

// BenchmarkApply10000 applies a block of 10,000 addresses (9,000 IPv4, 1,000
// IPv6) to an empty table in one nftables transaction (target: under 1 s).
func BenchmarkApply10000(b *testing.B) {
	netnstest.NeedRoot(b)
	targets := make([]string, 0, 10000)
	for i := range 9000 {
		targets = append(targets, fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256))
	}
	for i := range 1000 {
		targets = append(targets, fmt.Sprintf("2001:db8::%x", i+1))
	}
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		ns := netnstest.New(b)
		be, _ := New(Options{NetNS: ns})
		b.StartTimer()
		rs, err := be.Apply(ctx, request(action.Apply, targets...))
		if err != nil || len(rs) != len(targets) {
			b.Fatalf("%d results, %v", len(rs), err)
		}
	}
}

// BenchmarkApplyOneInto10000 adds one address to a table already holding
// 10,000 (every change rewrites writ's sets in one transaction).
func BenchmarkApplyOneInto10000(b *testing.B) {
	netnstest.NeedRoot(b)
	targets := make([]string, 0, 10000)
	for i := range 10000 {
		targets = append(targets, fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256))
	}
	ctx := context.Background()
	ns := netnstest.New(b)
	be, _ := New(Options{NetNS: ns})
	if _, err := be.Apply(ctx, request(action.Apply, targets...)); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		if _, err := be.Apply(ctx, request(action.Apply, fmt.Sprintf("172.16.%d.%d", i/256%256, i%256))); err != nil {
			b.Fatal(err)
		}
	}
}
