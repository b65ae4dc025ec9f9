package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// EnsureChannelCursors makes the cursors of channels seen for the first
// time, all at once: they start where the furthest existing channel
// stands, or, before any, where the single notifier of earlier versions
// stood. An added (or renamed) channel therefore starts from now and does
// not replay the log; channels configured together start together.
func (s *Store) EnsureChannelCursors(ctx context.Context, channels []string) error {
	if _, err := s.db.Exec(ctx, `INSERT INTO notification_channel_cursors (channel, next_seq)
		SELECT c, greatest((SELECT next_seq FROM notification_cursor WHERE id = 1),
			coalesce((SELECT max(next_seq) FROM notification_channel_cursors), 0))
		FROM unnest($1::text[]) AS c
		ON CONFLICT (channel) DO NOTHING`, channels); err != nil {
		return fmt.Errorf("store: notification channel cursors: %w", translate(err))
	}
	return nil
}

// ChannelCursor is the next audit seq a notification channel reads (made
// as EnsureChannelCursors does when the channel is new).
func (s *Store) ChannelCursor(ctx context.Context, channel string) (int64, error) {
	if err := s.EnsureChannelCursors(ctx, []string{channel}); err != nil {
		return 0, err
	}
	var next int64
	if err := s.db.QueryRow(ctx, `SELECT next_seq FROM notification_channel_cursors WHERE channel = $1`, channel).Scan(&next); err != nil {
		return 0, fmt.Errorf("store: notification channel cursor %s: %w", channel, translate(err))
	}
	return next, nil
}

// SetChannelCursor moves a channel's cursor forward (never back).
func (s *Store) SetChannelCursor(ctx context.Context, channel string, next int64) error {
	if _, err := s.db.Exec(ctx, `UPDATE notification_channel_cursors SET next_seq = greatest(next_seq, $2), updated_at = now()
		WHERE channel = $1`, channel, next); err != nil {
		return fmt.Errorf("store: notification channel cursor %s: %w", channel, translate(err))
	}
	return nil
}

// InvalidPlaybook is a playbook file on the branch that is not a valid
// playbook, with its located problems (JSON: [{path,line,col,message}]).
type InvalidPlaybook struct {
	Path      string
	CommitSHA string
	Problems  json.RawMessage
	Since     time.Time
}

// SetInvalidPlaybook records (or replaces) the problems of the file at
// path as of commit.
func (s *Store) SetInvalidPlaybook(ctx context.Context, path, commit string, problems json.RawMessage) error {
	if _, err := s.db.Exec(ctx, `INSERT INTO invalid_playbooks (path, commit_sha, problems) VALUES ($1, $2, $3)
		ON CONFLICT (path) DO UPDATE SET commit_sha = EXCLUDED.commit_sha, problems = EXCLUDED.problems, since = now()`,
		path, commit, problems); err != nil {
		return fmt.Errorf("store: record invalid playbook %s: %w", path, translate(err))
	}
	return nil
}

// ClearInvalidPlaybook forgets the problems of the file at path (a later
// commit fixed or deleted it).
func (s *Store) ClearInvalidPlaybook(ctx context.Context, path string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM invalid_playbooks WHERE path = $1`, path); err != nil {
		return fmt.Errorf("store: clear invalid playbook %s: %w", path, translate(err))
	}
	return nil
}

// InvalidPlaybooks lists the invalid playbook files, by path.
func (s *Store) InvalidPlaybooks(ctx context.Context) ([]InvalidPlaybook, error) {
	rows, err := s.db.Query(ctx, `SELECT path, commit_sha, problems, since FROM invalid_playbooks ORDER BY path`)
	if err != nil {
		return nil, fmt.Errorf("store: invalid playbooks: %w", translate(err))
	}
	defer rows.Close()
	var out []InvalidPlaybook
	for rows.Next() {
		var p InvalidPlaybook
		var raw []byte
		if err := rows.Scan(&p.Path, &p.CommitSHA, &raw, &p.Since); err != nil {
			return nil, fmt.Errorf("store: invalid playbooks: %w", translate(err))
		}
		p.Problems = raw
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: invalid playbooks: %w", translate(err))
	}
	return out, nil
}
