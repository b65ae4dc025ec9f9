package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"
)

// ErrInvalidFilter means a filter's input cannot be used: a malformed
// address or prefix, control characters, too long. The error's message
// names the field. Compare with errors.Is.
var ErrInvalidFilter = errors.New("invalid filter")

// MaxContainmentQuery is the longest ContainmentFilter.Query accepted, in
// bytes.
const MaxContainmentQuery = 256

// ContainedTarget is one target a playbook holds contained now.
type ContainedTarget struct {
	Target      string // as the playbook wrote it: an address, a prefix, a user, a host
	Action      string // block_ip, suspend_user, ...
	Playbook    string // the playbook's name
	VersionID   int64  // playbook_versions.id of the version whose apply contained it
	ExecutionID int64  // that apply's execution
	// Ticket is metadata.ticket of the version's stored content (parsed
	// from playbook_versions.content; no column holds it), "" when none.
	Ticket      string
	Environment string
	// Since is when the target's apply succeeded: the time its result
	// (changed or unchanged) was recorded, the last attempt's when the
	// apply was retried.
	Since time.Time
	// Expires is when the version's expiry revert comes due
	// (playbook_versions.expires_at, set when its apply completed); nil
	// when it has none. A time in the past means the revert is due but has
	// not succeeded yet (waiting for approvals, say).
	Expires *time.Time
	// ProposedBy and ApprovedBy are the approvers whose proposal and
	// approvals counted, as the apply's last judgement before it ran
	// recorded them (executions.verdict); empty when none was needed.
	ProposedBy []string
	ApprovedBy []string
	CommitSHA  string // the commit the apply was recorded at
	// InForce reports whether this version is the playbook in force on
	// the branch (active_playbooks). False: the playbook was removed or
	// replaced, and the release of this target has not succeeded (yet):
	// its revert waits, was denied or rejected, or failed.
	InForce bool
}

// ContainmentFilter narrows Containment.
//
// Query selects targets by what they are:
//   - "" (or only spaces): every contained target;
//   - an IP address (192.0.2.7, 2001:db8::7): targets equal to it and
//     every prefix covering it (192.0.2.0/24 holds 192.0.2.7);
//   - a CIDR prefix (192.0.2.0/24, 2001:db8::/48): targets inside it or
//     equal to it (addresses and narrower prefixes); it must not have host
//     bits set;
//   - anything else: a user, host or other name, matched case-insensitively
//     as the target itself or its beginning ("ali" finds alice@example.com,
//     "web-0" finds web-01 and web-02, "10.0." finds 10.0.3.4 as text).
//
// Address matching reads each target as PostgreSQL's inet (whatever the
// action), so 2001:DB8::1 and 2001:db8:0::1 are the same address; IPv4 and
// IPv6 never match each other. Text that looks like a prefix but is not a
// valid one (10.0.0.0/99, 10.0.0/24, fe80::1%eth0) is refused, not searched
// as a name. Leading and trailing spaces are ignored; control characters,
// invalid UTF-8 and more than MaxContainmentQuery bytes are refused.
type ContainmentFilter struct {
	Query         string
	Environment   string     // "" all; else exactly this environment
	ExpiresBefore *time.Time // only targets whose version expires before this
	NoExpiry      bool       // only targets whose version never expires
	Limit         int        // 0: no limit
}

// queryKind is how a Query matches targets.
type queryKind int

const (
	matchAll queryKind = iota
	matchAddress
	matchPrefix
	matchName
)

// parseQuery classifies a query and returns the value to match with.
func parseQuery(raw string) (queryKind, string, error) {
	if err := checkText("Query", raw); err != nil {
		return 0, "", err
	}
	q := strings.TrimSpace(raw)
	if q == "" {
		return matchAll, "", nil
	}
	if before, _, ok := strings.Cut(q, "/"); ok {
		if !looksLikeAddress(before) {
			return matchName, q, nil
		}
		p, err := netip.ParsePrefix(q)
		if err != nil {
			return 0, "", invalidf("Query", "%q is not a valid CIDR prefix", q)
		}
		if p.Addr().Is4In6() {
			return 0, "", invalidf("Query", "%q is an IPv4-mapped IPv6 prefix; write the IPv4 prefix", q)
		}
		if m := p.Masked(); m != p {
			return 0, "", invalidf("Query", "%q has host bits set; write %s", q, m)
		}
		return matchPrefix, p.String(), nil
	}
	if a, err := netip.ParseAddr(q); err == nil {
		if a.Zone() != "" {
			return 0, "", invalidf("Query", "%q has an IPv6 zone; write the address without it", q)
		}
		return matchAddress, a.Unmap().String(), nil
	}
	if strings.Contains(q, "%") && looksLikeAddress(q[:strings.IndexByte(q, '%')]) {
		return 0, "", invalidf("Query", "%q is not a valid IP address", q)
	}
	return matchName, q, nil
}

// looksLikeAddress reports whether s is written like an address (a dotted
// run of digits, or hex digits with a colon), so that a malformed prefix
// is refused rather than searched as a name.
func looksLikeAddress(s string) bool {
	if s == "" {
		return false
	}
	colon, dot := strings.Contains(s, ":"), strings.Contains(s, ".")
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9', r == '.', r == ':':
		case colon && (r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F'):
		default:
			return false
		}
	}
	return colon || dot
}

// checkText refuses what no search or environment can contain.
func checkText(field, s string) error {
	if len(s) > MaxContainmentQuery {
		return invalidf(field, "%d bytes, more than %d", len(s), MaxContainmentQuery)
	}
	if !utf8.ValidString(s) {
		return invalidf(field, "not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return invalidf(field, "contains a NUL byte")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return invalidf(field, "contains control characters")
		}
	}
	return nil
}

func invalidf(field, format string, args ...any) error {
	return fmt.Errorf("store: containment filter: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidFilter)
}

// containedSQL lists the contained targets of the filter's kind. A row of
// execution_targets t is a contained target when it is the result of an
// apply that succeeded for it ('changed' or 'unchanged'), and no other
// successful result of the same playbook (name), action, environment and
// target came after it (l):
//   - a later apply: the target belongs to that one (the latest version
//     that applied it);
//   - a revert after it that changed the target: released;
//   - a revert after it that found it unchanged, of that version or a
//     later one: released (it was no longer blocked).
//
// Actions and environments are different live systems: what a revert does
// in staging never releases production. The revert of an older version
// that found the target unchanged after a newer version applied it again
// (an update dropped it, the next added it back) found it held by the
// version in force: it stays contained. A revert that changed it released
// it whatever its version (content restored to an older version reuses
// that version's row, so version order alone would miss that).
//
// It reads every successful result of every apply and revert matching the
// query: the cost grows with the history kept, not only with what is
// contained now.
//
// %[1]s and %[2]s are the query kind's condition on t and on l (the same,
// so the index serves both sides); $1 the query value, $2 environment, $3
// expires before, $4 no expiry, $5 limit (NULL: all).
const containedSQL = `
SELECT t.target, e.id, t.updated_at
FROM execution_targets t
JOIN executions e ON e.id = t.execution_id
JOIN playbook_versions v ON v.id = e.version_id
WHERE e.operation = 'apply' AND t.result IN ('changed', 'unchanged')
	AND ($2 = '' OR e.environment = $2)
	AND ($3::timestamptz IS NULL OR v.expires_at < $3)
	AND (NOT $4 OR v.expires_at IS NULL)
	AND %[1]s
	AND NOT EXISTS (
		SELECT 1 FROM execution_targets l
		JOIN executions le ON le.id = l.execution_id
		WHERE l.target = t.target AND le.name = e.name AND le.action = e.action AND le.environment = e.environment
			AND l.result IN ('changed', 'unchanged') AND %[2]s
			AND (le.operation = 'apply' AND (l.updated_at, le.id) > (t.updated_at, e.id)
				OR le.operation = 'revert' AND l.updated_at >= t.updated_at
					AND (l.result = 'changed' OR le.version_id >= e.version_id)))
ORDER BY t.updated_at DESC, t.target COLLATE "C", e.name COLLATE "C", e.id
LIMIT $5`

// targetMatch is the target condition of each query kind, on the
// execution_targets alias given; each can use an index of migration 010.
var targetMatch = map[queryKind]string{
	matchAll:     `$1::text IS NOT NULL`,
	matchAddress: `writ_target_inet(%[1]s.target) >>= $1::inet`,
	matchPrefix:  `writ_target_inet(%[1]s.target) <<= $1::inet`,
	matchName: `lower(%[1]s.target) COLLATE "C" >= lower($1::text) COLLATE "C"
		AND lower(%[1]s.target) COLLATE "C" < (lower($1::text) || chr(1114111)) COLLATE "C"
		AND starts_with(lower(%[1]s.target), lower($1::text))`,
}

// containedQueries is containedSQL for each query kind.
var containedQueries = func() map[queryKind]string {
	out := make(map[queryKind]string, len(targetMatch))
	for kind, m := range targetMatch {
		on := func(alias string) string { return strings.ReplaceAll(m, "%[1]s", alias) }
		out[kind] = fmt.Sprintf(containedSQL, on("t"), on("l"))
	}
	return out
}()

// Containment lists what is contained now: every target a playbook's
// apply blocked, suspended or isolated and no revert has released since
// (see ContainmentFilter for the search). A playbook removed or replaced
// keeps its targets here until their revert succeeds (InForce is false
// meanwhile): the page shows live state, not the branch. Newest Since
// first, then by target. Bad input is an error wrapping ErrInvalidFilter.
func (s *Store) Containment(ctx context.Context, f ContainmentFilter) ([]ContainedTarget, error) {
	kind, value, err := parseQuery(f.Query)
	if err != nil {
		return nil, err
	}
	if err := checkText("Environment", f.Environment); err != nil {
		return nil, err
	}
	if f.Limit < 0 {
		return nil, invalidf("Limit", "%d is negative", f.Limit)
	}
	if f.NoExpiry && f.ExpiresBefore != nil {
		return nil, invalidf("ExpiresBefore", "cannot be combined with NoExpiry (nothing both expires and never does)")
	}
	var limit any
	if f.Limit > 0 {
		limit = f.Limit
	}
	var out []ContainedTarget
	err = s.readSnapshot(ctx, func(db DBTX) error {
		rows, err := db.Query(ctx, containedQueries[kind], value, f.Environment, f.ExpiresBefore, f.NoExpiry, limit)
		if err != nil {
			return translate(err)
		}
		// The rows are small; the full records are made once their number
		// is known.
		type hit struct {
			target    string
			execution int64
			since     time.Time
		}
		hits := make([]hit, 0, 256)
		var h hit
		_, err = pgx.ForEachRow(rows, []any{&h.target, &h.execution, &h.since}, func() error {
			hits = append(hits, h)
			return nil
		})
		if err != nil {
			return translate(err)
		}
		out = make([]ContainedTarget, len(hits))
		for i, h := range hits {
			out[i] = ContainedTarget{Target: h.target, ExecutionID: h.execution, Since: h.since}
		}
		return s.fillContained(ctx, db, out)
	})
	if err != nil {
		return nil, fmt.Errorf("store: containment: %w", err)
	}
	return out, nil
}

// readSnapshot runs fn's queries in one read-only snapshot (the
// transaction of a Store handed out by Tx, else a new one), so that the
// targets and their executions' details agree.
func (s *Store) readSnapshot(ctx context.Context, fn func(DBTX) error) error {
	if s.InTx() {
		return fn(s.db)
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", translate(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// Compiling the plan (JIT) costs more than running it: these queries
	// read thousands of rows, not millions.
	if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
		return translate(err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	return translate(tx.Commit(ctx))
}

// containedExecution is what every target of one apply shares.
type containedExecution struct {
	name, action, environment, commit, digest string
	versionID                                 int64
	expires                                   *time.Time
	proposedBy, approvedBy                    []string
	inForce                                   bool
}

// fillContained completes the targets with the details of their
// executions, loaded once per execution (a few hundred for ten thousand
// targets), and the tickets of their versions.
func (s *Store) fillContained(ctx context.Context, db DBTX, list []ContainedTarget) error {
	if len(list) == 0 {
		return nil
	}
	ids := make([]int64, 0, 64)
	seen := make(map[int64]bool, 64)
	for _, c := range list {
		if !seen[c.ExecutionID] {
			seen[c.ExecutionID] = true
			ids = append(ids, c.ExecutionID)
		}
	}
	rows, err := db.Query(ctx, `
		SELECT e.id, e.name, e.action, e.environment, coalesce(e.commit_sha, ''), e.version_id, v.digest, v.expires_at,
			e.verdict, EXISTS (SELECT 1 FROM active_playbooks a WHERE a.version_id = v.id)
		FROM executions e JOIN playbook_versions v ON v.id = e.version_id
		WHERE e.id = ANY($1)`, ids)
	if err != nil {
		return translate(err)
	}
	byID := make(map[int64]*containedExecution, len(ids))
	var (
		id      int64
		x       containedExecution
		verdict []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &x.name, &x.action, &x.environment, &x.commit, &x.versionID, &x.digest, &x.expires,
		&verdict, &x.inForce}, func() error {
		e := x
		e.proposedBy, e.approvedBy = countedOf(verdict)
		byID[id] = &e
		return nil
	})
	if err != nil {
		return translate(err)
	}
	ticketOf, err := ticketsOf(ctx, db, byID)
	if err != nil {
		return err
	}
	for i := range list {
		c := &list[i]
		e := byID[c.ExecutionID]
		if e == nil {
			return fmt.Errorf("execution %d of target %q: %w", c.ExecutionID, c.Target, ErrNotFound)
		}
		c.Playbook, c.Action, c.Environment, c.CommitSHA = e.name, e.action, e.environment, e.commit
		c.VersionID, c.Expires, c.InForce = e.versionID, e.expires, e.inForce
		c.ProposedBy, c.ApprovedBy = e.proposedBy, e.approvedBy
		c.Ticket = ticketOf[e.digest]
	}
	return nil
}

// ticketsOf returns metadata.ticket by content digest for the versions of
// these executions: from the cache, else read from the stored content
// (only the versions not cached are loaded).
func ticketsOf(ctx context.Context, db DBTX, execs map[int64]*containedExecution) (map[string]string, error) {
	out := make(map[string]string, len(execs))
	var missing []int64
	tickets.mu.Lock()
	for _, e := range execs {
		if t, ok := tickets.m[e.digest]; ok {
			out[e.digest] = t
		} else {
			missing = append(missing, e.versionID)
		}
	}
	tickets.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, `SELECT digest, content FROM playbook_versions WHERE id = ANY($1)`, missing)
	if err != nil {
		return nil, translate(err)
	}
	var (
		digest  string
		content []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&digest, &content}, func() error {
		out[digest] = ticketFromContent(content)
		return nil
	})
	if err != nil {
		return nil, translate(err)
	}
	tickets.mu.Lock()
	defer tickets.mu.Unlock()
	if len(tickets.m)+len(missing) > maxTickets {
		clear(tickets.m)
	}
	for _, e := range execs {
		tickets.m[e.digest] = out[e.digest]
	}
	return out, nil
}

// countedOf reads the approvers whose proposal and approvals counted from
// a stored verdict (internal/reconcile's verdictJSON: "proposer", the
// author, and "counted"; "proposers", every co-author, when recorded).
func countedOf(verdict []byte) (proposed, approved []string) {
	proposed, approved = []string{}, []string{}
	if len(verdict) == 0 {
		return proposed, approved
	}
	var v struct {
		Proposer  string   `json:"proposer"`
		Proposers []string `json:"proposers"`
		Counted   []string `json:"counted"`
	}
	if json.Unmarshal(verdict, &v) != nil {
		return proposed, approved
	}
	switch {
	case len(v.Proposers) > 0:
		proposed = v.Proposers
	case v.Proposer != "":
		proposed = []string{v.Proposer}
	}
	if v.Counted != nil {
		approved = v.Counted
	}
	return proposed, approved
}

// tickets remembers metadata.ticket by content digest: a version's
// content never changes, so neither does its ticket. Bounded by
// maxTickets (past it, it starts again).
var tickets = struct {
	mu sync.Mutex
	m  map[string]string
}{m: map[string]string{}}

const maxTickets = 20000

// ticketFromContent reads metadata.ticket from a stored playbook; "" when it has
// none or cannot be read (it parsed when it was merged).
func ticketFromContent(content []byte) string {
	if !strings.Contains(string(content), "ticket") {
		return ""
	}
	var doc struct {
		Metadata struct {
			Ticket string `yaml:"ticket"`
		} `yaml:"metadata"`
	}
	if yaml.Unmarshal(content, &doc) != nil {
		return ""
	}
	return doc.Metadata.Ticket
}
