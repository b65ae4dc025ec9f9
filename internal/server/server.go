// Package server is writ's HTTP front: health and readiness probes now, the
// REST API, webhooks and metrics as they are added. It owns the listener and
// graceful shutdown.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Check is a readiness check: nil when its part is ready. detail, when not
// empty, is shown even when ready (e.g. "holding: unapproved policy change").
type Check func(ctx context.Context) (detail string, err error)

// Options configures the server.
type Options struct {
	// Listen is the TCP address, e.g. 127.0.0.1:8080.
	Listen string
	// Logger receives request and lifecycle logs.
	Logger *slog.Logger
	// ShutdownTimeout bounds graceful shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// ReadyTimeout bounds each readiness check. Default 3s.
	ReadyTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 3 * time.Second
	}
}

func (o *Options) validate() error {
	if o.Listen == "" {
		return errors.New("server: listen address is required")
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return fmt.Errorf("server: listen address %q: %w", o.Listen, err)
	}
	return nil
}

// Server serves writ's HTTP endpoints.
type Server struct {
	opts   Options
	mux    *http.ServeMux
	mu     sync.Mutex
	checks map[string]Check
	ln     net.Listener
}

// New makes a server; register handlers and checks before Run.
func New(opts Options) (*Server, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), checks: map[string]Check{}}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s, nil
}

// Handle registers a handler on the server's mux (Go 1.22 patterns).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// AddCheck registers a readiness check under a name.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Handler is the server's root handler (for tests).
func (s *Server) Handler() http.Handler { return s.mux }

// Listen binds the address; Addr is known afterwards. Run calls it when
// needed.
func (s *Server) Listen() error {
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", s.opts.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (after Listen).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.opts.Listen
	}
	return s.ln.Addr().String()
}

// Run serves until ctx is done, then shuts down gracefully: no new
// connections, in-flight requests finish within ShutdownTimeout.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.opts.Logger.InfoContext(ctx, "serving HTTP", slog.String("addr", s.Addr()))
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ReadyReport is the body of /readyz.
type ReadyReport struct {
	Status string                 `json:"status"` // ready | not_ready
	Checks map[string]CheckReport `json:"checks"`
}

// CheckReport is one check's result.
type CheckReport struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(s.checks))
	for n, c := range s.checks {
		checks[n] = c
	}
	s.mu.Unlock()
	sort.Strings(names)
	rep := ReadyReport{Status: "ready", Checks: map[string]CheckReport{}}
	for _, n := range names {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.ReadyTimeout)
		detail, err := checks[n](ctx)
		cancel()
		cr := CheckReport{OK: err == nil, Detail: detail}
		if err != nil {
			cr.Error = err.Error()
			rep.Status = "not_ready"
		}
		rep.Checks[n] = cr
	}
	code := http.StatusOK
	if rep.Status != "ready" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rep)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
