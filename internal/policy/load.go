package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/yamldoc"
)

// Problem codes of located policy-set problems.
const (
	CodeCompile = "rego-compile" // Rego that does not parse or compile
	CodeData    = "policy-data"  // a data file that does not parse or merge
	CodeFile    = "policy-file"  // a file writ refuses to load
)

// dataNames are the file names read as data, at any depth.
var dataNames = []string{"data.json", "data.yaml", "data.yml"}

type fileKind int

const (
	regoFile fileKind = iota
	testFile
	dataFile
)

// policyFile is one file of a policy set.
type policyFile struct {
	path  string // in the fs.FS
	rel   string // relative to the policy directory, slash-separated
	shown string // in problems and reasons
	kind  fileKind
	data  []byte
}

// IsTestFile reports whether a file name is a Rego test file (*_test.rego),
// which writ loads for `writ policy test` only.
func IsTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// LoadFS reads the policy set under dir in fsys — every .rego file that is
// not a test, and every data.json, data.yaml and data.yml, whose directory
// under dir is its path in data, as `opa test` loads them — and compiles it
// once.
//
// LoadFS always returns a usable Set. When the policies cannot be read or
// compiled, the error says why (a diag.Problems for located problems,
// path:line:col) and the Set is fail-closed: every Decide is a DENY with
// those problems as reasons.
func LoadFS(fsys fs.FS, dir string, opts Options) (*Set, error) {
	s := &Set{indexMin: indexMinTargets}
	if err := opts.validate(); err != nil {
		s.failed = []Reason{{Kind: KindDeny, Rule: RuleCompile, Message: err.Error()}}
		return s, err
	}
	opts.setDefaults()
	s.opts = opts
	ctx, cancel := context.WithTimeout(context.Background(), opts.CompileTimeout)
	defer cancel()

	files, problems, err := readFiles(fsys, dir, opts, false)
	if err != nil {
		err = fmt.Errorf("load policies from %s: %w", shownDir(dir, opts), err)
		s.failed = []Reason{{Kind: KindDeny, Rule: RuleCompile, Message: err.Error()}}
		return s, err
	}
	s.digest = digestOf(files)
	for _, f := range files {
		s.files = append(s.files, f.shown)
	}
	if len(problems) > 0 {
		return s.broken(problems, nil)
	}
	c, err := compile(ctx, files, opts, false)
	if err != nil {
		if errors.Is(err, ErrCompileTimeout) {
			return s.timedOut(dir, err)
		}
		if len(c.problems) == 0 {
			s.failed = []Reason{{Kind: KindDeny, Rule: RuleCompile, Message: err.Error()}}
			return s, err
		}
		return s.broken(c.problems, c.modules)
	}
	rules := c.compiler.GetRulesExact(ast.MustParseRef(Query))
	if len(rules) == 0 {
		return s.broken(diag.Problems{diag.Errorf(shownDir(dir, opts), diag.Position{}, CodeCompile,
			"no rule defines %s: writ evaluates %s and denies everything without it", Query, Query)}, nil)
	}
	if loc := rules[0].Location; loc != nil {
		s.decisionAt = fmt.Sprintf("%s:%d:%d", loc.File, loc.Row, loc.Col)
	}
	pq, err := rego.New(
		rego.Query(Query),
		rego.Compiler(c.compiler),
		rego.Store(c.store),
		rego.Capabilities(c.caps),
		rego.StrictBuiltinErrors(true),
		rego.EnablePrintStatements(false),
	).PrepareForEval(ctx)
	if err == nil && ctx.Err() != nil {
		err = compileTimeout(opts)
	}
	if errors.Is(err, ErrCompileTimeout) {
		return s.timedOut(dir, err)
	}
	if err != nil {
		return s.broken(astProblems(err, CodeCompile), c.modules)
	}
	s.query = pq
	s.compiler = c.compiler
	s.constants = constantRules(ctx, c.compiler, c.store)
	return s, nil
}

// timedOut makes s fail-closed because compiling it ran past
// CompileTimeout (err wraps ErrCompileTimeout).
func (s *Set) timedOut(dir string, err error) (*Set, error) {
	err = fmt.Errorf("load policies from %s: %w", shownDir(dir, s.opts), err)
	s.failed = []Reason{{Kind: KindDeny, Rule: RuleCompile, Message: err.Error() + ": writ denies every playbook until the policy set compiles in time"}}
	return s, err
}

// broken makes s fail-closed with problems as its reasons.
func (s *Set) broken(problems diag.Problems, modules map[string]*ast.Module) (*Set, error) {
	problems.Sort()
	s.failed = make([]Reason, len(problems))
	for i, p := range problems {
		rule := ruleAt(modules, p.Path, p.Line)
		if rule == "" {
			rule = RuleCompile
		}
		s.failed[i] = Reason{Kind: KindDeny, Rule: rule, Location: fmt.Sprintf("%s:%d:%d", p.Path, max(p.Line, 1), max(p.Col, 1)),
			Message: "the policy set does not load: " + p.Message}
	}
	return s, problems
}

// DigestFS returns the digest of the policy set under dir: the hex SHA-256
// of
//
//	"writ-policy-set-v1\n"
//	then, for each file loaded for evaluation (non-test .rego files and
//	data files), in byte order of its slash-separated path relative to dir:
//	  uint64 big-endian length of the path, the path,
//	  uint64 big-endian length of the content, the content.
//
// Test files and files writ does not load do not count. The same files give
// the same digest wherever the directory lives (a checkout, a git tree, the
// embedded defaults). Set.Digest returns the same value.
func DigestFS(fsys fs.FS, dir string) (string, error) {
	opts := Options{}
	opts.setDefaults()
	files, problems, err := readFiles(fsys, dir, opts, false)
	if err != nil {
		return "", fmt.Errorf("digest policies under %s: %w", dir, err)
	}
	if len(problems) > 0 {
		return "", problems
	}
	return digestOf(files), nil
}

func digestOf(files []policyFile) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b policyFile) int { return strings.Compare(a.rel, b.rel) })
	h := sha256.New()
	io.WriteString(h, "writ-policy-set-v1\n")
	var n [8]byte
	for _, f := range sorted {
		if f.kind == testFile {
			continue
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(f.rel)))
		h.Write(n[:])
		io.WriteString(h, f.rel)
		binary.BigEndian.PutUint64(n[:], uint64(len(f.data)))
		h.Write(n[:])
		h.Write(f.data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func shownDir(dir string, opts Options) string {
	if opts.Root != "" {
		return opts.Root
	}
	return dir
}

// readFiles lists and reads the files of a policy set, with tests when
// tests is set. Per-file trouble is a problem; err is for I/O failures.
func readFiles(fsys fs.FS, dir string, opts Options, tests bool) ([]policyFile, diag.Problems, error) {
	var (
		files    []policyFile
		problems diag.Problems
		total    int64
		regoSize int64
	)
	fi, err := fs.Stat(fsys, dir)
	if err != nil {
		return nil, nil, err
	}
	if !fi.IsDir() {
		return nil, nil, fmt.Errorf("%s is not a directory", dir)
	}
	err = fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel := p
		if dir != "." {
			rel = strings.TrimPrefix(p, dir+"/")
		}
		shown := p
		if opts.Root != "" {
			shown = path.Join(opts.Root, rel)
		}
		name := d.Name()
		kind, load, stray := classify(name)
		if stray {
			problems = append(problems, diag.Errorf(shown, diag.Position{}, CodeFile,
				"`opa test` would load this file as data, but writ reads data only from files named %s: rename or move it so both see the same data",
				strings.Join(dataNames, ", ")))
			return nil
		}
		if !load || (kind == testFile && !tests) {
			return nil
		}
		if !d.Type().IsRegular() {
			problems = append(problems, diag.Errorf(shown, diag.Position{}, CodeFile,
				"not a regular file (%s): a policy set holds plain files only", d.Type()))
			return nil
		}
		if len(files) >= opts.MaxFiles {
			return fmt.Errorf("more than %d files", opts.MaxFiles)
		}
		data, prob, err := readLimited(fsys, p, shown, opts.MaxFileBytes)
		if err != nil {
			return err
		}
		if prob != nil {
			problems = append(problems, *prob)
			return nil
		}
		total += int64(len(data))
		if total > opts.MaxTotalBytes {
			return fmt.Errorf("the files add up to more than %d bytes", opts.MaxTotalBytes)
		}
		if kind != dataFile {
			regoSize += int64(len(data))
			if regoSize > opts.MaxRegoBytes {
				return fmt.Errorf("the Rego files add up to more than %d bytes", opts.MaxRegoBytes)
			}
		}
		files = append(files, policyFile{path: p, rel: rel, shown: shown, kind: kind, data: data})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	problems.Sort()
	return files, problems, nil
}

// classify says what a file name is: whether writ loads it, and whether it
// is a file `opa test` would load as data that writ does not.
func classify(name string) (kind fileKind, load, stray bool) {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(name, ".rego"):
		if IsTestFile(name) {
			return testFile, true, false
		}
		return regoFile, true, false
	case slices.Contains(dataNames, name):
		return dataFile, true, false
	case strings.HasSuffix(lower, ".json"), strings.HasSuffix(lower, ".yaml"), strings.HasSuffix(lower, ".yml"), strings.HasSuffix(lower, ".tar.gz"):
		return 0, false, true
	}
	return 0, false, false
}

func readLimited(fsys fs.FS, p, shown string, limit int64) ([]byte, *diag.Problem, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", shown, err)
	}
	if int64(len(data)) > limit {
		prob := diag.Errorf(shown, diag.Position{}, CodeFile, "file is larger than the limit of %d bytes", limit)
		return nil, &prob, nil
	}
	return data, nil, nil
}

// compiled is the result of compiling a policy set.
type compiled struct {
	modules map[string]*ast.Module
	// data is the merged data; dataOrigin names the file that first set
	// each top-level key.
	data       map[string]any
	dataOrigin map[string]string
	compiler   *ast.Compiler
	store      storage.Store
	caps       *ast.Capabilities
	problems   diag.Problems
}

// compile parses the Rego files and data, and compiles the modules unless
// forTests is set (the test runner compiles them with its own stages). A
// panic inside OPA, on input it should have refused, is a problem too.
func compile(ctx context.Context, files []policyFile, opts Options, forTests bool) (c *compiled, err error) {
	c = &compiled{modules: map[string]*ast.Module{}, caps: capabilities(opts.AllowNetwork)}
	defer func() {
		if p := recover(); p != nil {
			where := ""
			if len(files) > 0 {
				where = files[0].shown
			}
			c.problems = diag.Problems{diag.Errorf(where, diag.Position{}, CodeCompile, "OPA failed on this policy set: %v", p)}
			err = c.problems
		}
	}()
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true, Capabilities: c.caps}
	data := map[string]any{}
	origin := map[string]string{} // top-level data key -> file that set it first
	c.data, c.dataOrigin = data, origin
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			if forTests {
				return c, err
			}
			return c, compileTimeout(opts)
		}
		switch f.kind {
		case regoFile, testFile:
			m, err := ast.ParseModuleWithOpts(f.shown, string(f.data), popts)
			if err != nil {
				c.problems = append(c.problems, astProblems(err, CodeCompile)...)
				continue
			}
			c.modules[f.shown] = m
		case dataFile:
			v, probs := parseData(f)
			if len(probs) > 0 {
				c.problems = append(c.problems, probs...)
				continue
			}
			if p := mergeData(data, origin, f, v); p != nil {
				c.problems = append(c.problems, *p)
			}
		}
	}
	if len(c.problems) > 0 {
		c.problems.Sort()
		return c, c.problems
	}
	value, err := ast.InterfaceToValue(data)
	if err != nil {
		c.problems = diag.Problems{diag.Errorf(files[0].shown, diag.Position{}, CodeData, "data: %v", err)}
		return c, c.problems
	}
	obj, ok := value.(ast.Object)
	if !ok {
		c.problems = diag.Problems{diag.Errorf(files[0].shown, diag.Position{}, CodeData, "data is not an object")}
		return c, c.problems
	}
	c.store = inmem.NewFromASTObject(obj)
	c.compiler = ast.NewCompiler().
		WithCapabilities(c.caps).
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(forTests).
		WithUseTypeCheckAnnotations(true)
	withDeadline(ctx, c.compiler)
	if forTests {
		// The test runner compiles, in a transaction of its own.
		return c, nil
	}
	txn, err := c.store.NewTransaction(ctx)
	if err != nil {
		return c, fmt.Errorf("open policy data: %w", err)
	}
	defer c.store.Abort(ctx, txn)
	c.compiler.WithPathConflictsCheck(storage.NonEmpty(ctx, c.store, txn))
	if c.compiler.Compile(c.modules); c.compiler.Failed() {
		if ctx.Err() != nil {
			return c, compileTimeout(opts)
		}
		c.problems = astProblems(c.compiler.Errors, CodeCompile)
		return c, c.problems
	}
	if ps := checkRules(c); len(ps) > 0 {
		c.problems = ps
		return c, ps
	}
	return c, nil
}

// ErrCompileTimeout is the error (errors.Is) of LoadFS for a policy set
// that did not compile before Options.CompileTimeout. Unlike other load
// errors it may not recur: the same set can compile on a less busy machine.
var ErrCompileTimeout = errors.New("compiling took longer than the limit")

func compileTimeout(opts Options) error {
	return fmt.Errorf("%w of %s (CompileTimeout): the set has too much Rego, or Rego that is slow to compile", ErrCompileTimeout, opts.CompileTimeout)
}

// withDeadline makes the compiler stop, with an error, after the first of
// its stages that ends past ctx's deadline. A stage cannot be interrupted,
// so the deadline can be overrun by one stage (MaxRegoBytes bounds how
// long one takes).
func withDeadline(ctx context.Context, c *ast.Compiler) {
	check := ast.CompilerStageDefinition{
		Name:       "writ.deadline",
		MetricName: "writ_compile_deadline",
		Stage: func(*ast.Compiler) *ast.Error {
			if err := ctx.Err(); err != nil {
				return ast.NewError(ast.CompileErr, nil, "compilation stopped: %v", err)
			}
			return nil
		},
	}
	for _, id := range c.StagesToRun() {
		c.WithStageAfterID(id, check)
	}
}

// capabilities are OPA's built-ins for this version, without the ones that
// reach the network unless allowed.
func capabilities(allowNetwork bool) *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	if !allowNetwork {
		caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
			return b.Name == "http.send" || b.Name == "net.lookup_ip_addr"
		})
		caps.AllowNet = []string{}
	}
	return caps
}

// astProblems converts OPA errors (ast.Errors from the parser or the
// compiler) to located problems.
func astProblems(err error, code string) diag.Problems {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		var one *ast.Error
		if errors.As(err, &one) {
			errs = ast.Errors{one}
		}
	}
	if len(errs) == 0 {
		return diag.Problems{diag.Errorf("", diag.Position{}, code, "%v", err)}
	}
	out := make(diag.Problems, 0, len(errs))
	for _, e := range errs {
		var (
			file string
			pos  diag.Position
		)
		if e.Location != nil {
			file = e.Location.File
			pos = diag.Position{Line: e.Location.Row, Col: e.Location.Col}
		}
		out = append(out, diag.Errorf(file, pos, code, "%s: %s", e.Code, e.Message))
	}
	out.Sort()
	return out
}

// parseData decodes a data file: JSON, or strict YAML (no anchors,
// aliases, duplicate keys or custom tags).
func parseData(f policyFile) (any, diag.Problems) {
	if strings.HasSuffix(f.rel, ".json") {
		dec := json.NewDecoder(bytes.NewReader(f.data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, diag.Problems{diag.Errorf(f.shown, jsonErrPos(f.data, err), CodeData, "invalid JSON: %v", err)}
		}
		if dec.More() {
			off := dec.InputOffset()
			return nil, diag.Problems{diag.Errorf(f.shown, offsetPos(f.data, int(off)), CodeData, "invalid JSON: more than one value")}
		}
		return v, checkNumbers(f.shown, v)
	}
	doc, problems := yamldoc.Parse(f.shown, f.data, yamldoc.Limits{MaxBytes: len(f.data) + 1, MaxDepth: 64})
	if problems != nil {
		for i := range problems {
			problems[i].Code = CodeData
		}
		return nil, problems
	}
	return doc.Value, checkNumbers(f.shown, doc.Value)
}

// checkNumbers refuses numbers JSON cannot hold (YAML's .inf and .nan).
func checkNumbers(shown string, v any) diag.Problems {
	bad := false
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case float64:
			if math.IsInf(x, 0) || math.IsNaN(x) {
				bad = true
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	if bad {
		return diag.Problems{diag.Errorf(shown, diag.Position{}, CodeData, "data holds an infinite or NaN number, which JSON cannot represent")}
	}
	return nil
}

// mergeData places v at the data path of f's directory and merges it into
// data as `opa test` does: objects merge, anything else may be set once.
func mergeData(data map[string]any, origin map[string]string, f policyFile, v any) *diag.Problem {
	var keys []string
	if d := path.Dir(f.rel); d != "." {
		keys = strings.Split(d, "/")
	}
	if len(keys) == 0 {
		if _, ok := v.(map[string]any); !ok {
			p := diag.Errorf(f.shown, diag.Position{}, CodeData, "a data file at the top of the policy set must hold an object (a mapping), not %s", describe(v))
			return &p
		}
	}
	for i := len(keys) - 1; i >= 0; i-- {
		v = map[string]any{keys[i]: v}
	}
	conflict := mergeObjects(data, v.(map[string]any), nil)
	if conflict != nil {
		where := "data." + strings.Join(conflict, ".")
		other := origin[conflict[0]]
		p := diag.Errorf(f.shown, diag.Position{}, CodeData, "%s is already set by %s: data files may only add to each other's objects", where, other)
		return &p
	}
	for k := range v.(map[string]any) {
		if _, seen := origin[k]; !seen {
			origin[k] = f.shown
		}
	}
	return nil
}

// mergeObjects merges src into dst, returning the path of the first key
// both set to something other than two objects (and changing nothing past
// it).
func mergeObjects(dst, src map[string]any, at []string) []string {
	keys := make([]string, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		sv := src[k]
		dv, exists := dst[k]
		if !exists {
			dst[k] = sv
			continue
		}
		dm, ok1 := dv.(map[string]any)
		sm, ok2 := sv.(map[string]any)
		if !ok1 || !ok2 {
			return append(slices.Clone(at), k)
		}
		if c := mergeObjects(dm, sm, append(at, k)); c != nil {
			return c
		}
	}
	return nil
}

func jsonErrPos(data []byte, err error) diag.Position {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset counts the bytes read, the offending one included.
		return offsetPos(data, int(se.Offset)-1)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return offsetPos(data, int(te.Offset))
	}
	return diag.Position{Line: 1, Col: 1}
}

func offsetPos(data []byte, off int) diag.Position {
	off = min(max(off, 0), len(data))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	start := bytes.LastIndexByte(data[:off], '\n') + 1
	// Columns count Unicode code points, as the YAML decoder's and OPA's
	// do (diag.ColumnKind).
	return diag.Position{Line: line, Col: utf8.RuneCount(data[start:off]) + 1}
}
