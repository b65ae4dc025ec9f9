package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditCosignature is a witness's cosignature of an audit checkpoint: one
// signature line over the checkpoint body of the tree (Size, Root).
type AuditCosignature struct {
	ID int64
	// Witness is the witness's configured name; WitnessKey its verifier
	// key as configured.
	Witness    string
	WitnessKey string
	Size       int64
	Root       []byte
	// Signature is the note signature line, "— <name> <base64>\n".
	Signature  string
	CosignedAt time.Time
	CreatedAt  time.Time
}

const auditCosignatureColumns = `id, witness, witness_key, size, root, signature, cosigned_at, created_at`

func scanAuditCosignature(r pgx.Row) (AuditCosignature, error) {
	var c AuditCosignature
	err := r.Scan(&c.ID, &c.Witness, &c.WitnessKey, &c.Size, &c.Root, &c.Signature, &c.CosignedAt, &c.CreatedAt)
	return c, err
}

// AddAuditCosignature records a witness's cosignature. A signature line
// recorded already is not recorded twice (no error).
func (s *Store) AddAuditCosignature(ctx context.Context, c AuditCosignature) error {
	_, err := s.db.Exec(ctx, `INSERT INTO audit_witness_cosignatures (witness, witness_key, size, root, signature, cosigned_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (signature) DO NOTHING`,
		c.Witness, c.WitnessKey, c.Size, c.Root, c.Signature, c.CosignedAt)
	if err != nil {
		return fmt.Errorf("store: record cosignature of witness %s at size %d: %w", c.Witness, c.Size, translate(err))
	}
	return nil
}

// LatestAuditCosignature returns the cosignature of the largest tree that
// the witness with verifier key witnessKey cosigned (its newest), or
// ErrNotFound.
func (s *Store) LatestAuditCosignature(ctx context.Context, witnessKey string) (AuditCosignature, error) {
	c, err := scanAuditCosignature(s.db.QueryRow(ctx, `SELECT `+auditCosignatureColumns+` FROM audit_witness_cosignatures
		WHERE witness_key = $1 ORDER BY size DESC, id DESC LIMIT 1`, witnessKey))
	if err != nil {
		return c, fmt.Errorf("store: latest cosignature of a witness: %w", translate(err))
	}
	return c, nil
}

// AuditCosignatures returns the cosignatures of the tree (size, root),
// oldest first.
func (s *Store) AuditCosignatures(ctx context.Context, size int64, root []byte) ([]AuditCosignature, error) {
	rows, err := s.db.Query(ctx, `SELECT `+auditCosignatureColumns+` FROM audit_witness_cosignatures
		WHERE size = $1 AND root = $2 ORDER BY id`, size, root)
	if err != nil {
		return nil, fmt.Errorf("store: cosignatures at size %d: %w", size, translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditCosignature, error) { return scanAuditCosignature(r) })
	if err != nil {
		return nil, fmt.Errorf("store: cosignatures at size %d: %w", size, translate(err))
	}
	return out, nil
}

// LatestAuditCosignatures returns, for each witness key that cosigned a
// checkpoint, the cosignature of the largest tree it cosigned.
func (s *Store) LatestAuditCosignatures(ctx context.Context) ([]AuditCosignature, error) {
	rows, err := s.db.Query(ctx, `SELECT DISTINCT ON (witness_key) `+auditCosignatureColumns+` FROM audit_witness_cosignatures
		ORDER BY witness_key, size DESC, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("store: latest cosignatures: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditCosignature, error) { return scanAuditCosignature(r) })
	if err != nil {
		return nil, fmt.Errorf("store: latest cosignatures: %w", translate(err))
	}
	return out, nil
}
