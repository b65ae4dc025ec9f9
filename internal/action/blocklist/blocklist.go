// Package blocklist is the embedded default backend of block_ip: a file of
// blocked addresses and networks that firewalls and proxies consume (a plain
// list, nginx deny rules, or an ipset restore script), rewritten atomically
// (temp file, fsync, rename, fsync of the directory) under a file lock.
package blocklist

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/playbook"
)

// Format of the file.
type Format string

// Formats.
const (
	Plain Format = "plain" // one address or CIDR per line
	Nginx Format = "nginx" // "deny ADDR;" lines, for an nginx include
	IPSet Format = "ipset" // an `ipset restore -exist` script (hash:net sets)
)

// Options configures a blocklist file.
type Options struct {
	// Path of the file. Its directory is created when missing.
	Path string
	// Format, default plain.
	Format Format
	// SetName is the ipset set name (IPSet format); IPv6 entries go to
	// SetName+"6". Default "writ-blocklist".
	SetName string
	// Journal, when set, is a file recording every change once: a line per
	// (request idempotency key, change, target), written before the change
	// lands; a retry after a crash adds no second line.
	Journal string
	// Name identifies the backend in plans, e.g. "blocklist:production".
	Name string
	// ReadOnce makes Plan read the file once and answer every later Plan
	// from that read: for writ plan, which plans thousands of playbooks
	// against a file that does not change under it (action.Deps.PlanOnly).
	// Off, each Plan reads the file as it is then.
	ReadOnce bool
}

func (o *Options) setDefaults() {
	if o.Format == "" {
		o.Format = Plain
	}
	if o.SetName == "" {
		o.SetName = "writ-blocklist"
	}
	if o.Name == "" {
		o.Name = "blocklist"
	}
}

func (o *Options) validate() error {
	if o.Path == "" || !filepath.IsAbs(o.Path) {
		return fmt.Errorf("blocklist: path %q must be absolute", o.Path)
	}
	switch o.Format {
	case Plain, Nginx, IPSet:
	default:
		return fmt.Errorf("blocklist: unknown format %q (plain, nginx or ipset)", o.Format)
	}
	for _, r := range o.SetName {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("blocklist: ipset name %q: letters, digits, - and _ only", o.SetName)
		}
	}
	if len(o.SetName) > 30 {
		return fmt.Errorf("blocklist: ipset name %q longer than 30 characters", o.SetName)
	}
	return nil
}

// Backend is a blocklist file.
type Backend struct {
	opts Options

	// The file's entries as Plan read them the first time (ReadOnce).
	once    sync.Once
	onceHas map[netip.Prefix]bool
	onceErr error
}

var _ action.Backend = (*Backend)(nil)

// New checks the options and returns the backend. The file is created on
// the first change.
func New(opts Options) (*Backend, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Backend{opts: opts}, nil
}

// Name identifies the backend.
func (b *Backend) Name() string { return b.opts.Name }

// Path is the file's path.
func (b *Backend) Path() string { return b.opts.Path }

// Validate checks every target is an IP address or CIDR prefix and that no
// params are given (the file has no options per playbook).
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
		keys := make([]string, 0, len(req.Params))
		for k := range req.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return fmt.Errorf("the blocklist backend takes no params (got %s)", strings.Join(keys, ", "))
	}
	return nil
}

// Plan reads the file and says per target what would change.
func (b *Backend) Plan(ctx context.Context, req action.Request) (*action.Plan, error) {
	var has map[netip.Prefix]bool
	var err error
	if b.opts.ReadOnce {
		b.once.Do(func() { b.onceHas, b.onceErr = b.entrySet() })
		has, err = b.onceHas, b.onceErr
	} else {
		has, err = b.entrySet()
	}
	if err != nil {
		return nil, err
	}
	p := &action.Plan{Action: req.Action, Backend: b.Name(), Environment: req.Environment, Operation: req.Operation,
		Targets: make([]action.TargetPlan, 0, len(req.Targets))}
	for _, t := range req.Targets {
		pfx, _ := playbook.ParseIPTarget(t)
		tp := action.TargetPlan{Target: t}
		switch req.Operation {
		case action.Revert:
			if has[pfx] {
				tp.Result = action.WouldUnblock
			} else {
				tp.Result = action.NotBlocked
			}
		default:
			switch cover := coveredBy(has, pfx); {
			case has[pfx]:
				tp.Result = action.AlreadyBlocked
			case cover.IsValid():
				tp.Result = action.CoveredBy
				tp.Detail = "inside " + format(cover)
				// A covering entry may be reverted later: still add this
				// one on Apply, so it outlives the broader block.
			default:
				tp.Result = action.WouldBlock
			}
		}
		p.Targets = append(p.Targets, tp)
	}
	return p, nil
}

// entrySet reads the file's entries as a set.
func (b *Backend) entrySet() (map[netip.Prefix]bool, error) {
	entries, err := b.read()
	if err != nil {
		return nil, err
	}
	has := make(map[netip.Prefix]bool, len(entries))
	for _, e := range entries {
		has[e] = true
	}
	return has, nil
}

// coveredBy returns the widest entry strictly containing p (the first
// the file lists, as it is written sorted), or an invalid prefix: one
// lookup per shorter prefix length, so planning 100,000 targets against
// 100,000 entries stays linear.
func coveredBy(has map[netip.Prefix]bool, p netip.Prefix) netip.Prefix {
	for bits := 0; bits < p.Bits(); bits++ {
		if q, err := p.Addr().Prefix(bits); err == nil && has[q] {
			return q
		}
	}
	return netip.Prefix{}
}

// Apply adds the targets that are not in the file yet.
func (b *Backend) Apply(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	return b.change(ctx, req, true)
}

// Revert removes the targets that are in the file.
func (b *Backend) Revert(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	return b.change(ctx, req, false)
}

func (b *Backend) change(ctx context.Context, req action.Request, add bool) ([]action.TargetResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	entries, err := b.read()
	if err != nil {
		return nil, err
	}
	results := make([]action.TargetResult, 0, len(req.Targets))
	var changed []string
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
			changed = append(changed, "block "+t)
		case !add && present:
			delete(has, pfx)
			results = append(results, action.TargetResult{Target: t, Result: action.Changed, Detail: "unblocked"})
			changed = append(changed, "unblock "+t)
		default:
			results = append(results, action.TargetResult{Target: t, Result: action.Unchanged})
		}
	}
	if len(changed) > 0 {
		// The journal is written first, so no change can land without its
		// line; a change retried after a crash finds its line and adds none.
		if err := b.journal(req, changed); err != nil {
			return results, err
		}
		if err := b.write(slices.Collect(maps.Keys(has))); err != nil {
			for i := range results {
				if results[i].Result == action.Changed {
					results[i] = action.TargetResult{Target: results[i].Target, Result: action.Failed, Detail: err.Error()}
				}
			}
			return results, err
		}
	}
	for _, r := range results {
		if r.Result == action.Failed {
			return results, fmt.Errorf("target %s: %s", r.Target, r.Detail)
		}
	}
	return results, nil
}

// Entries returns what the file blocks now.
func (b *Backend) Entries() ([]netip.Prefix, error) { return b.read() }

const header = "Managed by writ: do not edit; changes come from playbooks."

func (b *Backend) read() ([]netip.Prefix, error) {
	data, err := os.ReadFile(b.opts.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blocklist: read %s: %w", b.opts.Path, err)
	}
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		entry, ok := b.parseLine(s)
		if !ok {
			return nil, fmt.Errorf("blocklist: %s:%d: %q is not a line writ wrote; refusing to rewrite a file edited by hand", b.opts.Path, line, s)
		}
		if entry == "" {
			continue
		}
		p, err := playbook.ParseIPTarget(entry)
		if err != nil {
			return nil, fmt.Errorf("blocklist: %s:%d: %v", b.opts.Path, line, err)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("blocklist: read %s: %w", b.opts.Path, err)
	}
	return out, nil
}

// parseLine returns the address of an entry line ("" for structural lines
// such as ipset's create), and false for lines writ does not write.
func (b *Backend) parseLine(s string) (string, bool) {
	switch b.opts.Format {
	case Plain:
		return s, !strings.ContainsAny(s, " \t;")
	case Nginx:
		if !strings.HasPrefix(s, "deny ") || !strings.HasSuffix(s, ";") {
			return "", false
		}
		return strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "deny "), ";")), true
	case IPSet:
		f := strings.Fields(s)
		if len(f) >= 3 && f[0] == "create" && (f[1] == b.opts.SetName || f[1] == b.opts.SetName+"6") {
			return "", true
		}
		if len(f) == 4 && f[0] == "add" && (f[1] == b.opts.SetName || f[1] == b.opts.SetName+"6") && f[3] == "-exist" {
			return f[2], true
		}
	}
	return "", false
}

func format(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func (b *Backend) render(entries []netip.Prefix) []byte {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(x, y netip.Prefix) int {
		if c := x.Addr().Compare(y.Addr()); c != 0 {
			return c
		}
		return x.Bits() - y.Bits()
	})
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# %s\n", header)
	switch b.opts.Format {
	case Plain:
		for _, e := range sorted {
			fmt.Fprintln(&buf, format(e))
		}
	case Nginx:
		for _, e := range sorted {
			fmt.Fprintf(&buf, "deny %s;\n", format(e))
		}
	case IPSet:
		fmt.Fprintf(&buf, "create %s hash:net family inet -exist\n", b.opts.SetName)
		fmt.Fprintf(&buf, "create %s6 hash:net family inet6 -exist\n", b.opts.SetName)
		for _, e := range sorted {
			set := b.opts.SetName
			if !e.Addr().Is4() {
				set += "6"
			}
			fmt.Fprintf(&buf, "add %s %s -exist\n", set, format(e))
		}
	}
	return buf.Bytes()
}

// write replaces the file atomically: a reader sees the old or the new
// content, never a mix, and after a crash the file is one or the other.
func (b *Backend) write(entries []netip.Prefix) error {
	dir := filepath.Dir(b.opts.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(b.opts.Path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.render(entries)); err != nil {
		tmp.Close()
		return fmt.Errorf("blocklist: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("blocklist: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("blocklist: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	if err := os.Rename(tmp.Name(), b.opts.Path); err != nil {
		return fmt.Errorf("blocklist: replace %s: %w", b.opts.Path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blocklist: fsync %s: %w", dir, err)
	}
	return nil
}

// lock takes an exclusive flock on PATH.lock, so two writ processes (or a
// replica and a migration) never interleave read-modify-write.
func (b *Backend) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(b.opts.Path), 0o755); err != nil {
		return nil, fmt.Errorf("blocklist: %w", err)
	}
	f, err := os.OpenFile(b.opts.Path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("blocklist: lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("blocklist: lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("blocklist: waiting for the lock on %s: %w", b.opts.Path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (b *Backend) journal(req action.Request, changes []string) error {
	if b.opts.Journal == "" {
		return nil
	}
	seen := map[string]bool{}
	if data, err := os.ReadFile(b.opts.Journal); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.SplitN(line, " ", 3); len(f) == 3 {
				seen[f[1]+" "+f[2]] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blocklist: journal: %w", err)
	}
	var buf bytes.Buffer
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, c := range changes {
		if !seen[req.Key()+" "+c] {
			fmt.Fprintf(&buf, "%s %s %s\n", now, req.Key(), c)
		}
	}
	if buf.Len() == 0 {
		return nil
	}
	f, err := os.OpenFile(b.opts.Journal, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("blocklist: journal: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("blocklist: journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("blocklist: journal: %w", err)
	}
	return f.Close()
}

var _ action.Inventory = (*Backend)(nil)

// Inventory reads the file: a target is contained when the file lists it
// exactly (one inside a listed range plans as covered_by: changed).
func (b *Backend) Inventory(ctx context.Context) (action.Live, error) {
	entries, err := b.read()
	if err != nil {
		return nil, err
	}
	l := listed{}
	for _, e := range entries {
		l[format(e)] = true
	}
	return l, nil
}

// listed is the file's entries, spelled as targets are.
type listed map[string]bool

func (l listed) Contains(target string) bool { return l[target] }

func (l listed) Beyond(targets []string) []string {
	want := make(map[string]bool, len(targets))
	for _, t := range targets {
		want[t] = true
	}
	var out []string
	for t := range l {
		if !want[t] {
			out = append(out, t)
		}
	}
	return out
}
