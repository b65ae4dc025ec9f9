// Package yamldoc reads untrusted YAML documents strictly: one document per
// file, UTF-8 only, a size limit, no anchors, aliases, merge keys, custom
// tags or duplicate keys, bounded nesting. It keeps the line and column of
// every value so that schema and semantic errors can say where they are
// (path:line:col), and validates documents against JSON Schemas.
package yamldoc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/writ-sec/writ/internal/diag"
)

// Limits bound what Parse accepts.
type Limits struct {
	MaxBytes int // default 1 MiB
	MaxDepth int // default 32
}

func (l *Limits) setDefaults() {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 1 << 20
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 32
	}
}

// maxProblems caps the problems reported for one file.
const maxProblems = 50

// Doc is a strictly parsed YAML document.
type Doc struct {
	Path  string
	Root  *yaml.Node // the document's top node (not the DocumentNode)
	Value any        // JSON-compatible: map[string]any, []any, string, int64, float64, bool, nil
}

// Parse reads data as one strict YAML document. It returns nil and the
// problems when the bytes are not an acceptable document.
func Parse(path string, data []byte, lim Limits) (*Doc, diag.Problems) {
	lim.setDefaults()
	at := func(line, col int, code, format string, args ...any) diag.Problems {
		return diag.Problems{diag.Errorf(path, diag.Position{Line: line, Col: col}, code, format, args...)}
	}
	if len(data) > lim.MaxBytes {
		return nil, at(1, 1, "file", "file is %s; the limit is %s", humanBytes(len(data)), humanBytes(lim.MaxBytes))
	}
	if !utf8.Valid(data) {
		off := firstInvalidUTF8(data)
		line, col := lineCol(data, off)
		return nil, at(line, col, "file", "invalid UTF-8 at byte offset %d: files must be UTF-8 text", off)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		line, col := lineCol(data, i)
		return nil, at(line, col, "file", "NUL byte in file: files must be text")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docNode yaml.Node
	if err := dec.Decode(&docNode); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, at(1, 1, "file", "file is empty: expected a YAML mapping")
		}
		line := yamlErrLine(err)
		return nil, at(line, 1, "yaml-syntax", "%s", cleanYAMLErr(err))
	}
	var second yaml.Node
	if err := dec.Decode(&second); err == nil {
		return nil, at(second.Line, second.Column, "yaml-strict", "a second YAML document: one file holds one document")
	} else if !errors.Is(err, io.EOF) {
		return nil, at(yamlErrLine(err), 1, "yaml-syntax", "%s", cleanYAMLErr(err))
	}
	root := &docNode
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, at(1, 1, "file", "file is empty: expected a YAML mapping")
		}
		root = root.Content[0]
	}
	d := &Doc{Path: path, Root: root}
	var problems diag.Problems
	d.Value = d.convert(root, 1, lim.MaxDepth, &problems)
	if len(problems) > 0 {
		return nil, problems
	}
	return d, nil
}

func nodePos(n *yaml.Node) diag.Position { return diag.Position{Line: n.Line, Col: n.Column} }

// convert walks n, refusing what strict mode forbids, and builds the
// JSON-compatible value. Positions are looked up in the node tree when a
// problem needs one (Pos, KeyPos), not recorded for every node.
func (d *Doc) convert(n *yaml.Node, depth, maxDepth int, problems *diag.Problems) any {
	report := func(n *yaml.Node, code, format string, args ...any) {
		*problems = append(*problems, diag.Errorf(d.Path, nodePos(n), code, format, args...))
	}
	if len(*problems) >= maxProblems {
		return nil
	}
	if depth > maxDepth {
		report(n, "yaml-strict", "nested deeper than %d levels", maxDepth)
		return nil
	}
	if n.Kind == yaml.AliasNode {
		report(n, "yaml-strict", "aliases (*%s) are not allowed: write the value out", n.Value)
		return nil
	}
	if n.Anchor != "" {
		report(n, "yaml-strict", "anchors (&%s) are not allowed", n.Anchor)
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		if n.Tag != "" && n.Tag != "!!map" {
			report(n, "yaml-strict", "tag %s is not allowed", n.Tag)
			return nil
		}
		m := make(map[string]any, len(n.Content)/2)
		seen := make(map[string]*yaml.Node, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.AliasNode || k.Anchor != "" {
				report(k, "yaml-strict", "anchors and aliases are not allowed")
				continue
			}
			if k.Kind != yaml.ScalarNode || (k.ShortTag() != "!!str" && k.ShortTag() != "!!merge") {
				report(k, "yaml-strict", "mapping keys must be plain strings")
				continue
			}
			if k.ShortTag() == "!!merge" {
				report(k, "yaml-strict", "merge keys (<<) are not allowed")
				continue
			}
			if prev, dup := seen[k.Value]; dup {
				report(k, "yaml-strict", "duplicate key %q (first at line %d, column %d)", k.Value, prev.Line, prev.Column)
				continue
			}
			seen[k.Value] = k
			m[k.Value] = d.convert(v, depth+1, maxDepth, problems)
		}
		return m
	case yaml.SequenceNode:
		if n.Tag != "" && n.Tag != "!!seq" {
			report(n, "yaml-strict", "tag %s is not allowed", n.Tag)
			return nil
		}
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			s = append(s, d.convert(c, depth+1, maxDepth, problems))
		}
		return s
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return n.Value
		case "!!timestamp":
			// Dates stay the text the author wrote; schemas treat them as strings.
			return n.Value
		case "!!null":
			return nil
		case "!!bool", "!!int", "!!float":
			var v any
			if err := n.Decode(&v); err != nil {
				report(n, "yaml-syntax", "%s", cleanYAMLErr(err))
				return nil
			}
			switch x := v.(type) {
			case int:
				return int64(x)
			case uint64:
				return float64(x)
			}
			return v
		default:
			report(n, "yaml-strict", "tag %s is not allowed", n.Tag)
			return nil
		}
	}
	report(n, "yaml-syntax", "unexpected YAML node")
	return nil
}

func escapePtr(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// Pos returns the position of the value at a JSON pointer, or of its nearest
// ancestor that exists.
func (d *Doc) Pos(ptr string) diag.Position {
	_, n := d.lookup(ptr)
	if n == nil {
		return diag.Position{Line: 1, Col: 1}
	}
	return nodePos(n)
}

// lookup follows a JSON pointer through the node tree: it returns the
// node of the nearest existing ancestor of ptr (or of ptr itself), and
// the key node naming it when ptr itself is an object member. The node is
// nil when ptr is not a JSON pointer.
func (d *Doc) lookup(ptr string) (key, n *yaml.Node) {
	if d.Root == nil || ptr != "" && ptr[0] != '/' {
		return nil, nil
	}
	n = d.Root
	if ptr == "" {
		return nil, n
	}
	for tok := range strings.SplitSeq(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		var next *yaml.Node
		key = nil
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == tok {
					key, next = n.Content[i], n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(n.Content) && strconv.Itoa(i) == tok {
				next = n.Content[i]
			}
		}
		if next == nil {
			return nil, n
		}
		n = next
	}
	return key, n
}

// ValueAt returns the JSON-compatible value at a JSON pointer.
func (d *Doc) ValueAt(ptr string) (any, bool) {
	v := d.Value
	if ptr == "" {
		return v, true
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			c, ok := x[tok]
			if !ok {
				return nil, false
			}
			v = c
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// KeyPos returns the position of the key of the object member at ptr, or
// Pos(ptr) when ptr is not an object member.
func (d *Doc) KeyPos(ptr string) diag.Position {
	if k, _ := d.lookup(ptr); k != nil {
		return nodePos(k)
	}
	return d.Pos(ptr)
}

// Errorf makes a problem located at the value at ptr.
func (d *Doc) Errorf(ptr, code, format string, args ...any) diag.Problem {
	return diag.Errorf(d.Path, d.Pos(ptr), code, format, args...)
}

// Decode decodes the document into v (yaml struct tags). Call it after
// Validate passed; the strict checks already ran in Parse.
func (d *Doc) Decode(v any) error {
	if err := d.Root.Decode(v); err != nil {
		return fmt.Errorf("%s: %s", d.Path, cleanYAMLErr(err))
	}
	return nil
}

// FieldName renders a JSON pointer as a dotted field name:
// /spec/targets/1 becomes spec.targets[1].
func FieldName(ptr string) string {
	if ptr == "" {
		return "(document)"
	}
	var b strings.Builder
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

var lineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return n
		}
	}
	return 1
}

var linePrefixRE = regexp.MustCompile(`^yaml: (line \d+: )?`)

func cleanYAMLErr(err error) string {
	return linePrefixRE.ReplaceAllString(err.Error(), "")
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// lineCol converts a byte offset to a 1-based line and column (in runes).
func lineCol(b []byte, off int) (int, int) {
	line, start := 1, 0
	for i := 0; i < off && i < len(b); i++ {
		if b[i] == '\n' {
			line++
			start = i + 1
		}
	}
	return line, utf8.RuneCount(b[start:off]) + 1
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
