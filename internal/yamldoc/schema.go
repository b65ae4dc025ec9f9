package yamldoc

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/writ-sec/writ/internal/diag"
)

var printer = message.NewPrinter(language.English)

// Hints replace the generic message of a failed "pattern" keyword for a
// field. Keys are JSON pointers with "*" for array indices, e.g.
// "/metadata/name" or "/people/*/id".
type Hints map[string]string

// Validate checks the document against a JSON Schema and returns one
// located problem per failed leaf keyword.
func (d *Doc) Validate(s *jsonschema.Schema, hints Hints) diag.Problems {
	return d.ValidateAt("", d.Value, s, hints)
}

// ValidateAt checks v, the value found at the JSON pointer at, against a
// JSON Schema of its own, e.g. one backend's settings against that
// backend's schema: problems are located and named as parts of the whole
// document (backends[0].settings.url at its line and column). Hints are
// keyed by pointers relative to v ("/url").
func (d *Doc) ValidateAt(at string, v any, s *jsonschema.Schema, hints Hints) diag.Problems {
	err := s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return diag.Problems{diag.Errorf(d.Path, diag.Position{Line: 1, Col: 1}, "schema", "%v", err)}
	}
	var out diag.Problems
	seen := map[string]bool{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		for _, p := range d.describe(at, e, hints) {
			k := p.String()
			if !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
		}
	}
	walk(ve)
	out.Sort()
	return out
}

func (d *Doc) describe(at string, e *jsonschema.ValidationError, hints Hints) []diag.Problem {
	ptr := at
	for _, tok := range e.InstanceLocation {
		ptr += "/" + escapePtr(tok)
	}
	field := FieldName(ptr)
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		var ps []diag.Problem
		for _, prop := range k.Properties {
			child := ptr + "/" + escapePtr(prop)
			where := "at the top level"
			if ptr != "" {
				where = "in " + field
			}
			ps = append(ps, diag.Errorf(d.Path, d.KeyPos(child), "schema", "unknown field %q %s", prop, where))
		}
		return ps
	case *kind.Required:
		missing := append([]string(nil), k.Missing...)
		sort.Strings(missing)
		where := "at the top level"
		if ptr != "" {
			where = "in " + field
		}
		noun := "field"
		if len(missing) > 1 {
			noun = "fields"
		}
		return []diag.Problem{d.Errorf(ptr, "schema", "missing required %s %s %s", noun, quoteAll(missing), where)}
	case *kind.Type:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = yamlTypeName(w)
		}
		return []diag.Problem{d.Errorf(ptr, "schema", "%s: wrong type: expected %s, got %s", field, strings.Join(want, " or "), yamlTypeName(k.Got))}
	case *kind.Pattern:
		if h, ok := hints[hintKey(e.InstanceLocation)]; ok {
			return []diag.Problem{d.Errorf(ptr, "schema", "%s: %q %s", field, k.Got, h)}
		}
		return []diag.Problem{d.Errorf(ptr, "schema", "%s: %q does not match %s", field, k.Got, k.Want)}
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = fmt.Sprint(w)
		}
		return []diag.Problem{d.Errorf(ptr, "schema", "%s: %v is not one of %s", field, display(k.Got), strings.Join(want, ", "))}
	case *kind.Const:
		return []diag.Problem{d.Errorf(ptr, "schema", "%s: must be %v, got %v", field, display(k.Want), display(k.Got))}
	case *kind.MinLength:
		if k.Want == 1 {
			return []diag.Problem{d.Errorf(ptr, "schema", "%s: must not be empty", field)}
		}
	case *kind.MinItems:
		if k.Want == 1 {
			return []diag.Problem{d.Errorf(ptr, "schema", "%s: must have at least one entry", field)}
		}
	}
	return []diag.Problem{d.Errorf(ptr, "schema", "%s: %s", field, e.ErrorKind.LocalizedString(printer))}
}

func hintKey(loc []string) string {
	var b strings.Builder
	for _, tok := range loc {
		b.WriteByte('/')
		if isIndex(tok) {
			b.WriteByte('*')
		} else {
			b.WriteString(escapePtr(tok))
		}
	}
	return b.String()
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func display(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", x)
	case nil:
		return "null (empty)"
	}
	return fmt.Sprint(v)
}

func yamlTypeName(t string) string {
	switch t {
	case "object":
		return "a mapping"
	case "array":
		return "a list"
	case "null":
		return "nothing (null)"
	case "integer", "number":
		return "a number"
	case "boolean":
		return "a boolean"
	case "string":
		return "a string"
	}
	return t
}
