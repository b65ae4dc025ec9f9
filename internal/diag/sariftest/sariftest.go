// Package sariftest checks SARIF logs in tests: against the official
// SARIF 2.1.0 JSON schema (vendored in testdata, see its README), with
// format assertions on, and for what the schema does not check: URIs
// that are strict RFC 3986 references, relative ones with a uriBaseId the
// run declares, and a columnKind whenever a region has a column.
package sariftest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed testdata/sarif-schema-2.1.0.json
var schemaJSON []byte

// SchemaID is the vendored schema's $id.
const SchemaID = "https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json"

var (
	once     sync.Once
	compiled *jsonschema.Schema
	errSch   error
)

// Schema is the compiled SARIF 2.1.0 schema; formats (uri,
// uri-reference, date-time) are asserted.
func Schema() (*jsonschema.Schema, error) {
	once.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
		if err != nil {
			errSch = err
			return
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		if err := c.AddResource(SchemaID, doc); err != nil {
			errSch = err
			return
		}
		compiled, errSch = c.Compile(SchemaID)
	})
	return compiled, errSch
}

// Log is the part of a SARIF log Check reads and tests look at.
type Log struct {
	Version string `json:"version"`
	Runs    []Run  `json:"runs"`
}

// Run is one run.
type Run struct {
	ColumnKind         string                      `json:"columnKind"`
	OriginalURIBaseIDs map[string]ArtifactLocation `json:"originalUriBaseIds"`
	Results            []Result                    `json:"results"`
	Invocations        []struct {
		ExecutionSuccessful        bool `json:"executionSuccessful"`
		ToolExecutionNotifications []struct {
			Message struct{ Text string } `json:"message"`
		} `json:"toolExecutionNotifications"`
	} `json:"invocations"`
}

// Result is one result.
type Result struct {
	RuleID    string `json:"ruleId"`
	Level     string `json:"level"`
	Message   struct{ Text string }
	Locations []struct {
		PhysicalLocation struct {
			ArtifactLocation ArtifactLocation `json:"artifactLocation"`
			Region           struct {
				StartLine   int `json:"startLine"`
				StartColumn int `json:"startColumn"`
			} `json:"region"`
		} `json:"physicalLocation"`
	} `json:"locations"`
}

// ArtifactLocation is a uri and its base.
type ArtifactLocation struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId"`
}

// Check validates data against the schema and the rules above, failing
// t with every violation, and returns the decoded log.
func Check(t testing.TB, data []byte) *Log {
	t.Helper()
	sch, err := Schema()
	if err != nil {
		t.Fatalf("SARIF schema: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("SARIF is not JSON: %v\n%s", err, data)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("SARIF does not match the SARIF 2.1.0 schema: %v\n%s", err, data)
	}
	var log Log
	if err := json.Unmarshal(data, &log); err != nil {
		t.Fatalf("SARIF: %v", err)
	}
	for i, run := range log.Runs {
		for id, base := range run.OriginalURIBaseIDs {
			if err := StrictURI(base.URI); err != nil {
				t.Errorf("run %d: originalUriBaseIds[%s]: %v", i, id, err)
			}
			if u, err := url.Parse(base.URI); err == nil && base.URIBaseID == "" && (!u.IsAbs() || !strings.HasSuffix(u.Path, "/")) {
				t.Errorf("run %d: originalUriBaseIds[%s] = %q: an absolute URI ending with a slash (SARIF §3.14.14)", i, id, base.URI)
			}
		}
		for j, r := range run.Results {
			for _, l := range r.Locations {
				loc := l.PhysicalLocation
				if loc.Region.StartColumn > 0 && run.ColumnKind == "" {
					t.Errorf("run %d result %d: a region with a column but no run.columnKind (SARIF §3.14.27)", i, j)
				}
				a := loc.ArtifactLocation
				if err := StrictURI(a.URI); err != nil {
					t.Errorf("run %d result %d: %v", i, j, err)
					continue
				}
				u, _ := url.Parse(a.URI)
				switch {
				case u.IsAbs() && a.URIBaseID != "":
					t.Errorf("run %d result %d: uriBaseId %q with the absolute URI %q (SARIF §3.4.4)", i, j, a.URIBaseID, a.URI)
				case !u.IsAbs() && a.URIBaseID == "":
					t.Errorf("run %d result %d: relative URI %q without a uriBaseId", i, j, a.URI)
				case a.URIBaseID != "":
					if _, ok := run.OriginalURIBaseIDs[a.URIBaseID]; !ok {
						t.Errorf("run %d result %d: uriBaseId %q is not in run.originalUriBaseIds", i, j, a.URIBaseID)
					}
				}
			}
		}
	}
	return &log
}

// StrictURI checks that s is an RFC 3986 URI reference: only unreserved
// characters, reserved delimiters and well-formed percent-encodings (no
// space, no raw non-ASCII, no stray %; no # or ?, which would start a
// fragment or a query where a file name is meant); an absolute one is a
// file URI (a relative path whose first segment holds a colon reads as
// one of another scheme).
func StrictURI(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._~:/@!$&'()*+,;=", c) >= 0:
			// unreserved, gen-delims but # ? [ ], sub-delims
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return fmt.Errorf("uri %q: %% not followed by two hex digits at %d", s, i)
			}
		default:
			return fmt.Errorf("uri %q: character %q at %d must be percent-encoded (RFC 3986)", s, c, i)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("uri %q: %w", s, err)
	}
	if u.IsAbs() && u.Scheme != "file" {
		return fmt.Errorf("uri %q: scheme %q where a file is meant (a colon in a relative path's first segment?)", s, u.Scheme)
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
