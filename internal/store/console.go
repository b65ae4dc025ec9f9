package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Reads of the web console (internal/console) that the API has no call
// for: one query where a page would otherwise make one per row.

// CurrentPlaybookFilter narrows CurrentPlaybooks. Zero fields match
// everything.
type CurrentPlaybookFilter struct {
	Status      string // the current version's status
	Environment string // the current version's environment
	Limit       int    // default 500, at most 5000
}

// CurrentPlaybooks lists the newest version of every playbook (as
// LatestPlaybookVersion picks it), by name, filtered on that version.
func (s *Store) CurrentPlaybooks(ctx context.Context, f CurrentPlaybookFilter) ([]*PlaybookVersion, error) {
	if f.Limit <= 0 || f.Limit > 5000 {
		f.Limit = 500
	}
	rows, err := s.db.Query(ctx, `SELECT `+playbookColumns+` FROM (
			SELECT DISTINCT ON (name) * FROM playbook_versions ORDER BY name, created_at DESC, id DESC
		) AS current
		WHERE ($1 = '' OR status = $1) AND ($2 = '' OR environment = $2)
		ORDER BY name LIMIT $3`, f.Status, f.Environment, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("store: current playbooks: %w", translate(err))
	}
	defer rows.Close()
	var out []*PlaybookVersion
	for rows.Next() {
		v, err := scanPlaybook(rows)
		if err != nil {
			return nil, fmt.Errorf("store: current playbooks: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: current playbooks: %w", translate(err))
	}
	return out, nil
}

// LastExecutions returns the newest execution (highest id) of each of
// these playbook names that has one.
func (s *Store) LastExecutions(ctx context.Context, names []string) (map[string]*Execution, error) {
	out := make(map[string]*Execution, len(names))
	if len(names) == 0 {
		return out, nil
	}
	list, err := collectExecutions(s.db.Query(ctx, `SELECT DISTINCT ON (name) `+executionColumns+` FROM executions
		WHERE name = ANY($1) ORDER BY name, id DESC`, names))
	if err != nil {
		return nil, fmt.Errorf("store: last executions of %d playbooks: %w", len(names), err)
	}
	for _, e := range list {
		out[e.Name] = e
	}
	return out, nil
}

// AuditEntriesNewestFirst returns up to limit entries that match f, newest
// (highest seq) first: f.Below, when not 0, keeps only seq < f.Below (the
// next page starts below the last seq of this one).
func (s *Store) AuditEntriesNewestFirst(ctx context.Context, f AuditFilter, limit int) ([]AuditEntry, error) {
	var since, until any
	if !f.Since.IsZero() {
		since = f.Since
	}
	if !f.Until.IsZero() {
		until = f.Until
	}
	always := f.AlwaysEvents
	if always == nil {
		always = []string{}
	}
	rows, err := s.db.Query(ctx, `SELECT `+auditEntryColumns+` FROM audit_entries
		WHERE ($1::bigint = 0 OR seq < $1)
		  AND ((($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3)
		        AND ($4 = '' OR actor_id = $4) AND ($5 = '' OR event = $5))
		       OR event = ANY($6::text[]))
		ORDER BY seq DESC LIMIT $7`, f.Below, since, until, f.ActorID, f.Event, always, limit)
	if err != nil {
		return nil, fmt.Errorf("store: audit entries newest first: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) { return scanAuditEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("store: audit entries newest first: %w", translate(err))
	}
	return out, nil
}

// AuditEntriesBySeq returns the entries with these sequence numbers that
// exist, in seq order.
func (s *Store) AuditEntriesBySeq(ctx context.Context, seqs []int64) ([]AuditEntry, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	rows, err := s.db.Query(ctx, `SELECT `+auditEntryColumns+` FROM audit_entries WHERE seq = ANY($1) ORDER BY seq`, seqs)
	if err != nil {
		return nil, fmt.Errorf("store: %d audit entries by seq: %w", len(seqs), translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) { return scanAuditEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("store: %d audit entries by seq: %w", len(seqs), translate(err))
	}
	return out, nil
}
