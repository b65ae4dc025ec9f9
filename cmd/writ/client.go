package main

import (
	"bytes"
	"context"
	"encoding/json"
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

// callServer makes one request to a writ server (WRIT_TOKEN as bearer
// token when set) and returns the response, its body (at most 1 MiB) and
// the endpoint as it may be shown (credentials redacted).
func callServer(ctx context.Context, env *cliEnv, server, method string, body []byte, path ...string) (*http.Response, []byte, string, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, "", usageError("--server %q is not an http(s) URL", redactServerURL(server))
	}
	endpoint := u.JoinPath(path...)
	shown := redactServerURL(endpoint.String())
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint.String(), rd)
	if err != nil {
		return nil, nil, shown, usageError("--server: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", envelopeContentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "writ/"+versionString())
	if tok := env.getenv("WRIT_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
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

// serverStatus asks a writ server for its status (GET /api/v1/status,
// with WRIT_TOKEN): which commit is trusted, and the repository's identity.
func serverStatus(ctx context.Context, env *cliEnv, server string) (*reconcile.Status, error) {
	resp, body, shown, err := callServer(ctx, env, server, http.MethodGet, nil, "api", "v1", "status")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s (a viewer token in WRIT_TOKEN is needed)", shown, resp.Status, serverMessage(body))
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
// flag, else WRIT_SERVER. It returns "" when neither names one.
func resolveServer(env *cliEnv, flag string) string {
	if flag != "" {
		return flag
	}
	return env.getenv("WRIT_SERVER")
}
