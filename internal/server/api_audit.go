package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	tlog "github.com/transparency-dev/formats/log"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

// parseTime reads an export bound as `writ audit export` does: RFC 3339,
// a date (midnight UTC) or a duration ago (24h, 7d).
func parseTime(name, v string) (time.Time, error) {
	t, err := audit.ParseTime(name, v, time.Now())
	if err != nil {
		return time.Time{}, badRequest("%v", err)
	}
	return t, nil
}

// auditExport streams the audit log, or the entries the filters select,
// as writ audit export does: NDJSON by default, one consistent snapshot,
// with the keys and checkpoint offline verification needs. A cut-off
// download is told from a short log by its end line.
func (a *API) auditExport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := audit.ExportOptions{Actor: q.Get("actor"), Event: q.Get("event"), Format: q.Get("format"), Proofs: q.Get("proofs") == "true"}
	var err error
	if opts.Since, err = parseTime("since", q.Get("since")); err != nil {
		a.fail(w, r, "audit export", err)
		return
	}
	if opts.Until, err = parseTime("until", q.Get("until")); err != nil {
		a.fail(w, r, "audit export", err)
		return
	}
	switch opts.Format {
	case "", audit.FormatNDJSON:
		opts.Format = audit.FormatNDJSON
		w.Header().Set("Content-Type", "application/x-ndjson")
	case audit.FormatJSON:
		w.Header().Set("Content-Type", "application/json")
	default:
		a.fail(w, r, "audit export", badRequest("format must be ndjson or json, not %q", opts.Format))
		return
	}
	if !opts.Since.IsZero() && !opts.Until.IsZero() && !opts.Since.Before(opts.Until) {
		a.fail(w, r, "audit export", badRequest("since must be before until"))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="writ-audit.`+opts.Format+`"`)
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	sum, err := audit.Export(r.Context(), a.opts.Store, fw, opts)
	a.recordExport(r, opts, sum, err)
	if err != nil {
		if !fw.wrote {
			if errors.Is(err, audit.ErrNoCheckpoint) {
				writeProblem(w, http.StatusConflict, "no_checkpoint", "%v", err)
				return
			}
			a.fail(w, r, "audit export", err)
			return
		}
		// Headers are gone; the missing end line tells the client.
		a.log.ErrorContext(r.Context(), "audit export cut off", slog.Any("error", err))
		return
	}
	a.log.InfoContext(r.Context(), "audit log exported", slog.Uint64("entries", sum.Entries), slog.Bool("complete", sum.Complete))
}

// flushWriter flushes every so often so a long export streams.
type flushWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	wrote bool
	n     int
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if !f.wrote {
		f.w.WriteHeader(http.StatusOK)
		f.wrote = true
	}
	n, err := f.w.Write(p)
	f.n += n
	if f.n >= 64<<10 {
		f.n = 0
		_ = f.rc.Flush()
	}
	return n, err
}

// VerifyReport is what POST /api/v1/audit/verify established.
type VerifyReport struct {
	OK          bool     `json:"ok"`
	Entries     uint64   `json:"entries"`
	Size        uint64   `json:"size"`
	Root        string   `json:"root"`
	Signatures  uint64   `json:"signatures"`
	Checkpoints []uint64 `json:"checkpoints"`
	// Bad is the first problem.
	Bad *VerifyFinding `json:"bad,omitempty"`
	// TrustedKeys are the ids of the keys signatures were checked with.
	TrustedKeys []string `json:"trusted_keys"`
}

// VerifyFinding is the first problem verification found.
type VerifyFinding struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

// verifyRequest optionally names checkpoints the log must contain.
type verifyRequest struct {
	Checkpoints []string `json:"checkpoints"`
}

// auditVerify re-derives the chain, signatures and tree of the log in the
// database with the server's trusted keys, and proves it contains the
// recorded checkpoint and any the caller gives. It answers 200 with ok
// false when the log does not verify.
func (a *API) auditVerify(w http.ResponseWriter, r *http.Request) {
	if a.opts.TrustedKeys == nil || a.opts.TrustedKeys.Len() == 0 {
		writeProblem(w, http.StatusServiceUnavailable, "no_trusted_keys", "this server has no trusted audit keys to verify with")
		return
	}
	var req verifyRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			a.fail(w, r, "audit verify", err)
			return
		}
	}
	if len(req.Checkpoints) > 100 {
		a.fail(w, r, "audit verify", badRequest("at most 100 checkpoints"))
		return
	}
	select {
	case a.verifying <- struct{}{}:
		defer func() { <-a.verifying }()
	default:
		w.Header().Set("Retry-After", "30")
		writeProblem(w, http.StatusTooManyRequests, "busy", "a verification is running; try again when it is done")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	// The server holds the key signing now: after a rotation, the keys
	// before it are trusted through the rotations' proofs of possession.
	trusted, err := audit.TrustPredecessors(ctx, a.opts.Store, a.opts.TrustedKeys)
	if err != nil {
		a.fail(w, r, "audit verify", err)
		return
	}
	opts := audit.VerifyOptions{Trusted: trusted}
	for i, c := range req.Checkpoints {
		if err := checkpointShape([]byte(c)); err != nil {
			a.fail(w, r, "audit verify", badRequest("checkpoint %d: %v", i, err))
			return
		}
		opts.Checkpoints = append(opts.Checkpoints, []byte(c))
	}
	rep, err := audit.VerifyDatabase(ctx, a.opts.Store, opts)
	a.recordVerify(r, len(req.Checkpoints), rep, err)
	if err != nil {
		a.fail(w, r, "audit verify", err)
		return
	}
	out := VerifyReport{OK: rep.Bad == nil, Entries: rep.Entries, Size: rep.Size, Root: hex.EncodeToString(rep.Root),
		Signatures: rep.Signatures, Checkpoints: rep.Checkpoints, TrustedKeys: []string{}}
	if out.Checkpoints == nil {
		out.Checkpoints = []uint64{}
	}
	for _, k := range trusted.Keys() {
		out.TrustedKeys = append(out.TrustedKeys, k.ID)
	}
	if rep.Bad != nil {
		out.Bad = &VerifyFinding{Seq: rep.Bad.Seq, Reason: rep.Bad.Reason}
		a.log.WarnContext(r.Context(), "audit log does not verify", slog.String("finding", rep.Bad.Error()))
	}
	writeJSON(w, http.StatusOK, out)
}

// checkpointShape checks a caller's checkpoint is a signed note holding a
// checkpoint body (its signature is checked by the verification, with the
// keys trusted by then).
func checkpointShape(note []byte) error {
	body, _, ok := bytes.Cut(note, []byte("\n\n"))
	if !ok {
		return errors.New("not a signed note")
	}
	var cp tlog.Checkpoint
	if _, err := cp.Unmarshal(append(body, '\n')); err != nil {
		return err
	}
	return nil
}

// CheckpointView is a signed checkpoint.
type CheckpointView struct {
	Size      int64     `json:"size"`
	Root      string    `json:"root"`
	KeyID     string    `json:"key_id"`
	Note      string    `json:"note"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

func (a *API) latestCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := a.opts.Store.LatestAuditCheckpoint(r.Context())
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, http.StatusNotFound, "not_found", "the log has no checkpoint yet")
		return
	}
	if err != nil {
		a.fail(w, r, "latest checkpoint", err)
		return
	}
	writeJSON(w, http.StatusOK, CheckpointView{Size: cp.Size, Root: hex.EncodeToString(cp.Root), KeyID: cp.KeyID, Note: cp.Note, CreatedAt: cp.CreatedAt})
}

// SinkResultView is what one checkpoint sink did with a checkpoint.
type SinkResultView struct {
	Sink string `json:"sink"`
	// OK: the sink holds the checkpoint.
	OK bool `json:"ok"`
	// Error is why it does not.
	Error string `json:"error,omitempty"`
	// NotContained: the sink holds a checkpoint of the log's key that the
	// log does not contain (rolled back, truncated or forked).
	NotContained bool `json:"not_contained,omitempty"`
}

// MadeCheckpoint is the answer of POST /api/v1/audit/checkpoints: the
// checkpoint, recorded in the database, and each sink's outcome.
type MadeCheckpoint struct {
	CheckpointView
	Sinks []SinkResultView `json:"sinks"`
	// Warnings are the errors of the sinks that do not hold it.
	Warnings []string `json:"warnings,omitempty"`
}

// makeCheckpoint signs, records and publishes a checkpoint now. Once the
// database recorded it the answer is 201, whatever the sinks did: each
// one's outcome is in sinks. A sink proving the log does not contain a
// checkpoint it published stops the checkpoint before it is recorded:
// 409 not_contained.
func (a *API) makeCheckpoint(w http.ResponseWriter, r *http.Request) {
	if a.opts.Checkpointer == nil {
		writeProblem(w, http.StatusServiceUnavailable, "no_checkpointer", "this replica does not make checkpoints (the leader does)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	cp, err := a.opts.Checkpointer.Checkpoint(ctx)
	if errors.Is(err, ErrNotLeader) {
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusServiceUnavailable, "not_leader", "%v", err)
		return
	}
	if cp == nil && errors.Is(err, audit.ErrNotContained) {
		a.log.ErrorContext(r.Context(), "checkpoint refused: the log does not contain a published checkpoint", slog.Any("error", err))
		writeProblem(w, http.StatusConflict, "not_contained", "%v", err)
		return
	}
	if cp == nil {
		if err == nil {
			err = errors.New("no checkpoint made")
		}
		a.fail(w, r, "make a checkpoint", err)
		return
	}
	out := MadeCheckpoint{CheckpointView: CheckpointView{Size: int64(cp.Size), Root: hex.EncodeToString(cp.Root), KeyID: cp.KeyID, Note: string(cp.Note)},
		Sinks: []SinkResultView{}}
	for _, s := range cp.Sinks {
		v := SinkResultView{Sink: s.Sink, OK: s.Err == nil}
		if s.Err != nil {
			v.Error, v.NotContained = s.Err.Error(), errors.Is(s.Err, audit.ErrNotContained)
			out.Warnings = append(out.Warnings, v.Error)
		}
		out.Sinks = append(out.Sinks, v)
	}
	if err != nil && len(out.Warnings) == 0 {
		out.Warnings = strings.Split(err.Error(), "\n")
	}
	a.log.InfoContext(r.Context(), "checkpoint made on request", slog.Uint64("size", cp.Size), slog.Int("failed_sinks", len(out.Warnings)),
		slog.String("by", actor(r, AdminRoles).ID))
	writeJSON(w, http.StatusCreated, out)
}
