package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// The reconciler's position in the branch (repo_state) and the commits it
// processed (processed_commits).

// RepoState is the reconciler's position in the branch.
type RepoState struct {
	Branch       string
	ProcessedSHA string // last commit whose changes were processed
	AdoptedSHA   string // commit whose policies/ and .writ/ are in force
	ObservedHead string
	UpdatedAt    time.Time
}

// RepoState loads the position; ErrNotFound before the first start.
func (s *Store) RepoState(ctx context.Context) (*RepoState, error) {
	var r RepoState
	err := s.db.QueryRow(ctx, `SELECT branch, processed_sha, adopted_sha, observed_head, updated_at FROM repo_state WHERE id = 1`).
		Scan(&r.Branch, &r.ProcessedSHA, &r.AdoptedSHA, &r.ObservedHead, &r.UpdatedAt)
	if err != nil {
		return nil, fmt.Errorf("store: repository state: %w", translate(err))
	}
	return &r, nil
}

// SaveRepoState writes the position.
func (s *Store) SaveRepoState(ctx context.Context, r RepoState) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO repo_state (id, branch, processed_sha, adopted_sha, observed_head, updated_at)
		VALUES (1, $1, $2, $3, $4, now())
		ON CONFLICT (id) DO UPDATE SET branch = $1, processed_sha = $2, adopted_sha = $3, observed_head = $4, updated_at = now()`,
		r.Branch, r.ProcessedSHA, r.AdoptedSHA, r.ObservedHead)
	if err != nil {
		return fmt.Errorf("store: save repository state: %w", translate(err))
	}
	return nil
}

// SetObservedHead records the branch head last seen (for status), without
// moving the processed position.
func (s *Store) SetObservedHead(ctx context.Context, head string) error {
	_, err := s.db.Exec(ctx, `UPDATE repo_state SET observed_head = $1, updated_at = now() WHERE id = 1`, head)
	if err != nil {
		return fmt.Errorf("store: observed head: %w", translate(err))
	}
	return nil
}

// RecordCommit marks a commit processed.
func (s *Store) RecordCommit(ctx context.Context, sha, parent, subject string, summary any) error {
	b, err := json.Marshal(summary)
	if err != nil {
		return fmt.Errorf("store: commit summary: %w", err)
	}
	_, err = s.db.Exec(ctx, `INSERT INTO processed_commits (sha, parent, subject, summary) VALUES ($1, $2, $3, $4)
		ON CONFLICT (sha) DO UPDATE SET summary = $4, processed_at = now()`, sha, parent, subject, b)
	if err != nil {
		return fmt.Errorf("store: record commit %s: %w", sha, translate(err))
	}
	return nil
}
