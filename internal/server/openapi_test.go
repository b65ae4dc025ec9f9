package server

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/auth"
)

type openAPIDoc struct {
	OpenAPI string                                 `json:"openapi"`
	Paths   map[string]map[string]openAPIOperation `json:"paths"`
}

type openAPIOperation struct {
	OperationID string                     `json:"operationId"`
	Summary     string                     `json:"summary"`
	Security    []map[string][]string      `json:"security"`
	Roles       *[]string                  `json:"x-writ-roles"`
	Public      *string                    `json:"x-writ-public"`
	DuringPWC   bool                       `json:"x-writ-during-password-change"`
	RateLimited bool                       `json:"x-writ-rate-limited"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

// The OpenAPI document and the routes say the same: every registered
// route is documented with who may call it, and every documented operation
// is registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var doc openAPIDoc
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	documented := map[string]openAPIOperation{}
	ids := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			key := strings.ToUpper(method) + " " + path
			documented[key] = op
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s: operationId %q missing or used twice", key, op.OperationID)
			}
			ids[op.OperationID] = true
		}
	}
	registered := map[string]Access{}
	for _, a := range h.srv.Routes() {
		registered[a.Pattern] = a
	}
	for key, a := range registered {
		op, ok := documented[key]
		if !ok {
			t.Errorf("route %s is not in openapi.json", key)
			continue
		}
		if a.Public != "" {
			if op.Public == nil || *op.Public != a.Public || len(op.Security) != 0 || op.Roles != nil {
				t.Errorf("%s: public (%q) in the code; the document says public=%v security=%v roles=%v", key, a.Public, op.Public, op.Security, op.Roles)
			}
		} else {
			if op.Roles == nil || op.Public != nil || len(op.Security) != 1 || op.Security[0]["bearer"] == nil {
				t.Errorf("%s: needs a bearer token in the code; the document says roles=%v public=%v security=%v", key, op.Roles, op.Public, op.Security)
				continue
			}
			got, err := auth.ParseRoles(*op.Roles)
			if err != nil || got != a.Roles {
				t.Errorf("%s: roles %s in the code, %v in the document", key, a.Roles, *op.Roles)
			}
			for _, code := range []string{"401", "403"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s: the document has no %s response", key, code)
				}
			}
		}
		if op.DuringPWC != a.DuringPasswordChange || op.RateLimited != a.RateLimited {
			t.Errorf("%s: during-password-change %v / rate-limited %v in the code, %v / %v in the document",
				key, a.DuringPasswordChange, a.RateLimited, op.DuringPWC, op.RateLimited)
		}
	}
	for key := range documented {
		if _, ok := registered[key]; !ok {
			t.Errorf("openapi.json documents %s, which is not registered", key)
		}
	}
	// It is served as is.
	resp, body := h.do("GET", "/api/v1/openapi.json", "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, OpenAPI) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/v1/openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range documented {
			if !yield(k) {
				return
			}
		}
	})
	if len(keys) != len(matrix) {
		t.Errorf("%d documented operations, %d in the matrix", len(keys), len(matrix))
	}
}
