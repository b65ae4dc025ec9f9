package policy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/writ-sec/writ/internal/diag"
)

// TestOptions configure RunTests.
type TestOptions struct {
	// Options are the load options (Root, limits, AllowNetwork); the tests
	// compile with the same built-ins the policy set is evaluated with.
	Options
	// Run selects tests by a regular expression on their full name
	// (data.package.test_name), like `opa test --run`.
	Run string
	// Coverage computes the coverage of the non-test files.
	Coverage bool
	// Timeout bounds each test (default 5s, as `opa test`).
	Timeout time.Duration
	// Parallel is how many tests run at once (default GOMAXPROCS).
	Parallel int
}

func (o *TestOptions) setDefaults() {
	o.Options.setDefaults()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Parallel == 0 {
		o.Parallel = runtime.GOMAXPROCS(0)
	}
}

func (o *TestOptions) validate() error {
	var errs []error
	if err := o.Options.validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("test options: Timeout %s is negative", o.Timeout))
	}
	if o.Parallel < 0 {
		errs = append(errs, fmt.Errorf("test options: Parallel %d is negative", o.Parallel))
	}
	if o.Run != "" {
		if _, err := regexp.Compile(o.Run); err != nil {
			errs = append(errs, fmt.Errorf("test options: Run: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Test outcomes, as `opa test` names them.
const (
	TestPass  = "pass"
	TestFail  = "fail"
	TestError = "error"
	TestSkip  = "skip" // todo_ tests
)

// TestResult is the result of one Rego test.
type TestResult struct {
	Package  string        `json:"package"` // e.g. data.writ.decision_test
	Name     string        `json:"name"`    // e.g. test_private_address_needs_approval
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Outcome  string        `json:"outcome"`
	Message  string        `json:"message,omitempty"` // the error of an errored test
	Output   string        `json:"output,omitempty"`  // what print() wrote
	Duration time.Duration `json:"duration_ns"`
}

// Location is file:line of the test.
func (r TestResult) Location() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// TestReport is the result of a test run.
type TestReport struct {
	Passed  int `json:"passed"`
	Failed  int `json:"failed"` // failed or errored, as `opa test` counts FAIL and ERROR
	Skipped int `json:"skipped"`
	// Results are sorted by file and line.
	Results  []TestResult    `json:"results"`
	Coverage *CoverageReport `json:"coverage,omitempty"`
}

// CoverageReport is the line coverage of the policy files (tests excluded).
type CoverageReport struct {
	Percent    float64        `json:"percent"`
	Covered    int            `json:"covered_lines"`
	NotCovered int            `json:"not_covered_lines"`
	Files      []FileCoverage `json:"files"`
}

// FileCoverage is the coverage of one file.
type FileCoverage struct {
	Path       string   `json:"path"`
	Percent    float64  `json:"percent"`
	Covered    int      `json:"covered_lines"`
	NotCovered int      `json:"not_covered_lines"`
	Uncovered  [][2]int `json:"uncovered,omitempty"` // line ranges, inclusive
}

// RunTests runs the Rego tests of the policy set under dir as
// `opa test DIR` does — every rule named test_* (todo_* ones are skipped),
// with the data files loaded where `opa test` puts them — except that
// built-in errors fail the test, as they fail a decision. A policy set that
// does not compile is an error carrying diag.Problems.
func RunTests(ctx context.Context, fsys fs.FS, dir string, opts TestOptions) (*TestReport, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	files, problems, err := readFiles(fsys, dir, opts.Options, true)
	if err != nil {
		return nil, fmt.Errorf("load policies from %s: %w", shownDir(dir, opts.Options), err)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	c, err := compile(ctx, files, opts.Options, true)
	if err != nil {
		return nil, err
	}
	txn, err := c.store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return nil, fmt.Errorf("open policy data: %w", err)
	}
	defer c.store.Abort(ctx, txn)
	c.compiler.WithPathConflictsCheck(storage.NonEmpty(ctx, c.store, txn))

	var cov *cover.Cover
	runner := tester.NewRunner().
		SetCompiler(c.compiler).
		SetStore(c.store).
		SetModules(c.modules).
		CapturePrintOutput(true).
		RaiseBuiltinErrors(true).
		SetTimeout(opts.Timeout).
		SetParallel(opts.Parallel).
		Filter(opts.Run)
	if opts.Coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		if ps := astProblems(err, CodeCompile); len(ps) > 0 && ps[0].Path != "" {
			return nil, ps
		}
		return nil, fmt.Errorf("run policy tests: %w", err)
	}
	rep := &TestReport{Results: []TestResult{}}
	for tr := range ch {
		r := TestResult{Package: tr.Package, Name: tr.Name, Duration: tr.Duration, Output: string(tr.Output)}
		if tr.Location != nil {
			r.File, r.Line = tr.Location.File, tr.Location.Row
		}
		switch {
		case tr.Skip:
			r.Outcome = TestSkip
			rep.Skipped++
		case tr.Error != nil:
			r.Outcome = TestError
			r.Message = tr.Error.Error()
			rep.Failed++
		case tr.Fail:
			r.Outcome = TestFail
			rep.Failed++
		default:
			r.Outcome = TestPass
			rep.Passed++
		}
		rep.Results = append(rep.Results, r)
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("run policy tests: %w", err)
	}
	slices.SortFunc(rep.Results, func(a, b TestResult) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Name, b.Name))
	})
	if cov != nil {
		rep.Coverage = coverage(cov.Report(c.modules))
	}
	return rep, nil
}

// coverage summarizes a coverage report over the non-test files.
func coverage(r cover.Report) *CoverageReport {
	out := &CoverageReport{Files: []FileCoverage{}}
	for file, fr := range r.Files {
		if IsTestFile(file) {
			continue
		}
		fc := FileCoverage{Path: file, Covered: fr.CoveredLines, NotCovered: fr.NotCoveredLines, Percent: percent(fr.CoveredLines, fr.NotCoveredLines)}
		for _, rng := range fr.NotCovered {
			fc.Uncovered = append(fc.Uncovered, [2]int{rng.Start.Row, rng.End.Row})
		}
		fc.Uncovered = mergeRanges(fc.Uncovered)
		out.Files = append(out.Files, fc)
		out.Covered += fr.CoveredLines
		out.NotCovered += fr.NotCoveredLines
	}
	slices.SortFunc(out.Files, func(a, b FileCoverage) int { return strings.Compare(a.Path, b.Path) })
	out.Percent = percent(out.Covered, out.NotCovered)
	return out
}

// mergeRanges sorts line ranges and merges those that overlap or touch.
func mergeRanges(rs [][2]int) [][2]int {
	slices.SortFunc(rs, func(a, b [2]int) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	var out [][2]int
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

func percent(covered, notCovered int) float64 {
	if covered+notCovered == 0 {
		return 100
	}
	return 100 * float64(covered) / float64(covered+notCovered)
}

// ProblemsOf returns the located problems an error from LoadFS or RunTests
// carries, or nil.
func ProblemsOf(err error) diag.Problems {
	var ps diag.Problems
	if errors.As(err, &ps) {
		return ps
	}
	return nil
}
