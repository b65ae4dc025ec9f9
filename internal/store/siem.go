package store

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// SIEMCursor is a SIEM destination's position in the audit log: Next is the
// next seq to send, LastHash the hash of entry Next-1 (nil when Next is 0).
type SIEMCursor struct {
	Destination string
	Next        int64
	LastHash    []byte
	UpdatedAt   time.Time
}

// Same reports whether c and o are the same position.
func (c SIEMCursor) Same(o SIEMCursor) bool {
	return c.Destination == o.Destination && c.Next == o.Next && bytes.Equal(c.LastHash, o.LastHash)
}

// SIEMCursor returns the destination's cursor, made at the log's start when
// the destination is new.
func (s *Store) SIEMCursor(ctx context.Context, destination string) (SIEMCursor, error) {
	c := SIEMCursor{Destination: destination}
	err := s.db.QueryRow(ctx, `WITH ins AS (
			INSERT INTO siem_cursors (destination) VALUES ($1) ON CONFLICT (destination) DO NOTHING
			RETURNING next_seq, last_hash, updated_at)
		SELECT next_seq, last_hash, updated_at FROM ins
		UNION ALL
		SELECT next_seq, last_hash, updated_at FROM siem_cursors WHERE destination = $1
		LIMIT 1`, destination).Scan(&c.Next, &c.LastHash, &c.UpdatedAt)
	if err != nil {
		return c, fmt.Errorf("store: SIEM cursor %s: %w", destination, translate(err))
	}
	return c, nil
}

// MoveSIEMCursor moves a destination's cursor from one position to another
// (forward after an acknowledged delivery, back after the log was found
// rewritten under it). It moves only if the cursor is still at from and
// reports whether it did: false means another process moved it (a replica
// that led before this one), and the caller reads it again.
func (s *Store) MoveSIEMCursor(ctx context.Context, from, to SIEMCursor) (bool, error) {
	tag, err := s.db.Exec(ctx, `UPDATE siem_cursors SET next_seq = $3, last_hash = $4, updated_at = now()
		WHERE destination = $1 AND next_seq = $2 AND last_hash IS NOT DISTINCT FROM $5`,
		from.Destination, from.Next, to.Next, to.LastHash, from.LastHash)
	if err != nil {
		return false, fmt.Errorf("store: move SIEM cursor %s: %w", from.Destination, translate(err))
	}
	return tag.RowsAffected() == 1, nil
}
