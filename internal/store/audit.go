package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// auditLockKey is the transaction-scoped advisory lock every audit append
// holds ("writaudt"). It serializes appends across connections, processes
// and replicas sharing the database.
const auditLockKey int64 = 0x7772697461756474

// ErrNoTx is returned by operations that must run inside a transaction.
var ErrNoTx = errors.New("store: needs a transaction (call inside Store.Tx)")

// AuditEntry is one stored audit entry. Entry holds the canonical bytes that
// every hash and signature covers; At, ActorID and Event repeat fields of
// those bytes for filtering.
type AuditEntry struct {
	Seq       int64
	At        time.Time
	ActorID   string
	Event     string
	Entry     []byte
	PrevHash  []byte
	Hash      []byte
	KeyID     string
	Signature []byte
}

// AuditHead is the log's head after an append transaction.
type AuditHead struct {
	Size     int64
	LastHash []byte
	LastAt   time.Time // zero for the empty log
	Compact  []byte    // concatenated 32-byte compact-range hashes
}

// AuditNode is a stored Merkle tree node.
type AuditNode struct {
	Level int
	Index int64
	Hash  []byte
}

// AuditKey is a public key that signed entries or checkpoints.
type AuditKey struct {
	ID        string
	Algorithm string
	PublicKey string // PKIX PEM
	AddedAt   time.Time
}

// AuditCheckpoint is a signed checkpoint recorded in the database.
type AuditCheckpoint struct {
	ID        int64
	Size      int64
	Root      []byte
	Note      string
	KeyID     string
	CreatedAt time.Time
}

// AuditFilter narrows AuditEntriesFiltered. Zero fields match everything.
type AuditFilter struct {
	Since   time.Time // at >= Since
	Until   time.Time // at < Until
	ActorID string
	Event   string
	// AlwaysEvents are included whatever the other fields say (key
	// rotations, which a verifier of a filtered export needs).
	AlwaysEvents []string
	// Below bounds seq (exclusive); 0 means no bound.
	Below int64
}

const auditEntryColumns = `seq, at, actor_id, event, entry, prev_hash, hash, key_id, signature`

func scanAuditEntry(row pgx.Row) (AuditEntry, error) {
	var e AuditEntry
	err := row.Scan(&e.Seq, &e.At, &e.ActorID, &e.Event, &e.Entry, &e.PrevHash, &e.Hash, &e.KeyID, &e.Signature)
	return e, err
}

// lockAuditHead takes the audit append lock for the rest of the transaction
// and returns the current head. It must run in a READ COMMITTED
// transaction, so the head read sees every append committed before the
// lock was granted.
func (s *Store) lockAuditHead(ctx context.Context) (AuditHead, error) {
	if !s.InTx() {
		return AuditHead{}, ErrNoTx
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, auditLockKey)
	b.Queue(`SELECT size, last_hash, last_at, compact FROM audit_heads ORDER BY size DESC LIMIT 1`)
	br := s.db.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return AuditHead{}, fmt.Errorf("store: lock audit log: %w", translate(err))
	}
	h, err := scanAuditHead(br.QueryRow())
	if err != nil {
		return AuditHead{}, fmt.Errorf("store: read audit head: %w", translate(err))
	}
	if err := br.Close(); err != nil {
		return AuditHead{}, fmt.Errorf("store: read audit head: %w", translate(err))
	}
	return h, nil
}

func scanAuditHead(row pgx.Row) (AuditHead, error) {
	var h AuditHead
	var at *time.Time
	if err := row.Scan(&h.Size, &h.LastHash, &at, &h.Compact); err != nil {
		return h, err
	}
	if at != nil {
		h.LastAt = *at
	}
	return h, nil
}

// AuditHead returns the newest committed head without locking.
func (s *Store) AuditHead(ctx context.Context) (AuditHead, error) {
	h, err := scanAuditHead(s.db.QueryRow(ctx, `SELECT size, last_hash, last_at, compact FROM audit_heads ORDER BY size DESC LIMIT 1`))
	if err != nil {
		return h, fmt.Errorf("store: read audit head: %w", translate(err))
	}
	return h, nil
}

// AuditAppend is what one append transaction writes.
type AuditAppend struct {
	Entries []AuditEntry
	Nodes   []AuditNode
	Head    AuditHead // the head after the append
	Key     AuditKey  // recorded when new; empty ID: none
}

// AppendAudit takes the audit append lock, reads the head, calls build to
// compute what to write from it, and writes it: inside the Store's
// transaction when it has one (the lock is then held until that
// transaction ends), else in a transaction of its own that costs two round
// trips: BEGIN, (the leader fence of a Fenced store,) lock and head read in
// one pipeline, the inserts and COMMIT
// in the next (and a COPY of the entries between them for large appends).
// Nothing is written when build fails.
func (s *Store) AppendAudit(ctx context.Context, build func(AuditHead) (AuditAppend, error)) error {
	if s.InTx() {
		head, err := s.lockAuditHead(ctx)
		if err != nil {
			return err
		}
		a, err := build(head)
		if err != nil {
			return err
		}
		n := len(a.Entries)
		if err := copyAuditEntries(ctx, s.db, &a); err != nil {
			return err
		}
		br := s.db.SendBatch(ctx, auditInsertBatch(a, false))
		if err := br.Close(); err != nil {
			return fmt.Errorf("store: append %d audit entries: %w", n, translate(err))
		}
		return nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: append audit entries: %w", translate(err))
	}
	// A connection left inside a transaction (by an error below) is
	// closed, not reused, when released.
	defer conn.Release()
	rollback := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(rctx, "ROLLBACK")
	}
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	if s.fence != 0 {
		// As Tx does for a fenced Store: a replica that is no longer the
		// leader appends nothing.
		b.Queue(`SELECT epoch FROM leadership WHERE id = 1 FOR SHARE`)
	}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, auditLockKey)
	b.Queue(`SELECT size, last_hash, last_at, compact FROM audit_heads ORDER BY size DESC LIMIT 1`)
	br := conn.SendBatch(ctx, b)
	_, err = br.Exec()
	var epoch int64
	if err == nil && s.fence != 0 {
		err = br.QueryRow().Scan(&epoch)
	}
	if err == nil {
		_, err = br.Exec()
	}
	var head AuditHead
	if err == nil {
		head, err = scanAuditHead(br.QueryRow())
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rollback()
		return fmt.Errorf("store: lock audit log: %w", translate(err))
	}
	if s.fence != 0 && epoch != s.fence {
		rollback()
		return fmt.Errorf("%w (epoch %d, now %d)", ErrFenced, s.fence, epoch)
	}
	a, err := build(head)
	if err != nil {
		rollback()
		return err
	}
	n := len(a.Entries)
	if err := copyAuditEntries(ctx, conn, &a); err != nil {
		rollback()
		return err
	}
	if err := conn.SendBatch(ctx, auditInsertBatch(a, true)).Close(); err != nil {
		rollback()
		return fmt.Errorf("store: append %d audit entries: %w", n, translate(err))
	}
	return nil
}

// copyMinEntries is the batch size from which entries go in by COPY: a
// round trip more than an INSERT in the pipeline, but PostgreSQL takes
// rows by COPY at about half the cost per row.
const copyMinEntries = 32

// copyAuditEntries inserts the entries of a large append by COPY and
// leaves none in a for the pipelined INSERT.
func copyAuditEntries(ctx context.Context, db interface {
	CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error)
}, a *AuditAppend) error {
	if len(a.Entries) < copyMinEntries {
		return nil
	}
	es := a.Entries
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(es) {
			return nil, nil
		}
		e := es[i]
		i++
		return []any{e.Seq, e.At, e.ActorID, e.Event, e.Entry, e.PrevHash, e.Hash, e.KeyID, e.Signature}, nil
	})
	if _, err := db.CopyFrom(ctx, pgx.Identifier{"audit_entries"},
		[]string{"seq", "at", "actor_id", "event", "entry", "prev_hash", "hash", "key_id", "signature"}, src); err != nil {
		return fmt.Errorf("store: append %d audit entries: %w", len(es), translate(err))
	}
	a.Entries = nil
	return nil
}

// auditInsertBatch queues the inserts of an append, and COMMIT when asked.
func auditInsertBatch(a AuditAppend, commit bool) *pgx.Batch {
	n := len(a.Entries)
	seqs := make([]int64, n)
	ats := make([]time.Time, n)
	actors := make([]string, n)
	events := make([]string, n)
	bodies := make([][]byte, n)
	prevs := make([][]byte, n)
	hashes := make([][]byte, n)
	keyIDs := make([]string, n)
	sigs := make([][]byte, n)
	for i, e := range a.Entries {
		seqs[i], ats[i], actors[i], events[i] = e.Seq, e.At, e.ActorID, e.Event
		bodies[i], prevs[i], hashes[i], keyIDs[i], sigs[i] = e.Entry, e.PrevHash, e.Hash, e.KeyID, e.Signature
	}
	b := &pgx.Batch{}
	if a.Key.ID != "" {
		b.Queue(`INSERT INTO audit_keys (id, algorithm, public_key) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
			a.Key.ID, a.Key.Algorithm, a.Key.PublicKey)
	}
	if n > 0 {
		b.Queue(`INSERT INTO audit_entries (`+auditEntryColumns+`)
			SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[], $8::text[], $9::bytea[])`,
			seqs, ats, actors, events, bodies, prevs, hashes, keyIDs, sigs)
	}
	if len(a.Nodes) > 0 {
		levels := make([]int16, len(a.Nodes))
		idxs := make([]int64, len(a.Nodes))
		nh := make([][]byte, len(a.Nodes))
		for i, nd := range a.Nodes {
			levels[i], idxs[i], nh[i] = int16(nd.Level), nd.Index, nd.Hash
		}
		b.Queue(`INSERT INTO audit_tree_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])`,
			levels, idxs, nh)
	}
	var lastAt any
	if !a.Head.LastAt.IsZero() {
		lastAt = a.Head.LastAt
	}
	b.Queue(`INSERT INTO audit_heads (size, last_hash, last_at, compact) VALUES ($1, $2, $3, $4)`,
		a.Head.Size, a.Head.LastHash, lastAt, a.Head.Compact)
	if commit {
		b.Queue(`COMMIT`)
	}
	return b
}

// AuditOrigin is the log's origin, the first line of its checkpoints.
func (s *Store) AuditOrigin(ctx context.Context) (string, error) {
	var origin string
	if err := s.db.QueryRow(ctx, `SELECT origin FROM audit_log`).Scan(&origin); err != nil {
		return "", fmt.Errorf("store: audit origin: %w", translate(err))
	}
	return origin, nil
}

// AuditEntries returns up to limit entries with seq >= from, in seq order.
func (s *Store) AuditEntries(ctx context.Context, from int64, limit int) ([]AuditEntry, error) {
	rows, err := s.db.Query(ctx, `SELECT `+auditEntryColumns+` FROM audit_entries WHERE seq >= $1 ORDER BY seq LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("store: audit entries from %d: %w", from, translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) { return scanAuditEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("store: audit entries from %d: %w", from, translate(err))
	}
	return out, nil
}

// ScanAuditEntries streams the entries with seq >= from in seq order, in
// batches of up to batch entries, to fn. It must run in a transaction
// (AuditSnapshot), whose statement timeout it lifts for the scan: a
// verification of millions of entries is one long query, bounded by ctx.
// The batches fn receives are its own.
func (s *Store) ScanAuditEntries(ctx context.Context, from int64, batch int, fn func([]AuditEntry) error) error {
	if !s.InTx() {
		return ErrNoTx
	}
	if _, err := s.db.Exec(ctx, `SET LOCAL statement_timeout = 0`); err != nil {
		return fmt.Errorf("store: scan audit entries: %w", translate(err))
	}
	rows, err := s.db.Query(ctx, `SELECT `+auditEntryColumns+` FROM audit_entries WHERE seq >= $1 ORDER BY seq`,
		pgx.QueryResultFormats{pgx.BinaryFormatCode}, from)
	if err != nil {
		return fmt.Errorf("store: scan audit entries: %w", translate(err))
	}
	defer rows.Close()
	out := make([]AuditEntry, 0, batch)
	var arena []byte
	// cp copies a raw value into the batch's arena, one allocation per
	// batch instead of one per value.
	cp := func(b []byte) []byte {
		if cap(arena)-len(arena) < len(b) {
			arena = make([]byte, 0, max(256<<10, len(b)))
		}
		start := len(arena)
		arena = append(arena, b...)
		return arena[start:len(arena):len(arena)]
	}
	// Event types and key ids repeat from row to row: reuse the string.
	var lastEvent, lastKey string
	same := func(last *string, b []byte) string {
		if string(b) != *last {
			*last = string(b)
		}
		return *last
	}
	for rows.Next() {
		v := rows.RawValues()
		if len(v) != 9 || len(v[0]) != 8 || len(v[1]) != 8 {
			return fmt.Errorf("store: scan audit entries: unexpected row encoding")
		}
		out = append(out, AuditEntry{
			Seq:       int64(binary.BigEndian.Uint64(v[0])),
			At:        pgEpoch.Add(time.Duration(int64(binary.BigEndian.Uint64(v[1]))) * time.Microsecond),
			ActorID:   string(v[2]),
			Event:     same(&lastEvent, v[3]),
			Entry:     cp(v[4]),
			PrevHash:  cp(v[5]),
			Hash:      cp(v[6]),
			KeyID:     same(&lastKey, v[7]),
			Signature: cp(v[8]),
		})
		if len(out) == batch {
			if err := fn(out); err != nil {
				return err
			}
			out = make([]AuditEntry, 0, batch)
			arena = nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: scan audit entries: %w", translate(err))
	}
	if len(out) > 0 {
		return fn(out)
	}
	return nil
}

// pgEpoch is where PostgreSQL's binary timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// AuditEntriesFiltered returns up to limit entries with seq > after that
// match f, in seq order.
func (s *Store) AuditEntriesFiltered(ctx context.Context, f AuditFilter, after int64, limit int) ([]AuditEntry, error) {
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
		WHERE seq > $1 AND ($2::bigint = 0 OR seq < $2)
		  AND ((($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)
		        AND ($5 = '' OR actor_id = $5) AND ($6 = '' OR event = $6))
		       OR event = ANY($7::text[]))
		ORDER BY seq LIMIT $8`, after, f.Below, since, until, f.ActorID, f.Event, always, limit)
	if err != nil {
		return nil, fmt.Errorf("store: filtered audit entries: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) { return scanAuditEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("store: filtered audit entries: %w", translate(err))
	}
	return out, nil
}

// AuditEntryBytes returns the canonical bytes of the entries with
// from <= seq < to, in seq order.
func (s *Store) AuditEntryBytes(ctx context.Context, from, to int64) ([][]byte, error) {
	rows, err := s.db.Query(ctx, `SELECT entry FROM audit_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq`, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: audit entries %d..%d: %w", from, to, translate(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("store: audit entries %d..%d: %w", from, to, translate(err))
	}
	return out, nil
}

// AuditNodes returns the stored tree nodes of a level with from <= idx < to,
// in index order.
func (s *Store) AuditNodes(ctx context.Context, level int, from, to int64) ([][]byte, error) {
	rows, err := s.db.Query(ctx, `SELECT hash FROM audit_tree_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx`, level, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: audit tree nodes at level %d: %w", level, translate(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("store: audit tree nodes at level %d: %w", level, translate(err))
	}
	return out, nil
}

// AuditKeys lists the public keys recorded with the log, oldest first.
func (s *Store) AuditKeys(ctx context.Context) ([]AuditKey, error) {
	rows, err := s.db.Query(ctx, `SELECT id, algorithm, public_key, added_at FROM audit_keys ORDER BY added_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: audit keys: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditKey, error) {
		var k AuditKey
		err := r.Scan(&k.ID, &k.Algorithm, &k.PublicKey, &k.AddedAt)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: audit keys: %w", translate(err))
	}
	return out, nil
}

// AddAuditKey records a public key; recording a known key is a no-op.
func (s *Store) AddAuditKey(ctx context.Context, k AuditKey) error {
	if _, err := s.db.Exec(ctx, `INSERT INTO audit_keys (id, algorithm, public_key) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
		k.ID, k.Algorithm, k.PublicKey); err != nil {
		return fmt.Errorf("store: record audit key %.12s: %w", k.ID, translate(err))
	}
	return nil
}

// AddAuditCheckpoint records a signed checkpoint.
func (s *Store) AddAuditCheckpoint(ctx context.Context, cp AuditCheckpoint) (AuditCheckpoint, error) {
	err := s.db.QueryRow(ctx, `INSERT INTO audit_checkpoints (size, root, note, key_id) VALUES ($1, $2, $3, $4)
		RETURNING id, created_at`, cp.Size, cp.Root, cp.Note, cp.KeyID).Scan(&cp.ID, &cp.CreatedAt)
	if err != nil {
		return cp, fmt.Errorf("store: record audit checkpoint at size %d: %w", cp.Size, translate(err))
	}
	return cp, nil
}

// LatestAuditCheckpoint returns the checkpoint of the largest tree size
// (the newest of those), or ErrNotFound.
func (s *Store) LatestAuditCheckpoint(ctx context.Context) (AuditCheckpoint, error) {
	var cp AuditCheckpoint
	err := s.db.QueryRow(ctx, `SELECT id, size, root, note, key_id, created_at FROM audit_checkpoints ORDER BY size DESC, id DESC LIMIT 1`).
		Scan(&cp.ID, &cp.Size, &cp.Root, &cp.Note, &cp.KeyID, &cp.CreatedAt)
	if err != nil {
		return cp, fmt.Errorf("store: latest audit checkpoint: %w", translate(err))
	}
	return cp, nil
}

// AuditSnapshot runs fn in a read-only REPEATABLE READ transaction, so every
// read in fn sees the log as of one moment (verification and export read it
// in many queries). Inside a transaction already, fn runs in that one.
func (s *Store) AuditSnapshot(ctx context.Context, fn func(*Store) error) error {
	if s.InTx() {
		return fn(s)
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("store: begin snapshot: %w", translate(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(&Store{pool: s.pool, db: tx, log: s.log}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: end snapshot: %w", translate(err))
	}
	return nil
}
