package nftables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	nft "github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/playbook"
)

// Drift: the drop sets (blocked4, blocked6) are what the kernel enforces,
// the entry sets (entries4, entries6) writ's catalog of what it was asked
// to block. Someone editing the table by hand changes one or the other:
// an address deleted from a drop set is listed but no longer blocked (the
// plan says would_block again, and an apply blocks it again), an address
// added to a drop set is blocked though no playbook asked (the inventory
// lists it, so a drift check reports it unexpected). writ keeps such an
// addition when it rewrites its sets: unexpected entries are reported,
// never removed by writ.

var _ action.Inventory = (*Backend)(nil)

// Inventory reads what writ's table blocks: the drop sets, which the
// kernel enforces (one netlink dump per family, both at once). Drift is
// judged by them: a target is contained when its whole range is blocked,
// and what they block beyond the targets asked for is unexpected. (The
// entry sets are writ's own catalog: plans and changes read them too.)
func (b *Backend) Inventory(ctx context.Context) (action.Live, error) {
	rs, err := b.blocked()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return blockedRanges(rs), nil
}

// blocked reads the drop sets, each on a connection of its own at once
// (the kernel's dump is most of the cost), IPv4 ranges first.
func (b *Backend) blocked() ([][2]netip.Addr, error) {
	l := b.layout()
	sets := []*nft.Set{l.blocked4, l.blocked6}
	got := make([][][2]netip.Addr, len(sets))
	errs := make([]error, len(sets))
	var wg sync.WaitGroup
	for i, s := range sets {
		wg.Go(func() {
			c, done, err := b.conn()
			if err != nil {
				errs[i] = err
				return
			}
			defer done()
			if _, err := c.ListTableOfFamily(l.table.Name, nft.TableFamilyINet); err != nil {
				return // no table: nothing blocked
			}
			got[i], errs[i] = readRanges(c, s, s == l.blocked6)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return append(got[0], got[1]...), nil
}

// blockedRanges is what the drop sets block: sorted, disjoint ranges,
// IPv4 first.
type blockedRanges [][2]netip.Addr

func (rs blockedRanges) Contains(target string) bool {
	p, err := playbook.ParseIPTarget(target)
	return err == nil && within(rs, p.Masked().Addr(), lastAddr(p))
}

func (rs blockedRanges) Beyond(targets []string) []string {
	ps := make([]netip.Prefix, 0, len(targets))
	for _, t := range targets {
		if p, err := playbook.ParseIPTarget(t); err == nil {
			ps = append(ps, p)
		}
	}
	var out []string
	for _, r := range subtract(rs, catalogRanges(ps)) {
		out = append(out, rangeString(r))
	}
	return out
}

// catalogRanges are the ranges the catalog's entries make, both families,
// sorted.
func catalogRanges(entries []netip.Prefix) [][2]netip.Addr {
	var v4, v6 []netip.Prefix
	for _, p := range entries {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return append(ranges(v4), ranges(v6)...)
}

// readBlocked reads the drop sets' ranges, IPv4 then IPv6, each sorted
// and disjoint.
func (b *Backend) readBlocked(c *nft.Conn, l *layout) ([][2]netip.Addr, error) {
	r4, err := readRanges(c, l.blocked4, false)
	if err != nil {
		return nil, err
	}
	r6, err := readRanges(c, l.blocked6, true)
	if err != nil {
		return nil, err
	}
	return append(r4, r6...), nil
}

// readRanges reads the ranges of one interval set, sorted and disjoint.
func readRanges(c *nft.Conn, s *nft.Set, v6 bool) ([][2]netip.Addr, error) {
	var out [][2]netip.Addr
	{
		elems, err := c.GetSetElements(s)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, nil
			}
			return nil, fmt.Errorf("nftables: read %s: %w", s.Name, err)
		}
		type edge struct {
			at  netip.Addr
			end bool
		}
		edges := make([]edge, 0, len(elems))
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				return nil, fmt.Errorf("nftables: %s holds a key of %d bytes", s.Name, len(e.Key))
			}
			edges = append(edges, edge{a.Unmap(), e.IntervalEnd})
		}
		slices.SortFunc(edges, func(x, y edge) int {
			if c := x.at.Compare(y.at); c != 0 {
				return c
			}
			if x.end != y.end { // an end before a start at the same address
				if x.end {
					return -1
				}
				return 1
			}
			return 0
		})
		var start netip.Addr
		open := false
		for _, ed := range edges {
			switch {
			case !ed.end && !open:
				start, open = ed.at, true
			case ed.end && open:
				if last := ed.at.Prev(); last.IsValid() && last.Compare(start) >= 0 {
					out = append(out, [2]netip.Addr{start, last})
				}
				open = false
			}
		}
		if open {
			top := netip.IPv4Unspecified()
			if v6 {
				top = netip.IPv6Unspecified()
			}
			out = append(out, [2]netip.Addr{start, lastAddr(netip.PrefixFrom(top, 0))})
		}
	}
	return out, nil
}

// within reports whether [first, last] lies inside one of rs (sorted,
// disjoint).
func within(rs [][2]netip.Addr, first, last netip.Addr) bool {
	i, _ := slices.BinarySearchFunc(rs, first, func(r [2]netip.Addr, a netip.Addr) int { return r[1].Compare(a) })
	return i < len(rs) && rs[i][0].Compare(first) <= 0 && rs[i][1].Compare(last) >= 0
}

// subtract returns the parts of rs that cover leaves uncovered (both
// sorted and disjoint; a range never spans both families).
func subtract(rs, cover [][2]netip.Addr) [][2]netip.Addr {
	var out [][2]netip.Addr
	j := 0
	for _, r := range rs {
		start := r[0]
		for j < len(cover) && cover[j][1].Compare(start) < 0 {
			j++
		}
		k := j
		for start.IsValid() && start.Compare(r[1]) <= 0 {
			if k >= len(cover) || cover[k][0].Compare(r[1]) > 0 {
				out = append(out, [2]netip.Addr{start, r[1]})
				break
			}
			if cover[k][0].Compare(start) > 0 {
				out = append(out, [2]netip.Addr{start, cover[k][0].Prev()})
			}
			if cover[k][1].Compare(r[1]) >= 0 {
				break
			}
			start = cover[k][1].Next()
			k++
		}
	}
	return out
}

// rangeString writes a range as an address, a prefix or FIRST-LAST.
func rangeString(r [2]netip.Addr) string {
	if r[0] == r[1] {
		return r[0].String()
	}
	for bits := 0; bits <= r[0].BitLen(); bits++ {
		p := netip.PrefixFrom(r[0], bits)
		if p.Masked().Addr() == r[0] && lastAddr(p) == r[1] {
			return p.String()
		}
	}
	return r[0].String() + "-" + r[1].String()
}

// enforcedEntries reports, for the catalog's entries, those the drop sets
// (blocked) do not block (an element deleted from them by hand), and the
// ranges the drop sets block beyond the catalog (added by hand), which a
// rewrite keeps.
func enforcedEntries(blocked [][2]netip.Addr, entries []netip.Prefix) (unenforced map[netip.Prefix]bool, extra [][2]netip.Addr) {
	for _, e := range entries {
		if !within(blocked, e.Masked().Addr(), lastAddr(e)) {
			if unenforced == nil {
				unenforced = map[netip.Prefix]bool{}
			}
			unenforced[e] = true
		}
	}
	return unenforced, subtract(blocked, catalogRanges(entries))
}

// mergeRanges sorts ranges of one family and merges those that overlap or
// touch.
func mergeRanges(rs [][2]netip.Addr) [][2]netip.Addr {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(x, y [2]netip.Addr) int { return x[0].Compare(y[0]) })
	var out [][2]netip.Addr
	for _, r := range sorted {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last[1].Next()
			if r[0].Compare(last[1]) <= 0 || (next.IsValid() && r[0] == next) {
				if r[1].Compare(last[1]) > 0 {
					last[1] = r[1]
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}
