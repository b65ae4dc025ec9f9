package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/policy"
)

func init() { register(newPolicyCmd) }

// policyDir is where a content repository keeps its policies.
const policyDir = "policies"

func newPolicyCmd(env *cliEnv, _ *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with Rego policy sets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError("policy: name a subcommand (test)")
		},
	}
	cmd.AddCommand(newPolicyTestCmd(env))
	return cmd
}

type policyTestParams struct {
	dir       string
	coverage  bool
	threshold float64
	run       string
	format    string
	verbose   bool
}

func newPolicyTestCmd(env *cliEnv) *cobra.Command {
	p := policyTestParams{}
	cmd := &cobra.Command{
		Use:   "test [--coverage] [--threshold PCT] [--run REGEX] [DIR]",
		Short: "Run a policy set's Rego tests, as opa test does",
		Long: `Test runs the Rego tests (rules named test_*, in any .rego file; todo_*
rules are skipped) of the policy set in DIR (default: policies), with its
data.json/data.yaml files loaded where opa test loads them. It compiles the
set as writ evaluates it: Rego v1, no network built-ins, and a built-in error
fails the test as it fails a decision.

Each failing test is one line, path:line: package.name: FAIL (or ERROR and
the error), then a summary, "N passed, N failed". With --coverage (or
--threshold), the line coverage of the policy files (tests excluded) follows;
under the threshold the command fails.

Exit status: 0 all tests pass (and coverage meets the threshold), 1 a test
fails, the coverage is too low or the policies do not compile, 2 usage error.`,
		Example: `  writ policy test
  writ policy test --coverage --threshold 90 policies/`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.dir = policyDir
			if len(args) == 1 {
				p.dir = args[0]
			}
			if code := runPolicyTest(cmd.Context(), p, env.stdout, env.stderr); code != exitOK {
				return exitWith(code, nil)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&p.coverage, "coverage", false, "report the coverage of the policy files")
	cmd.Flags().Float64Var(&p.threshold, "threshold", 0, "fail when coverage is below this percentage (implies --coverage)")
	cmd.Flags().StringVar(&p.run, "run", "", "run only the tests whose full name (data.package.test_name) matches this regular expression")
	cmd.Flags().StringVar(&p.format, "format", "text", "output format: text or json")
	cmd.Flags().BoolVarP(&p.verbose, "verbose", "v", false, "list every test, not only failures")
	return cmd
}

func runPolicyTest(ctx context.Context, p policyTestParams, stdout, stderr io.Writer) int {
	if p.format != "text" && p.format != "json" {
		fmt.Fprintf(stderr, "writ: --format must be text or json, not %q\n", p.format)
		return exitUsage
	}
	if p.threshold < 0 || p.threshold > 100 {
		fmt.Fprintf(stderr, "writ: --threshold must be between 0 and 100, not %g\n", p.threshold)
		return exitUsage
	}
	if p.threshold > 0 {
		p.coverage = true
	}
	if _, err := regexp.Compile(p.run); err != nil {
		fmt.Fprintf(stderr, "writ: --run: %v\n", err)
		return exitUsage
	}
	if fi, err := os.Stat(p.dir); err != nil || !fi.IsDir() {
		fmt.Fprintf(stderr, "writ: policy test: %s is not a directory\n", p.dir)
		return exitUsage
	}
	rep, err := policy.RunTests(ctx, os.DirFS(p.dir), ".", policy.TestOptions{
		Options:  policy.Options{Root: p.dir},
		Run:      p.run,
		Coverage: p.coverage,
	})
	if err != nil {
		if ps := policy.ProblemsOf(err); ps != nil {
			_ = diag.WriteText(stdout, ps)
			fmt.Fprintf(stderr, "writ: the policies in %s do not compile\n", p.dir)
			return exitFailure
		}
		fmt.Fprintln(stderr, "writ:", err)
		return exitFailure
	}
	lowCoverage := rep.Coverage != nil && rep.Coverage.Percent < p.threshold
	if p.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "writ:", err)
			return exitFailure
		}
	} else {
		writeTestReport(stdout, rep, p.verbose)
	}
	if lowCoverage {
		fmt.Fprintf(stderr, "writ: coverage %.1f%% is below the threshold of %g%%\n", rep.Coverage.Percent, p.threshold)
	}
	if rep.Failed > 0 || lowCoverage {
		return exitFailure
	}
	return exitOK
}

func writeTestReport(w io.Writer, rep *policy.TestReport, verbose bool) {
	for _, r := range rep.Results {
		name := r.Package + "." + r.Name
		switch r.Outcome {
		case policy.TestFail:
			fmt.Fprintf(w, "%s: %s: FAIL\n", r.Location(), name)
		case policy.TestError:
			fmt.Fprintf(w, "%s: %s: ERROR: %s\n", r.Location(), name, display.Line(r.Message, 0))
		case policy.TestSkip:
			if verbose {
				fmt.Fprintf(w, "%s: %s: SKIPPED\n", r.Location(), name)
			}
			continue
		default:
			if verbose {
				fmt.Fprintf(w, "%s: %s: PASS (%s)\n", r.Location(), name, r.Duration)
			}
			continue
		}
		for _, line := range strings.Split(strings.TrimRight(r.Output, "\n"), "\n") {
			if line != "" {
				fmt.Fprintf(w, "    %s\n", line)
			}
		}
	}
	if c := rep.Coverage; c != nil {
		for _, f := range c.Files {
			fmt.Fprintf(w, "coverage %5.1f%%  %s%s\n", f.Percent, f.Path, uncovered(f.Uncovered))
		}
		fmt.Fprintf(w, "coverage %5.1f%%  (%d of %d lines)\n", c.Percent, c.Covered, c.Covered+c.NotCovered)
	}
	summary := fmt.Sprintf("%d passed, %d failed", rep.Passed, rep.Failed)
	if rep.Skipped > 0 {
		summary += fmt.Sprintf(", %d skipped", rep.Skipped)
	}
	fmt.Fprintln(w, summary)
}

func uncovered(ranges [][2]int) string {
	if len(ranges) == 0 {
		return ""
	}
	parts := make([]string, len(ranges))
	for i, r := range ranges {
		if r[0] == r[1] {
			parts[i] = fmt.Sprint(r[0])
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r[0], r[1])
		}
	}
	return " (not covered: lines " + strings.Join(parts, ", ") + ")"
}

// validatePolicies compiles the policy set of a repository root for
// `writ validate`: Rego errors become problems path:line:col (code
// "rego-compile"), with paths shown as display makes them. It returns the
// problems and the number of files checked.
func validatePolicies(fsys fs.FS, display func(string) string) (diag.Problems, int) {
	set, err := policy.LoadFS(fsys, policyDir, policy.Options{})
	files := len(set.Files())
	if err == nil {
		return nil, files
	}
	ps := policy.ProblemsOf(err)
	if ps == nil {
		return diag.Problems{diag.Errorf(display(policyDir), diag.Position{}, policy.CodeFile, "%v", err)}, files
	}
	out := make(diag.Problems, len(ps))
	for i, p := range ps {
		if p.Path != "" {
			p.Path = display(p.Path)
		}
		out[i] = p
	}
	return out, files
}

// loadPolicySet loads the policies for a command: dir when given, else
// policies/ in the working directory when there is one, else the embedded
// defaults. The set is fail-closed when err is not nil; err is a usage
// problem (exit 2) when usage is set.
func loadPolicySet(dir string, opts policy.Options, embedded fs.FS) (set *policy.Set, source string, usage bool, err error) {
	if dir == "" {
		if fi, statErr := os.Stat(policyDir); statErr == nil && fi.IsDir() {
			dir = policyDir
		}
	}
	if dir == "" {
		opts.Root = "(embedded defaults)"
		set, err = policy.LoadFS(embedded, ".", opts)
		return set, "the embedded default policies", false, err
	}
	if fi, statErr := os.Stat(dir); statErr != nil || !fi.IsDir() {
		if statErr == nil {
			statErr = errors.New("not a directory")
		}
		return nil, dir, true, fmt.Errorf("--policies %s: %w", dir, statErr)
	}
	opts.Root = dir
	set, err = policy.LoadFS(os.DirFS(dir), ".", opts)
	return set, dir, false, err
}
