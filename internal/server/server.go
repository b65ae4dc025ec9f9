// Package server is writ's HTTP front: the REST API under /api/v1 (its
// OpenAPI document at /api/v1/openapi.json), health and readiness probes,
// and the routes other packages mount (webhooks, metrics). Every route
// states who may call it: public routes say what their authority is
// instead of a login (a signature, an HMAC); every other route needs a
// bearer credential and, mostly, one of a set of roles. Denied requests
// are audited. Requests carry an id (X-Request-Id) into every log record,
// and bodies are size-limited. It owns the listener and graceful shutdown.
//
// One file per concern: the server (this file), routes and their
// protection (routes.go), request ids (requestid.go), the login rate limit
// (ratelimit.go), the audit of denials (denials.go), the API handlers
// (api*.go) and the OpenAPI document (openapi.go, openapi.json).
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/writ-sec/writ/internal/metrics"
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
	// TLSCertFile and TLSKeyFile, when set, serve HTTPS (TLS 1.2 and up).
	// The files are read again when they change, so a renewed certificate
	// needs no restart.
	TLSCertFile string
	TLSKeyFile  string
	// Metrics, when set, receives every request's route, status and
	// duration.
	Metrics *metrics.Metrics
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
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return errors.New("server: TLS needs both a certificate file and a key file")
	}
	if o.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile); err != nil {
			return fmt.Errorf("server: TLS certificate: %w", err)
		}
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
	routes []Route
	guard  atomic.Pointer[Guard]
	ln     net.Listener
}

// New makes a server; register routes and checks before Run.
func New(opts Options) (*Server, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.Logger = slog.New(RequestIDHandler(opts.Logger.Handler()))
	s := &Server{opts: opts, mux: http.NewServeMux(), checks: map[string]Check{}}
	s.Route(Route{Pattern: "GET /healthz", Public: "none needed: says only that the process is up", Handler: http.HandlerFunc(s.healthz)})
	s.Route(Route{Pattern: "GET /readyz", Public: "none needed: for load balancers; no secrets in checks", Handler: http.HandlerFunc(s.readyz)})
	return s, nil
}

// AddCheck registers a readiness check under a name.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Handler is the server's root handler: request id, access log, panic
// recovery, then the routes.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets streamed responses (the audit export) reach the client.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	r, ri := withRequestInfo(r)
	w.Header().Set(RequestIDHeader, ri.id)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.opts.Logger.ErrorContext(r.Context(), "handler panic", slog.String("route", ri.pattern), slog.Any("panic", v))
			if sw.status == 0 {
				writeProblem(sw, http.StatusInternalServerError, "internal", "internal error")
			}
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		level := slog.LevelInfo
		if ri.pattern == "GET /healthz" || ri.pattern == "GET /readyz" || ri.pattern == "GET /metrics" {
			level = slog.LevelDebug
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", ri.pattern),
			slog.Int("status", sw.status), slog.Int64("bytes", sw.bytes), slog.Duration("duration", time.Since(start)),
			slog.String("remote", peerAddr(r.RemoteAddr).String())}
		if ri.principal != nil {
			attrs = append(attrs, slog.String("principal", ri.principal.Name), slog.String("auth", string(ri.principal.Method)))
		}
		s.opts.Logger.LogAttrs(r.Context(), level, "request", attrs...)
		route := ri.pattern
		if route == "" {
			route = "unmatched"
		}
		s.opts.Metrics.HTTP(route, strconv.Itoa(sw.status), time.Since(start))
	}()
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		h.ServeHTTP(&notRouted{w: sw}, r)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

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
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	scheme := "http"
	if s.opts.TLSCertFile != "" {
		scheme = "https"
		kp := &keyPair{cert: s.opts.TLSCertFile, key: s.opts.TLSKeyFile}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.get}
		go func() { errc <- srv.ServeTLS(s.ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(s.ln) }()
	}
	s.opts.Logger.InfoContext(ctx, "serving HTTP", slog.String("addr", s.Addr()), slog.String("scheme", scheme))
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

// keyPair serves a certificate from files, loading them again when either
// changes (checked at most every 10 seconds).
type keyPair struct {
	cert, key string
	mu        sync.Mutex
	loaded    *tls.Certificate
	stamp     string
	checked   time.Time
}

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.loaded != nil && time.Since(k.checked) < 10*time.Second {
		return k.loaded, nil
	}
	k.checked = time.Now()
	stamp := ""
	for _, f := range []string{k.cert, k.key} {
		fi, err := os.Stat(f)
		if err != nil {
			if k.loaded != nil {
				return k.loaded, nil
			}
			return nil, err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	if k.loaded != nil && stamp == k.stamp {
		return k.loaded, nil
	}
	c, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		if k.loaded != nil {
			return k.loaded, nil // keep serving the last good pair
		}
		return nil, err
	}
	k.loaded, k.stamp = &c, stamp
	return k.loaded, nil
}
