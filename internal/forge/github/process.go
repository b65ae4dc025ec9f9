package github

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	gh "github.com/google/go-github/v88/github"

	"github.com/writ-sec/writ/internal/forge/inbox"
	"github.com/writ-sec/writ/internal/store"
)

// Run processes stored deliveries until ctx is done: when the receiver
// stores one, every PollInterval (deliveries stored by other replicas,
// retries coming due), and re-checks open pull requests every
// RefreshInterval.
func (s *Service) Run(ctx context.Context) error {
	s.log.InfoContext(ctx, "GitHub integration started", slog.String("check", s.opts.CheckName), slog.String("branch", s.opts.Source.Branch()))
	return s.inbox.Serve(ctx, s.process, s.opts.PollInterval, s.opts.RefreshInterval, s.RefreshOpen)
}

// ProcessPending processes every delivery that is due, oldest first, and
// returns how many it finished (inbox.ProcessPending).
func (s *Service) ProcessPending(ctx context.Context) (int, error) {
	return s.inbox.ProcessPending(ctx, s.process)
}

// process handles one delivery and says what came of it.
func (s *Service) process(ctx context.Context, d *store.Delivery) (string, error) {
	ev, err := gh.ParseWebHook(d.Event, d.Payload)
	if err != nil {
		return "", fmt.Errorf("%w: decode %s payload: %w", inbox.ErrPermanent, d.Event, err)
	}
	switch e := ev.(type) {
	case *gh.PullRequestEvent:
		return s.onPullRequest(ctx, e)
	case *gh.PullRequestReviewEvent:
		return s.onReview(ctx, e)
	case *gh.IssueCommentEvent:
		return s.onComment(ctx, e)
	case *gh.PushEvent:
		return s.onPush(ctx, e)
	case *gh.CheckRunEvent:
		if e.GetCheckRun().GetName() != s.opts.CheckName {
			return "ignored: another check", nil
		}
		return s.onRerequest(ctx, e.GetCheckRun().GetHeadSHA(), e.GetCheckRun().PullRequests)
	case *gh.CheckSuiteEvent:
		return s.onRerequest(ctx, e.GetCheckSuite().GetHeadSHA(), e.GetCheckSuite().PullRequests)
	case *gh.InstallationEvent:
		inst := e.GetInstallation()
		s.log.InfoContext(ctx, "GitHub App installation", slog.String("action", e.GetAction()),
			slog.Int64("installation", inst.GetID()), slog.String("account", inst.GetAccount().GetLogin()))
		if err := s.opts.Store.SaveGitHubInstallation(ctx, inst.GetID(), inst.GetAccount().GetLogin(), e.GetAction()); err != nil {
			return "", err
		}
		return "installation " + e.GetAction(), nil
	case *gh.InstallationRepositoriesEvent:
		inst := e.GetInstallation()
		s.log.InfoContext(ctx, "GitHub App installation repositories", slog.String("action", e.GetAction()),
			slog.Int64("installation", inst.GetID()), slog.Int("added", len(e.RepositoriesAdded)), slog.Int("removed", len(e.RepositoriesRemoved)))
		if err := s.opts.Store.SaveGitHubInstallation(ctx, inst.GetID(), inst.GetAccount().GetLogin(), "repositories_"+e.GetAction()); err != nil {
			return "", err
		}
		return "installation repositories " + e.GetAction(), nil
	}
	return "ignored: " + d.Event, nil
}

// prInfo is what a check needs to know of a pull request.
type prInfo struct {
	Number  int
	HeadSHA string
	BaseRef string
	Author  string
	Body    string
	State   string // open, closed, merged
}

func infoOf(pr *gh.PullRequest) prInfo {
	state := pr.GetState()
	if pr.GetMerged() || pr.MergedAt != nil {
		state = "merged"
	}
	return prInfo{Number: pr.GetNumber(), HeadSHA: pr.GetHead().GetSHA(), BaseRef: pr.GetBase().GetRef(),
		Author: pr.GetUser().GetLogin(), Body: pr.GetBody(), State: state}
}

func (s *Service) tracked(p prInfo) bool { return p.BaseRef == s.opts.Source.Branch() }

func (s *Service) savePR(ctx context.Context, p prInfo) error {
	return s.opts.Store.SavePullRequest(ctx, store.GitHubPullRequest{Repository: s.opts.Repository, Number: p.Number,
		State: p.State, BaseRef: p.BaseRef, HeadSHA: p.HeadSHA, Author: p.Author})
}

func (s *Service) onPullRequest(ctx context.Context, e *gh.PullRequestEvent) (string, error) {
	p := infoOf(e.GetPullRequest())
	if !s.tracked(p) {
		return fmt.Sprintf("ignored: #%d targets %s, not %s", p.Number, p.BaseRef, s.opts.Source.Branch()), nil
	}
	if err := s.savePR(ctx, p); err != nil {
		return "", err
	}
	if e.GetAction() == "closed" {
		return fmt.Sprintf("#%d %s", p.Number, p.State), nil
	}
	if err := s.read(ctx, text{kind: store.GitHubDescription, refID: int64(p.Number), pullRequest: p.Number, login: p.Author, body: p.Body}); err != nil {
		return "", err
	}
	if e.GetAction() == "edited" && e.GetChanges().GetBody() == nil && e.GetChanges().GetBase() == nil {
		return fmt.Sprintf("#%d edited: nothing writ reads changed", p.Number), nil
	}
	return s.Check(ctx, p)
}

func (s *Service) onReview(ctx context.Context, e *gh.PullRequestReviewEvent) (string, error) {
	p := infoOf(e.GetPullRequest())
	if !s.tracked(p) {
		return fmt.Sprintf("ignored: #%d targets %s", p.Number, p.BaseRef), nil
	}
	rv := e.GetReview()
	switch e.GetAction() {
	case "dismissed":
		if err := s.dismiss(ctx, p.Number, rv.GetID(), rv.GetUser().GetLogin(), e.GetSender().GetLogin()); err != nil {
			return "", err
		}
	default:
		if err := s.read(ctx, text{kind: store.GitHubReview, refID: rv.GetID(), pullRequest: p.Number,
			login: rv.GetUser().GetLogin(), state: strings.ToLower(rv.GetState()), body: rv.GetBody()}); err != nil {
			return "", err
		}
	}
	if p.State != "open" {
		return fmt.Sprintf("review %d on closed #%d read", rv.GetID(), p.Number), nil
	}
	return s.Check(ctx, p)
}

func (s *Service) onComment(ctx context.Context, e *gh.IssueCommentEvent) (string, error) {
	if !e.GetIssue().IsPullRequest() {
		return "ignored: a comment on an issue", nil
	}
	c := e.GetComment()
	n := e.GetIssue().GetNumber()
	if e.GetAction() == "deleted" {
		ref := text{kind: store.GitHubComment, refID: c.GetID()}.sourceRef()
		if _, err := s.opts.Engine.WithdrawApprovals(ctx, store.ApprovalSourceGitHub, ref, e.GetSender().GetLogin()); err != nil {
			return "", err
		}
	} else {
		envs, xerr := ExtractEnvelopes(c.GetBody())
		if len(envs) == 0 && xerr == nil && e.GetAction() == "created" {
			return fmt.Sprintf("comment %d carries no writ statement", c.GetID()), nil
		}
		if err := s.read(ctx, text{kind: store.GitHubComment, refID: c.GetID(), pullRequest: n, login: c.GetUser().GetLogin(), body: c.GetBody()}); err != nil {
			return "", err
		}
	}
	p, err := s.pullRequest(ctx, n)
	if err != nil {
		return "", err
	}
	if !s.tracked(p) || p.State != "open" {
		return fmt.Sprintf("comment on #%d read", n), nil
	}
	return s.Check(ctx, p)
}

// pullRequest fetches a pull request from the API.
func (s *Service) pullRequest(ctx context.Context, n int) (prInfo, error) {
	var pr *gh.PullRequest
	err := s.call(ctx, fmt.Sprintf("get #%d", n), func(ctx context.Context) (*gh.Response, error) {
		var resp *gh.Response
		var err error
		pr, resp, err = s.opts.Client.PullRequests.Get(ctx, s.owner, s.name, n)
		return resp, err
	})
	if err != nil {
		return prInfo{}, err
	}
	return infoOf(pr), nil
}

// onRerequest re-checks the pull requests of a head commit.
func (s *Service) onRerequest(ctx context.Context, sha string, prs []*gh.PullRequest) (string, error) {
	var numbers []int
	for _, pr := range prs {
		numbers = append(numbers, pr.GetNumber())
	}
	if len(numbers) == 0 { // forks: GitHub leaves the list empty
		found, err := s.pullsWithCommit(ctx, sha)
		if err != nil {
			return "", err
		}
		for _, pr := range found {
			numbers = append(numbers, pr.GetNumber())
		}
	}
	var outs []string
	for _, n := range numbers {
		p, err := s.pullRequest(ctx, n)
		if err != nil {
			return "", err
		}
		if !s.tracked(p) || p.State != "open" {
			continue
		}
		out, err := s.Check(ctx, p)
		if err != nil {
			return "", err
		}
		outs = append(outs, out)
	}
	if len(outs) == 0 {
		return fmt.Sprintf("rerequested on %.12s: no open pull request to check", sha), nil
	}
	return strings.Join(outs, "; "), nil
}

// pullsWithCommit lists the pull requests a commit belongs to
// (GET /repos/O/R/commits/SHA/pulls).
func (s *Service) pullsWithCommit(ctx context.Context, sha string) ([]*gh.PullRequest, error) {
	var all []*gh.PullRequest
	opt := &gh.ListOptions{PerPage: 100}
	for {
		var prs []*gh.PullRequest
		var resp *gh.Response
		err := s.call(ctx, fmt.Sprintf("pull requests of %.12s", sha), func(ctx context.Context) (*gh.Response, error) {
			var err error
			prs, resp, err = s.opts.Client.PullRequests.ListPullRequestsWithCommit(ctx, s.owner, s.name, sha, opt)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		all = append(all, prs...)
		if resp == nil || resp.NextPage == 0 {
			return all, nil
		}
		opt.Page = resp.NextPage
	}
}

// maxPushCommits bounds how many commits of one push are looked up.
const maxPushCommits = 100

// onPush: a push to the tracked branch merged something. For each of its
// commits writ finds the pull request it came from and gathers every
// signed statement made there (a missed webhook loses nothing), then
// nudges the reconciler. Squash, merge and rebase merges all work: the
// approvals bind to content digests, not to commits.
func (s *Service) onPush(ctx context.Context, e *gh.PushEvent) (string, error) {
	if e.GetRef() != "refs/heads/"+s.opts.Source.Branch() {
		return "ignored: a push to " + e.GetRef(), nil
	}
	if e.GetDeleted() {
		return "ignored: the branch was deleted", nil
	}
	seen := map[string]bool{}
	var shas []string
	add := func(sha string) {
		if sha != "" && !seen[sha] && len(shas) < maxPushCommits {
			seen[sha] = true
			shas = append(shas, sha)
		}
	}
	for _, c := range e.Commits {
		add(c.GetID())
	}
	add(e.GetHeadCommit().GetID())
	add(e.GetAfter())
	gathered := map[int]bool{}
	for _, sha := range shas {
		prs, err := s.pullsWithCommit(ctx, sha)
		if err != nil {
			return "", err
		}
		for _, pr := range prs {
			p := infoOf(pr)
			if gathered[p.Number] || !s.tracked(p) {
				continue
			}
			gathered[p.Number] = true
			if err := s.gather(ctx, p); err != nil {
				return "", err
			}
		}
	}
	s.opts.Engine.Nudge()
	return fmt.Sprintf("push of %d commits to %s: gathered the statements of %d pull requests; reconciler nudged", len(shas), s.opts.Source.Branch(), len(gathered)), nil
}

// gather reads every signed statement of a pull request: its description,
// its reviews and its comments.
func (s *Service) gather(ctx context.Context, p prInfo) error {
	if err := s.savePR(ctx, p); err != nil {
		return err
	}
	if err := s.read(ctx, text{kind: store.GitHubDescription, refID: int64(p.Number), pullRequest: p.Number, login: p.Author, body: p.Body}); err != nil {
		return err
	}
	if err := s.syncReviews(ctx, p.Number); err != nil {
		return err
	}
	return s.syncComments(ctx, p.Number)
}

// RefreshOpen re-checks every open pull request writ follows: approvals
// may have arrived through another channel or expired, and the base may
// have moved. Unchanged checks are not written again.
func (s *Service) RefreshOpen(ctx context.Context) error {
	prs, err := s.opts.Store.OpenGitHubPullRequests(ctx, s.opts.Repository, 200)
	if err != nil {
		return err
	}
	for _, pr := range prs {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := prInfo{Number: pr.Number, HeadSHA: pr.HeadSHA, BaseRef: pr.BaseRef, Author: pr.Author, State: pr.State}
		if _, err := s.Check(ctx, p); err != nil {
			s.log.WarnContext(ctx, "refresh the check of a pull request", slog.Int("pull_request", pr.Number), slog.Any("error", err))
		}
	}
	return nil
}
