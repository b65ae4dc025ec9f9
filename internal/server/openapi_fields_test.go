package server

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/reconcile"
)

// Every JSON field of the types the API answers with is a property of its
// schema in the document, and every property is a field: the live
// contract test sees only the fields the harness fills, this one sees the
// omitempty ones too (Status's leader_epoch was missing).
func TestOpenAPISchemasCoverTypes(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"Status":               reconcile.Status{},
		"Problem":              Problem{},
		"LoginMethods":         LoginMethods{},
		"LoginResponse":        LoginResponse{},
		"Principal":            auth.Principal{},
		"PlaybookSummary":      PlaybookSummary{},
		"PlaybookDetail":       PlaybookDetail{},
		"ExecutionDetail":      ExecutionDetail{},
		"Execution":            ExecutionView{},
		"TargetResult":         TargetView{},
		"Approval":             ApprovalView{},
		"Hold":                 HoldView{},
		"VerifyReport":         VerifyReport{},
		"Checkpoint":           CheckpointView{},
		"CheckpointSinkResult": SinkResultView{},
		"MadeCheckpoint":       MadeCheckpoint{},
		"User":                 auth.User{},
		"UserCreated":          UserCreated{},
		"Token":                auth.Token{},
		"TokenCreated":         TokenCreated{},
		"LoginRequest":         loginRequest{},
		"PasswordChange":       passwordRequest{},
		"NewUser":              createUserRequest{},
		"UserChange":           updateUserRequest{},
		"NewToken":             createTokenRequest{},
		"VerifyRequest":        verifyRequest{},
		"Pending":              reconcile.Pending{},
		"PendingDetail":        reconcile.PendingDetail{},
		"DriftReport":          reconcile.DriftReport{},
		"DriftGroup":           reconcile.DriftGroupReport{},
		"DriftFinding":         action.DriftFinding{},
		"DriftHeal":            reconcile.DriftHeal{},
		"DriftCounts":          reconcile.DriftCounts{},
	} {
		ref := doc.Components.Schemas[name]
		if ref == nil {
			t.Errorf("no schema %s", name)
			continue
		}
		documented := properties(ref.Value)
		fields := jsonFields(reflect.TypeOf(v))
		for _, f := range fields {
			if !slices.Contains(documented, f) {
				t.Errorf("%s: the field %s (%T) is not in the document", name, f, v)
			}
		}
		for _, p := range documented {
			if !slices.Contains(fields, p) {
				t.Errorf("%s: the document's property %s is not a field of %T", name, p, v)
			}
		}
	}
}

// properties are a schema's property names, through allOf.
func properties(s *openapi3.Schema) []string {
	var out []string
	for p := range s.Properties {
		out = append(out, p)
	}
	for _, part := range s.AllOf {
		out = append(out, properties(part.Value)...)
	}
	return out
}

// jsonFields are a struct's JSON member names, through embedded structs.
func jsonFields(t reflect.Type) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}
