package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// The findings of issue 19, each reproduced and answered as the contract
// says: a 4xx naming what is wrong, never a 500.
func TestContractFindings(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{bodyReadTimeout: 200 * time.Millisecond})
	admin, viewer := h.tokens["admin"], h.tokens["viewer"]
	problem := func(t *testing.T, resp *http.Response, body []byte, status int, code string) Problem {
		t.Helper()
		p := decode[Problem](t, body)
		if resp.StatusCode != status || p.Code != code || p.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s %s; want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, status, code)
		}
		return p
	}

	t.Run("NUL and invalid UTF-8 in strings", func(t *testing.T) {
		// Without authentication: the login's username.
		resp, body := h.do("POST", "/api/v1/auth/login", "", `{"username":"a\u0000b","password":"x"}`)
		if p := problem(t, resp, body, 400, "bad_body"); p.Pointer != "/username" {
			t.Fatalf("pointer %q", p.Pointer)
		}
		resp, body = h.do("POST", "/api/v1/auth/login", "", "{\"username\":\"a\xffb\",\"password\":\"x\"}")
		problem(t, resp, body, 400, "bad_body")
		for _, c := range []struct{ path, param string }{
			{"/api/v1/playbooks?status=a%00b", "status"},
			{"/api/v1/executions?name=a%00b", "name"},
			{"/api/v1/executions?name=a%FFb", "name"},
			{"/api/v1/approvals?approver=a%00b", "approver"},
			{"/api/v1/audit/export?actor=a%00b", "actor"},
			{"/api/v1/users/a%00b", "username"},
			{"/api/v1/users/a%C0%80", "username"},
			{"/api/v1/playbooks/x%01y", "name"},
			{"/api/v1/tokens?username=%E2%80%AEx%1B", "username"},
		} {
			resp, body := h.do("GET", c.path, admin, nil)
			if p := problem(t, resp, body, 400, "bad_parameter"); p.Parameter != c.param {
				t.Fatalf("%s: parameter %q", c.path, p.Parameter)
			}
		}
		resp, body = h.do("POST", "/api/v1/users", admin, `{"username":"nul","display_name":"a\u0000b","roles":["viewer"]}`)
		if p := problem(t, resp, body, 400, "bad_body"); p.Pointer != "/display_name" {
			t.Fatalf("pointer %q", p.Pointer)
		}
	})

	t.Run("integer ranges", func(t *testing.T) {
		// Ids are bigint: a cursor past int32 is a cursor.
		for _, path := range []string{"/api/v1/playbooks", "/api/v1/executions", "/api/v1/approvals"} {
			if resp, body := h.do("GET", path+"?before=2147483648", viewer, nil); resp.StatusCode != 200 {
				t.Fatalf("%s before=2^31: %d %s", path, resp.StatusCode, body)
			}
			resp, body := h.do("GET", path+"?before=9223372036854775808", viewer, nil)
			problem(t, resp, body, 400, "bad_parameter")
			resp, body = h.do("GET", path+"?limit=1001", viewer, nil)
			problem(t, resp, body, 400, "bad_parameter")
		}
		// A pull request number is an integer column.
		resp, body := h.do("GET", "/api/v1/approvals?pull_request=2147483648", viewer, nil)
		problem(t, resp, body, 400, "bad_parameter")
		resp, body = h.do("GET", "/api/v1/executions/9223372036854775808", viewer, nil)
		problem(t, resp, body, 400, "bad_parameter")
		resp, body = h.do("GET", "/api/v1/executions/9223372036854775807", viewer, nil)
		problem(t, resp, body, 404, "not_found")
	})

	t.Run("a body never finished", func(t *testing.T) {
		// A chunked body that stops: 408 at the guard's deadline, not 500
		// at the server's read timeout.
		for _, path := range []string{"/api/v1/auth/login", "/api/v1/approvals", "/api/v1/reconcile"} {
			conn, err := net.Dial("tcp", strings.TrimPrefix(h.http.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"use\r\n", path, admin)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			problem(t, resp, body, http.StatusRequestTimeout, "body_timeout")
		}
	})

	t.Run("duplicate keys", func(t *testing.T) {
		resp, body := h.do("POST", "/api/v1/users", admin, map[string]any{"username": "vera", "roles": []string{"viewer"}})
		if resp.StatusCode != 201 {
			t.Fatalf("create %d %s", resp.StatusCode, body)
		}
		otp := decode[UserCreated](t, body).OneTimePassword
		resp, lr := h.login("vera", otp)
		if resp.StatusCode != 200 {
			t.Fatalf("login %d", resp.StatusCode)
		}
		// The wrong password first, the right one last: refused whole,
		// and no failure is counted against the account.
		resp, body = h.do("POST", "/api/v1/auth/password", lr.Token,
			`{"current_password":"wrong wrong wrong","current_password":`+string(must(json.Marshal(otp)))+`,"new_password":"vera's new long password"}`)
		if p := problem(t, resp, body, 400, "bad_body"); p.Pointer != "/current_password" {
			t.Fatalf("pointer %q", p.Pointer)
		}
		u, err := h.st.UserByName(h.ctx, "vera")
		if err != nil || u.FailedLogins != 0 || !u.MustChangePassword {
			t.Fatalf("after the refused change: %+v %v", u, err)
		}
	})

	t.Run("names match exactly", func(t *testing.T) {
		resp, body := h.do("POST", "/api/v1/auth/login", "", `{"Username":"u-admin","password":"x"}`)
		if p := problem(t, resp, body, 400, "bad_body"); p.Pointer != "/Username" && p.Pointer != "" {
			t.Fatalf("pointer %q", p.Pointer)
		}
		resp, body = h.do("POST", "/api/v1/users", admin, `{"username":"w","roles":["viewer"],"extra":1}`)
		problem(t, resp, body, 400, "bad_body")
		resp, body = h.do("POST", "/api/v1/users", admin, `{"username":"w","roles":"viewer"}`)
		if p := problem(t, resp, body, 400, "bad_body"); p.Pointer != "/roles" {
			t.Fatalf("pointer %q", p.Pointer)
		}
		resp, body = h.do("POST", "/api/v1/users", admin, `{"username":"w","roles":["viewer"]} {}`)
		problem(t, resp, body, 400, "bad_body")
	})

	t.Run("roles null", func(t *testing.T) {
		resp, body := h.do("POST", "/api/v1/users", admin, `{"username":"norole2","roles":null}`)
		if p := problem(t, resp, body, 400, "bad_body"); p.Pointer != "/roles" {
			t.Fatalf("pointer %q", p.Pointer)
		}
		resp, body = h.do("POST", "/api/v1/tokens", admin, `{"username":"u-admin","name":"n","roles":null}`)
		problem(t, resp, body, 400, "bad_body")
		if _, err := h.st.UserByName(h.ctx, "norole2"); err == nil {
			t.Fatal("the account was made")
		}
	})

	t.Run("content type", func(t *testing.T) {
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "nonsense"} {
			resp, body := h.do("POST", "/api/v1/users", admin, `{"username":"ct","roles":["viewer"]}`, "Content-Type", ct)
			problem(t, resp, body, http.StatusUnsupportedMediaType, "unsupported_media_type")
		}
		req, _ := http.NewRequest("POST", h.http.URL+"/api/v1/users", strings.NewReader(`{"username":"ct","roles":["viewer"]}`))
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		problem(t, resp, body, http.StatusUnsupportedMediaType, "unsupported_media_type")
		if resp, body := h.do("POST", "/api/v1/users", admin, `{"username":"ct","roles":["viewer"]}`, "Content-Type", "application/json; charset=UTF-8"); resp.StatusCode != 201 {
			t.Fatalf("charset=UTF-8: %d %s", resp.StatusCode, body)
		}
		// An operation that takes no body refuses one.
		resp, body = h.do("POST", "/api/v1/reconcile", admin, `{"now":true}`)
		problem(t, resp, body, 400, "bad_body")
	})

	t.Run("unknown query parameters", func(t *testing.T) {
		resp, body := h.do("GET", "/api/v1/audit/export?start_date=2026-01-01", admin, nil)
		if p := problem(t, resp, body, 400, "bad_parameter"); !strings.Contains(p.Error, "start_date") || !strings.Contains(p.Error, "since") {
			t.Fatalf("%+v", p)
		}
		resp, body = h.do("GET", "/api/v1/status?verbose=1", viewer, nil)
		problem(t, resp, body, 400, "bad_parameter")
		resp, body = h.do("GET", "/api/v1/executions?limit=1&limit=2", viewer, nil)
		problem(t, resp, body, 400, "bad_parameter")
		resp, body = h.do("GET", "/api/v1/approvals?withdrawn=yes", viewer, nil)
		problem(t, resp, body, 400, "bad_parameter")
		resp, body = h.do("GET", "/api/v1/audit/export?format=xml", admin, nil)
		problem(t, resp, body, 400, "bad_parameter")
	})

	t.Run("404 and 405", func(t *testing.T) {
		resp, body := h.do("GET", "/api/v1/nope", viewer, nil)
		problem(t, resp, body, 404, "not_found")
		resp, body = h.do("PUT", "/api/v1/status", viewer, nil)
		problem(t, resp, body, 405, "method_not_allowed")
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") {
			t.Fatalf("Allow %q", allow)
		}
	})

	t.Run("export as json", func(t *testing.T) {
		resp, body := h.do("GET", "/api/v1/audit/export?format=json", admin, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !json.Valid(body) {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var doc struct {
			Paths map[string]map[string]struct {
				Responses map[string]struct {
					Content map[string]any `json:"content"`
				} `json:"responses"`
			} `json:"paths"`
		}
		if err := json.Unmarshal(OpenAPI, &doc); err != nil {
			t.Fatal(err)
		}
		if _, ok := doc.Paths["/api/v1/audit/export"]["get"].Responses["200"].Content["application/json"]; !ok {
			t.Fatal("the document does not say format=json is application/json")
		}
	})

	t.Run("since a duration ago", func(t *testing.T) {
		for _, since := range []string{"24h", "7d", "90m"} {
			resp, body := h.do("GET", "/api/v1/audit/export?since="+since, admin, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("since=%s: %d %s", since, resp.StatusCode, body)
			}
		}
	})

	t.Run("per-target results in snake_case", func(t *testing.T) {
		execs, err := h.st.ListExecutions(h.ctx, store.ExecutionFilter{})
		if err != nil || len(execs) == 0 {
			t.Fatalf("executions: %d %v", len(execs), err)
		}
		if err := h.st.SaveTargetResults(h.ctx, execs[0].ID, []store.TargetResult{{Target: "203.0.113.7", Planned: "would_block", Result: "changed"}}); err != nil {
			t.Fatal(err)
		}
		resp, body := h.do("GET", fmt.Sprintf("/api/v1/executions/%d", execs[0].ID), viewer, nil)
		var v struct {
			Targets []map[string]any `json:"targets"`
		}
		if err := json.Unmarshal(body, &v); err != nil || resp.StatusCode != 200 || len(v.Targets) != 1 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		for k := range v.Targets[0] {
			if k != strings.ToLower(k) {
				t.Fatalf("key %q in %s", k, body)
			}
		}
		if v.Targets[0]["target"] != "203.0.113.7" || v.Targets[0]["planned"] != "would_block" {
			t.Fatalf("%s", body)
		}
	})

	t.Run("usernames and display names", func(t *testing.T) {
		resp, body := h.do("POST", "/api/v1/users", admin, map[string]any{"username": "U-ADMIN", "roles": []string{"viewer"}})
		problem(t, resp, body, 409, "conflict")
		for _, name := range []string{"evil\u202egnp.exe", "a\u2066b", "tab\there", "x\u0085y", "rtl\u200fmark"} {
			resp, body := h.do("POST", "/api/v1/users", admin, map[string]any{"username": "dn", "display_name": name, "roles": []string{"viewer"}})
			problem(t, resp, body, 422, "invalid")
			resp, body = h.do("PATCH", "/api/v1/users/u-viewer", admin, map[string]any{"display_name": name})
			problem(t, resp, body, 422, "invalid")
		}
		if resp, body := h.do("POST", "/api/v1/users", admin, map[string]any{"username": "dn", "display_name": "Zoë Ærø (SOC) 山田", "roles": []string{"viewer"}}); resp.StatusCode != 201 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Every error code the server answers with is in docs/api.md's list.
func TestErrorCodesDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]bool{}
	re := regexp.MustCompile(`(?:writeProblem\([^,]+, [^,]+, |Code: |code: |[bB]ad(?:Param|Body)\(|Deny\([^,]+, [^,]+, [^,]+, )"([a-z_]+)"`)
	files, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".go") || strings.HasSuffix(f.Name(), "_test.go") {
			continue
		}
		src, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			codes[m[1]] = true
		}
	}
	for _, c := range []string{"invalid_credentials", "bad_parameter", "bad_body", "unsupported_media_type", "body_timeout", "method_not_allowed"} {
		if !codes[c] {
			t.Errorf("the scan misses %s", c)
		}
	}
	for _, c := range slices.Sorted(func(yield func(string) bool) {
		for c := range codes {
			if !yield(c) {
				return
			}
		}
	}) {
		if !strings.Contains(string(doc), "`"+c+"`") {
			t.Errorf("docs/api.md does not list the error code %s", c)
		}
	}
}
