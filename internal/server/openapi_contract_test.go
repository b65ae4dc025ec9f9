package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/store"
)

// contractChecker checks requests and responses against the OpenAPI
// document with kin-openapi's openapi3filter: an implementation of the
// document independent of the server's own contract (contract.go).
type contractChecker struct {
	doc    *openapi3.T
	router routers.Router
}

var registerDecoders sync.Once

func newContractChecker(t testing.TB, base string) *contractChecker {
	t.Helper()
	registerDecoders.Do(func() {
		openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/vnd.dsse.envelope.v1+json", openapi3filter.JSONBodyDecoder)
	})
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("kin-openapi loads openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("kin-openapi validates openapi.json: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contractChecker{doc: doc, router: r}
}

// exchange is one request, its response and what the document says of
// them.
type exchange struct {
	key                string // "GET /api/v1/x/{id}"
	status             int
	body               []byte
	requestErr, resErr error
}

// check sends a request and checks it and its response against the
// document. The request is checked only when wantValid (a request the
// test means to be well-formed); the response always.
func (c *contractChecker) do(t testing.TB, method, url, cred, contentType string, body []byte) exchange {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: not in the document: %v", method, url, err)
	}
	ex := exchange{key: method + " " + route.Path}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	ex.requestErr = openapi3filter.ValidateRequest(context.Background(), in)
	req.Body = io.NopCloser(bytes.NewReader(body))
	if body == nil {
		req.Body = http.NoBody
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ex.status = resp.StatusCode
	if ex.body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	ex.resErr = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(ex.body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}})
	if resp.StatusCode >= 500 {
		ex.resErr = errors.Join(ex.resErr, fmt.Errorf("a server error: %d %s", resp.StatusCode, ex.body))
	}
	return ex
}

// Every documented operation, called on a live server (real PostgreSQL,
// a real repository), answers what the document says, checked by
// kin-openapi: status, content type and body schema of each response; the
// requests meant to be valid are valid per the document, and those meant
// to be refused are refused (4xx) as documented.
func TestOpenAPIContract(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	c := newContractChecker(t, h.http.URL)
	admin, viewer, executor, analyst := h.tokens["admin"], h.tokens["viewer"], h.tokens["executor"], h.tokens["analyst"]
	if _, _, err := h.auth.CreateUser(h.ctx, audit.SystemActor, auth.NewUser{Username: "pat", Password: "pat's long password 1", Roles: auth.Roles(auth.Viewer)}); err != nil {
		t.Fatal(err)
	}
	_, lr := h.login("pat", "pat's long password 1")
	execs, err := h.st.ListExecutions(h.ctx, storeAll())
	if err != nil || len(execs) == 0 {
		t.Fatalf("executions %d %v", len(execs), err)
	}
	execID := fmt.Sprint(execs[0].ID)
	if err := h.st.SaveTargetResults(h.ctx, execs[0].ID, []store.TargetResult{{Target: "203.0.113.7", Planned: "would_block", Result: "changed", Detail: "d"}}); err != nil {
		t.Fatal(err)
	}
	if err := h.st.SetInvalidPlaybook(h.ctx, "playbooks/network/broken.yaml", strings.Repeat("a", 40),
		[]byte(`[{"path":"playbooks/network/broken.yaml","line":3,"col":5,"severity":"error","code":"schema","message":"unknown field"}]`)); err != nil {
		t.Fatal(err)
	}
	json := "application/json"
	yaml := "application/yaml"
	type call struct {
		method, path, cred, ct, body string
		valid                        bool // the request is valid per the document
	}
	calls := []call{
		{"GET", "/healthz", "", "", "", true},
		{"GET", "/readyz", "", "", "", true},
		{"GET", "/metrics", viewer, "", "", true},
		{"GET", "/api/v1/openapi.json", "", "", "", true},
		{"GET", "/api/v1/auth/methods", "", "", "", true},
		{"POST", "/api/v1/auth/login", "", json, `{"username":"pat","password":"wrong password here"}`, true},
		{"POST", "/api/v1/auth/login", "", json, `{"username":"pat","password":"pat's long password 1"}`, true},
		{"POST", "/api/v1/auth/login", "", json, `{"username":"pat"}`, false},
		{"POST", "/api/v1/auth/login", "", "text/plain", `{"username":"pat","password":"x"}`, false},
		{"GET", "/api/v1/auth/whoami", viewer, "", "", true},
		{"GET", "/api/v1/auth/whoami", "", "", "", true},
		{"POST", "/api/v1/auth/password", lr.Token, json, `{"current_password":"wrong password!","new_password":"pat's newer long password"}`, true},
		{"POST", "/api/v1/auth/password", lr.Token, json, `{"current_password":"pat's long password 1","new_password":"short"}`, true},
		{"POST", "/api/v1/auth/password", lr.Token, json, `{"current_password":"pat's long password 1","new_password":"pat's newer long password"}`, true},
		{"GET", "/api/v1/status", viewer, "", "", true},
		{"GET", "/api/v1/status", h.tokens["norole"], "", "", true},
		{"POST", "/api/v1/reconcile", executor, "", "", true},
		{"POST", "/api/v1/reconcile", viewer, "", "", true},
		{"GET", "/api/v1/playbooks", viewer, "", "", true},
		{"GET", "/api/v1/playbooks?status=active&limit=1&before=2147483648", viewer, "", "", true},
		{"GET", "/api/v1/playbooks?limit=0", viewer, "", "", false},
		{"GET", "/api/v1/playbooks/block-test-net", viewer, "", "", true},
		{"GET", "/api/v1/playbooks/nope", viewer, "", "", true},
		{"POST", "/api/v1/dry-run?path=playbooks/net/new.yaml", analyst, yaml, testPlaybook, true},
		{"POST", "/api/v1/dry-run", analyst, json, `{}`, false},
		{"GET", "/api/v1/executions", viewer, "", "", true},
		{"GET", "/api/v1/executions?name=block-test-net&state=waiting&limit=5&before=9223372036854775807", viewer, "", "", true},
		{"GET", "/api/v1/executions/" + execID, viewer, "", "", true},
		{"GET", "/api/v1/executions/424242", viewer, "", "", true},
		{"GET", "/api/v1/executions/x", viewer, "", "", false},
		{"POST", "/api/v1/executions/" + execID + "/run", executor, "", "", true},
		{"POST", "/api/v1/executions/" + execID + "/retry", executor, "", "", true},
		{"POST", "/api/v1/executions/424242/retry", executor, "", "", true},
		{"POST", "/api/v1/executions/" + execID + "/retry", viewer, "", "", true},
		{"POST", "/api/v1/approvals", "", "application/vnd.dsse.envelope.v1+json", `{"payloadType":"x","payload":"","signatures":[]}`, true},
		{"GET", "/api/v1/approvals", viewer, "", "", true},
		{"GET", "/api/v1/approvals?approver=alice&decision=approve&digest=ab&repository=acme/secops&pull_request=7&withdrawn=true&limit=2&before=3", viewer, "", "", true},
		{"GET", "/api/v1/holds", viewer, "", "", true},
		{"POST", "/api/v1/holds/99/acknowledge", admin, "", "", true},
		{"GET", "/api/v1/drift", viewer, "", "", true},
		{"POST", "/api/v1/drift/check", viewer, "", "", true},
		{"POST", "/api/v1/drift/check", executor, "", "", true},
		{"GET", "/api/v1/drift", viewer, "", "", true},
		{"GET", "/api/v1/pending", viewer, "", "", true},
		{"GET", "/api/v1/pending/op-" + execID, viewer, "", "", true},
		{"GET", "/api/v1/pending/trust-99", viewer, "", "", true},
		{"GET", "/api/v1/pending/nope", viewer, "", "", false},
		{"GET", "/api/v1/audit/checkpoints/latest", admin, "", "", true},
		{"POST", "/api/v1/audit/checkpoints", admin, "", "", true},
		{"GET", "/api/v1/audit/checkpoints/latest", admin, "", "", true},
		{"GET", "/api/v1/audit/export", admin, "", "", true},
		{"GET", "/api/v1/audit/export?format=json&since=24h&proofs=true", admin, "", "", true},
		{"GET", "/api/v1/audit/export?format=ndjson&actor=u-admin&event=user.created&since=2020-01-01&until=2100-01-01", admin, "", "", true},
		{"GET", "/api/v1/audit/export?start_date=2020-01-01", admin, "", "", true}, // valid per the document's rules, refused by the server's
		{"POST", "/api/v1/audit/verify", admin, "", "", true},
		{"POST", "/api/v1/audit/verify", admin, json, `{"checkpoints":[]}`, true},
		{"POST", "/api/v1/audit/verify", admin, json, `{"checkpoints":"x"}`, false},
		{"GET", "/api/v1/users", admin, "", "", true},
		{"POST", "/api/v1/users", admin, json, `{"username":"quinn","display_name":"Quinn","roles":["viewer"]}`, true},
		{"POST", "/api/v1/users", admin, json, `{"username":"robot","roles":["executor"],"no_password":true}`, true},
		{"POST", "/api/v1/users", admin, json, `{"username":"QUINN","roles":["viewer"]}`, true},
		{"POST", "/api/v1/users", admin, json, `{"username":"x","roles":null}`, false},
		{"GET", "/api/v1/users/quinn", admin, "", "", true},
		{"GET", "/api/v1/users/nobody", admin, "", "", true},
		{"PATCH", "/api/v1/users/quinn", admin, json, `{"display_name":"Quinn Q.","roles":["viewer","analyst"],"disabled":false,"unlock":true}`, true},
		{"PATCH", "/api/v1/users/quinn", admin, json, `{"display_name":"Quinn \u202eQ"}`, true},
		{"POST", "/api/v1/users/quinn/password", admin, "", "", true},
		{"DELETE", "/api/v1/users/quinn/sessions", admin, "", "", true},
		{"GET", "/api/v1/tokens", admin, "", "", true},
		{"GET", "/api/v1/tokens?username=robot&all=true", admin, "", "", true},
		{"POST", "/api/v1/tokens", admin, json, `{"username":"robot","name":"deploy","roles":["executor"],"ttl":"30d"}`, true},
		{"POST", "/api/v1/tokens", admin, json, `{"username":"robot","name":"deploy"}`, true},
		{"DELETE", "/api/v1/tokens/1", admin, "", "", true},
		{"DELETE", "/api/v1/tokens/0", admin, "", "", false},
		{"POST", "/api/v1/auth/logout", admin, "", "", true},
		{"POST", "/api/v1/auth/logout", lr.Token, "", "", true},
	}
	seen := map[string][]int{}
	for _, cl := range calls {
		var body []byte
		if cl.body != "" {
			body = []byte(cl.body)
		}
		ex := c.do(t, cl.method, h.http.URL+cl.path, cl.cred, cl.ct, body)
		seen[ex.key] = append(seen[ex.key], ex.status)
		name := cl.method + " " + cl.path
		if cl.valid && ex.requestErr != nil {
			t.Errorf("%s: the test's request is not valid per the document: %v", name, ex.requestErr)
		}
		if !cl.valid && ex.requestErr == nil {
			t.Errorf("%s: the test's bad request is valid per the document", name)
		}
		if !cl.valid && (ex.status < 400 || ex.status >= 500) {
			t.Errorf("%s: a request the document refuses was answered %d %s", name, ex.status, ex.body)
		}
		if ex.resErr != nil {
			t.Errorf("%s: the response %d does not match the document: %v\n%s", name, ex.status, ex.resErr, trim(ex.body))
		}
	}
	// Every operation was called, and answered 2xx at least once (the
	// webhooks are the forge packages', tested there).
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			key := method + " " + path
			if key == "POST /webhooks/github" || key == "POST /webhooks/gitlab" {
				continue
			}
			statuses, ok := seen[key]
			if !ok {
				t.Errorf("%s: not called", key)
				continue
			}
			if !slices.ContainsFunc(statuses, func(s int) bool { return s >= 200 && s < 300 }) && !noSuccessHere[key] {
				t.Errorf("%s: never answered 2xx (%v)", key, statuses)
			}
		}
	}
}

// noSuccessHere are operations the harness cannot bring to success: a
// signed approval, an execution marked manual, an open hold.
var noSuccessHere = map[string]bool{
	"POST /api/v1/approvals":           true,
	"POST /api/v1/executions/{id}/run": true,
	// A failed execution: TestRetryPartialFailureAPI checks its 202
	// against the document.
	"POST /api/v1/executions/{id}/retry":  true,
	"POST /api/v1/holds/{id}/acknowledge": true,
}

func trim(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return strings.TrimSpace(string(b))
}

func storeAll() store.ExecutionFilter { return store.ExecutionFilter{Limit: 1000} }
