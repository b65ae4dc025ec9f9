package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// GitHubPullRequest is a pull request writ follows.
type GitHubPullRequest struct {
	Repository         string
	Number             int
	State              string // open, closed, merged
	BaseRef            string
	HeadSHA            string
	Author             string
	RequestedReviewers []string
	UpdatedAt          time.Time
}

const pullRequestColumns = `repository, number, state, base_ref, head_sha, author, requested_reviewers, updated_at`

func scanPullRequest(row pgx.Row) (*GitHubPullRequest, error) {
	var p GitHubPullRequest
	if err := row.Scan(&p.Repository, &p.Number, &p.State, &p.BaseRef, &p.HeadSHA, &p.Author, &p.RequestedReviewers, &p.UpdatedAt); err != nil {
		return nil, translate(err)
	}
	return &p, nil
}

// SavePullRequest records a pull request's state, base and head (keeping
// the reviewers already requested).
func (s *Store) SavePullRequest(ctx context.Context, p GitHubPullRequest) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO github_pull_requests (repository, number, state, base_ref, head_sha, author)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (repository, number) DO UPDATE SET state = excluded.state, base_ref = excluded.base_ref,
			head_sha = excluded.head_sha, author = excluded.author, updated_at = now()`,
		p.Repository, p.Number, p.State, p.BaseRef, p.HeadSHA, p.Author)
	if err != nil {
		return fmt.Errorf("store: save pull request %s#%d: %w", p.Repository, p.Number, translate(err))
	}
	return nil
}

// GitHubPullRequestByNumber loads one followed pull request.
func (s *Store) GitHubPullRequestByNumber(ctx context.Context, repository string, number int) (*GitHubPullRequest, error) {
	p, err := scanPullRequest(s.db.QueryRow(ctx, `SELECT `+pullRequestColumns+` FROM github_pull_requests
		WHERE repository = $1 AND number = $2`, repository, number))
	if err != nil {
		return nil, fmt.Errorf("store: pull request %s#%d: %w", repository, number, err)
	}
	return p, nil
}

// OpenGitHubPullRequests lists a repository's open pull requests, least
// recently updated first.
func (s *Store) OpenGitHubPullRequests(ctx context.Context, repository string, limit int) ([]*GitHubPullRequest, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.Query(ctx, `SELECT `+pullRequestColumns+` FROM github_pull_requests
		WHERE repository = $1 AND state = 'open' ORDER BY updated_at, number LIMIT $2`, repository, limit)
	if err != nil {
		return nil, fmt.Errorf("store: open pull requests of %s: %w", repository, translate(err))
	}
	defer rows.Close()
	var out []*GitHubPullRequest
	for rows.Next() {
		p, err := scanPullRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("store: open pull requests of %s: %w", repository, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: open pull requests of %s: %w", repository, translate(err))
	}
	return out, nil
}

// AddRequestedReviewers records logins asked for a review.
func (s *Store) AddRequestedReviewers(ctx context.Context, repository string, number int, logins []string) error {
	_, err := s.db.Exec(ctx, `UPDATE github_pull_requests
		SET requested_reviewers = ARRAY(SELECT DISTINCT unnest(requested_reviewers || $3::text[]) ORDER BY 1)
		WHERE repository = $1 AND number = $2`, repository, number, logins)
	if err != nil {
		return fmt.Errorf("store: requested reviewers of %s#%d: %w", repository, number, translate(err))
	}
	return nil
}

// GitHubCheckRun is the check run writ keeps for a head commit.
type GitHubCheckRun struct {
	Repository        string
	HeadSHA           string
	Name              string
	CheckRunID        int64
	PullRequest       int
	Conclusion        string
	OutputDigest      string
	AnnotationsDigest string
	UpdatedAt         time.Time
}

// GitHubCheckRunFor loads the check run of a head commit.
func (s *Store) GitHubCheckRunFor(ctx context.Context, repository, headSHA, name string) (*GitHubCheckRun, error) {
	var c GitHubCheckRun
	err := s.db.QueryRow(ctx, `SELECT repository, head_sha, name, check_run_id, pull_request, conclusion, output_digest,
			annotations_digest, updated_at
		FROM github_check_runs WHERE repository = $1 AND head_sha = $2 AND name = $3`, repository, headSHA, name).
		Scan(&c.Repository, &c.HeadSHA, &c.Name, &c.CheckRunID, &c.PullRequest, &c.Conclusion, &c.OutputDigest,
			&c.AnnotationsDigest, &c.UpdatedAt)
	if err != nil {
		return nil, fmt.Errorf("store: check run %s of %.12s: %w", name, headSHA, translate(err))
	}
	return &c, nil
}

// SaveGitHubCheckRun records the check run written for a head commit.
func (s *Store) SaveGitHubCheckRun(ctx context.Context, c GitHubCheckRun) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO github_check_runs (repository, head_sha, name, check_run_id, pull_request, conclusion, output_digest, annotations_digest)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (repository, head_sha, name) DO UPDATE SET check_run_id = excluded.check_run_id,
			pull_request = excluded.pull_request, conclusion = excluded.conclusion, output_digest = excluded.output_digest,
			annotations_digest = excluded.annotations_digest, updated_at = now()`,
		c.Repository, c.HeadSHA, c.Name, c.CheckRunID, c.PullRequest, c.Conclusion, c.OutputDigest, c.AnnotationsDigest)
	if err != nil {
		return fmt.Errorf("store: save check run %s of %.12s: %w", c.Name, c.HeadSHA, translate(err))
	}
	return nil
}

// Kinds of GitHub text that carry signed statements.
const (
	GitHubReview      = "review"
	GitHubDescription = "description"
	GitHubComment     = "comment"
)

// Outcomes of reading a GitHub text for signed statements.
const (
	StatementAccepted   = "accepted"
	StatementRefused    = "refused"
	StatementNoEnvelope = "no_envelope"
	StatementWithdrawn  = "withdrawn"
	StatementIgnored    = "ignored"
)

// GitHubStatement records what writ read from one review, description or
// comment.
type GitHubStatement struct {
	Repository  string
	Kind        string // review, description, comment
	RefID       int64  // review id, comment id, or the pull request number
	PullRequest int
	Login       string
	State       string
	BodySHA256  string
	Envelopes   int
	Outcome     string
	Message     string
	UpdatedAt   time.Time
}

const statementColumns = `repository, kind, ref_id, pull_request, login, state, body_sha256, envelopes, outcome, message, updated_at`

func scanStatement(row pgx.Row) (*GitHubStatement, error) {
	var g GitHubStatement
	if err := row.Scan(&g.Repository, &g.Kind, &g.RefID, &g.PullRequest, &g.Login, &g.State, &g.BodySHA256,
		&g.Envelopes, &g.Outcome, &g.Message, &g.UpdatedAt); err != nil {
		return nil, translate(err)
	}
	return &g, nil
}

// GitHubStatementFor loads what was read from one review, description or
// comment.
func (s *Store) GitHubStatementFor(ctx context.Context, repository, kind string, refID int64) (*GitHubStatement, error) {
	g, err := scanStatement(s.db.QueryRow(ctx, `SELECT `+statementColumns+` FROM github_statements
		WHERE repository = $1 AND kind = $2 AND ref_id = $3`, repository, kind, refID))
	if err != nil {
		return nil, fmt.Errorf("store: %s %d: %w", kind, refID, err)
	}
	return g, nil
}

// SaveGitHubStatement records what was read from a review, description or
// comment.
func (s *Store) SaveGitHubStatement(ctx context.Context, g GitHubStatement) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO github_statements (repository, kind, ref_id, pull_request, login, state, body_sha256, envelopes, outcome, message)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (repository, kind, ref_id) DO UPDATE SET pull_request = excluded.pull_request, login = excluded.login,
			state = excluded.state, body_sha256 = excluded.body_sha256, envelopes = excluded.envelopes,
			outcome = excluded.outcome, message = excluded.message, updated_at = now()`,
		g.Repository, g.Kind, g.RefID, g.PullRequest, g.Login, g.State, g.BodySHA256, g.Envelopes, g.Outcome, g.Message)
	if err != nil {
		return fmt.Errorf("store: save %s %d: %w", g.Kind, g.RefID, translate(err))
	}
	return nil
}

// GitHubStatementsForPR lists what was read on a pull request, oldest
// first.
func (s *Store) GitHubStatementsForPR(ctx context.Context, repository string, number int) ([]*GitHubStatement, error) {
	rows, err := s.db.Query(ctx, `SELECT `+statementColumns+` FROM github_statements
		WHERE repository = $1 AND pull_request = $2 ORDER BY kind, ref_id`, repository, number)
	if err != nil {
		return nil, fmt.Errorf("store: statements of %s#%d: %w", repository, number, translate(err))
	}
	defer rows.Close()
	var out []*GitHubStatement
	for rows.Next() {
		g, err := scanStatement(rows)
		if err != nil {
			return nil, fmt.Errorf("store: statements of %s#%d: %w", repository, number, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: statements of %s#%d: %w", repository, number, translate(err))
	}
	return out, nil
}

// SaveGitHubInstallation records an installation event of the GitHub App.
func (s *Store) SaveGitHubInstallation(ctx context.Context, id int64, account, action string) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO github_installations (installation_id, account, action) VALUES ($1, $2, $3)
		ON CONFLICT (installation_id) DO UPDATE SET account = excluded.account, action = excluded.action, updated_at = now()`,
		id, account, action)
	if err != nil {
		return fmt.Errorf("store: save installation %d: %w", id, translate(err))
	}
	return nil
}

// GitHubInstallation returns the last recorded action and account of an
// installation.
func (s *Store) GitHubInstallation(ctx context.Context, id int64) (account, action string, err error) {
	err = s.db.QueryRow(ctx, `SELECT account, action FROM github_installations WHERE installation_id = $1`, id).Scan(&account, &action)
	if err != nil {
		return "", "", fmt.Errorf("store: installation %d: %w", id, translate(err))
	}
	return account, action, nil
}
