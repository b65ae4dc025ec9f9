package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/reconcile"
)

// The CLI's client of a writ server's API.

// postEnvelope sends an envelope to a writ server and prints its answer.
func postEnvelope(ctx context.Context, env *cliEnv, server string, envelope []byte) error {
	resp, answer, shown, err := callServer(ctx, env, server, http.MethodPost, envelope, "api", "v1", "approvals")
	if err != nil {
		return exitWith(exitFailure, fmt.Errorf("send approval: %w", err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return exitWith(exitFailure, fmt.Errorf("%s answered %s: %s", shown, resp.Status, serverMessage(answer)))
	}
	fmt.Fprintf(env.stderr, "sent to %s: %s\n", shown, resp.Status)
	if len(answer) > 0 {
		env.stdout.Write(answer)
		if !bytes.HasSuffix(answer, []byte("\n")) {
			fmt.Fprintln(env.stdout)
		}
	}
	return nil
}

// callServer makes one request to a writ server and returns the response,
// its body (at most 1 MiB) and the endpoint as it may be shown
// (credentials redacted). A body is sent as a DSSE envelope. The bearer
// token is WRIT_TOKEN when set, else the session of writ login when it is
// for this server's origin (renewed first when it has expired and can
// be; an expired one that cannot ends the call with "session expired: run
// writ login").
func callServer(ctx context.Context, env *cliEnv, server, method string, body []byte, path ...string) (*http.Response, []byte, string, error) {
	return doServer(ctx, env, server, serverCall{method: method, body: body, path: path})
}

// serverCall is one request to a writ server.
type serverCall struct {
	method string
	path   []string
	body   []byte
	// contentType of the body; default envelopeContentType.
	contentType string
	// bearer, when set, is the credential sent (a session just opened);
	// else the one bearerFor picks, unless anonymous.
	bearer    string
	anonymous bool
}

// doServer makes a request to a writ server; see callServer. Redirects to
// another origin are not followed.
func doServer(ctx context.Context, env *cliEnv, server string, c serverCall) (*http.Response, []byte, string, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, "", usageError("--server %q is not an http(s) URL", redactServerURL(server))
	}
	endpoint := u.JoinPath(c.path...)
	shown := redactServerURL(endpoint.String())
	bearer := c.bearer
	if bearer == "" && !c.anonymous {
		if bearer, err = bearerFor(ctx, env, server); err != nil {
			return nil, nil, shown, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if c.body != nil {
		rd = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, endpoint.String(), rd)
	if err != nil {
		return nil, nil, shown, usageError("--server: %v", err)
	}
	if c.body != nil {
		ct := c.contentType
		if ct == "" {
			ct = envelopeContentType
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "writ/"+versionString())
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	client := *env.client()
	client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if !sameOrigin(r.URL.String(), via[0].URL.String()) {
			return fmt.Errorf("redirected to another origin (%s): not followed", redactServerURL(r.URL.String()))
		}
		return nil
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, shown, fmt.Errorf("%s: %v", shown, redactErrURL(err, endpoint.String(), shown))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, shown, fmt.Errorf("read the answer of %s: %w", shown, err)
	}
	return resp, answer, shown, nil
}

// client is the HTTP client commands use (tests inject theirs).
func (env *cliEnv) client() *http.Client {
	if env.httpClient != nil {
		return env.httpClient
	}
	return defaultHTTPClient
}

var defaultHTTPClient = &http.Client{Timeout: 60 * time.Second}

// bearerFor is the credential a request to server carries: WRIT_TOKEN
// when set; else the session's token when the session is for server's
// origin (scheme, host, port), renewed first when it has expired; else
// none. A session's token never goes to another origin.
func bearerFor(ctx context.Context, env *cliEnv, server string) (string, error) {
	if tok := env.getenv("WRIT_TOKEN"); tok != "" {
		return tok, nil
	}
	s, err := loadSession(env)
	if errors.Is(err, errNoSession) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !sameOrigin(s.Server, server) {
		return "", nil
	}
	return sessionBearer(ctx, env, s)
}

// errSessionExpired is said when a session has ended and cannot be
// renewed.
func errSessionExpired(s *session, why string) error {
	msg := fmt.Sprintf("session expired: run writ login (your session with %s ended at %s", redactServerURL(s.Server), s.ExpiresAt.Local().Format(time.RFC3339))
	if why != "" {
		msg += "; " + why
	}
	return errors.New(msg + ")")
}

// ssoRenewBefore renews an SSO token this long before it expires, so that
// it does not expire on its way.
const ssoRenewBefore = 30 * time.Second

// sessionBearer is a session's token, renewed (and saved) first when it
// is an SSO token that has expired or is about to.
func sessionBearer(ctx context.Context, env *cliEnv, s *session) (string, error) {
	now := time.Now()
	if s.Method != methodSSO {
		if now.Before(s.ExpiresAt) {
			return s.Token, nil
		}
		return "", errSessionExpired(s, "")
	}
	if now.Add(ssoRenewBefore).Before(s.ExpiresAt) {
		return s.Token, nil
	}
	if s.RefreshToken == "" {
		return "", errSessionExpired(s, "the SSO provider gave no refresh token")
	}
	renewed, err := refreshSSO(ctx, env, s)
	if err != nil {
		// Another writ may have renewed it meanwhile (a provider that
		// rotates refresh tokens refuses the old one): use what it saved.
		if saved, lerr := loadSession(env); lerr == nil && saved.Token != s.Token && saved.Server == s.Server &&
			time.Now().Add(ssoRenewBefore).Before(saved.ExpiresAt) {
			return saved.Token, nil
		}
		return "", errSessionExpired(s, err.Error())
	}
	if err := saveSession(env, renewed); err != nil {
		return "", err
	}
	return renewed.Token, nil
}

// serverStatus asks a writ server for its status (GET /api/v1/status, with
// WRIT_TOKEN or the session): which commit is trusted, and the
// repository's identity.
func serverStatus(ctx context.Context, env *cliEnv, server string) (*reconcile.Status, error) {
	resp, body, shown, err := callServer(ctx, env, server, http.MethodGet, nil, "api", "v1", "status")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s (a viewer is needed: writ login, or a token in WRIT_TOKEN)", shown, resp.Status, serverMessage(body))
	}
	var st reconcile.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", shown, err)
	}
	if st.Adopted == "" {
		return nil, fmt.Errorf("%s has not processed the branch yet: no trusted commit", shown)
	}
	return &st, nil
}

// serverMessage extracts the message of an error answer: a JSON "error"
// or "message" field, else the text, on one line, shortened.
func serverMessage(body []byte) string {
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		for _, k := range []string{"error", "message", "detail"} {
			if s, ok := m[k].(string); ok && s != "" {
				return flattenText(s, 500)
			}
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "(no message)"
	}
	return flattenText(string(body), 500)
}

// flattenText flattens whitespace, drops control characters and shortens.
func flattenText(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// redactServerURL drops user information from a URL for messages.
func redactServerURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	q := u.Query()
	for _, k := range []string{"token", "access_token", "password"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func redactErrURL(err error, raw, shown string) string {
	msg := err.Error()
	if raw != shown {
		msg = strings.ReplaceAll(msg, raw, shown)
	}
	return msg
}

// resolveServer picks the writ server a command talks to: the --server
// flag, else WRIT_SERVER, else the server of the session (writ login). It
// returns "" when none names one, and an error when the session file is
// refused (others may read it, not a regular file: the error says how to
// fix it).
func resolveServer(env *cliEnv, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if s := env.getenv("WRIT_SERVER"); s != "" {
		return s, nil
	}
	s, err := loadSession(env)
	if errors.Is(err, errNoSession) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return s.Server, nil
}
