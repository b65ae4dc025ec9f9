package server

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"log/slog"
	"net/http"

	"github.com/writ-sec/writ/internal/auth"
)

// RequestIDHeader carries a request's id in and out.
const RequestIDHeader = "X-Request-Id"

type ctxKey int

const (
	keyRequest ctxKey = iota
)

// requestInfo travels with a request: its id, and what the route's
// middleware learned (the pattern matched, the principal) for the access
// log written after the handler returns.
type requestInfo struct {
	id        string
	pattern   string
	principal *auth.Principal
}

func infoFrom(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(keyRequest).(*requestInfo)
	return ri
}

// RequestID is the id of the request ctx belongs to ("" outside one).
func RequestID(ctx context.Context) string {
	if ri := infoFrom(ctx); ri != nil {
		return ri.id
	}
	return ""
}

// PrincipalFrom is the authenticated caller of the request ctx belongs to
// (nil on public routes).
func PrincipalFrom(ctx context.Context) *auth.Principal {
	if ri := infoFrom(ctx); ri != nil {
		return ri.principal
	}
	return nil
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newRequestID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)
}

// validRequestID accepts a caller's id when it is short and plain, so a
// proxy's id links its logs to ours without letting a client inject log
// lines.
func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func withRequestInfo(r *http.Request) (*http.Request, *requestInfo) {
	id := r.Header.Get(RequestIDHeader)
	if !validRequestID(id) {
		id = newRequestID()
	}
	ri := &requestInfo{id: id}
	return r.WithContext(context.WithValue(r.Context(), keyRequest, ri)), ri
}

// RequestIDHandler adds the request id (attribute request_id) to every
// record logged with a request's context, whichever package logs it. Wrap
// the process's handler with it: slog.New(server.RequestIDHandler(h)).
func RequestIDHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(requestIDHandler); ok {
		return h
	}
	return requestIDHandler{h}
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
