package gitlab

import (
	"context"
	"fmt"
	"log/slog"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/writ-sec/writ/internal/forge/inbox"
	"github.com/writ-sec/writ/internal/store"
)

// Run processes stored deliveries until ctx is done: when the receiver
// stores one, every PollInterval (deliveries stored by other replicas,
// retries coming due), and re-checks open merge requests every
// RefreshInterval.
func (s *Service) Run(ctx context.Context) error {
	s.log.InfoContext(ctx, "GitLab integration started", slog.String("status", s.opts.StatusName), slog.String("branch", s.opts.Source.Branch()))
	return s.inbox.Serve(ctx, s.process, s.opts.PollInterval, s.opts.RefreshInterval, s.RefreshOpen)
}

// ProcessPending processes every delivery that is due, oldest first, and
// returns how many it finished (inbox.ProcessPending).
func (s *Service) ProcessPending(ctx context.Context) (int, error) {
	return s.inbox.ProcessPending(ctx, s.process)
}

// process handles one delivery and says what came of it. The payload only
// names the merge request: what writ reads of it (its head, description
// and notes) comes from the API, so an event missed, reordered or
// resent changes nothing.
func (s *Service) process(ctx context.Context, d *store.Delivery) (string, error) {
	var event gl.EventType
	for e, kind := range objectKinds {
		if kind == d.Event {
			event = e
		}
	}
	if event == "" {
		return "", fmt.Errorf("%w: a stored delivery of an unknown event %q", inbox.ErrPermanent, d.Event)
	}
	ev, err := gl.ParseWebhook(event, d.Payload)
	if err != nil {
		return "", fmt.Errorf("%w: decode %s payload: %w", inbox.ErrPermanent, d.Event, err)
	}
	switch e := ev.(type) {
	case *gl.MergeEvent:
		a := e.ObjectAttributes
		if a.TargetBranch != s.opts.Source.Branch() {
			return fmt.Sprintf("ignored: !%d targets %s, not %s", a.IID, a.TargetBranch, s.opts.Source.Branch()), nil
		}
		switch a.Action {
		case "close", "merge":
			state := map[string]string{"close": "closed", "merge": "merged"}[a.Action]
			if err := s.opts.Store.SaveGitLabMergeRequest(ctx, store.GitLabMergeRequest{Project: s.opts.Project, IID: a.IID, State: state,
				TargetBranch: a.TargetBranch, HeadSHA: a.LastCommit.ID}); err != nil {
				return "", err
			}
			return fmt.Sprintf("!%d %s", a.IID, state), nil
		}
		return s.review(ctx, a.IID)
	case *gl.MergeCommentEvent:
		return s.review(ctx, e.MergeRequest.IID)
	case *gl.PushEvent:
		return s.onPush(ctx, e)
	}
	return "ignored: " + d.Event, nil
}

// mrInfo is what a check needs to know of a merge request.
type mrInfo struct {
	IID          int64
	HeadSHA      string
	TargetBranch string
	Author       string
	Description  string
	State        string // open, closed, merged
	WebURL       string
}

func infoOf(mr *gl.BasicMergeRequest) mrInfo {
	state := mr.State
	switch state {
	case "opened":
		state = "open"
	case "merged", "closed":
	default: // locked: a merge in progress
		state = "open"
	}
	author := ""
	if mr.Author != nil {
		author = mr.Author.Username
	}
	return mrInfo{IID: mr.IID, HeadSHA: mr.SHA, TargetBranch: mr.TargetBranch, Author: author,
		Description: mr.Description, State: state, WebURL: mr.WebURL}
}

func (s *Service) tracked(m mrInfo) bool { return m.TargetBranch == s.opts.Source.Branch() }

func (s *Service) saveMR(ctx context.Context, m mrInfo) error {
	return s.opts.Store.SaveGitLabMergeRequest(ctx, store.GitLabMergeRequest{Project: s.opts.Project, IID: m.IID,
		State: m.State, TargetBranch: m.TargetBranch, HeadSHA: m.HeadSHA, Author: m.Author})
}

// mergeRequest fetches a merge request from the API.
func (s *Service) mergeRequest(ctx context.Context, iid int64) (mrInfo, error) {
	var mr *gl.MergeRequest
	err := s.call(ctx, fmt.Sprintf("get !%d", iid), func(o gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		mr, resp, err = s.client.MergeRequests.GetMergeRequest(s.pid(), iid, nil, o)
		return resp, err
	})
	if err != nil {
		return mrInfo{}, err
	}
	return infoOf(&mr.BasicMergeRequest), nil
}

// review reads a merge request as it is now (its description and every
// note: new, edited and deleted ones) and, while it is open, checks it.
func (s *Service) review(ctx context.Context, iid int64) (string, error) {
	m, err := s.mergeRequest(ctx, iid)
	if err != nil {
		return "", err
	}
	if !s.tracked(m) {
		return fmt.Sprintf("ignored: !%d targets %s, not %s", iid, m.TargetBranch, s.opts.Source.Branch()), nil
	}
	if err := s.gather(ctx, m); err != nil {
		return "", err
	}
	if m.State != "open" {
		return fmt.Sprintf("!%d is %s: its statements were read", iid, m.State), nil
	}
	return s.Check(ctx, m)
}

// gather records a merge request and reads every signed statement made
// there: its description and its notes.
func (s *Service) gather(ctx context.Context, m mrInfo) error {
	if err := s.saveMR(ctx, m); err != nil {
		return err
	}
	if err := s.read(ctx, text{kind: store.GitLabDescription, refID: m.IID, mergeRequest: m.IID, login: m.Author, body: m.Description}); err != nil {
		return err
	}
	return s.syncNotes(ctx, m.IID)
}

// maxPushCommits bounds how many commits of one push are looked up.
const maxPushCommits = 100

// onPush: a push to the tracked branch merged something. For each of its
// commits writ finds the merge requests it belongs to and gathers every
// signed statement made there (a missed webhook loses nothing), then
// nudges the reconciler. Merge commits, squashes and fast-forwards all
// work: approvals bind to content digests, not to commits.
func (s *Service) onPush(ctx context.Context, e *gl.PushEvent) (string, error) {
	if e.Ref != "refs/heads/"+s.opts.Source.Branch() {
		return "ignored: a push to " + e.Ref, nil
	}
	seen := map[string]bool{}
	var shas []string
	add := func(sha string) {
		if sha != "" && sha != zeroSHA && !seen[sha] && len(shas) < maxPushCommits {
			seen[sha] = true
			shas = append(shas, sha)
		}
	}
	for _, c := range e.Commits {
		add(c.ID)
	}
	add(e.CheckoutSHA)
	add(e.After)
	if len(shas) == 0 {
		return "ignored: the branch was deleted", nil
	}
	gathered := map[int64]bool{}
	for _, sha := range shas {
		var mrs []*gl.BasicMergeRequest
		err := s.call(ctx, fmt.Sprintf("merge requests of %.12s", sha), func(o gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			mrs, resp, err = s.client.Commits.ListMergeRequestsByCommit(s.pid(), sha, o)
			return resp, err
		})
		if err != nil {
			return "", err
		}
		for _, mr := range mrs {
			m := infoOf(mr)
			if gathered[m.IID] || !s.tracked(m) {
				continue
			}
			gathered[m.IID] = true
			if err := s.gather(ctx, m); err != nil {
				return "", err
			}
		}
	}
	s.opts.Engine.Nudge()
	return fmt.Sprintf("push of %d commits to %s: gathered the statements of %d merge requests; reconciler nudged", len(shas), s.opts.Source.Branch(), len(gathered)), nil
}

const zeroSHA = "0000000000000000000000000000000000000000"

// RefreshOpen re-reads and re-checks every open merge request writ
// follows: approvals may have arrived through another channel or expired,
// notes may have been deleted (GitLab sends no webhook for that), and the
// base may have moved. Unchanged statuses and notes are not written again.
func (s *Service) RefreshOpen(ctx context.Context) error {
	mrs, err := s.opts.Store.OpenGitLabMergeRequests(ctx, s.opts.Project, 200)
	if err != nil {
		return err
	}
	for _, mr := range mrs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := s.review(ctx, mr.IID); err != nil {
			s.log.WarnContext(ctx, "refresh a merge request", slog.Int64("merge_request", mr.IID), slog.Any("error", err))
		}
	}
	return nil
}
