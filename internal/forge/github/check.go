package github

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v88/github"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// maxReviewRequests bounds one review request (GitHub's limit).
const maxReviewRequests = 15

// Check judges a pull request as its merge would be judged now and writes
// its check run on the head commit: fetch refs/pull/N/head and the tracked
// branch, read reviews not read yet, evaluate, ask qualified approvers for
// reviews when approvals are missing, write the check. It returns a line
// saying what it concluded.
func (s *Service) Check(ctx context.Context, p prInfo) (string, error) {
	ref := fmt.Sprintf("refs/pull/%d/head", p.Number)
	head, err := s.opts.Source.FetchRef(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", ref, err)
	}
	if p.HeadSHA != "" && head != p.HeadSHA {
		s.log.DebugContext(ctx, "pull request head moved since the event", slog.Int("pull_request", p.Number),
			slog.String("event_head", p.HeadSHA), slog.String("head", head))
	}
	p.HeadSHA = head
	if err := s.startCheck(ctx, p); err != nil {
		return "", err
	}
	base, err := s.opts.Source.Fetch(ctx)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", s.opts.Source.Branch(), err)
	}
	if err := s.syncReviews(ctx, p.Number); err != nil {
		return "", err
	}
	ev, err := s.opts.Engine.Evaluate(ctx, base, head, p.Number)
	if err != nil {
		return "", fmt.Errorf("evaluate #%d at %.12s: %w", p.Number, head, err)
	}
	stmts, err := s.opts.Store.GitHubStatementsForPR(ctx, s.opts.Repository, p.Number)
	if err != nil {
		return "", err
	}
	rep := buildReport(reportInput{Repository: s.opts.Repository, Branch: s.opts.Source.Branch(), PR: p, Eval: ev,
		Statements: stmts, Keyring: s.keyringAt(ctx, ev.TrustedCommit)})
	if rep.Conclusion == ConclusionActionRequired && len(rep.Reviewers) > 0 {
		if err := s.requestReviews(ctx, p, rep.Reviewers); err != nil {
			return "", err
		}
	}
	if err := s.writeCheck(ctx, p, rep); err != nil {
		return "", err
	}
	if p.State == "" {
		p.State = "open"
	}
	if err := s.savePR(ctx, p); err != nil {
		return "", err
	}
	return fmt.Sprintf("#%d at %.12s: %s (%s)", p.Number, head, rep.Conclusion, rep.Title), nil
}

// keyringAt reads the approvers file of the trusted commit (nil when it
// has none or it does not parse: then nobody is asked for a review).
func (s *Service) keyringAt(ctx context.Context, sha string) *approval.Keyring {
	fsys, err := s.opts.Source.FS(sha)
	if err != nil {
		return nil
	}
	data, prob, err := playbook.ReadFile(fsys, approval.KeyringPath)
	if err != nil || prob != nil {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.WarnContext(ctx, "read the trusted approvers file", slog.Any("error", err))
		}
		return nil
	}
	k, problems := approval.ParseKeyring(approval.KeyringPath, data)
	if problems != nil {
		return nil
	}
	return k
}

// requestReviews asks qualified approvers for a review, once each.
func (s *Service) requestReviews(ctx context.Context, p prInfo, logins []string) error {
	rec, err := s.opts.Store.GitHubPullRequestByNumber(ctx, s.opts.Repository, p.Number)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if rec == nil {
		if p.State == "" {
			p.State = "open"
		}
		if err := s.savePR(ctx, p); err != nil {
			return err
		}
	}
	var ask []string
	for _, l := range logins {
		if rec == nil || !slices.Contains(rec.RequestedReviewers, l) {
			ask = append(ask, l)
		}
	}
	if len(ask) == 0 {
		return nil
	}
	if len(ask) > maxReviewRequests {
		ask = ask[:maxReviewRequests]
	}
	err = s.call(ctx, fmt.Sprintf("request reviews on #%d", p.Number), func(ctx context.Context) (*gh.Response, error) {
		_, resp, err := s.opts.Client.PullRequests.RequestReviewers(ctx, s.owner, s.name, p.Number, gh.ReviewersRequest{Reviewers: ask})
		return resp, err
	})
	if err != nil {
		if statusOf(err) != http.StatusUnprocessableEntity {
			return err
		}
		// Someone is not a collaborator: GitHub refuses the whole request.
		// The check still names who may approve; do not ask again.
		s.log.WarnContext(ctx, "GitHub refused the review request", slog.Int("pull_request", p.Number),
			slog.Any("logins", ask), slog.String("error", err.Error()))
	} else {
		s.log.InfoContext(ctx, "asked for reviews", slog.Int("pull_request", p.Number), slog.Any("logins", ask))
	}
	return s.opts.Store.AddRequestedReviewers(ctx, s.opts.Repository, p.Number, ask)
}

// startCheck creates an in-progress check run on a head commit that has
// none yet, so the pull request shows writ at work.
func (s *Service) startCheck(ctx context.Context, p prInfo) error {
	_, err := s.opts.Store.GitHubCheckRunFor(ctx, s.opts.Repository, p.HeadSHA, s.opts.CheckName)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return err
	}
	opts := gh.CreateCheckRunOptions{
		Name: s.opts.CheckName, HeadSHA: p.HeadSHA, Status: gh.Ptr("in_progress"),
		StartedAt: &gh.Timestamp{Time: time.Now()}, ExternalID: gh.Ptr(fmt.Sprintf("%s#%d", s.opts.Repository, p.Number)),
		Output: &gh.CheckRunOutput{Title: gh.Ptr("Checking"), Summary: gh.Ptr("writ is validating, deciding and dry-running this pull request.")},
	}
	if s.opts.DetailsURL != "" {
		opts.DetailsURL = gh.Ptr(s.opts.DetailsURL)
	}
	var run *gh.CheckRun
	err = s.call(ctx, "create check run", func(ctx context.Context) (*gh.Response, error) {
		var resp *gh.Response
		var err error
		run, resp, err = s.opts.Client.Checks.CreateCheckRun(ctx, s.owner, s.name, opts)
		return resp, err
	})
	if err != nil {
		return err
	}
	return s.opts.Store.SaveGitHubCheckRun(ctx, store.GitHubCheckRun{Repository: s.opts.Repository, HeadSHA: p.HeadSHA,
		Name: s.opts.CheckName, CheckRunID: run.GetID(), PullRequest: p.Number, Conclusion: ""})
}

func digestOf(parts ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		_ = enc.Encode(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeCheck completes (or updates) the head commit's check run. An output
// equal to the last one written is not written again. Annotations go 50
// per request; GitHub appends them on every update, so they are sent once
// per check run, and a changed set starts a new check run.
func (s *Service) writeCheck(ctx context.Context, p prInfo, rep report) error {
	outDigest := digestOf(rep.Conclusion, rep.Title, rep.Summary)
	annDigest := digestOf(rep.Annotations)
	existing, err := s.opts.Store.GitHubCheckRunFor(ctx, s.opts.Repository, p.HeadSHA, s.opts.CheckName)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if existing != nil && existing.Conclusion == rep.Conclusion && existing.OutputDigest == outDigest && existing.AnnotationsDigest == annDigest {
		return nil
	}
	var id int64
	sendAnnotations := true
	if existing != nil {
		switch existing.AnnotationsDigest {
		case "": // in progress: nothing sent yet
			id = existing.CheckRunID
		case annDigest:
			id, sendAnnotations = existing.CheckRunID, false
		}
	}
	batches := [][]*gh.CheckRunAnnotation{nil}
	if sendAnnotations && len(rep.Annotations) > 0 {
		batches = batches[:0]
		for a := range slices.Chunk(rep.Annotations, AnnotationsPerWrite) {
			batches = append(batches, a)
		}
	}
	now := &gh.Timestamp{Time: time.Now()}
	output := func(batch []*gh.CheckRunAnnotation) *gh.CheckRunOutput {
		return &gh.CheckRunOutput{Title: gh.Ptr(rep.Title), Summary: gh.Ptr(rep.Summary), Annotations: batch}
	}
	if id == 0 {
		opts := gh.CreateCheckRunOptions{Name: s.opts.CheckName, HeadSHA: p.HeadSHA, Status: gh.Ptr("completed"),
			Conclusion: gh.Ptr(rep.Conclusion), CompletedAt: now, Output: output(batches[0]),
			ExternalID: gh.Ptr(fmt.Sprintf("%s#%d", s.opts.Repository, p.Number))}
		if u := s.detailsURL(p, rep.Conclusion); u != "" {
			opts.DetailsURL = gh.Ptr(u)
		}
		err := s.call(ctx, "create check run", func(ctx context.Context) (*gh.Response, error) {
			run, resp, err := s.opts.Client.Checks.CreateCheckRun(ctx, s.owner, s.name, opts)
			id = run.GetID()
			return resp, err
		})
		if err != nil {
			return err
		}
		batches = batches[1:]
	} else {
		opts := gh.UpdateCheckRunOptions{Name: s.opts.CheckName, Status: gh.Ptr("completed"), Conclusion: gh.Ptr(rep.Conclusion),
			CompletedAt: now, Output: output(batches[0])}
		if u := s.detailsURL(p, rep.Conclusion); u != "" {
			opts.DetailsURL = gh.Ptr(u)
		}
		err := s.call(ctx, "complete check run", func(ctx context.Context) (*gh.Response, error) {
			_, resp, err := s.opts.Client.Checks.UpdateCheckRun(ctx, s.owner, s.name, id, opts)
			return resp, err
		})
		if err != nil {
			return err
		}
		batches = batches[1:]
	}
	if len(batches) > 0 {
		// Annotations were sent: should a later batch fail, the retry starts
		// a new check run rather than append them twice.
		if err := s.opts.Store.SaveGitHubCheckRun(ctx, store.GitHubCheckRun{Repository: s.opts.Repository, HeadSHA: p.HeadSHA,
			Name: s.opts.CheckName, CheckRunID: id, PullRequest: p.Number, AnnotationsDigest: "partial"}); err != nil {
			return err
		}
	}
	for _, batch := range batches {
		opts := gh.UpdateCheckRunOptions{Name: s.opts.CheckName, Output: output(batch)}
		err := s.call(ctx, "annotate check run", func(ctx context.Context) (*gh.Response, error) {
			_, resp, err := s.opts.Client.Checks.UpdateCheckRun(ctx, s.owner, s.name, id, opts)
			return resp, err
		})
		if err != nil {
			return err
		}
	}
	s.log.InfoContext(ctx, "check run written", slog.Int("pull_request", p.Number), slog.String("head", p.HeadSHA),
		slog.String("conclusion", rep.Conclusion), slog.Int("annotations", len(rep.Annotations)), slog.Bool("annotations_sent", sendAnnotations))
	return s.opts.Store.SaveGitHubCheckRun(ctx, store.GitHubCheckRun{Repository: s.opts.Repository, HeadSHA: p.HeadSHA,
		Name: s.opts.CheckName, CheckRunID: id, PullRequest: p.Number, Conclusion: rep.Conclusion,
		OutputDigest: outDigest, AnnotationsDigest: annDigest})
}

// detailsURL is the check run's details_url for a conclusion: DetailsURL
// when configured; for action_required (GitHub asks for a page with the
// details then) the console's queue of what waits for signatures, or,
// without a console origin, the pull request's checks on GitHub, where
// the summary lists what to sign; otherwise none.
func (s *Service) detailsURL(p prInfo, conclusion string) string {
	switch {
	case s.opts.DetailsURL != "":
		return s.opts.DetailsURL
	case conclusion != ConclusionActionRequired:
		return ""
	case s.opts.ConsoleOrigin != "":
		return strings.TrimSuffix(s.opts.ConsoleOrigin, "/") + "/pending"
	}
	return s.webURL().JoinPath(s.owner, s.name, "pull", strconv.Itoa(p.Number), "checks").String()
}

// webURL is the web address of the GitHub the client talks to: the API's
// host without "api." (github.com), or without the /api/v3/ path
// (Enterprise Server, and the fake).
func (s *Service) webURL() *url.URL {
	u, err := url.Parse(s.opts.Client.BaseURL())
	if err != nil {
		return &url.URL{Scheme: "https", Host: "github.com", Path: "/"}
	}
	u.RawQuery, u.Fragment = "", ""
	if h, ok := strings.CutPrefix(u.Host, "api."); ok && u.Path == "/" {
		u.Host = h
		return u
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v3") + "/"
	u.RawPath = ""
	return u
}
