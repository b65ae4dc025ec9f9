package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// The API's contract, enforced on every request of a documented operation
// before its handler runs, from one declaration: the OpenAPI document
// (openapi.json). A request is refused when
//
//   - it carries a query parameter the operation does not declare, one
//     twice, or one that is not valid UTF-8, holds a control character or
//     does not fit its schema (type, integer range, enum, pattern,
//     length); path parameters likewise;
//   - its body does not match: a body on an operation that takes none, a
//     Content-Type not documented (415), JSON that is not one value, holds
//     a member name twice, invalid UTF-8 or a NUL, or does not validate
//     against the operation's schema (types, required members, no
//     unknown ones, names matched exactly);
//   - its body is not read in time (408).
//
// A 400 names what is wrong: the parameter, or the JSON pointer (RFC 6901)
// of the body's member. Handlers then decode with decodeJSON, as strict.

// Integer parameters state their format, and their range is that of the
// database column they are compared with.
var intRange = map[string][2]int64{
	"int32": {math.MinInt32, math.MaxInt32},
	"int64": {math.MinInt64, math.MaxInt64},
}

// maxParamBytes bounds a string parameter that states no maxLength.
const maxParamBytes = 1024

// DefaultBodyReadTimeout bounds reading a request body: a client that
// does not finish sending one in time is answered 408.
const DefaultBodyReadTimeout = 10 * time.Second

// operation is what the contract says of one route.
type operation struct {
	key   string // "GET /api/v1/executions/{id}"
	query map[string]*param
	path  map[string]*param
	body  *requestBody // nil: the operation takes no body
}

type param struct {
	name, in  string
	required  bool
	kind      string // string, integer, boolean
	min, max  int64
	enum      []string
	pattern   *regexp.Regexp
	maxLength int
}

type requestBody struct {
	required bool
	// media are the accepted media types; the schema of a JSON one (nil
	// for others, checked as UTF-8 text).
	media map[string]*jsonschema.Schema
}

type openAPISchema struct {
	Type      string   `json:"type"`
	Format    string   `json:"format"`
	Enum      []string `json:"enum"`
	Pattern   string   `json:"pattern"`
	MaxLength *int     `json:"maxLength"`
	Minimum   *int64   `json:"minimum"`
	Maximum   *int64   `json:"maximum"`
}

type openAPIParam struct {
	Name     string        `json:"name"`
	In       string        `json:"in"`
	Required bool          `json:"required"`
	Schema   openAPISchema `json:"schema"`
}

type openAPIOp struct {
	Parameters  []openAPIParam `json:"parameters"`
	RequestBody *struct {
		Required bool                       `json:"required"`
		Content  map[string]json.RawMessage `json:"content"`
	} `json:"requestBody"`
}

var (
	contractOnce sync.Once
	contractOps  map[string]*operation
	contractErr  error
)

// contractFor is the documented operation of a route pattern (nil: the
// route is not in the document, as the console's pages are not).
func contractFor(pattern string) *operation {
	contractOnce.Do(func() { contractOps, contractErr = loadContract(OpenAPI) })
	if contractErr != nil {
		panic(contractErr) // the embedded document is tested to load
	}
	return contractOps[pattern]
}

// loadContract reads the operations of an OpenAPI document.
func loadContract(doc []byte) (map[string]*operation, error) {
	var d struct {
		Paths map[string]map[string]openAPIOp `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	var whole any
	if err := json.Unmarshal(doc, &whole); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	const base = "https://writ.invalid/openapi.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(base, whole); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	ops := map[string]*operation{}
	for path, methods := range d.Paths {
		for method, o := range methods {
			key := strings.ToUpper(method) + " " + path
			op := &operation{key: key, query: map[string]*param{}, path: map[string]*param{}}
			for _, p := range o.Parameters {
				pp := &param{name: p.Name, in: p.In, required: p.Required, kind: p.Schema.Type, enum: p.Schema.Enum, maxLength: maxParamBytes}
				if pp.kind == "" && len(pp.enum) > 0 {
					pp.kind = "string"
				}
				switch pp.kind {
				case "string":
					if p.Schema.MaxLength != nil {
						pp.maxLength = *p.Schema.MaxLength
					}
					if p.Schema.Pattern != "" {
						re, err := regexp.Compile(p.Schema.Pattern)
						if err != nil {
							return nil, fmt.Errorf("openapi: %s parameter %s: %w", key, p.Name, err)
						}
						pp.pattern = re
					}
				case "integer":
					r, ok := intRange[p.Schema.Format]
					if !ok {
						return nil, fmt.Errorf("openapi: %s parameter %s: an integer needs format int32 or int64 (the column's range)", key, p.Name)
					}
					pp.min, pp.max = r[0], r[1]
					if p.Schema.Minimum != nil {
						pp.min = max(pp.min, *p.Schema.Minimum)
					}
					if p.Schema.Maximum != nil {
						pp.max = min(pp.max, *p.Schema.Maximum)
					}
				case "boolean":
				default:
					return nil, fmt.Errorf("openapi: %s parameter %s: type %q is not checked", key, p.Name, pp.kind)
				}
				switch p.In {
				case "query":
					op.query[p.Name] = pp
				case "path":
					op.path[p.Name] = pp
				default:
					return nil, fmt.Errorf("openapi: %s parameter %s: in %q is not checked", key, p.Name, p.In)
				}
			}
			if rb := o.RequestBody; rb != nil {
				op.body = &requestBody{required: rb.Required, media: map[string]*jsonschema.Schema{}}
				for mt := range rb.Content {
					var s *jsonschema.Schema
					if jsonMedia(mt) {
						loc := base + "#/paths/" + pointerEscape(path) + "/" + method + "/requestBody/content/" + pointerEscape(mt) + "/schema"
						var err error
						if s, err = c.Compile(loc); err != nil {
							return nil, fmt.Errorf("openapi: %s body %s: %w", key, mt, err)
						}
					}
					op.body.media[mt] = s
				}
			}
			ops[key] = op
		}
	}
	return ops, nil
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// jsonMedia: application/json and its +json kinds.
func jsonMedia(mt string) bool { return mt == "application/json" || strings.HasSuffix(mt, "+json") }

// contractError is a request the contract refuses.
type contractError struct {
	status    int
	code      string
	msg       string
	pointer   string // JSON pointer into the body
	parameter string // the query or path parameter
	allowed   []string
}

func (e *contractError) Error() string { return e.msg }

func badParam(p, format string, args ...any) *contractError {
	return &contractError{status: http.StatusBadRequest, code: "bad_parameter", parameter: p, msg: fmt.Sprintf(format, args...)}
}

func badBody(ptr, format string, args ...any) *contractError {
	return &contractError{status: http.StatusBadRequest, code: "bad_body", pointer: ptr, msg: fmt.Sprintf(format, args...)}
}

// checkText refuses what no parameter may hold: invalid UTF-8 and control
// characters (NUL, C0, DEL, C1).
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("holds the control character %U", r)
		}
	}
	return nil
}

func (p *param) check(v string) *contractError {
	where := p.in + " parameter " + p.name
	if err := checkText(v); err != nil {
		return badParam(p.name, "%s %s", where, err)
	}
	switch p.kind {
	case "integer":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < p.min || n > p.max {
			return badParam(p.name, "%s must be an integer from %d to %d", where, p.min, p.max)
		}
	case "boolean":
		if v != "true" && v != "false" {
			return badParam(p.name, "%s must be true or false", where)
		}
	case "string":
		if len(v) > p.maxLength {
			return badParam(p.name, "%s is longer than %d bytes", where, p.maxLength)
		}
		if len(p.enum) > 0 && !slices.Contains(p.enum, v) {
			return badParam(p.name, "%s must be one of %s", where, strings.Join(p.enum, ", "))
		}
		if p.pattern != nil && !p.pattern.MatchString(v) {
			return badParam(p.name, "%s does not match %s", where, p.pattern)
		}
	}
	return nil
}

// checkParams checks the query and path parameters.
func (op *operation) checkParams(r *http.Request) *contractError {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badParam("", "the query string is malformed: %v", err)
	}
	var unknown []string
	for name, vs := range q {
		p, ok := op.query[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if len(vs) > 1 {
			return badParam(name, "query parameter %s is given %d times", name, len(vs))
		}
		if ce := p.check(vs[0]); ce != nil {
			return ce
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		for i, u := range unknown {
			unknown[i] = strconv.QuoteToASCII(u)
		}
		known := slices.Sorted(func(yield func(string) bool) {
			for k := range op.query {
				if !yield(k) {
					return
				}
			}
		})
		msg := "takes no query parameters"
		if len(known) > 0 {
			msg = "takes only " + strings.Join(known, ", ")
		}
		return badParam(strings.Join(unknown, ","), "unknown query parameter %s: %s %s", strings.Join(unknown, ", "), op.key, msg)
	}
	for name, p := range op.query {
		if p.required && q.Get(name) == "" {
			return badParam(name, "query parameter %s is required", name)
		}
	}
	for name, p := range op.path {
		if ce := p.check(r.PathValue(name)); ce != nil {
			return ce
		}
	}
	return nil
}

// readBody reads a request body to its end: a MaxBytesError when it is
// too large, a contractError 408 when it was not sent in time.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if isTimeout(err) {
			return nil, &contractError{status: http.StatusRequestTimeout, code: "body_timeout", msg: "the request body was not sent in time"}
		}
		return nil, err
	}
	return b, nil
}

// isTimeout: a read that passed its deadline.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// checkBody checks the body against the operation, and leaves it in
// r.Body for the handler.
func (op *operation) checkBody(r *http.Request) error {
	if op.body == nil {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			return nil
		}
		b, err := readBody(r)
		if err != nil {
			return err
		}
		if len(b) > 0 {
			return &contractError{status: http.StatusBadRequest, code: "bad_body", msg: op.key + " takes no request body"}
		}
		r.Body, r.ContentLength = http.NoBody, 0
		return nil
	}
	var b []byte
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		var err error
		if b, err = readBody(r); err != nil {
			return err
		}
	}
	if len(b) == 0 {
		if op.body.required {
			return badBody("", "%s needs a request body (%s)", op.key, strings.Join(op.mediaTypes(), " or "))
		}
		r.Body, r.ContentLength = http.NoBody, 0
		return nil
	}
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	schema, ok := op.body.media[mt]
	for k, v := range params {
		ok = ok && k == "charset" && strings.EqualFold(v, "utf-8")
	}
	if err != nil || !ok {
		return &contractError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			msg:     fmt.Sprintf("Content-Type %q: %s takes %s", ct, op.key, strings.Join(op.mediaTypes(), " or ")),
			allowed: op.mediaTypes()}
	}
	if jsonMedia(mt) {
		if err := checkJSON(b, schema); err != nil {
			return err
		}
	} else if err := checkText(strings.NewReplacer("\n", "", "\r", "", "\t", "").Replace(string(b))); err != nil {
		return badBody("", "the body %s", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return nil
}

func (op *operation) mediaTypes() []string {
	out := make([]string, 0, len(op.body.media))
	for mt := range op.body.media {
		out = append(out, mt)
	}
	slices.Sort(out)
	return out
}

var schemaPrinter = message.NewPrinter(language.English)

// checkJSON checks a JSON body: one value, no member name twice, valid
// UTF-8, no NUL in a string, and valid against the schema.
func checkJSON(b []byte, schema *jsonschema.Schema) error {
	if err := scanJSON(b); err != nil {
		return err
	}
	if schema == nil {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return badBody("", "the body is not JSON: %v", err)
	}
	if err := schema.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return badBody("", "the body does not match the schema: %v", err)
		}
		leaf := ve
		for len(leaf.Causes) > 0 {
			leaf = leaf.Causes[0]
		}
		ptr := jsontext.Pointer("")
		for _, tok := range leaf.InstanceLocation {
			ptr = ptr.AppendToken(tok)
		}
		where := string(ptr)
		if where == "" {
			where = "/"
		}
		return badBody(string(ptr), "the body at %s: %s", where, leaf.ErrorKind.LocalizedString(schemaPrinter))
	}
	return nil
}

// scanJSON reads the body's tokens: exactly one JSON value, no duplicate
// member names, valid UTF-8, no NUL in a name or string.
func scanJSON(b []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	done := false
	for {
		tok, err := dec.ReadToken()
		if errors.Is(err, io.EOF) {
			if !done {
				return badBody("", "the body is not JSON: it ends early")
			}
			return nil
		}
		if err != nil {
			var se *jsontext.SyntacticError
			if errors.As(err, &se) {
				return badBody(string(se.JSONPointer), "the body is not valid JSON at %s: %v", pointerOrRoot(se.JSONPointer), se.Err)
			}
			return badBody("", "the body is not valid JSON: %v", err)
		}
		if done {
			return badBody("", "the body holds more than one JSON value")
		}
		if tok.Kind() == '"' && strings.IndexByte(tok.String(), 0) >= 0 {
			ptr := dec.StackPointer()
			return badBody(string(ptr), "the body at %s holds a NUL character", pointerOrRoot(ptr))
		}
		if dec.StackDepth() == 0 {
			done = true
		}
	}
}

func pointerOrRoot(p jsontext.Pointer) string {
	if p == "" {
		return "/"
	}
	return string(p)
}

// decodeJSON decodes a request body the contract has checked into v, as
// strictly: member names matched exactly, no unknown or repeated ones,
// valid UTF-8, one value. It names the member it refuses.
func decodeJSON(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if err := scanJSON(body); err != nil {
		return err
	}
	if err := jsonv2.Unmarshal(body, v, jsonv2.RejectUnknownMembers(true), jsonv2.MatchCaseInsensitiveNames(false)); err != nil {
		var se *jsonv2.SemanticError
		if errors.As(err, &se) {
			msg := "a value of the wrong kind"
			if se.JSONKind != 0 && se.GoType != nil {
				msg = fmt.Sprintf("%s where %s is expected", kindName(se.JSONKind), se.GoType.Kind())
			}
			if errors.Is(se.Err, jsonv2.ErrUnknownName) {
				msg = "an unknown member"
			}
			return badBody(string(se.JSONPointer), "the body at %s: %s", pointerOrRoot(se.JSONPointer), msg)
		}
		return badBody("", "the body is not the JSON expected: %v", err)
	}
	return nil
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "a value"
}

// writeContractError answers a refused request.
func writeContractError(w http.ResponseWriter, err error) {
	var ce *contractError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &ce):
		if len(ce.allowed) > 0 {
			w.Header().Set("Accept-Post", strings.Join(ce.allowed, ", "))
		}
		if ce.status == http.StatusRequestTimeout {
			w.Header().Set("Connection", "close")
		}
		writeJSON(w, ce.status, Problem{Error: ce.msg, Code: ce.code, Pointer: ce.pointer, Parameter: ce.parameter})
	case errors.As(err, &tooBig):
		writeProblem(w, http.StatusRequestEntityTooLarge, "too_large", "the request body is larger than %d bytes", tooBig.Limit)
	default:
		writeProblem(w, http.StatusBadRequest, "bad_body", "read the request body: %v", err)
	}
}

// notRouted answers what the mux does not route as every API error: 404
// or 405 (with Allow) as a Problem; a redirect to the clean path passes.
type notRouted struct {
	w    http.ResponseWriter
	mode int // 0: nothing written, 1: replaced by a Problem, 2: passed
}

func (n *notRouted) Header() http.Header { return n.w.Header() }

func (n *notRouted) WriteHeader(code int) {
	if n.mode != 0 {
		return
	}
	switch code {
	case http.StatusNotFound:
		n.mode = 1
		writeProblem(n.w, code, "not_found", "no such route")
	case http.StatusMethodNotAllowed:
		n.mode = 1
		writeProblem(n.w, code, "method_not_allowed", "this route takes %s", n.w.Header().Get("Allow"))
	default:
		n.mode = 2
		n.w.WriteHeader(code)
	}
}

func (n *notRouted) Write(b []byte) (int, error) {
	if n.mode == 0 {
		n.WriteHeader(http.StatusOK)
	}
	if n.mode == 1 {
		return len(b), nil // the mux's plain text is replaced
	}
	return n.w.Write(b)
}
