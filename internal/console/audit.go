package console

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

// The audit log: a timeline of entries, newest first, each verified with
// the server's trusted keys (chain link, hash, signature: audit.
// VerifyEntries), the latest checkpoint and whether the log still
// contains it (audit.CheckCheckpoint), and the export GET
// /api/v1/audit/export makes (audit.Export).

// Bounds of the audit page.
const (
	auditDefaultLimit = 100
	auditMaxLimit     = 500
	// auditMaxScan bounds the entries one page reads when the subject
	// filter (which the database cannot apply) skips most of them.
	auditMaxScan = 10000
)

// auditFilters are the filters of the audit page and its export, as the
// query gave them (Raw) and as read.
type auditFilters struct {
	Raw          url.Values
	Since, Until time.Time
	Actor, Event string
	Subject      string
}

func (f *auditFilters) any() bool {
	return !f.Since.IsZero() || !f.Until.IsZero() || f.Actor != "" || f.Event != "" || f.Subject != ""
}

// readAuditFilters reads since, until, actor, event and subject; the
// problem names the parameter.
func (c *Console) readAuditFilters(q url.Values) (f auditFilters, param, problem string) {
	f.Raw = url.Values{}
	read := func(name string, limit int) (string, bool) {
		v, err := queryValue(q, name, limit)
		if err != nil {
			param, problem = name, err.Error()
			return "", false
		}
		if v != "" {
			f.Raw.Set(name, v)
		}
		return v, true
	}
	now := c.opts.Now()
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v, ok := read(b.name, 64)
		if !ok {
			return f, param, problem
		}
		t, err := audit.ParseTime(b.name, v, now)
		if err != nil {
			return f, b.name, err.Error()
		}
		*b.t = t
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, "since", "since must be before until"
	}
	var ok bool
	if f.Actor, ok = read("actor", 256); !ok {
		return f, param, problem
	}
	if f.Event, ok = read("event", 128); !ok {
		return f, param, problem
	}
	if f.Subject, ok = read("subject", 1100); !ok {
		return f, param, problem
	}
	return f, "", ""
}

// matchSubject: a subject filter "kind:name" matches both (an empty name:
// any subject of that kind), and a value without a colon the name.
func matchSubject(filter string, s audit.Subject) bool {
	if filter == "" {
		return true
	}
	if kind, name, ok := strings.Cut(filter, ":"); ok {
		return s.Kind == kind && (name == "" || s.Name == name)
	}
	return s.Name == filter
}

// auditRow is one entry of the timeline.
type auditRow struct {
	Seq       int64
	At        time.Time
	ActorID   string
	ActorRole string
	Event     string
	Subject   audit.Subject
	Success   bool
	// Decoded: the entry's bytes decode (else only the columns show).
	Decoded bool
	// Check is verified, broken, unchecked or unverifiable (a class of
	// .state); Problem the reason when broken.
	Check   string
	Problem string
}

// auditVerification is what the page says of its entries.
type auditVerification struct {
	State   string // verified, broken, unverifiable
	Message string
}

// auditCheckpoint is the latest checkpoint as the page shows it.
type auditCheckpoint struct {
	Size      int64
	Root      string
	KeyID     string
	CreatedAt time.Time
	Status    *audit.CheckpointStatus
	Problem   string // the note does not even read
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, param, problem := c.readAuditFilters(q)
	if param != "" {
		c.badQuery(w, r, param, problem)
		return
	}
	limit := auditDefaultLimit
	if v, err := queryValue(q, "limit", 8); err != nil {
		c.badQuery(w, r, "limit", err.Error())
		return
	} else if v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > auditMaxLimit {
			c.badQuery(w, r, "limit", fmt.Sprintf("%q is not a number from 1 to %d", v, auditMaxLimit))
			return
		}
		limit = n
	}
	var before int64
	if v, err := queryValue(q, "before", 20); err != nil {
		c.badQuery(w, r, "before", err.Error())
		return
	} else if v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			c.badQuery(w, r, "before", fmt.Sprintf("%q is not a sequence number above 0", v))
			return
		}
		before = n
	}
	ctx, cancel := pageContext(r)
	defer cancel()

	// The entries: the database applies every filter but the subject,
	// which is inside the entry's bytes.
	filter := store.AuditFilter{Since: f.Since, Until: f.Until, ActorID: f.Actor, Event: f.Event, Below: before}
	chunk := limit
	if f.Subject != "" {
		chunk = auditMaxLimit
	}
	var rows []auditRow
	var scanned int
	more := false
	lastScanned := int64(0)
	for len(rows) < limit {
		page, err := c.opts.Store.AuditEntriesNewestFirst(ctx, filter, chunk)
		if err != nil {
			c.fail(w, r, "read the audit log", err)
			return
		}
		for _, e := range page {
			lastScanned = e.Seq
			scanned++
			row := auditRow{Seq: e.Seq, At: e.At, ActorID: e.ActorID, Event: e.Event, Check: "unchecked"}
			if d, err := audit.Decode(e.Entry); err == nil {
				row.Decoded, row.ActorRole, row.Subject, row.Success = true, d.Actor.Role, d.Subject, d.Success
			}
			if f.Subject != "" && (!row.Decoded || !matchSubject(f.Subject, row.Subject)) {
				continue
			}
			rows = append(rows, row)
			if len(rows) == limit {
				break
			}
		}
		if len(page) < chunk {
			break // the log has no more
		}
		filter.Below = lastScanned
		if len(rows) == limit || scanned >= auditMaxScan {
			more = true
			break
		}
	}
	if len(rows) == limit {
		more = true
	}
	next := ""
	if more && lastScanned > 0 {
		v := cloneValues(f.Raw)
		v.Set("before", strconv.FormatInt(lastScanned, 10))
		if limit != auditDefaultLimit {
			v.Set("limit", strconv.Itoa(limit))
		}
		next = "/audit?" + v.Encode()
	}

	verification, err := c.verifyRows(r, rows)
	if err != nil {
		c.fail(w, r, "verify the audit entries", err)
		return
	}
	cp, err := c.latestCheckpoint(r)
	if err != nil {
		c.fail(w, r, "check the latest checkpoint", err)
		return
	}
	export := "/audit/export"
	if ev := cloneValues(f.Raw); len(ev) > 0 {
		ev.Del("subject")
		if len(ev) > 0 {
			export += "?" + ev.Encode()
		}
	}
	c.render(w, r, http.StatusOK, "audit.html", "Audit log", map[string]any{
		"Rows": rows, "Filters": f, "Since": f.Raw.Get("since"), "Until": f.Raw.Get("until"), "Limit": limit, "Before": before,
		"Next": next, "Scanned": scanned, "Verification": verification, "Checkpoint": cp, "Export": export,
		"Filtered": f.any(),
	})
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// verifyRows verifies the page's entries (each with the one before it)
// with the trusted keys and marks each row.
func (c *Console) verifyRows(r *http.Request, rows []auditRow) (*auditVerification, error) {
	keys := c.opts.TrustedKeys
	if keys == nil || keys.Len() == 0 {
		for i := range rows {
			rows[i].Check = "unverifiable"
		}
		return &auditVerification{State: "unverifiable", Message: "cannot verify: no trusted keys (the server has no audit public keys configured)"}, nil
	}
	if len(rows) == 0 {
		return &auditVerification{State: "verified", Message: "no entries on this page"}, nil
	}
	seqs := make([]uint64, len(rows))
	for i, row := range rows {
		seqs[i] = uint64(row.Seq)
	}
	ctx, cancel := pageContext(r)
	defer cancel()
	rep, err := audit.VerifyEntries(ctx, c.opts.Store, seqs, keys)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		switch {
		case rep.Bad == nil || rows[i].Seq < rep.Bad.Seq:
			rows[i].Check = "verified"
		case rows[i].Seq == rep.Bad.Seq:
			rows[i].Check, rows[i].Problem = "broken", rep.Bad.Reason
		default:
			rows[i].Check = "unchecked"
		}
	}
	if rep.Bad != nil {
		if rep.Bad.Seq < 0 {
			return &auditVerification{State: "broken", Message: "broken: " + rep.Bad.Reason}, nil
		}
		return &auditVerification{State: "broken", Message: fmt.Sprintf("broken at seq %d: %s", rep.Bad.Seq, rep.Bad.Reason)}, nil
	}
	return &auditVerification{State: "verified", Message: fmt.Sprintf(
		"verified: the %d entries shown and the one before each (%d entries, %d signatures): hashes, chain links and signatures by trusted keys",
		len(rows), rep.Entries, rep.Signatures)}, nil
}

// latestCheckpoint reads the latest checkpoint as GET
// /api/v1/audit/checkpoints/latest does, and checks it against the log;
// nil when there is none.
func (c *Console) latestCheckpoint(r *http.Request) (*auditCheckpoint, error) {
	ctx, cancel := pageContext(r)
	defer cancel()
	cp, err := c.opts.Store.LatestAuditCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := &auditCheckpoint{Size: cp.Size, Root: hex.EncodeToString(cp.Root), KeyID: cp.KeyID, CreatedAt: cp.CreatedAt}
	st, err := audit.CheckCheckpoint(ctx, c.opts.Store, []byte(cp.Note), c.opts.TrustedKeys)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		out.Problem = err.Error()
		return out, nil
	}
	out.Status = st
	return out, nil
}

// auditExport downloads the export GET /api/v1/audit/export makes
// (audit.Export) with the page's filters. A filtered export carries
// inclusion proofs by default (proofs=false leaves them out); either way
// it carries the entries it left out, so it verifies offline.
func (c *Console) auditExport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, param, problem := c.readAuditFilters(q)
	if param != "" {
		c.badQuery(w, r, param, problem)
		return
	}
	if f.Subject != "" {
		c.badQuery(w, r, "subject", "the export selects by since, until, actor and event, not by subject")
		return
	}
	opts := audit.ExportOptions{Since: f.Since, Until: f.Until, Actor: f.Actor, Event: f.Event, Format: audit.FormatNDJSON, Proofs: f.any()}
	switch v, err := queryValue(q, "proofs", 8); {
	case err != nil:
		c.badQuery(w, r, "proofs", err.Error())
		return
	case v == "true":
		opts.Proofs = true
	case v == "false":
		opts.Proofs = false
	case v != "":
		c.badQuery(w, r, "proofs", fmt.Sprintf("%q is not true or false", v))
		return
	}
	switch v, err := queryValue(q, "format", 16); {
	case err != nil:
		c.badQuery(w, r, "format", err.Error())
		return
	case v != "" && v != audit.FormatNDJSON:
		c.badQuery(w, r, "format", fmt.Sprintf("%q: the console exports ndjson", v))
		return
	}
	name := "writ-audit-" + c.opts.Now().UTC().Format("20060102T150405Z") + ".ndjson"
	ew := &exportWriter{w: w, start: func() {
		setSecurityHeaders(w)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		w.WriteHeader(http.StatusOK)
	}}
	sum, err := audit.Export(r.Context(), c.opts.Store, ew, opts)
	if c.opts.Audit != nil {
		if _, rerr := c.opts.Audit.RecordExport(r.Context(), principal(r).Actor(""), "console", opts, sum, err); rerr != nil {
			c.log.ErrorContext(r.Context(), "console: audit export not recorded in the audit log", slog.Any("error", rerr))
		}
	}
	if err != nil {
		if !ew.started {
			if errors.Is(err, audit.ErrNoCheckpoint) {
				c.errorPage(w, r, http.StatusConflict, "A filtered export carries inclusion proofs in the latest checkpoint, and the log has none yet: make one (writ audit checkpoint), or export with proofs=false (it verifies offline all the same).")
				return
			}
			c.fail(w, r, "export the audit log", err)
			return
		}
		// The headers are gone; the missing end line tells the reader.
		c.log.ErrorContext(r.Context(), "console: audit export cut off", slog.Any("error", err))
		return
	}
	c.log.InfoContext(r.Context(), "audit log exported from the console", slog.Uint64("entries", sum.Entries),
		slog.Bool("complete", sum.Complete), slog.String("by", principal(r).Name))
}

// exportWriter sends the download's headers with its first bytes, so a
// failure before them is still a page.
type exportWriter struct {
	w       io.Writer
	start   func()
	started bool
}

func (e *exportWriter) Write(p []byte) (int, error) {
	if !e.started {
		e.started = true
		e.start()
	}
	return e.w.Write(p)
}
