package server

import (
	"log/slog"
	"net/http"

	"github.com/writ-sec/writ/internal/audit"
)

// callerActor is the audit actor of a request's caller (anonymous on a
// public route).
func callerActor(r *http.Request) audit.Actor {
	if p := PrincipalFrom(r.Context()); p != nil {
		return p.Actor("")
	}
	return anonymous
}

// recordExport appends the audit.export entry of an export that ended
// (APIOptions.Audit; nothing without it). A failure to record is logged:
// the export has already been answered.
func (a *API) recordExport(r *http.Request, opts audit.ExportOptions, sum audit.ExportSummary, exportErr error) {
	if a.opts.Audit == nil {
		return
	}
	if _, err := a.opts.Audit.RecordExport(r.Context(), callerActor(r), "api", opts, sum, exportErr); err != nil {
		a.log.ErrorContext(r.Context(), "audit export not recorded in the audit log", slog.Any("error", err))
	}
}

// recordVerify appends the audit.verify entry of a verification that
// ended.
func (a *API) recordVerify(r *http.Request, given int, rep *audit.Report, verifyErr error) {
	if a.opts.Audit == nil {
		return
	}
	if _, err := a.opts.Audit.RecordVerify(r.Context(), callerActor(r), given, rep, verifyErr); err != nil {
		a.log.ErrorContext(r.Context(), "audit verification not recorded in the audit log", slog.Any("error", err))
	}
}
