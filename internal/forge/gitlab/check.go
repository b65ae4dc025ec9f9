package gitlab

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	fr "github.com/writ-sec/writ/internal/forge/report"
	"github.com/writ-sec/writ/internal/store"
)

// Limits: GitLab documents a note's body as at most 1,000,000 characters;
// writ keeps a commit status's description, a short text GitLab shows
// beside the status, to 255 characters (gitlabfake refuses longer ones).
const (
	MaxNoteBody          = 1_000_000
	MaxStatusDescription = 255
)

// Commit status states writ sets.
const (
	StatePending = "pending"
	StateSuccess = "success"
	StateFailed  = "failed"
)

// stateOf maps a report's conclusion to a commit status: awaiting
// signatures is not ready to merge, so it is failed, with a description
// saying so.
func stateOf(conclusion string) string {
	if conclusion == fr.ConclusionSuccess {
		return StateSuccess
	}
	return StateFailed
}

// Check judges a merge request as its merge would be judged now: fetch
// refs/merge-requests/IID/head and the tracked branch, evaluate, write the
// report note (edited in place), then complete the head commit's status.
// It returns a line saying what it concluded.
func (s *Service) Check(ctx context.Context, m mrInfo) (string, error) {
	ref := fmt.Sprintf("refs/merge-requests/%d/head", m.IID)
	head, err := s.opts.Source.FetchRef(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", ref, err)
	}
	if m.HeadSHA != "" && head != m.HeadSHA {
		s.log.DebugContext(ctx, "merge request head moved since it was read", slog.Int64("merge_request", m.IID),
			slog.String("read_head", m.HeadSHA), slog.String("head", head))
	}
	m.HeadSHA = head
	if err := s.startStatus(ctx, m); err != nil {
		return "", err
	}
	base, err := s.opts.Source.Fetch(ctx)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", s.opts.Source.Branch(), err)
	}
	ev, err := s.opts.Engine.Evaluate(ctx, base, head, int(m.IID))
	if err != nil {
		return "", fmt.Errorf("evaluate !%d at %.12s: %w", m.IID, head, err)
	}
	stmts, err := s.opts.Store.GitLabStatementsForMR(ctx, s.opts.Project, m.IID)
	if err != nil {
		return "", err
	}
	rep := fr.Build(fr.Input{Forge: s.words(m.IID), Branch: s.opts.Source.Branch(), Number: int(m.IID), Eval: ev, Statements: statementsOf(stmts)})
	if m.State == "" {
		m.State = "open"
	}
	if err := s.saveMR(ctx, m); err != nil {
		return "", err
	}
	if err := s.writeNote(ctx, m, rep); err != nil {
		return "", err
	}
	if err := s.setStatus(ctx, m, stateOf(rep.Conclusion), description(rep), s.targetURL(m, rep.Conclusion)); err != nil {
		return "", err
	}
	return fmt.Sprintf("!%d at %.12s: %s (%s)", m.IID, head, stateOf(rep.Conclusion), rep.Title), nil
}

// words is how a report is worded on GitLab.
func (s *Service) words(iid int64) fr.Forge {
	return fr.Forge{
		Change: "merge request", Ref: "!",
		Sign:          fmt.Sprintf("--repo %s --pr %d --out statement.json", cmp.Or(s.opts.Repository, "OWNER/NAME"), iid),
		ProposalWhere: "in the description or a note by its author",
		StatementsNote: "A note counts only through the signed writ statement in its body (a ```writ block holding the envelope `writ approve --out` wrote), " +
			"verified with the approvers file in force; the note's author must be the signer's `gitlab` login. " +
			"Editing a note re-reads it; deleting it withdraws its statements. Whether an accepted statement counts is decided above.",
		SummaryLimit: MaxNoteBody - 4096, // the note's header fits in the rest
	}
}

func statementsOf(stmts []*store.GitLabStatement) []fr.Statement {
	out := make([]fr.Statement, 0, len(stmts))
	for _, g := range stmts {
		what := fmt.Sprintf("note %d by @%s", g.RefID, g.Login)
		if g.Kind == store.GitLabDescription {
			what = fmt.Sprintf("description by @%s", g.Login)
		}
		out = append(out, fr.Statement{What: what, Outcome: g.Outcome, Message: g.Message})
	}
	return out
}

// description is a commit status's description: the report's title.
func description(rep fr.Report) string {
	d := rep.Title
	if rep.Conclusion == fr.ConclusionActionRequired {
		d = "Awaiting signatures: " + d
	}
	return fr.FitChars(d, MaxStatusDescription, fr.TruncatedMark)
}

func digestOf(parts ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		_ = enc.Encode(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// startStatus sets a pending status on a head commit that has none from
// writ yet, so the merge request shows writ at work.
func (s *Service) startStatus(ctx context.Context, m mrInfo) error {
	_, err := s.opts.Store.GitLabCommitStatusFor(ctx, s.opts.Project, m.HeadSHA, s.opts.StatusName)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return s.setStatus(ctx, m, StatePending, "writ is validating, deciding and dry-running this merge request", s.targetURL(m, ""))
}

// setStatus sets the commit status unless the same one is set already.
// GitLab refuses to set a pending or running status again ("Cannot
// transition status"); a completed one is replaced by a new one.
func (s *Service) setStatus(ctx context.Context, m mrInfo, state, desc, target string) error {
	digest := digestOf(state, desc, target)
	prev, err := s.opts.Store.GitLabCommitStatusFor(ctx, s.opts.Project, m.HeadSHA, s.opts.StatusName)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if prev != nil && prev.State == state && (prev.Digest == digest || state == StatePending) {
		return nil
	}
	opt := &gl.SetCommitStatusOptions{State: gl.BuildStateValue(state), Name: gl.Ptr(s.opts.StatusName),
		Description: gl.Ptr(desc)}
	if target != "" {
		opt.TargetURL = gl.Ptr(target)
	}
	err = s.call(ctx, fmt.Sprintf("set the status of %.12s", m.HeadSHA), func(o gl.RequestOptionFunc) (*gl.Response, error) {
		_, resp, err := s.client.Commits.SetCommitStatus(s.pid(), m.HeadSHA, opt, o)
		return resp, err
	})
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "commit status set", slog.Int64("merge_request", m.IID), slog.String("head", m.HeadSHA), slog.String("state", state))
	return s.opts.Store.SaveGitLabCommitStatus(ctx, store.GitLabCommitStatus{Project: s.opts.Project, HeadSHA: m.HeadSHA,
		Name: s.opts.StatusName, MergeRequest: m.IID, State: state, Digest: digest})
}

// noteBody is the report note: the marker, a heading with the status and
// the summary, within GitLab's limit.
func (s *Service) noteBody(m mrInfo, rep fr.Report) string {
	icon := map[string]string{fr.ConclusionSuccess: "✅", fr.ConclusionActionRequired: "⏳", fr.ConclusionFailure: "❌"}[rep.Conclusion]
	b := fmt.Sprintf("%s\n## %s %s: %s\n\n%s", reportMarker, icon, fr.MD(s.opts.StatusName), fr.MD(rep.Title), rep.Summary)
	return fr.FitChars(b, MaxNoteBody, fr.SummaryCut)
}

// writeNote writes the report in the merge request's one writ note,
// edited in place; an unchanged report is not written again, and a note
// someone deleted is written anew.
func (s *Service) writeNote(ctx context.Context, m mrInfo, rep fr.Report) error {
	body := s.noteBody(m, rep)
	digest := sha256Hex(body)
	rec, err := s.opts.Store.GitLabMergeRequestByIID(ctx, s.opts.Project, m.IID)
	if err != nil {
		return err
	}
	if rec.ReportNoteID != 0 && rec.ReportDigest == digest {
		return nil
	}
	id := rec.ReportNoteID
	if id != 0 {
		err := s.call(ctx, fmt.Sprintf("edit the report note of !%d", m.IID), func(o gl.RequestOptionFunc) (*gl.Response, error) {
			_, resp, err := s.client.Notes.UpdateMergeRequestNote(s.pid(), m.IID, id, &gl.UpdateMergeRequestNoteOptions{Body: gl.Ptr(body)}, o)
			return resp, err
		})
		var er *gl.ErrorResponse
		switch {
		case err == nil:
		case errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound:
			s.log.WarnContext(ctx, "the report note was deleted: writing a new one", slog.Int64("merge_request", m.IID), slog.Int64("note", id))
			id = 0
		default:
			return err
		}
	}
	if id == 0 {
		err := s.call(ctx, fmt.Sprintf("write the report note of !%d", m.IID), func(o gl.RequestOptionFunc) (*gl.Response, error) {
			n, resp, err := s.client.Notes.CreateMergeRequestNote(s.pid(), m.IID, &gl.CreateMergeRequestNoteOptions{Body: gl.Ptr(body)}, o)
			if n != nil {
				id = n.ID
			}
			return resp, err
		})
		if err != nil {
			return err
		}
	}
	return s.opts.Store.SaveGitLabReportNote(ctx, s.opts.Project, m.IID, id, digest)
}

// targetURL is the commit status's target_url: DetailsURL when
// configured; awaiting signatures, the console's queue when its origin is
// known; otherwise the merge request on GitLab, where the note says all.
func (s *Service) targetURL(m mrInfo, conclusion string) string {
	switch {
	case s.opts.DetailsURL != "":
		return s.opts.DetailsURL
	case conclusion == fr.ConclusionActionRequired && s.opts.ConsoleOrigin != "":
		return strings.TrimSuffix(s.opts.ConsoleOrigin, "/") + "/pending"
	case m.WebURL != "" && (strings.HasPrefix(m.WebURL, "https://") || strings.HasPrefix(m.WebURL, "http://")):
		return m.WebURL
	}
	return s.web.JoinPath(s.opts.Project, "-", "merge_requests", strconv.FormatInt(m.IID, 10)).String()
}
