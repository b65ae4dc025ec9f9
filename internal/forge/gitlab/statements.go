package gitlab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/forge/envelope"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// text is one GitLab text that may carry signed statements.
type text struct {
	kind         string // store.GitLabNote, GitLabDescription
	refID        int64  // the note's id, or the merge request's iid
	mergeRequest int64
	login        string // who wrote it (GitLab username)
	body         string
}

// sourceRef is the approvals' source_ref of a text: "note:ID" or
// "description:IID".
func (t text) sourceRef() string {
	if t.kind == store.GitLabNote {
		return "note:" + strconv.FormatInt(t.refID, 10)
	}
	return "description:" + strconv.FormatInt(t.mergeRequest, 10)
}

func (t text) describe() string {
	if t.kind == store.GitLabNote {
		return fmt.Sprintf("note %d by @%s", t.refID, t.login)
	}
	return fmt.Sprintf("the description of !%d by @%s", t.mergeRequest, t.login)
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// read submits the signed statements a text carries, once per version of
// its body, and records what came of it. A text without one is ordinary
// conversation and is not recorded, unless an edit removed what it
// carried. An edit withdraws the statements the new body no longer
// carries. Notes carry any statement (approvals, rejections, proposals);
// a description carries proposals only, as anyone who may edit it could
// add one.
func (s *Service) read(ctx context.Context, t text) error {
	digest := sha256Hex(t.body)
	prev, err := s.opts.Store.GitLabStatementFor(ctx, s.opts.Project, t.kind, t.refID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if prev != nil && prev.BodySHA256 == digest {
		return nil // read before
	}
	rec := store.GitLabStatement{Project: s.opts.Project, Kind: t.kind, RefID: t.refID, MergeRequest: t.mergeRequest,
		Login: t.login, BodySHA256: digest}
	envs, xerr := envelope.Extract(t.body)
	rec.Envelopes = len(envs)
	if prev != nil && prev.Outcome != store.StatementWithdrawn {
		// An edit: what the text no longer carries no longer counts.
		keep := approval.StatementDigests(envs)
		n, err := s.opts.Engine.WithdrawApprovals(ctx, store.ApprovalSourceGitLab, t.sourceRef(), t.login, keep...)
		if err != nil {
			return fmt.Errorf("withdraw what the edit of %s removed: %w", t.describe(), err)
		}
		if n > 0 {
			s.log.InfoContext(ctx, "edit removed signed statements", slog.String("from", t.describe()), slog.Int64("withdrawn", n))
		}
		if len(envs) == 0 && xerr == nil {
			rec.Outcome = store.StatementWithdrawn
			rec.Message = fmt.Sprintf("edited: carries no signed writ statement any more (%d withdrawn)", n)
			return s.opts.Store.SaveGitLabStatement(ctx, rec)
		}
	}
	if len(envs) == 0 && xerr == nil {
		return nil
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
	rec.Outcome = store.StatementAccepted
	if len(accepted) == 0 {
		rec.Outcome = store.StatementRefused
	}
	rec.Message = strings.Join(append(accepted, refused...), "; ")
	s.log.InfoContext(ctx, "read signed statements", slog.String("from", t.describe()), slog.String("outcome", rec.Outcome),
		slog.Int("accepted", len(accepted)), slog.Int("refused", len(refused)))
	return s.opts.Store.SaveGitLabStatement(ctx, rec)
}

// submit hands one envelope to the engine. ok is false when it was
// refused (msg says why); err is for failures to retry.
func (s *Service) submit(ctx context.Context, t text, raw []byte) (msg string, ok bool, err error) {
	if t.kind == store.GitLabDescription {
		env, perr := approval.Parse(raw)
		if perr == nil && env.Statement.Predicate.Decision != approval.Propose {
			return fmt.Sprintf("a signed %s is read from a note only (so that deleting the note withdraws it); this one is in the description",
				env.Statement.Predicate.Decision), false, nil
		}
	}
	in, err := s.opts.Engine.SubmitApproval(ctx, raw, approval.Submitted{
		Source: store.ApprovalSourceGitLab, SourceRef: t.sourceRef(), SourceLogin: t.login,
	})
	if errors.Is(err, reconcile.ErrRefused) {
		return "refused: " + display.Line(err.Error(), 500), false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("submit the statement of %s: %w", t.describe(), err)
	}
	return fmt.Sprintf("%s by %s accepted", in.Decision, in.Approver), true, nil
}

// reportMarker begins writ's report note: a note carrying it is never
// read for statements.
const reportMarker = "<!-- writ:report -->"

// syncNotes reads every note of a merge request (new and edited ones; a
// body read before is not submitted again) and withdraws the statements
// of notes GitLab no longer lists: deleted, for which GitLab sends no
// webhook. System notes and writ's report note are not read.
func (s *Service) syncNotes(ctx context.Context, iid int64) error {
	rec, err := s.opts.Store.GitLabMergeRequestByIID(ctx, s.opts.Project, iid)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var reportNote int64
	if rec != nil {
		reportNote = rec.ReportNoteID
	}
	listed := map[int64]bool{}
	opt := &gl.ListMergeRequestNotesOptions{ListOptions: gl.ListOptions{PerPage: 100, Page: 1},
		OrderBy: gl.Ptr("created_at"), Sort: gl.Ptr("asc")}
	for {
		var notes []*gl.Note
		var resp *gl.Response
		err := s.call(ctx, fmt.Sprintf("list notes of !%d", iid), func(o gl.RequestOptionFunc) (*gl.Response, error) {
			var err error
			notes, resp, err = s.client.Notes.ListMergeRequestNotes(s.pid(), iid, opt, o)
			return resp, err
		})
		if err != nil {
			return err
		}
		for _, n := range notes {
			listed[n.ID] = true
			if n.System || n.ID == reportNote || strings.HasPrefix(n.Body, reportMarker) {
				continue
			}
			if err := s.read(ctx, text{kind: store.GitLabNote, refID: n.ID, mergeRequest: iid, login: n.Author.Username, body: n.Body}); err != nil {
				return err
			}
		}
		if resp == nil || resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	if reportNote != 0 && !listed[reportNote] {
		// Someone deleted writ's report note: the next check writes it anew.
		s.log.WarnContext(ctx, "the report note was deleted", slog.Int64("merge_request", iid), slog.Int64("note", reportNote))
		if err := s.opts.Store.SaveGitLabReportNote(ctx, s.opts.Project, iid, 0, ""); err != nil {
			return err
		}
	}
	stmts, err := s.opts.Store.GitLabStatementsForMR(ctx, s.opts.Project, iid)
	if err != nil {
		return err
	}
	for _, g := range stmts {
		if g.Kind != store.GitLabNote || listed[g.RefID] || g.Outcome == store.StatementWithdrawn && g.BodySHA256 == "" {
			continue
		}
		t := text{kind: store.GitLabNote, refID: g.RefID, mergeRequest: iid, login: g.Login}
		n, err := s.opts.Engine.WithdrawApprovals(ctx, store.ApprovalSourceGitLab, t.sourceRef(), approval.ForgeGitLab)
		if err != nil {
			return fmt.Errorf("withdraw the statements of deleted %s: %w", t.describe(), err)
		}
		s.log.InfoContext(ctx, "note deleted: its statements are withdrawn", slog.String("from", t.describe()), slog.Int64("withdrawn", n))
		g.Outcome, g.BodySHA256 = store.StatementWithdrawn, ""
		g.Message = fmt.Sprintf("deleted: %d signed statement(s) withdrawn", n)
		if err := s.opts.Store.SaveGitLabStatement(ctx, *g); err != nil {
			return err
		}
	}
	return nil
}
