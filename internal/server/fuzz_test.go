package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// fuzzOp is one documented operation the fuzzer calls.
type fuzzOp struct {
	method, path string
	media        []string // the body's media types
}

// FuzzAPI sends every documented operation fuzzed path parameters, query
// strings, bodies, content types and credentials, on a live server (real
// PostgreSQL, a real repository): no answer is a 5xx (a panic is
// recovered as a 500, so none is either), and every answer matches the
// OpenAPI document (kin-openapi). The seed corpus runs in go test; fuzz
// with go test -run '^$' -fuzz FuzzAPI -fuzztime 5m ./internal/server.
func FuzzAPI(f *testing.F) {
	h := newHarness(f, harnessOptions{bodyReadTimeout: 2 * time.Second})
	c := newContractChecker(f, h.http.URL)
	var ops []fuzzOp
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			fo := fuzzOp{method: method, path: path}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for mt := range op.RequestBody.Value.Content {
					fo.media = append(fo.media, mt)
				}
				slices.Sort(fo.media)
			}
			ops = append(ops, fo)
		}
	}
	slices.SortFunc(ops, func(a, b fuzzOp) int { return strings.Compare(a.method+" "+a.path, b.method+" "+b.path) })
	// The harness's own accounts and tokens are not the fuzzer's to
	// disable or revoke (every later request would be a 401).
	ownTokens := int64(len(h.tokens))
	creds := []string{h.tokens["admin"], h.tokens["viewer"], "", "writ_t_not-a-token", h.tokens["analyst"]}

	for i, op := range ops {
		var params []string
		for _, p := range c.doc.Paths.Find(op.path).Operations()[op.method].Parameters {
			if p.Value.In == "query" {
				params = append(params, p.Value.Name+"=1")
			}
		}
		body := []byte(nil)
		if len(op.media) > 0 {
			body = []byte(`{"username":"fz","roles":["viewer"],"name":"n","password":"p","current_password":"x","new_password":"y"}`)
		}
		f.Add(uint8(i), "1", strings.Join(params, "&"), body, uint8(0))
		f.Add(uint8(i), "a\x00b", "limit=2147483648&before=-1&x=\xff", []byte("{\"a\":1,\"a\":2}"), uint8(1))
		f.Add(uint8(i), "op-1", "since=24h&format=json", []byte(testPlaybook), uint8(6))
	}

	f.Fuzz(func(t *testing.T, opIdx uint8, pathArg, query string, body []byte, flags uint8) {
		op := ops[int(opIdx)%len(ops)]
		if op.method != "GET" && (strings.HasPrefix(pathArg, "u-") || pathArg == "") {
			pathArg = "fz-" + pathArg
		}
		if op.path == "/api/v1/tokens/{id}" {
			if n, err := strconv.ParseInt(strings.TrimSpace(pathArg), 10, 64); err == nil && n <= ownTokens {
				pathArg = strconv.FormatInt(n+1000, 10)
			}
		}
		path := op.path
		for {
			i := strings.IndexByte(path, '{')
			if i < 0 {
				break
			}
			j := strings.IndexByte(path[i:], '}')
			path = path[:i] + url.PathEscape(pathArg) + path[i+j+1:]
		}
		var q []string
		for kv := range strings.SplitSeq(query, "&") {
			if kv == "" {
				continue
			}
			k, v, hasV := strings.Cut(kv, "=")
			part := url.QueryEscape(k)
			if hasV {
				part += "=" + url.QueryEscape(v)
			}
			q = append(q, part)
		}
		target := h.http.URL + path
		if len(q) > 0 {
			target += "?" + strings.Join(q, "&")
		}
		ct := ""
		switch flags & 3 {
		case 0:
			if len(op.media) > 0 {
				ct = op.media[int(flags>>5)%len(op.media)]
			}
		case 1:
			ct = "application/json"
		case 2:
			ct = "text/plain; charset=utf-8"
		}
		cred := creds[int(flags>>2&7)%len(creds)]
		req, err := http.NewRequestWithContext(context.Background(), op.method, target, bytes.NewReader(body))
		if err != nil {
			t.Skip("not a request a client can send")
		}
		if len(body) == 0 {
			req.Body = http.NoBody
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if cred != "" {
			req.Header.Set("Authorization", "Bearer "+cred)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", op.method, target, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s (%s, %q): %d %s", op.method, target, ct, body, resp.StatusCode, got)
		}
		if op.path == "/webhooks/github" || op.path == "/webhooks/gitlab" {
			return // a stand-in handler here
		}
		// The answer is one the document describes.
		req.Body = io.NopCloser(bytes.NewReader(body))
		route, params, err := c.router.FindRoute(req)
		if err != nil {
			return // a path the document's router reads otherwise (an escaped slash)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(got)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true}}); err != nil {
			t.Fatalf("%s %s: the answer %d does not match the document: %v\n%s", op.method, target, resp.StatusCode, err, trim(got))
		}
	})
}
