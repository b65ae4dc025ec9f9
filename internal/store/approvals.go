package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Approval sources: the channel an envelope arrived by. The channel is
// recorded, never trusted.
const (
	ApprovalSourceAPI    = "api"
	ApprovalSourceCLI    = "cli"
	ApprovalSourceGitHub = "github"
	ApprovalSourceImport = "import"
)

// Approval is one stored approval envelope (propose, approve or reject)
// with the fields of its statement, as received. Storing an envelope does
// not mean it counts: the engine verifies every envelope against the
// trusted keyring each time it decides.
type Approval struct {
	ID             int64
	Envelope       []byte
	EnvelopeSHA256 string
	// StatementSHA256 is the statement's identity, whatever envelope
	// carries it (approval.Envelope.StatementSHA256).
	StatementSHA256 string
	Decision        string
	Approver        string
	Repository      string
	PullRequest     int // 0: none
	HeadCommit      string
	PolicyDigest    string
	PlanDigest      string
	Reason          string
	IssuedAt        time.Time
	ExpiresAt       time.Time
	Source          string
	SourceRef       string // e.g. a GitHub review id
	SourceLogin     string // the forge login that submitted it
	ReceivedAt      time.Time
	WithdrawnAt     *time.Time
	Subjects        []ApprovalSubject
}

// ApprovalSubject is one subject of a stored statement.
type ApprovalSubject struct {
	Digest string // hex sha256
	Name   string
}

const approvalColumns = `id, envelope, envelope_sha256, statement_sha256, decision, approver, repository,
	coalesce(pull_request, 0), head_commit, policy_digest, plan_digest, reason, issued_at, expires_at,
	source, source_ref, source_login, received_at, withdrawn_at`

func scanApproval(row pgx.Row) (*Approval, error) {
	var a Approval
	err := row.Scan(&a.ID, &a.Envelope, &a.EnvelopeSHA256, &a.StatementSHA256, &a.Decision, &a.Approver, &a.Repository,
		&a.PullRequest, &a.HeadCommit, &a.PolicyDigest, &a.PlanDigest, &a.Reason, &a.IssuedAt, &a.ExpiresAt,
		&a.Source, &a.SourceRef, &a.SourceLogin, &a.ReceivedAt, &a.WithdrawnAt)
	if err != nil {
		return nil, translate(err)
	}
	return &a, nil
}

// pullRequestArg stores 0 (no pull request) as NULL.
func pullRequestArg(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// countable is the condition on an approvals row that it may count: not
// withdrawn, and neither is any other envelope of its statement (the same
// statement in other bytes: a withdrawal is of the statement).
const countable = `withdrawn_at IS NULL AND NOT EXISTS (SELECT 1 FROM approvals w
	WHERE w.statement_sha256 = approvals.statement_sha256 AND w.withdrawn_at IS NOT NULL)`

// InsertApproval stores an envelope with its subjects, once: an envelope
// already stored (same envelope_sha256, whatever the channel) is returned
// as stored, with created false, and the new copy is dropped. A withdrawn
// envelope stays withdrawn. Either way the channel reference it came
// through is recorded for its statement (WithdrawApprovals).
func (s *Store) InsertApproval(ctx context.Context, a Approval) (_ *Approval, created bool, err error) {
	if len(a.Subjects) == 0 {
		return nil, false, fmt.Errorf("store: approval %.12s has no subjects", a.EnvelopeSHA256)
	}
	var out *Approval
	err = s.Tx(ctx, func(tx *Store) error {
		if _, err := tx.db.Exec(ctx, `INSERT INTO approval_submissions (source, source_ref, statement_sha256)
			VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, a.Source, a.SourceRef, a.StatementSHA256); err != nil {
			return fmt.Errorf("store: record the submission of statement %.12s: %w", a.StatementSHA256, translate(err))
		}
		got, err := scanApproval(tx.db.QueryRow(ctx, `
			INSERT INTO approvals (envelope, envelope_sha256, statement_sha256, decision, approver, repository, pull_request,
				head_commit, policy_digest, plan_digest, reason, issued_at, expires_at, source, source_ref, source_login)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
			ON CONFLICT (envelope_sha256) DO NOTHING
			RETURNING `+approvalColumns,
			a.Envelope, a.EnvelopeSHA256, a.StatementSHA256, a.Decision, a.Approver, a.Repository, pullRequestArg(a.PullRequest),
			a.HeadCommit, a.PolicyDigest, a.PlanDigest, a.Reason, a.IssuedAt, a.ExpiresAt, a.Source, a.SourceRef, a.SourceLogin))
		switch {
		case err == nil:
			created = true
			batch := &pgx.Batch{}
			for _, sub := range a.Subjects {
				batch.Queue(`INSERT INTO approval_subjects (approval_id, digest, name) VALUES ($1, $2, $3)
					ON CONFLICT DO NOTHING`, got.ID, sub.Digest, sub.Name)
			}
			if err := tx.db.SendBatch(ctx, batch).Close(); err != nil {
				return fmt.Errorf("store: subjects of approval %.12s: %w", a.EnvelopeSHA256, translate(err))
			}
		case errors.Is(err, ErrNotFound):
			got, err = scanApproval(tx.db.QueryRow(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE envelope_sha256 = $1`, a.EnvelopeSHA256))
			if err != nil {
				return fmt.Errorf("store: load approval %.12s: %w", a.EnvelopeSHA256, err)
			}
		default:
			return fmt.Errorf("store: insert approval %.12s: %w", a.EnvelopeSHA256, err)
		}
		list := []*Approval{got}
		if err := tx.loadSubjects(ctx, list); err != nil {
			return err
		}
		out = got
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, created, nil
}

// ApprovalsForDigest lists the envelopes, not withdrawn, that name a
// subject with this sha256, oldest first: what the engine verifies for a
// playbook version (or a meta change).
func (s *Store) ApprovalsForDigest(ctx context.Context, digest string) ([]*Approval, error) {
	rows, err := s.db.Query(ctx, `SELECT `+approvalColumns+` FROM approvals
		WHERE `+countable+`
		  AND id IN (SELECT approval_id FROM approval_subjects WHERE digest = $1)
		ORDER BY id`, digest)
	if err != nil {
		return nil, fmt.Errorf("store: approvals for %.12s: %w", digest, translate(err))
	}
	out, err := s.collectApprovals(ctx, rows)
	if err != nil {
		return nil, fmt.Errorf("store: approvals for %.12s: %w", digest, err)
	}
	return out, nil
}

// ApprovalsForDigests is ApprovalsForDigest for many digests in one
// query: the envelopes, not withdrawn, by each digest their subjects name
// (an envelope naming several is listed under each).
func (s *Store) ApprovalsForDigests(ctx context.Context, digests []string) (map[string][]*Approval, error) {
	out := map[string][]*Approval{}
	if len(digests) == 0 {
		return out, nil
	}
	rows, err := s.db.Query(ctx, `SELECT `+approvalColumns+` FROM approvals
		WHERE `+countable+`
		  AND id IN (SELECT approval_id FROM approval_subjects WHERE digest = ANY($1))
		ORDER BY id`, digests)
	if err != nil {
		return nil, fmt.Errorf("store: approvals for %d digests: %w", len(digests), translate(err))
	}
	list, err := s.collectApprovals(ctx, rows)
	if err != nil {
		return nil, fmt.Errorf("store: approvals for %d digests: %w", len(digests), err)
	}
	want := make(map[string]bool, len(digests))
	for _, d := range digests {
		want[d] = true
	}
	for _, a := range list {
		seen := map[string]bool{}
		for _, sub := range a.Subjects {
			if want[sub.Digest] && !seen[sub.Digest] {
				seen[sub.Digest] = true
				out[sub.Digest] = append(out[sub.Digest], a)
			}
		}
	}
	return out, nil
}

// ApprovalsForPullRequest lists the envelopes, not withdrawn, that name a
// pull request of a repository, oldest first.
func (s *Store) ApprovalsForPullRequest(ctx context.Context, repository string, pr int) ([]*Approval, error) {
	rows, err := s.db.Query(ctx, `SELECT `+approvalColumns+` FROM approvals
		WHERE repository = $1 AND pull_request = $2 AND `+countable+`
		ORDER BY id`, repository, pr)
	if err != nil {
		return nil, fmt.Errorf("store: approvals for %s#%d: %w", repository, pr, translate(err))
	}
	out, err := s.collectApprovals(ctx, rows)
	if err != nil {
		return nil, fmt.Errorf("store: approvals for %s#%d: %w", repository, pr, err)
	}
	return out, nil
}

// WithdrawApprovals withdraws the statements that arrived through (source,
// sourceRef) — a dismissed GitHub review, or the statements an edit
// removed from a text: those whose statement sha256 is not in keep — and
// returns how many envelopes it marked. A statement is withdrawn in every
// envelope that carries it, whichever channel brought each (the same
// bytes may have come first through the API, and other bytes of it
// later); withdrawn envelopes are kept, never deleted, and the statement
// never counts again (countable; StatementWithdrawn).
func (s *Store) WithdrawApprovals(ctx context.Context, source, sourceRef string, keep ...string) (int64, error) {
	if sourceRef == "" {
		return 0, fmt.Errorf("store: withdraw approvals from %s: empty source reference", source)
	}
	if keep == nil {
		keep = []string{}
	}
	tag, err := s.db.Exec(ctx, `UPDATE approvals SET withdrawn_at = now()
		WHERE withdrawn_at IS NULL
			AND statement_sha256 IN (SELECT statement_sha256 FROM approval_submissions WHERE source = $1 AND source_ref = $2)
			AND NOT (statement_sha256 = ANY($3))`, source, sourceRef, keep)
	if err != nil {
		return 0, fmt.Errorf("store: withdraw approvals from %s %s: %w", source, sourceRef, translate(err))
	}
	return tag.RowsAffected(), nil
}

// StatementWithdrawn says whether an envelope of the statement (by its
// sha256) was withdrawn: the statement then never counts, in any bytes.
func (s *Store) StatementWithdrawn(ctx context.Context, statementSHA256 string) (bool, error) {
	var withdrawn bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM approvals WHERE statement_sha256 = $1 AND withdrawn_at IS NOT NULL)`,
		statementSHA256).Scan(&withdrawn)
	if err != nil {
		return false, fmt.Errorf("store: statement %.12s withdrawn: %w", statementSHA256, translate(err))
	}
	return withdrawn, nil
}

// ApprovalByID loads one envelope.
func (s *Store) ApprovalByID(ctx context.Context, id int64) (*Approval, error) {
	a, err := scanApproval(s.db.QueryRow(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("store: approval %d: %w", id, err)
	}
	if err := s.loadSubjects(ctx, []*Approval{a}); err != nil {
		return nil, err
	}
	return a, nil
}

// ApprovalFilter narrows ListApprovals. Zero fields do not filter.
type ApprovalFilter struct {
	Repository  string
	PullRequest int
	Approver    string
	Decision    string
	Digest      string // a subject's sha256
	Withdrawn   bool   // include withdrawn envelopes
	AfterID     int64  // keyset pagination: only ids below this (newest first); 0: from the start
	Limit       int    // default 100, at most 1000
}

// ListApprovals lists envelopes newest first, for the API. Pass the last
// ID of a page as AfterID for the next one.
func (s *Store) ListApprovals(ctx context.Context, f ApprovalFilter) ([]*Approval, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	rows, err := s.db.Query(ctx, `SELECT `+approvalColumns+` FROM approvals
		WHERE ($1 = '' OR repository = $1)
		  AND ($2 = 0 OR pull_request = $2)
		  AND ($3 = '' OR approver = $3)
		  AND ($4 = '' OR decision = $4)
		  AND ($5 = '' OR id IN (SELECT approval_id FROM approval_subjects WHERE digest = $5))
		  AND ($6 OR withdrawn_at IS NULL)
		  AND ($7::bigint = 0 OR id < $7::bigint)
		ORDER BY id DESC LIMIT $8`,
		f.Repository, f.PullRequest, f.Approver, f.Decision, f.Digest, f.Withdrawn, f.AfterID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("store: list approvals: %w", translate(err))
	}
	out, err := s.collectApprovals(ctx, rows)
	if err != nil {
		return nil, fmt.Errorf("store: list approvals: %w", err)
	}
	return out, nil
}

func (s *Store) collectApprovals(ctx context.Context, rows pgx.Rows) ([]*Approval, error) {
	defer rows.Close()
	var out []*Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err)
	}
	rows.Close()
	if err := s.loadSubjects(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// loadSubjects fills the Subjects of each approval in one query.
func (s *Store) loadSubjects(ctx context.Context, list []*Approval) error {
	if len(list) == 0 {
		return nil
	}
	ids := make([]int64, len(list))
	byID := make(map[int64]*Approval, len(list))
	for i, a := range list {
		ids[i] = a.ID
		byID[a.ID] = a
		a.Subjects = nil
	}
	rows, err := s.db.Query(ctx, `SELECT approval_id, digest, name FROM approval_subjects
		WHERE approval_id = ANY($1) ORDER BY approval_id, name, digest`, ids)
	if err != nil {
		return fmt.Errorf("store: approval subjects: %w", translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var sub ApprovalSubject
		if err := rows.Scan(&id, &sub.Digest, &sub.Name); err != nil {
			return fmt.Errorf("store: approval subjects: %w", translate(err))
		}
		byID[id].Subjects = append(byID[id].Subjects, sub)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: approval subjects: %w", translate(err))
	}
	return nil
}
