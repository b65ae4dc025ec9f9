package audit

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the event catalogue in docs/audit.md")

// repoRoot is the module's root, two levels above this package.
const repoRoot = "../.."

// The generated catalogue sits between these lines of docs/audit.md.
const (
	catalogueBegin = "<!-- event catalogue: generated from internal/audit/events.go by `go test ./internal/audit -run TestEventCatalogue -update`; do not edit -->"
	catalogueEnd   = "<!-- end of the event catalogue -->"
)

// catalogueMarkdown renders Catalogue as the table docs/audit.md carries.
func catalogueMarkdown() string {
	var b strings.Builder
	b.WriteString("| event | actor | subject | what it records | payload fields |\n|---|---|---|---|---|\n")
	for _, s := range Catalogue() {
		fields := make([]string, len(s.Payload))
		for i, f := range s.Payload {
			name, rest, ok := strings.Cut(f, ":")
			if ok { // "before/after: what"
				fields[i] = "`" + name + "`:" + rest
				continue
			}
			fields[i] = "`" + f + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", s.Name, s.Actor, s.Subject, s.Summary, strings.Join(fields, ", "))
	}
	return b.String()
}

// TestEventCatalogue: docs/audit.md carries exactly the catalogue the
// constants make.
func TestEventCatalogue(t *testing.T) {
	path := filepath.Join(repoRoot, "docs", "audit.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := bytes.Cut(doc, []byte(catalogueBegin+"\n"))
	_, after, ok2 := bytes.Cut(rest, []byte(catalogueEnd))
	if !ok1 || !ok2 {
		t.Fatalf("%s has no event catalogue between %q and %q", path, catalogueBegin, catalogueEnd)
	}
	want := catalogueMarkdown()
	got := string(rest[:len(rest)-len(after)-len(catalogueEnd)])
	if got == want {
		return
	}
	if *update {
		out := slices.Concat(before, []byte(catalogueBegin+"\n"+want+catalogueEnd), after)
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the event catalogue in %s", path)
		return
	}
	t.Errorf("the event catalogue in %s is not the one internal/audit/events.go makes; regenerate it with\n\tgo test ./internal/audit -run TestEventCatalogue -update\n\ngot:\n%s\nwant:\n%s", path, got, want)
}

// TestCatalogueComplete: every Event constant of events.go is in the
// catalogue once, with a valid name, a summary and its fields.
func TestCatalogueComplete(t *testing.T) {
	f, err := goparser.ParseFile(token.NewFileSet(), "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[Event]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Event" {
				continue
			}
			for i, n := range vs.Names {
				lit := vs.Values[i].(*ast.BasicLit)
				v, _ := strconv.Unquote(lit.Value)
				consts[Event(v)] = n.Name
			}
		}
	}
	seen := map[Event]bool{}
	for _, s := range Catalogue() {
		if seen[s.Name] {
			t.Errorf("%s is in the catalogue twice", s.Name)
		}
		seen[s.Name] = true
		if _, ok := consts[s.Name]; !ok {
			t.Errorf("%s is in the catalogue but not a constant of events.go", s.Name)
		}
		if !validEvent(string(s.Name)) {
			t.Errorf("%s is not a valid event name", s.Name)
		}
		if s.Summary == "" || s.Actor == "" || s.Subject == "" || strings.Contains(s.Summary, "|") {
			t.Errorf("%s: actor, subject and a one-line summary without '|' are required", s.Name)
		}
		if !Known(s.Name) {
			t.Errorf("Known(%s) = false", s.Name)
		}
	}
	for v, name := range consts {
		if !seen[v] {
			t.Errorf("constant %s (%q) is missing from the catalogue", name, v)
		}
	}
	if len(consts) < 50 {
		t.Fatalf("found only %d Event constants in events.go: is the parser looking at the right declarations?", len(consts))
	}
	if Known("incident.note") {
		t.Error("an external event is Known")
	}
}

// eventLiteralProblems parses the Go sources under root (tests and
// testdata aside) and reports every event name written as a string
// literal outside internal/audit/events.go: the value of an Event field,
// a conversion to Event, or any literal spelling one of the catalogue's
// names.
func eventLiteralProblems(t *testing.T, root string) []string {
	t.Helper()
	known := map[string]bool{}
	for _, s := range Catalogue() {
		known[string(s.Name)] = true
	}
	catalogueFile, err := filepath.Abs(filepath.Join(root, "internal", "audit", "events.go"))
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		if abs, _ := filepath.Abs(path); abs == catalogueFile {
			return nil
		}
		f, err := goparser.ParseFile(fset, path, nil, goparser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		isLit := func(e ast.Expr) (string, bool) {
			lit, ok := e.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return "", false
			}
			v, err := strconv.Unquote(lit.Value)
			return v, err == nil
		}
		report := func(n ast.Node, format string, args ...any) {
			problems = append(problems, fset.Position(n.Pos()).String()+": "+fmt.Sprintf(format, args...))
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Event" {
					if v, ok := isLit(n.Value); ok {
						report(n, "Event: %q is a literal; use a constant of internal/audit/events.go", v)
						return false
					}
				}
			case *ast.CallExpr:
				name := ""
				switch fn := n.Fun.(type) {
				case *ast.SelectorExpr:
					if x, ok := fn.X.(*ast.Ident); ok && x.Name == "audit" {
						name = fn.Sel.Name
					}
				case *ast.Ident:
					if f.Name.Name == "audit" {
						name = fn.Name
					}
				}
				if name == "Event" && len(n.Args) == 1 {
					if v, ok := isLit(n.Args[0]); ok {
						report(n, "audit.Event(%q) converts a literal; add a constant to internal/audit/events.go", v)
						return false
					}
				}
			case *ast.BasicLit:
				if v, ok := isLit(n); ok && known[v] {
					report(n, "%q spells an audit event; use its constant from internal/audit/events.go", v)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no Go files under %s", root)
	}
	return problems
}

// TestNoEventLiterals: no emitter spells an event name itself.
func TestNoEventLiterals(t *testing.T) {
	for _, p := range eventLiteralProblems(t, repoRoot) {
		t.Error(p)
	}
}

// TestNoEventLiteralsCatches: the check above finds each kind of literal.
func TestNoEventLiteralsCatches(t *testing.T) {
	dir := t.TempDir()
	src := `package x

import "github.com/writ-sec/writ/internal/audit"

var a = audit.Entry{Event: "thing.happened"}
var b = audit.Event("other.thing")
var c = map[string]string{"k": "merge.seen"}
var d = audit.Entry{Event: audit.EventMergeSeen, Payload: audit.MustJSON(map[string]any{"note": "not an event"})}
`
	if err := os.WriteFile(filepath.Join(dir, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same in a test file is allowed.
	if err := os.WriteFile(filepath.Join(dir, "x_test.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got := eventLiteralProblems(t, dir)
	want := []string{`Event: "thing.happened"`, `audit.Event("other.thing")`, `"merge.seen" spells`}
	if len(got) != len(want) {
		t.Fatalf("problems = %q; want %d of them", got, len(want))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("problem %d = %q; want it to mention %s", i, got[i], w)
		}
	}
}
