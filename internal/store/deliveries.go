package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The durable inbox of forge webhooks: every accepted delivery is stored
// here before the forge is answered, and processed in order from here.

// Delivery states.
const (
	DeliveryQueued = "queued"
	DeliveryDone   = "done"
	DeliveryFailed = "failed"
)

// ErrDeliveryReplayed is returned by InsertDelivery for a body already
// stored under another delivery id of the same forge: a replay (GitHub's
// signature and GitLab's token cover the body, not the delivery id). It is
// an ErrConflict.
var ErrDeliveryReplayed = fmt.Errorf("%w: the body was stored before under another delivery id", ErrConflict)

// Delivery is one accepted webhook delivery of a forge, in the durable
// inbox every forge shares (forge_deliveries).
type Delivery struct {
	ID         int64
	Forge      string // github, gitlab
	DeliveryID string // X-GitHub-Delivery, X-Gitlab-Event-UUID
	Event      string // X-GitHub-Event; GitLab's object_kind
	Action     string
	Payload    []byte
	// BodySHA256 is the hex sha256 of the signed body as received (empty
	// only for some deliveries stored before migration 007).
	BodySHA256  string
	ReceivedAt  time.Time
	State       string
	Attempts    int
	NotBefore   time.Time
	ProcessedAt *time.Time
	Outcome     string
	LastError   string
}

const deliveryColumns = `id, forge, delivery_id, event, action, payload, coalesce(body_sha256, ''), received_at, state, attempts, not_before,
	processed_at, outcome, last_error`

func scanDelivery(row pgx.Row) (*Delivery, error) {
	var d Delivery
	err := row.Scan(&d.ID, &d.Forge, &d.DeliveryID, &d.Event, &d.Action, &d.Payload, &d.BodySHA256, &d.ReceivedAt, &d.State, &d.Attempts,
		&d.NotBefore, &d.ProcessedAt, &d.Outcome, &d.LastError)
	if err != nil {
		return nil, translate(err)
	}
	return &d, nil
}

// InsertDelivery stores a delivery of d.Forge once. A delivery id already
// stored for that forge (a redelivery) is not stored again: created is false and the stored row's
// id is returned. A body already stored under another delivery id (a
// replay) is not stored either: the error is ErrDeliveryReplayed, with the
// id of the row that holds the body. The delivery is due at now (nil: the
// database's clock; see ClaimDelivery).
func (s *Store) InsertDelivery(ctx context.Context, now *time.Time, d Delivery) (id int64, created bool, err error) {
	err = s.db.QueryRow(ctx, `
		INSERT INTO forge_deliveries (forge, delivery_id, event, action, payload, body_sha256, not_before)
		VALUES ($7, $1, $2, $3, $4, $5, coalesce($6, now()))
		ON CONFLICT DO NOTHING
		RETURNING id`, d.DeliveryID, d.Event, d.Action, d.Payload, d.BodySHA256, now, d.Forge).Scan(&id)
	switch {
	case err == nil:
		return id, true, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return 0, false, fmt.Errorf("store: insert delivery %s: %w", d.DeliveryID, translate(err))
	}
	// A conflict on the delivery id, the body or both: the delivery id
	// decides, so that a forge's redelivery stays a duplicate.
	var storedAs string
	err = s.db.QueryRow(ctx, `
		SELECT id, delivery_id FROM forge_deliveries WHERE forge = $3 AND (delivery_id = $1 OR body_sha256 = $2)
		ORDER BY delivery_id = $1 DESC LIMIT 1`, d.DeliveryID, d.BodySHA256, d.Forge).Scan(&id, &storedAs)
	switch {
	case err != nil:
		return 0, false, fmt.Errorf("store: delivery %s: %w", d.DeliveryID, translate(err))
	case storedAs != d.DeliveryID:
		return id, false, fmt.Errorf("store: delivery %s: stored as delivery %s: %w", d.DeliveryID, storedAs, ErrDeliveryReplayed)
	}
	return id, false, nil
}

// ClaimDelivery takes the forge's oldest queued delivery that is due, counts the
// attempt and leases it for lease: if the processor dies before finishing
// it, it is claimed again once the lease runs out. ErrNotFound when none is
// due.
//
// now is the time the queue is read at; nil means the database's clock,
// which every replica shares (production). Tests pass a clock of their own
// so that leases and retry delays never depend on how fast the machine is.
func (s *Store) ClaimDelivery(ctx context.Context, forge string, now *time.Time, lease time.Duration) (*Delivery, error) {
	d, err := scanDelivery(s.db.QueryRow(ctx, `
		UPDATE forge_deliveries SET attempts = attempts + 1,
			not_before = coalesce($2, now()) + $1::bigint * interval '1 millisecond'
		WHERE id = (
			SELECT id FROM forge_deliveries
			WHERE forge = $3 AND state = 'queued' AND not_before <= coalesce($2, now())
			ORDER BY id
			FOR UPDATE SKIP LOCKED LIMIT 1)
		RETURNING `+deliveryColumns, lease.Milliseconds(), now, forge))
	if err != nil {
		return nil, fmt.Errorf("store: claim delivery: %w", err)
	}
	return d, nil
}

// FinishDelivery marks a delivery processed with what came of it.
func (s *Store) FinishDelivery(ctx context.Context, id int64, outcome string) error {
	tag, err := s.db.Exec(ctx, `UPDATE forge_deliveries SET state = 'done', processed_at = now(), outcome = $2, last_error = ''
		WHERE id = $1`, id, outcome)
	if err != nil {
		return fmt.Errorf("store: finish delivery %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: finish delivery %d: %w", id, ErrNotFound)
	}
	return nil
}

// RetryDelivery keeps a delivery queued, to be tried again after a delay
// from now (nil: the database's clock), recording why it failed; with
// giveUp it is marked failed for good.
func (s *Store) RetryDelivery(ctx context.Context, now *time.Time, id int64, lastError string, after time.Duration, giveUp bool) error {
	state := DeliveryQueued
	if giveUp {
		state = DeliveryFailed
	}
	tag, err := s.db.Exec(ctx, `UPDATE forge_deliveries SET state = $2, last_error = $3,
			not_before = coalesce($5, now()) + $4::bigint * interval '1 millisecond',
			processed_at = CASE WHEN $2 = 'failed' THEN now() END
		WHERE id = $1`, id, state, lastError, after.Milliseconds(), now)
	if err != nil {
		return fmt.Errorf("store: retry delivery %d: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: retry delivery %d: %w", id, ErrNotFound)
	}
	return nil
}

// DeliveryByGUID loads a forge's delivery by its delivery id.
func (s *Store) DeliveryByGUID(ctx context.Context, forge, guid string) (*Delivery, error) {
	d, err := scanDelivery(s.db.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM forge_deliveries WHERE forge = $1 AND delivery_id = $2`, forge, guid))
	if err != nil {
		return nil, fmt.Errorf("store: delivery %s: %w", guid, err)
	}
	return d, nil
}

// DeliveryCounts counts a forge's deliveries by state.
func (s *Store) DeliveryCounts(ctx context.Context, forge string) (map[string]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT state, count(*) FROM forge_deliveries WHERE forge = $1 GROUP BY state`, forge)
	if err != nil {
		return nil, fmt.Errorf("store: count deliveries: %w", translate(err))
	}
	defer rows.Close()
	out := map[string]int64{DeliveryQueued: 0, DeliveryDone: 0, DeliveryFailed: 0}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("store: count deliveries: %w", translate(err))
		}
		out[state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count deliveries: %w", translate(err))
	}
	return out, nil
}
