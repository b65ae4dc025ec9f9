// Package nftables is the nftables backend of block_ip: blocked addresses
// and networks live in sets of a table writ owns (family inet), looked up by
// drop rules in the input, forward and output hooks, optionally inside a
// named network namespace. It talks netlink through google/nftables (no nft
// binary, no shell), and every change is one nftables transaction that
// touches only writ's table.
//
// Layout of table "writ" (the name is configurable):
//
//	set blocked4 { type ipv4_addr; flags interval; }  # what the rules drop
//	set blocked6 { type ipv6_addr; flags interval; }
//	set entries4 { type ipv4_addr . mark; }          # exact entries: address . prefix length
//	set entries6 { type ipv6_addr . mark; }
//	chain input   { type filter hook input priority -10; ip saddr @blocked4 drop; ip6 saddr @blocked6 drop }
//	chain forward { ... saddr and daddr ... }
//	chain output  { type filter hook output priority -10; ip daddr @blocked4 drop; ip6 daddr @blocked6 drop }
//
// The blocked sets hold the union of the entries, merged into ranges; the
// entries sets keep each target as written, so releasing 198.51.100.0/24
// never releases 198.51.100.7 that another playbook still blocks.
package nftables

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"

	nft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/playbook"
)

// Options configures the backend.
type Options struct {
	// Table is writ's table name (family inet). Default "writ".
	Table string
	// NetNS is a named network namespace (/run/netns/NAME); empty: the
	// process's own.
	NetNS string
	// Priority of writ's base chains. Default -10 (before the usual filter
	// chains; a drop in any chain drops the packet).
	Priority int32
	// Name identifies the backend in plans. Default "nftables".
	Name string
}

var tableRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,30}$`) })

func (o *Options) setDefaults() {
	if o.Table == "" {
		o.Table = "writ"
	}
	if o.Priority == 0 {
		o.Priority = -10
	}
	if o.Name == "" {
		o.Name = "nftables"
	}
}

func (o *Options) validate() error {
	if !tableRE().MatchString(o.Table) {
		return fmt.Errorf("nftables: table name %q: a letter, then letters, digits, _ or - (at most 31)", o.Table)
	}
	if o.NetNS != "" && !tableRE().MatchString(o.NetNS) {
		return fmt.Errorf("nftables: network namespace name %q is not a plain name", o.NetNS)
	}
	return nil
}

// Backend blocks addresses with nftables.
type Backend struct {
	opts Options
	mu   sync.Mutex // one change at a time from this process
}

var _ action.Backend = (*Backend)(nil)

// New checks the options.
func New(opts Options) (*Backend, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Backend{opts: opts}, nil
}

// Name identifies the backend.
func (b *Backend) Name() string { return b.opts.Name }

// Validate accepts IP addresses and CIDR prefixes, and no params.
func (b *Backend) Validate(req action.Request) error {
	if len(req.Targets) == 0 {
		return errors.New("no targets")
	}
	for _, t := range req.Targets {
		if _, err := playbook.ParseIPTarget(t); err != nil {
			return fmt.Errorf("target %v", err)
		}
	}
	if len(req.Params) > 0 {
		return errors.New("the nftables backend takes no params")
	}
	return nil
}

// conn opens a netlink connection, inside the namespace when one is named.
func (b *Backend) conn() (*nft.Conn, func(), error) {
	if b.opts.NetNS == "" {
		c, err := nft.New(nft.WithSockOptions(bigBuffers))
		if err != nil {
			return nil, nil, fmt.Errorf("nftables: %w", err)
		}
		return c, func() {}, nil
	}
	f, err := os.Open(filepath.Join("/run/netns", b.opts.NetNS))
	if err != nil {
		return nil, nil, fmt.Errorf("nftables: network namespace %s: %w", b.opts.NetNS, err)
	}
	c, err := nft.New(nft.WithNetNSFd(int(f.Fd())), nft.WithSockOptions(bigBuffers))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("nftables: network namespace %s: %w", b.opts.NetNS, err)
	}
	return c, func() { f.Close() }, nil
}

// socketBuffer is the netlink buffer size: one transaction carries every
// element of writ's sets (about 2 MiB for 10,000 addresses).
const socketBuffer = 64 << 20

// bigBuffers raises the socket buffers so a whole transaction fits:
// SO_SNDBUFFORCE/SO_RCVBUFFORCE (writ holds CAP_NET_ADMIN to manage
// nftables anyway), else the largest the system allows.
func bigBuffers(c *netlink.Conn) error {
	forced := false
	if raw, err := c.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			e1 := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer)
			e2 := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer)
			forced = e1 == nil && e2 == nil
		})
	}
	if !forced {
		_ = c.SetWriteBuffer(socketBuffer)
		_ = c.SetReadBuffer(socketBuffer)
	}
	return nil
}

type layout struct {
	table                  *nft.Table
	blocked4, blocked6     *nft.Set
	entries4, entries6     *nft.Set
	input, forward, output *nft.Chain
	entryType4, entryType6 nft.SetDatatype
}

func (b *Backend) layout() *layout {
	t := &nft.Table{Name: b.opts.Table, Family: nft.TableFamilyINet}
	l := &layout{table: t}
	l.blocked4 = &nft.Set{Table: t, Name: "blocked4", KeyType: nft.TypeIPAddr, Interval: true}
	l.blocked6 = &nft.Set{Table: t, Name: "blocked6", KeyType: nft.TypeIP6Addr, Interval: true}
	l.entryType4 = nft.MustConcatSetType(nft.TypeIPAddr, nft.TypeMark)
	l.entryType6 = nft.MustConcatSetType(nft.TypeIP6Addr, nft.TypeMark)
	l.entries4 = &nft.Set{Table: t, Name: "entries4", KeyType: l.entryType4, Concatenation: true}
	l.entries6 = &nft.Set{Table: t, Name: "entries6", KeyType: l.entryType6, Concatenation: true}
	prio := nft.ChainPriority(b.opts.Priority)
	accept := nft.ChainPolicyAccept
	l.input = &nft.Chain{Table: t, Name: "input", Type: nft.ChainTypeFilter, Hooknum: nft.ChainHookInput, Priority: &prio, Policy: &accept}
	l.forward = &nft.Chain{Table: t, Name: "forward", Type: nft.ChainTypeFilter, Hooknum: nft.ChainHookForward, Priority: &prio, Policy: &accept}
	l.output = &nft.Chain{Table: t, Name: "output", Type: nft.ChainTypeFilter, Hooknum: nft.ChainHookOutput, Priority: &prio, Policy: &accept}
	return l
}

// match builds "ip|ip6 saddr|daddr @set counter drop".
func match(set *nft.Set, v6, source bool) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if source {
		off = 12
	}
	if v6 {
		proto, off, n = unix.NFPROTO_IPV6, 24, 16
		if source {
			off = 8
		}
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

func (l *layout) rules() map[*nft.Chain][][]expr.Any {
	return map[*nft.Chain][][]expr.Any{
		l.input:   {match(l.blocked4, false, true), match(l.blocked6, true, true)},
		l.forward: {match(l.blocked4, false, true), match(l.blocked4, false, false), match(l.blocked6, true, true), match(l.blocked6, true, false)},
		l.output:  {match(l.blocked4, false, false), match(l.blocked6, true, false)},
	}
}

// ensure creates writ's table, sets, chains and rules where missing, in the
// batch of c (flushed by the caller). It reports whether the table existed.
func (b *Backend) ensure(c *nft.Conn, l *layout) (bool, error) {
	existing, err := c.ListTableOfFamily(l.table.Name, nft.TableFamilyINet)
	exists := err == nil && existing != nil
	if !exists {
		c.AddTable(l.table)
		for _, s := range []*nft.Set{l.blocked4, l.blocked6, l.entries4, l.entries6} {
			if err := c.AddSet(s, nil); err != nil {
				return false, fmt.Errorf("nftables: set %s: %w", s.Name, err)
			}
		}
		for ch, rules := range l.rules() {
			c.AddChain(ch)
			for _, r := range rules {
				c.AddRule(&nft.Rule{Table: l.table, Chain: ch, Exprs: r})
			}
		}
		return false, nil
	}
	// The table exists: bind to its sets, and repair chains whose rules are
	// not writ's (someone edited writ's table).
	sets, err := c.GetSets(l.table)
	if err != nil {
		return true, fmt.Errorf("nftables: list sets of %s: %w", l.table.Name, err)
	}
	for _, want := range []*nft.Set{l.blocked4, l.blocked6, l.entries4, l.entries6} {
		found := false
		for _, s := range sets {
			if s.Name == want.Name {
				found = true
				want.ID = s.ID
			}
		}
		if !found {
			if err := c.AddSet(want, nil); err != nil {
				return true, fmt.Errorf("nftables: set %s: %w", want.Name, err)
			}
		}
	}
	for ch, rules := range l.rules() {
		got, err := c.GetRules(l.table, ch)
		if err == nil && len(got) == len(rules) {
			continue
		}
		c.AddChain(ch)
		c.FlushChain(ch)
		for _, r := range rules {
			c.AddRule(&nft.Rule{Table: l.table, Chain: ch, Exprs: r})
		}
	}
	return true, nil
}

// readEntries reads the exact entries from the catalog sets.
func (b *Backend) readEntries(c *nft.Conn, l *layout) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range []*nft.Set{l.entries4, l.entries6} {
		elems, err := c.GetSetElements(s)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("nftables: read %s: %w", s.Name, err)
		}
		for _, e := range elems {
			p, err := decodeEntry(e.Key)
			if err != nil {
				return nil, fmt.Errorf("nftables: %s holds an element writ did not write: %w", s.Name, err)
			}
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out, nil
}

func comparePrefix(x, y netip.Prefix) int {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c
	}
	return x.Bits() - y.Bits()
}

// Entry keys: the address, then the prefix length as a 32-bit mark in host
// byte order (the mark datatype's order).
func encodeEntry(p netip.Prefix) []byte {
	a := p.Addr().AsSlice()
	return append(a, binaryutil.NativeEndian.PutUint32(uint32(p.Bits()))...)
}

func decodeEntry(k []byte) (netip.Prefix, error) {
	var addr netip.Addr
	switch len(k) {
	case 8:
		addr = netip.AddrFrom4([4]byte(k[:4]))
	case 20:
		addr = netip.AddrFrom16([16]byte(k[:16]))
	default:
		return netip.Prefix{}, fmt.Errorf("key of %d bytes", len(k))
	}
	bits := int(binaryutil.NativeEndian.Uint32(k[len(k)-4:]))
	p := netip.PrefixFrom(addr, bits)
	if !p.IsValid() || p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("invalid entry %s/%d", addr, bits)
	}
	return p, nil
}

// ranges merges prefixes of one family into sorted, disjoint, non-adjacent
// [start, end] ranges.
func ranges(ps []netip.Prefix) [][2]netip.Addr {
	sorted := slices.Clone(ps)
	slices.SortFunc(sorted, comparePrefix)
	var out [][2]netip.Addr
	for _, p := range sorted {
		start, end := p.Masked().Addr(), lastAddr(p)
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last[1].Next()
			if start.Compare(last[1]) <= 0 || (next.IsValid() && start == next) {
				if end.Compare(last[1]) > 0 {
					last[1] = end
				}
				continue
			}
		}
		out = append(out, [2]netip.Addr{start, end})
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range a {
		for bit := 7; bit >= 0; bit-- {
			pos := i*8 + (7 - bit)
			if pos >= bits {
				a[i] |= 1 << bit
			}
		}
	}
	addr, _ := netip.AddrFromSlice(a)
	return addr
}

// intervalElements encodes ranges for an interval set: a start element and
// an interval-end element at the first address after the range (omitted
// when the range reaches the top of the address space).
func intervalElements(rs [][2]netip.Addr) []nft.SetElement {
	var out []nft.SetElement
	for _, r := range rs {
		out = append(out, nft.SetElement{Key: r[0].AsSlice()})
		if next := r[1].Next(); next.IsValid() {
			out = append(out, nft.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// Entries reads what writ's table blocks now (for tests and status).
func (b *Backend) Entries(ctx context.Context) ([]netip.Prefix, error) {
	c, done, err := b.conn()
	if err != nil {
		return nil, err
	}
	defer done()
	l := b.layout()
	if _, err := c.ListTableOfFamily(l.table.Name, nft.TableFamilyINet); err != nil {
		return nil, nil
	}
	return b.readEntries(c, l)
}

// Plan reads writ's sets and says per target what would change. Each
// target is looked up in an index of the entries (catalog), so planning
// 100,000 targets against 100,000 entries takes a fraction of a second.
func (b *Backend) Plan(ctx context.Context, req action.Request) (*action.Plan, error) {
	var blocked [][2]netip.Addr
	var blockedErr error
	var wg sync.WaitGroup
	if req.Operation == action.Apply {
		// An entry its drop set no longer blocks (edited by hand) would be
		// blocked again: the drop sets are read beside the entries.
		wg.Go(func() { blocked, blockedErr = b.blocked() })
	}
	entries, err := b.Entries(ctx)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if blockedErr != nil {
		return nil, blockedErr
	}
	cat := newCatalog(entries)
	if req.Operation == action.Apply {
		cat.unenforced, _ = enforcedEntries(blocked, entries)
	}
	return b.planEntries(ctx, cat, req)
}

// planEntries plans a request against the entries of cat.
func (b *Backend) planEntries(ctx context.Context, cat *catalog, req action.Request) (*action.Plan, error) {
	p := &action.Plan{Action: req.Action, Backend: b.Name(), Environment: req.Environment, Operation: req.Operation,
		Targets: make([]action.TargetPlan, 0, len(req.Targets))}
	for _, t := range req.Targets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pfx, err := playbook.ParseIPTarget(t)
		if err != nil {
			return nil, err
		}
		tp := action.TargetPlan{Target: t}
		if req.Operation == action.Revert {
			tp.Result = action.NotBlocked
			if cat.has[pfx] {
				tp.Result = action.WouldUnblock
				if cover := cat.covering(pfx); cover.IsValid() {
					tp.Detail = "stays blocked by " + format(cover)
				}
			}
			p.Targets = append(p.Targets, tp)
			continue
		}
		switch cover := cat.covering(pfx); {
		case cat.has[pfx] && !cat.unenforced[pfx]:
			tp.Result = action.AlreadyBlocked
		case cat.has[pfx]:
			tp.Result = action.WouldBlock
			tp.Detail = "listed in writ's entries, but its drop set no longer blocks it (edited by hand)"
		case cover.IsValid() && !cat.unenforced[cover]:
			tp.Result = action.CoveredBy
			tp.Detail = "inside " + format(cover)
		default:
			tp.Result = action.WouldBlock
			if first, n := cat.inside(pfx); n > 0 {
				tp.Result = Overlaps
				tp.Detail = "would block; overlaps " + format(first)
				if n > 1 {
					tp.Detail += fmt.Sprintf(" and %d more", n-1)
				}
			}
		}
		p.Targets = append(p.Targets, tp)
	}
	return p, nil
}

// Overlaps is the planned result of a target that would be blocked and
// contains narrower entries already blocked.
const Overlaps = "overlaps"

// catalog indexes writ's exact entries: membership by prefix, and the
// entries sorted by address then prefix length for what lies inside a
// prefix.
type catalog struct {
	has    map[netip.Prefix]bool
	sorted []netip.Prefix
	// unenforced are entries the drop sets do not block (nil: not read).
	unenforced map[netip.Prefix]bool
}

func newCatalog(entries []netip.Prefix) *catalog {
	c := &catalog{has: make(map[netip.Prefix]bool, len(entries)), sorted: slices.Clone(entries)}
	for _, e := range entries {
		c.has[e] = true
	}
	slices.SortFunc(c.sorted, comparePrefix)
	return c
}

// covering returns the widest entry strictly containing p (the first in
// address order), or an invalid prefix.
func (c *catalog) covering(p netip.Prefix) netip.Prefix {
	for bits := 0; bits < p.Bits(); bits++ {
		if q, err := p.Addr().Prefix(bits); err == nil && c.has[q] {
			return q
		}
	}
	return netip.Prefix{}
}

// inside returns the first entry (in address order) strictly inside p, and
// how many there are.
func (c *catalog) inside(p netip.Prefix) (netip.Prefix, int) {
	start, end := p.Masked().Addr(), lastAddr(p)
	i, _ := slices.BinarySearchFunc(c.sorted, start, func(e netip.Prefix, a netip.Addr) int { return e.Addr().Compare(a) })
	var first netip.Prefix
	n := 0
	for ; i < len(c.sorted) && c.sorted[i].Addr().Compare(end) <= 0; i++ {
		if e := c.sorted[i]; e.Bits() > p.Bits() {
			if n == 0 {
				first = e
			}
			n++
		}
	}
	return first, n
}

func format(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Apply adds the targets to writ's sets, in one transaction: however many
// there are (100,000 from a targets file), the sets change atomically or
// not at all.
func (b *Backend) Apply(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	return b.change(ctx, req, true)
}

// Revert removes the targets from writ's sets, in one transaction.
func (b *Backend) Revert(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	return b.change(ctx, req, false)
}

func (b *Backend) change(ctx context.Context, req action.Request, add bool) ([]action.TargetResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, done, err := b.conn()
	if err != nil {
		return nil, transient(err)
	}
	defer done()
	l := b.layout()
	existed, err := b.ensure(c, l)
	if err != nil {
		return nil, err
	}
	var entries []netip.Prefix
	var unenforced map[netip.Prefix]bool
	var extra [][2]netip.Addr
	if existed {
		if entries, err = b.readEntries(c, l); err != nil {
			return nil, err
		}
		// What the drop sets lack (deleted by hand) is blocked again; what
		// they hold beyond the entries (added by hand) is kept.
		blocked, err := b.readBlocked(c, l)
		if err != nil {
			return nil, err
		}
		unenforced, extra = enforcedEntries(blocked, entries)
	}
	results := make([]action.TargetResult, 0, len(req.Targets))
	changed := false
	has := make(map[netip.Prefix]bool, len(entries)+len(req.Targets))
	for _, e := range entries {
		has[e] = true
	}
	for _, t := range req.Targets {
		pfx, err := playbook.ParseIPTarget(t)
		if err != nil {
			results = append(results, action.TargetResult{Target: t, Result: action.Failed, Detail: err.Error()})
			continue
		}
		present := has[pfx]
		switch {
		case add && !present:
			has[pfx] = true
			results = append(results, action.TargetResult{Target: t, Result: action.Changed, Detail: "blocked"})
			changed = true
		case add && unenforced[pfx]:
			delete(unenforced, pfx)
			results = append(results, action.TargetResult{Target: t, Result: action.Changed, Detail: "blocked again: its drop set no longer blocked it"})
			changed = true
		case !add && present:
			delete(has, pfx)
			results = append(results, action.TargetResult{Target: t, Result: action.Changed, Detail: "unblocked"})
			changed = true
		default:
			results = append(results, action.TargetResult{Target: t, Result: action.Unchanged})
		}
	}
	if changed || !existed {
		entries = slices.SortedFunc(maps.Keys(has), comparePrefix)
		b.rewrite(c, l, entries, extra)
	}
	if err := c.Flush(); err != nil {
		for i := range results {
			if results[i].Result == action.Changed {
				results[i] = action.TargetResult{Target: results[i].Target, Result: action.Failed, Detail: err.Error()}
			}
		}
		return results, fmt.Errorf("nftables: transaction on table %s: %w", l.table.Name, err)
	}
	for _, r := range results {
		if r.Result == action.Failed {
			return results, fmt.Errorf("target %s: %s", r.Target, r.Detail)
		}
	}
	return results, nil
}

// rewrite replaces the content of writ's four sets in c's batch: flush and
// refill, applied atomically when the batch is flushed.
func (b *Backend) rewrite(c *nft.Conn, l *layout, entries []netip.Prefix, extra [][2]netip.Addr) {
	var v4, v6 []netip.Prefix
	var e4, e6 []nft.SetElement
	for _, p := range entries {
		if p.Addr().Is4() {
			v4 = append(v4, p)
			e4 = append(e4, nft.SetElement{Key: encodeEntry(p)})
		} else {
			v6 = append(v6, p)
			e6 = append(e6, nft.SetElement{Key: encodeEntry(p)})
		}
	}
	for _, s := range []*nft.Set{l.blocked4, l.blocked6, l.entries4, l.entries6} {
		c.FlushSet(s)
	}
	add := func(s *nft.Set, elems []nft.SetElement) {
		// One netlink attribute's length is 16 bits: send the elements in
		// chunks that fit, all in the same batch (the same transaction).
		for chunk := range slices.Chunk(elems, elementsPerMessage) {
			// Errors here are encoding errors of our own elements; the
			// batch reports anything the kernel refuses on Flush.
			_ = c.SetAddElements(s, chunk)
		}
	}
	r4, r6 := ranges(v4), ranges(v6)
	for _, r := range extra {
		if r[0].Is4() {
			r4 = append(r4, r)
		} else {
			r6 = append(r6, r)
		}
	}
	add(l.blocked4, intervalElements(mergeRanges(r4)))
	add(l.blocked6, intervalElements(mergeRanges(r6)))
	add(l.entries4, e4)
	add(l.entries6, e6)
}

// elementsPerMessage keeps one message's element list under the 64 KiB a
// netlink attribute can hold.
const elementsPerMessage = 1024

// transient marks netlink connection failures as worth retrying.
func transient(err error) error {
	return fmt.Errorf("%w: %w", action.ErrTransient, err)
}
