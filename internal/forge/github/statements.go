package github

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	gh "github.com/google/go-github/v88/github"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/forge/envelope"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// Fence is the info string of the fenced code block that carries a signed
// writ statement (internal/forge/envelope).
const Fence = envelope.Fence

// MaxEnvelopesPerBody bounds how many envelopes one body may carry.
const MaxEnvelopesPerBody = envelope.MaxPerBody

// ErrTooManyEnvelopes is returned for a body with more than
// MaxEnvelopesPerBody blocks.
var ErrTooManyEnvelopes = envelope.ErrTooMany

// ExtractEnvelopes returns the contents of the ```writ blocks of a
// Markdown body (envelope.Extract).
func ExtractEnvelopes(body string) ([][]byte, error) { return envelope.Extract(body) }

// FormatEnvelope is the Markdown writ posts (envelope.Format).
func FormatEnvelope(intro string, env []byte) string { return envelope.Format(intro, env) }

// text is one GitHub text that may carry signed statements.
type text struct {
	kind        string // store.GitHubReview, GitHubDescription, GitHubComment
	refID       int64  // review id, comment id, or the pull request number
	pullRequest int
	login       string // who wrote it
	state       string // a review's state
	body        string
}

// sourceRef is the approvals' source_ref of a text: the review id (as the
// reconciler withdraws dismissed reviews by it), "comment:ID" or
// "description:PR".
func (t text) sourceRef() string {
	switch t.kind {
	case store.GitHubReview:
		return strconv.FormatInt(t.refID, 10)
	case store.GitHubComment:
		return "comment:" + strconv.FormatInt(t.refID, 10)
	}
	return "description:" + strconv.Itoa(t.pullRequest)
}

func (t text) describe() string {
	switch t.kind {
	case store.GitHubReview:
		return fmt.Sprintf("review %d by @%s", t.refID, t.login)
	case store.GitHubComment:
		return fmt.Sprintf("comment %d by @%s", t.refID, t.login)
	}
	return fmt.Sprintf("the description of #%d by @%s", t.pullRequest, t.login)
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// read submits the signed statements a text carries, once per version of
// its body, and records what came of it. A review without a statement is
// recorded too (the check says it counts for nothing); a description or a
// comment without one is ordinary conversation and is not recorded.
// Descriptions and comments carry proposals only: an approval must be a
// review, so that dismissing it withdraws it. An edit withdraws the
// statements the new body no longer carries.
func (s *Service) read(ctx context.Context, t text) error {
	digest := sha256Hex(t.body)
	prev, err := s.opts.Store.GitHubStatementFor(ctx, s.opts.Repository, t.kind, t.refID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if prev != nil && prev.BodySHA256 == digest && prev.Outcome != store.StatementWithdrawn {
		return nil // read before
	}
	if prev != nil && prev.Outcome == store.StatementWithdrawn {
		return nil // a dismissed review stays dismissed
	}
	rec := store.GitHubStatement{Repository: s.opts.Repository, Kind: t.kind, RefID: t.refID, PullRequest: t.pullRequest,
		Login: t.login, State: t.state, BodySHA256: digest}
	envs, xerr := ExtractEnvelopes(t.body)
	rec.Envelopes = len(envs)
	if prev != nil {
		// An edit: what the text no longer carries no longer counts.
		keep := approval.StatementDigests(envs)
		n, err := s.opts.Engine.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, t.sourceRef(), t.login, keep...)
		if err != nil {
			return fmt.Errorf("withdraw what the edit of %s removed: %w", t.describe(), err)
		}
		if n > 0 {
			s.log.InfoContext(ctx, "edit removed signed statements", slog.String("from", t.describe()), slog.Int64("withdrawn", n))
		}
	}
	if len(envs) == 0 && xerr == nil {
		if t.kind != store.GitHubReview {
			return nil
		}
		rec.Outcome = store.StatementNoEnvelope
		rec.Message = "carries no signed writ statement: a review alone counts for nothing"
		return s.opts.Store.SaveGitHubStatement(ctx, rec)
	}
	var accepted, refused []string
	if xerr != nil {
		refused = append(refused, xerr.Error())
	}
	for i, raw := range envs {
		msg, ok, err := s.submit(ctx, t, raw)
		if err != nil {
			return err
		}
		label := msg
		if len(envs) > 1 {
			label = fmt.Sprintf("statement %d: %s", i+1, msg)
		}
		if ok {
			accepted = append(accepted, label)
		} else {
			refused = append(refused, label)
		}
	}
	switch {
	case len(refused) == 0:
		rec.Outcome = store.StatementAccepted
	case len(accepted) == 0:
		rec.Outcome = store.StatementRefused
	default:
		rec.Outcome = store.StatementAccepted
	}
	rec.Message = strings.Join(append(accepted, refused...), "; ")
	s.log.InfoContext(ctx, "read signed statements", slog.String("from", t.describe()), slog.String("outcome", rec.Outcome),
		slog.Int("accepted", len(accepted)), slog.Int("refused", len(refused)))
	return s.opts.Store.SaveGitHubStatement(ctx, rec)
}

// submit hands one envelope to the engine. ok is false when it was
// refused (msg says why); err is for failures to retry.
func (s *Service) submit(ctx context.Context, t text, raw []byte) (msg string, ok bool, err error) {
	if t.kind != store.GitHubReview {
		env, perr := approval.Parse(raw)
		if perr == nil && env.Statement.Predicate.Decision != approval.Propose {
			return fmt.Sprintf("a signed %s is read from a review only (so that dismissing the review withdraws it); this %s carries it in a %s",
				env.Statement.Predicate.Decision, t.kind, t.kind), false, nil
		}
	}
	in, err := s.opts.Engine.SubmitApproval(ctx, raw, approval.Submitted{
		Source: store.ApprovalSourceGitHub, SourceRef: t.sourceRef(), SourceLogin: t.login,
	})
	if errors.Is(err, reconcile.ErrRefused) {
		return "refused: " + display.Line(err.Error(), 500), false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("submit the statement of %s: %w", t.describe(), err)
	}
	return fmt.Sprintf("%s by %s accepted", in.Decision, in.Approver), true, nil
}

// dismiss withdraws what a dismissed review carried.
func (s *Service) dismiss(ctx context.Context, pr int, reviewID int64, login, by string) error {
	n, err := s.opts.Engine.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, strconv.FormatInt(reviewID, 10), by)
	if err != nil {
		return fmt.Errorf("withdraw the approvals of review %d: %w", reviewID, err)
	}
	s.log.InfoContext(ctx, "review dismissed", slog.Int64("review", reviewID), slog.Int64("withdrawn", n), slog.String("by", by))
	return s.opts.Store.SaveGitHubStatement(ctx, store.GitHubStatement{
		Repository: s.opts.Repository, Kind: store.GitHubReview, RefID: reviewID, PullRequest: pr, Login: login,
		State: "dismissed", BodySHA256: "", Outcome: store.StatementWithdrawn,
		Message: fmt.Sprintf("dismissed by @%s: %d signed statement(s) withdrawn", by, n),
	})
}

// syncReviews reads every review of a pull request that was not read yet
// (a webhook may have been missed) and withdraws dismissed ones.
func (s *Service) syncReviews(ctx context.Context, pr int) error {
	opt := &gh.ListOptions{PerPage: 100}
	for {
		var reviews []*gh.PullRequestReview
		var resp *gh.Response
		err := s.call(ctx, fmt.Sprintf("list reviews of #%d", pr), func(ctx context.Context) (*gh.Response, error) {
			var err error
			reviews, resp, err = s.opts.Client.PullRequests.ListReviews(ctx, s.owner, s.name, pr, opt)
			return resp, err
		})
		if err != nil {
			return err
		}
		for _, rv := range reviews {
			state := strings.ToLower(rv.GetState())
			switch state {
			case "pending":
				continue
			case "dismissed":
				prev, err := s.opts.Store.GitHubStatementFor(ctx, s.opts.Repository, store.GitHubReview, rv.GetID())
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				if prev == nil || prev.Outcome != store.StatementWithdrawn {
					if err := s.dismiss(ctx, pr, rv.GetID(), rv.GetUser().GetLogin(), "github"); err != nil {
						return err
					}
				}
				continue
			}
			if err := s.read(ctx, text{kind: store.GitHubReview, refID: rv.GetID(), pullRequest: pr,
				login: rv.GetUser().GetLogin(), state: state, body: rv.GetBody()}); err != nil {
				return err
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return nil
		}
		opt.Page = resp.NextPage
	}
}

// syncComments reads the proposals in a pull request's comments that were
// not read yet.
func (s *Service) syncComments(ctx context.Context, pr int) error {
	opt := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		var comments []*gh.IssueComment
		var resp *gh.Response
		err := s.call(ctx, fmt.Sprintf("list comments of #%d", pr), func(ctx context.Context) (*gh.Response, error) {
			var err error
			comments, resp, err = s.opts.Client.Issues.ListComments(ctx, s.owner, s.name, pr, opt)
			return resp, err
		})
		if err != nil {
			return err
		}
		for _, c := range comments {
			if err := s.read(ctx, text{kind: store.GitHubComment, refID: c.GetID(), pullRequest: pr,
				login: c.GetUser().GetLogin(), body: c.GetBody()}); err != nil {
				return err
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return nil
		}
		opt.Page = resp.NextPage
	}
}
