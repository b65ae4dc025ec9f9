package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Kinds of GitLab texts signed statements are read from.
const (
	GitLabNote        = "note"
	GitLabDescription = "description"
)

// ApprovalSourceGitLab is the approvals' source for statements read on
// GitLab.
const ApprovalSourceGitLab = "gitlab"

// GitLabMergeRequest is a merge request writ follows.
type GitLabMergeRequest struct {
	Project      string
	IID          int64
	State        string // open, closed, merged
	TargetBranch string
	HeadSHA      string
	Author       string
	// ReportNoteID is the note writ edits in place (0: none yet).
	ReportNoteID int64
	// ReportDigest is what the note holds.
	ReportDigest string
	UpdatedAt    time.Time
}

const mergeRequestColumns = `project, iid, state, target_branch, head_sha, author, report_note_id, report_digest, updated_at`

func scanMergeRequest(row pgx.Row) (*GitLabMergeRequest, error) {
	var m GitLabMergeRequest
	if err := row.Scan(&m.Project, &m.IID, &m.State, &m.TargetBranch, &m.HeadSHA, &m.Author, &m.ReportNoteID, &m.ReportDigest, &m.UpdatedAt); err != nil {
		return nil, translate(err)
	}
	return &m, nil
}

// SaveGitLabMergeRequest records a merge request's state, target, head and
// author; its report note is kept (see SaveGitLabReportNote).
func (s *Store) SaveGitLabMergeRequest(ctx context.Context, m GitLabMergeRequest) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO gitlab_merge_requests (project, iid, state, target_branch, head_sha, author)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (project, iid) DO UPDATE SET state = excluded.state, target_branch = excluded.target_branch,
			head_sha = CASE WHEN excluded.head_sha = '' THEN gitlab_merge_requests.head_sha ELSE excluded.head_sha END,
			author = CASE WHEN excluded.author = '' THEN gitlab_merge_requests.author ELSE excluded.author END,
			updated_at = now()`,
		m.Project, m.IID, m.State, m.TargetBranch, m.HeadSHA, m.Author)
	if err != nil {
		return fmt.Errorf("store: save merge request %s!%d: %w", m.Project, m.IID, translate(err))
	}
	return nil
}

// SaveGitLabReportNote records the note holding a merge request's report
// and what it holds.
func (s *Store) SaveGitLabReportNote(ctx context.Context, project string, iid, noteID int64, digest string) error {
	tag, err := s.db.Exec(ctx, `UPDATE gitlab_merge_requests SET report_note_id = $3, report_digest = $4, updated_at = now()
		WHERE project = $1 AND iid = $2`, project, iid, noteID, digest)
	if err != nil {
		return fmt.Errorf("store: save report note of %s!%d: %w", project, iid, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: report note of %s!%d: %w", project, iid, ErrNotFound)
	}
	return nil
}

// GitLabMergeRequestByIID loads a merge request.
func (s *Store) GitLabMergeRequestByIID(ctx context.Context, project string, iid int64) (*GitLabMergeRequest, error) {
	m, err := scanMergeRequest(s.db.QueryRow(ctx, `SELECT `+mergeRequestColumns+` FROM gitlab_merge_requests
		WHERE project = $1 AND iid = $2`, project, iid))
	if err != nil {
		return nil, fmt.Errorf("store: merge request %s!%d: %w", project, iid, err)
	}
	return m, nil
}

// OpenGitLabMergeRequests lists the open merge requests of a project,
// least recently updated first.
func (s *Store) OpenGitLabMergeRequests(ctx context.Context, project string, limit int) ([]*GitLabMergeRequest, error) {
	rows, err := s.db.Query(ctx, `SELECT `+mergeRequestColumns+` FROM gitlab_merge_requests
		WHERE project = $1 AND state = 'open' ORDER BY updated_at, iid LIMIT $2`, project, limit)
	if err != nil {
		return nil, fmt.Errorf("store: open merge requests of %s: %w", project, translate(err))
	}
	defer rows.Close()
	var out []*GitLabMergeRequest
	for rows.Next() {
		m, err := scanMergeRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("store: open merge requests of %s: %w", project, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: open merge requests of %s: %w", project, translate(err))
	}
	return out, nil
}

// GitLabCommitStatus is the last commit status writ set on a head commit.
type GitLabCommitStatus struct {
	Project      string
	HeadSHA      string
	Name         string
	MergeRequest int64
	State        string // pending, running, success, failed, canceled
	Digest       string
	UpdatedAt    time.Time
}

// GitLabCommitStatusFor loads the last status set on a head commit.
func (s *Store) GitLabCommitStatusFor(ctx context.Context, project, headSHA, name string) (*GitLabCommitStatus, error) {
	var c GitLabCommitStatus
	err := s.db.QueryRow(ctx, `SELECT project, head_sha, name, merge_request, state, digest, updated_at FROM gitlab_commit_statuses
		WHERE project = $1 AND head_sha = $2 AND name = $3`, project, headSHA, name).
		Scan(&c.Project, &c.HeadSHA, &c.Name, &c.MergeRequest, &c.State, &c.Digest, &c.UpdatedAt)
	if err != nil {
		return nil, fmt.Errorf("store: commit status %s on %.12s: %w", name, headSHA, translate(err))
	}
	return &c, nil
}

// SaveGitLabCommitStatus records the status set on a head commit.
func (s *Store) SaveGitLabCommitStatus(ctx context.Context, c GitLabCommitStatus) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO gitlab_commit_statuses (project, head_sha, name, merge_request, state, digest)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (project, head_sha, name) DO UPDATE SET merge_request = excluded.merge_request, state = excluded.state,
			digest = excluded.digest, updated_at = now()`,
		c.Project, c.HeadSHA, c.Name, c.MergeRequest, c.State, c.Digest)
	if err != nil {
		return fmt.Errorf("store: save commit status %s on %.12s: %w", c.Name, c.HeadSHA, translate(err))
	}
	return nil
}

// GitLabStatement records what writ read from one note or description.
type GitLabStatement struct {
	Project      string
	Kind         string // note, description
	RefID        int64  // the note's id, or the merge request's iid
	MergeRequest int64
	Login        string
	BodySHA256   string
	Envelopes    int
	Outcome      string // a Statement* outcome
	Message      string
	UpdatedAt    time.Time
}

const gitlabStatementColumns = `project, kind, ref_id, merge_request, login, body_sha256, envelopes, outcome, message, updated_at`

func scanGitLabStatement(row pgx.Row) (*GitLabStatement, error) {
	var g GitLabStatement
	if err := row.Scan(&g.Project, &g.Kind, &g.RefID, &g.MergeRequest, &g.Login, &g.BodySHA256,
		&g.Envelopes, &g.Outcome, &g.Message, &g.UpdatedAt); err != nil {
		return nil, translate(err)
	}
	return &g, nil
}

// GitLabStatementFor loads what was read from one note or description.
func (s *Store) GitLabStatementFor(ctx context.Context, project, kind string, refID int64) (*GitLabStatement, error) {
	g, err := scanGitLabStatement(s.db.QueryRow(ctx, `SELECT `+gitlabStatementColumns+` FROM gitlab_statements
		WHERE project = $1 AND kind = $2 AND ref_id = $3`, project, kind, refID))
	if err != nil {
		return nil, fmt.Errorf("store: gitlab %s %d: %w", kind, refID, err)
	}
	return g, nil
}

// SaveGitLabStatement records what was read from a note or description.
func (s *Store) SaveGitLabStatement(ctx context.Context, g GitLabStatement) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO gitlab_statements (project, kind, ref_id, merge_request, login, body_sha256, envelopes, outcome, message)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (project, kind, ref_id) DO UPDATE SET merge_request = excluded.merge_request, login = excluded.login,
			body_sha256 = excluded.body_sha256, envelopes = excluded.envelopes,
			outcome = excluded.outcome, message = excluded.message, updated_at = now()`,
		g.Project, g.Kind, g.RefID, g.MergeRequest, g.Login, g.BodySHA256, g.Envelopes, g.Outcome, g.Message)
	if err != nil {
		return fmt.Errorf("store: save gitlab %s %d: %w", g.Kind, g.RefID, translate(err))
	}
	return nil
}

// GitLabStatementsForMR lists what was read on a merge request, by kind
// and id.
func (s *Store) GitLabStatementsForMR(ctx context.Context, project string, iid int64) ([]*GitLabStatement, error) {
	rows, err := s.db.Query(ctx, `SELECT `+gitlabStatementColumns+` FROM gitlab_statements
		WHERE project = $1 AND merge_request = $2 ORDER BY kind, ref_id`, project, iid)
	if err != nil {
		return nil, fmt.Errorf("store: statements of %s!%d: %w", project, iid, translate(err))
	}
	defer rows.Close()
	var out []*GitLabStatement
	for rows.Next() {
		g, err := scanGitLabStatement(rows)
		if err != nil {
			return nil, fmt.Errorf("store: statements of %s!%d: %w", project, iid, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: statements of %s!%d: %w", project, iid, translate(err))
	}
	return out, nil
}
