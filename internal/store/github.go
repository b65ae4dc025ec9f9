package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// GitHub delivery states.
const (
	DeliveryQueued = "queued"
	DeliveryDone   = "done"
	DeliveryFailed = "failed"
)

// ErrDeliveryReplayed is returned by InsertDelivery for a body already
// stored under another delivery id: a replay (GitHub's signature covers the
// body, not the delivery id). It is an ErrConflict.
var ErrDeliveryReplayed = fmt.Errorf("%w: the body was stored before under another delivery id", ErrConflict)

// GitHubDelivery is one accepted webhook delivery.
type GitHubDelivery struct {
	ID         int64
	DeliveryID string // X-GitHub-Delivery
	Event      string // X-GitHub-Event
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

const deliveryColumns = `id, delivery_id, event, action, payload, coalesce(body_sha256, ''), received_at, state, attempts, not_before,
	processed_at, outcome, last_error`

func scanDelivery(row pgx.Row) (*GitHubDelivery, error) {
	var d GitHubDelivery
	err := row.Scan(&d.ID, &d.DeliveryID, &d.Event, &d.Action, &d.Payload, &d.BodySHA256, &d.ReceivedAt, &d.State, &d.Attempts,
		&d.NotBefore, &d.ProcessedAt, &d.Outcome, &d.LastError)
	if err != nil {
		return nil, translate(err)
	}
	return &d, nil
}

// InsertDelivery stores a delivery once. A delivery id already stored (a
// redelivery) is not stored again: created is false and the stored row's
// id is returned. A body already stored under another delivery id (a
// replay) is not stored either: the error is ErrDeliveryReplayed, with the
// id of the row that holds the body. The delivery is due at now (nil: the
// database's clock; see ClaimDelivery).
func (s *Store) InsertDelivery(ctx context.Context, now *time.Time, d GitHubDelivery) (id int64, created bool, err error) {
	err = s.db.QueryRow(ctx, `
		INSERT INTO github_deliveries (delivery_id, event, action, payload, body_sha256, not_before)
		VALUES ($1, $2, $3, $4, $5, coalesce($6, now()))
		ON CONFLICT DO NOTHING
		RETURNING id`, d.DeliveryID, d.Event, d.Action, d.Payload, d.BodySHA256, now).Scan(&id)
	switch {
	case err == nil:
		return id, true, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return 0, false, fmt.Errorf("store: insert delivery %s: %w", d.DeliveryID, translate(err))
	}
	// A conflict on the delivery id, the body or both: the delivery id
	// decides, so that GitHub's redelivery stays a duplicate.
	var storedAs string
	err = s.db.QueryRow(ctx, `
		SELECT id, delivery_id FROM github_deliveries WHERE delivery_id = $1 OR body_sha256 = $2
		ORDER BY delivery_id = $1 DESC LIMIT 1`, d.DeliveryID, d.BodySHA256).Scan(&id, &storedAs)
	switch {
	case err != nil:
		return 0, false, fmt.Errorf("store: delivery %s: %w", d.DeliveryID, translate(err))
	case storedAs != d.DeliveryID:
		return id, false, fmt.Errorf("store: delivery %s: stored as delivery %s: %w", d.DeliveryID, storedAs, ErrDeliveryReplayed)
	}
	return id, false, nil
}

// ClaimDelivery takes the oldest queued delivery that is due, counts the
// attempt and leases it for lease: if the processor dies before finishing
// it, it is claimed again once the lease runs out. ErrNotFound when none is
// due.
//
// now is the time the queue is read at; nil means the database's clock,
// which every replica shares (production). Tests pass a clock of their own
// so that leases and retry delays never depend on how fast the machine is.
func (s *Store) ClaimDelivery(ctx context.Context, now *time.Time, lease time.Duration) (*GitHubDelivery, error) {
	d, err := scanDelivery(s.db.QueryRow(ctx, `
		UPDATE github_deliveries SET attempts = attempts + 1,
			not_before = coalesce($2, now()) + $1::bigint * interval '1 millisecond'
		WHERE id = (
			SELECT id FROM github_deliveries
			WHERE state = 'queued' AND not_before <= coalesce($2, now())
			ORDER BY id
			FOR UPDATE SKIP LOCKED LIMIT 1)
		RETURNING `+deliveryColumns, lease.Milliseconds(), now))
	if err != nil {
		return nil, fmt.Errorf("store: claim delivery: %w", err)
	}
	return d, nil
}

// FinishDelivery marks a delivery processed with what came of it.
func (s *Store) FinishDelivery(ctx context.Context, id int64, outcome string) error {
	tag, err := s.db.Exec(ctx, `UPDATE github_deliveries SET state = 'done', processed_at = now(), outcome = $2, last_error = ''
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
	tag, err := s.db.Exec(ctx, `UPDATE github_deliveries SET state = $2, last_error = $3,
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

// DeliveryByGUID loads a delivery by its X-GitHub-Delivery id.
func (s *Store) DeliveryByGUID(ctx context.Context, guid string) (*GitHubDelivery, error) {
	d, err := scanDelivery(s.db.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM github_deliveries WHERE delivery_id = $1`, guid))
	if err != nil {
		return nil, fmt.Errorf("store: delivery %s: %w", guid, err)
	}
	return d, nil
}

// DeliveryCounts counts deliveries by state.
func (s *Store) DeliveryCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT state, count(*) FROM github_deliveries GROUP BY state`)
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
