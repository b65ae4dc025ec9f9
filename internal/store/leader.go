package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrFenced means a newer leader has taken over: this process's epoch is
// stale and it must stop writing.
var ErrFenced = errors.New("fenced: another replica is the leader now")

// leaderLockKey is the advisory lock key of leadership ("writ" in ASCII).
const leaderLockKey = 0x77726974

// Leadership is the leader's hold on its dedicated connection.
type Leadership struct {
	conn   *pgxpool.Conn
	Epoch  int64
	Holder string
}

// TryLead tries to take leadership without waiting: it takes the advisory
// lock on a dedicated connection and bumps the epoch. nil, nil means
// another replica leads.
func (s *Store) TryLead(ctx context.Context, holder string) (*Leadership, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: acquire leader connection: %w", translate(err))
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, leaderLockKey).Scan(&got); err != nil {
		conn.Release()
		return nil, fmt.Errorf("store: leader lock: %w", translate(err))
	}
	if !got {
		conn.Release()
		return nil, nil
	}
	var epoch int64
	err = conn.QueryRow(ctx, `UPDATE leadership SET epoch = epoch + 1, holder = $1, acquired_at = now() WHERE id = 1 RETURNING epoch`, holder).Scan(&epoch)
	if err != nil {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, leaderLockKey)
		conn.Release()
		return nil, fmt.Errorf("store: bump leader epoch: %w", translate(err))
	}
	return &Leadership{conn: conn, Epoch: epoch, Holder: holder}, nil
}

// Check reports whether the leadership still holds: its connection is alive
// and the epoch is still its own.
func (l *Leadership) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var epoch int64
	if err := l.conn.QueryRow(ctx, `SELECT epoch FROM leadership WHERE id = 1`).Scan(&epoch); err != nil {
		return fmt.Errorf("store: leader connection: %w", translate(err))
	}
	if epoch != l.Epoch {
		return fmt.Errorf("%w (epoch %d, now %d)", ErrFenced, l.Epoch, epoch)
	}
	return nil
}

// Release gives leadership up.
func (l *Leadership) Release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, leaderLockKey)
	l.conn.Release()
}

// LeaderInfo is who leads, as recorded.
type LeaderInfo struct {
	Epoch      int64
	Holder     string
	AcquiredAt time.Time
}

// Leader reads the recorded leader.
func (s *Store) Leader(ctx context.Context) (LeaderInfo, error) {
	var li LeaderInfo
	err := s.db.QueryRow(ctx, `SELECT epoch, holder, acquired_at FROM leadership WHERE id = 1`).Scan(&li.Epoch, &li.Holder, &li.AcquiredAt)
	if err != nil {
		return li, fmt.Errorf("store: leader: %w", translate(err))
	}
	return li, nil
}

// Fenced returns a Store whose every transaction first checks that epoch is
// still the leader's (holding the leadership row FOR SHARE, so a new
// leader's epoch bump waits for this transaction and fences every later
// one). Writes outside transactions are not fenced: the engine makes none
// that matter.
func (s *Store) Fenced(epoch int64) *Store {
	c := *s
	c.fence = epoch
	return &c
}

func (s *Store) checkFence(ctx context.Context) error {
	if s.fence == 0 {
		return nil
	}
	var epoch int64
	if err := s.db.QueryRow(ctx, `SELECT epoch FROM leadership WHERE id = 1 FOR SHARE`).Scan(&epoch); err != nil {
		return fmt.Errorf("store: fence: %w", translate(err))
	}
	if epoch != s.fence {
		return fmt.Errorf("%w (epoch %d, now %d)", ErrFenced, s.fence, epoch)
	}
	return nil
}

// FenceLeader bumps the epoch without taking the lock: the current leader
// stops writing at once and gives leadership up, and the replicas elect a
// leader again. For operators (a stuck leader) and tests.
func (s *Store) FenceLeader(ctx context.Context, by string) (int64, error) {
	var epoch int64
	err := s.db.QueryRow(ctx, `UPDATE leadership SET epoch = epoch + 1, holder = $1, acquired_at = now() WHERE id = 1 RETURNING epoch`,
		"fenced by "+by).Scan(&epoch)
	if err != nil {
		return 0, fmt.Errorf("store: fence leader: %w", translate(err))
	}
	return epoch, nil
}

// NotificationCursor is the next audit seq the notifier reads.
func (s *Store) NotificationCursor(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.db.QueryRow(ctx, `SELECT next_seq FROM notification_cursor WHERE id = 1`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: notification cursor: %w", translate(err))
	}
	return seq, nil
}

// SetNotificationCursor moves the notifier's cursor forward (never back).
func (s *Store) SetNotificationCursor(ctx context.Context, next int64) error {
	if _, err := s.db.Exec(ctx, `UPDATE notification_cursor SET next_seq = greatest(next_seq, $1) WHERE id = 1`, next); err != nil {
		return fmt.Errorf("store: notification cursor: %w", translate(err))
	}
	return nil
}

// CountWaitingExecutions is how many operations wait for approvals or a
// decision (for the approvals-pending gauge).
func (s *Store) CountWaitingExecutions(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM executions WHERE state = 'waiting'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count waiting executions: %w", translate(err))
	}
	return n, nil
}

// NudgeChannel is the PostgreSQL notification channel replicas use to wake
// the leader (an approval arrived, an executor started a playbook).
const NudgeChannel = "writ_nudge"

// NotifyNudge wakes the leader, wherever it runs.
func (s *Store) NotifyNudge(ctx context.Context) error {
	if _, err := s.db.Exec(ctx, `SELECT pg_notify($1, '')`, NudgeChannel); err != nil {
		return fmt.Errorf("store: notify: %w", translate(err))
	}
	return nil
}

// ListenNudges calls fn for every nudge until ctx is done, on a dedicated
// connection.
func (s *Store) ListenNudges(ctx context.Context, fn func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: listen: %w", translate(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN `+NudgeChannel); err != nil {
		return fmt.Errorf("store: listen: %w", translate(err))
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `UNLISTEN `+NudgeChannel) }()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("store: listen: %w", translate(err))
		}
		fn()
	}
}
