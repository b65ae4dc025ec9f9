package store

import (
	"context"
	"fmt"
)

// AuditIdempotencySeq is the seq of the entry appended with an idempotency
// key (writ audit append --idempotency-key); ErrNotFound when the key was
// never used.
func (s *Store) AuditIdempotencySeq(ctx context.Context, key string) (int64, error) {
	var seq int64
	if err := s.db.QueryRow(ctx, `SELECT seq FROM audit_idempotency WHERE key = $1`, key).Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: audit idempotency key: %w", translate(err))
	}
	return seq, nil
}

// AddAuditIdempotency records that key appended the entry seq. Call it in
// the append's transaction. ErrConflict when the key (or the seq) is
// already recorded: a concurrent append with the same key committed first.
func (s *Store) AddAuditIdempotency(ctx context.Context, key string, seq int64) error {
	if _, err := s.db.Exec(ctx, `INSERT INTO audit_idempotency (key, seq) VALUES ($1, $2)`, key, seq); err != nil {
		return fmt.Errorf("store: record audit idempotency key: %w", translate(err))
	}
	return nil
}
