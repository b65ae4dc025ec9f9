package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/playbook"
)

func init() { register(newValidateCmd) }

// approversPath is the trust root's place in a content repository.
const approversPath = ".writ/approvers.yaml"

type validateParams struct {
	format string
	paths  []string
}

func newValidateCmd(env *cliEnv, _ *globals) *cobra.Command {
	p := validateParams{}
	cmd := &cobra.Command{
		Use:   "validate [--format text|json|sarif] [PATH...]",
		Short: "Check playbooks (and the approvers file) for errors",
		Long: `Validate checks playbook files: strict YAML (no unknown fields, duplicate
keys, anchors or aliases), the playbook schema, targets that parse for their
action, durations, and metadata.name unique across all files given. With a
repository root (a directory holding playbooks/ or .writ/), it checks
playbooks/**/*.yaml and .writ/approvers.yaml; any other directory is walked
for *.yaml and *.yml files, all read as playbooks. Default PATH: ".".

Each problem is one line, path:line:col: message. --format sarif writes
SARIF 2.1.0 for GitHub code scanning: files are named relative to the
root of the git work tree holding the current directory (%SRCROOT%; the
current directory outside one), percent-encoded; a file outside it by its
absolute file URI. Columns count Unicode code points.

Exit status: 0 all valid, 1 anything invalid, 2 usage error.`,
		Example: `  writ validate playbooks/
  writ validate --format sarif . > writ.sarif`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p.paths = args
			if code := runValidate(cmd.Context(), p, env.stdout, env.stderr); code != exitOK {
				return exitWith(code, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&p.format, "format", "text", "output format: text, json or sarif")
	return cmd
}

func runValidate(ctx context.Context, p validateParams, stdout, stderr io.Writer) int {
	switch p.format {
	case "text", "json", "sarif":
	default:
		fmt.Fprintf(stderr, "writ: --format must be text, json or sarif, not %q\n", p.format)
		return exitUsage
	}
	if len(p.paths) == 0 {
		p.paths = []string{"."}
	}
	var (
		problems diag.Problems
		pbs      []*playbook.Playbook
		files    int
	)
	for _, arg := range p.paths {
		if err := ctx.Err(); err != nil {
			fmt.Fprintln(stderr, "writ:", err)
			return exitFailure
		}
		r, err := validatePath(arg, validateOptions{})
		if err != nil {
			fmt.Fprintln(stderr, "writ:", err)
			if errors.Is(err, fs.ErrNotExist) {
				return exitUsage
			}
			return exitFailure
		}
		problems = append(problems, r.problems...)
		pbs = append(pbs, r.playbooks...)
		files += r.files
	}
	problems = append(problems, playbook.CheckUniqueNames(pbs)...)
	problems.Sort()

	var err error
	switch p.format {
	case "text":
		err = diag.WriteText(stdout, problems)
		if err == nil && !problems.HasErrors() {
			_, err = fmt.Fprintf(stderr, "%d files valid\n", files)
		}
	case "json":
		err = diag.WriteJSON(stdout, files, problems)
	case "sarif":
		var opts diag.SARIFOptions
		opts, err = sarifOptions()
		if err == nil {
			err = diag.WriteSARIF(stdout, opts, problems)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "writ:", err)
		return exitFailure
	}
	if problems.HasErrors() {
		return exitFailure
	}
	return exitOK
}

// sarifOptions places SARIF paths: %SRCROOT% is the root of the git work
// tree holding the current directory (what code scanning names files
// relative to), or the current directory outside one.
func sarifOptions() (diag.SARIFOptions, error) {
	wd, err := os.Getwd()
	if err != nil {
		return diag.SARIFOptions{}, fmt.Errorf("working directory: %w", err)
	}
	if r, err := filepath.EvalSymlinks(wd); err == nil {
		wd = r
	}
	return diag.SARIFOptions{Version: versionString(), SrcRoot: workTreeRoot(wd), WorkDir: wd}, nil
}

// workTreeRoot is the nearest directory from dir up holding .git (a
// directory, or the file of a linked worktree or submodule), else dir.
func workTreeRoot(dir string) string {
	for d := dir; ; {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return dir
		}
		d = parent
	}
}

type validateResult struct {
	playbooks []*playbook.Playbook
	problems  diag.Problems
	files     int
}

// validateOptions tune validatePath.
type validateOptions struct {
	// skipPolicies: a repository root's policies/ is not compiled (writ
	// plan loads the policy set on its own, once).
	skipPolicies bool
	// jobs is how many playbook files are parsed at once (0: one per core).
	jobs int
	// release drops each playbook's parsed document once it is checked
	// (playbook.Release): writ plan needs none of its positions but that
	// of metadata.name.
	release bool
}

// validatePath checks one command-line path: a file, a repository root, or
// a directory of playbooks. Reported paths keep the form the user gave.
// Playbook files are parsed on every core; what is reported is in the
// order of the walk, whatever the number of workers.
func validatePath(arg string, opts validateOptions) (validateResult, error) {
	var r validateResult
	fi, err := os.Stat(arg)
	if err != nil {
		return r, fmt.Errorf("validate %s: %w", arg, err)
	}
	if !fi.IsDir() {
		dir, base := filepath.Split(arg)
		if dir == "" {
			dir = "."
		}
		r.files = 1
		if base == "approvers.yaml" && filepath.Base(filepath.Clean(dir)) == ".writ" {
			r.problems = validateApprovers(os.DirFS(dir), base, arg)
			return r, nil
		}
		return r, checkPlaybookFile(os.DirFS(dir), base, arg, repoOf(dir), opts.release, &r)
	}
	if clean := filepath.Clean(arg); filepath.Base(clean) == policyDir {
		// A policy directory on its own: compile it; its data files are not
		// playbooks.
		parent := filepath.Dir(clean)
		ps, n := validatePolicies(os.DirFS(parent), func(rel string) string {
			if parent == "." {
				return rel
			}
			return filepath.ToSlash(filepath.Join(parent, rel))
		})
		r.files, r.problems = n, ps
		return r, nil
	}
	fsys := os.DirFS(arg)
	display := func(rel string) string {
		if arg == "." {
			return rel
		}
		return filepath.ToSlash(filepath.Join(arg, rel))
	}
	root := isRepoRoot(fsys)
	repo := repoOf(arg)
	if root {
		repo = repoFiles{fsys: fsys}
		if arg != "." {
			repo.shown = strings.TrimSuffix(filepath.ToSlash(filepath.Clean(arg)), "/") + "/"
		}
	}
	walkRoot := "."
	if root {
		walkRoot = playbook.Dir
		if _, err := fs.Stat(fsys, approversPath); err == nil {
			r.files++
			r.problems = append(r.problems, validateApprovers(fsys, approversPath, display(approversPath))...)
		}
		if fi, err := fs.Stat(fsys, policyDir); err == nil && fi.IsDir() && !opts.skipPolicies {
			ps, n := validatePolicies(fsys, display)
			r.files += n
			r.problems = append(r.problems, ps...)
		}
	}
	var files []string
	err = fs.WalkDir(fsys, walkRoot, func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && rel == walkRoot && root {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir // .git and friends
			}
			return nil
		}
		if !playbook.IsYAMLName(rel) {
			return nil
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("validate %s: %w", arg, err)
	}
	r.files += len(files)
	each := make([]validateResult, len(files))
	err = parallel(len(files), opts.jobs, func(i int) error {
		return checkPlaybookFile(fsys, files[i], display(files[i]), repo, opts.release, &each[i])
	})
	if err != nil {
		return r, fmt.Errorf("validate %s: %w", arg, err)
	}
	for _, e := range each {
		r.playbooks = append(r.playbooks, e.playbooks...)
		r.problems = append(r.problems, e.problems...)
	}
	return r, nil
}

// parallel runs fn(0) … fn(n-1) on jobs goroutines (0: one per core) and
// returns the error of the lowest index that failed. Callers write each
// result to its own index, so the output never depends on scheduling.
func parallel(n, jobs int, fn func(i int) error) error {
	if jobs <= 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	jobs = min(jobs, n)
	if jobs <= 1 {
		for i := range n {
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				errs[i] = fn(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func isRepoRoot(fsys fs.FS) bool {
	for _, d := range []string{playbook.Dir, ".writ", "policies"} {
		if fi, err := fs.Stat(fsys, d); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// repoFiles is the repository a playbook's targets file is read from
// (spec.targetsFile is a path from its top), and how its top is shown in
// problems ("" for the working directory, else a prefix ending in /).
type repoFiles struct {
	fsys  fs.FS
	shown string
}

// repoOf finds the repository of playbooks in dir: the directory holding
// the playbooks/ directory dir is in, else the git work tree dir is in,
// else the working directory.
func repoOf(dir string) repoFiles {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return repoFiles{fsys: os.DirFS(".")}
	}
	top := ""
	for d := abs; ; d = filepath.Dir(d) {
		if filepath.Base(d) == playbook.Dir {
			top = filepath.Dir(d)
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if top == "" {
		for d := abs; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, ".git")); err == nil {
				top = d
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if top == "" {
		return repoFiles{fsys: os.DirFS(".")}
	}
	shown := top + string(filepath.Separator)
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, top); err == nil {
			shown = filepath.ToSlash(rel) + "/"
		}
	}
	if shown == "./" {
		shown = ""
	}
	return repoFiles{fsys: os.DirFS(top), shown: shown}
}

func checkPlaybookFile(fsys fs.FS, rel, shown string, repo repoFiles, release bool, r *validateResult) error {
	data, prob, err := playbook.ReadFile(fsys, rel)
	if err != nil {
		return err
	}
	if prob != nil {
		prob.Path = shown
		r.problems = append(r.problems, *prob)
		return nil
	}
	p, ps := playbook.Parse(shown, data, playbook.Options{Files: repo.fsys, FilesRoot: repo.shown})
	r.problems = append(r.problems, ps...)
	if p != nil {
		if release {
			p.Release()
		}
		r.playbooks = append(r.playbooks, p)
	}
	return nil
}

// validateApprovers checks the approvers file as the engine reads it:
// strict YAML, its schema, unique people, logins and keys, and public keys
// of accepted algorithms and sizes.
func validateApprovers(fsys fs.FS, rel, shown string) diag.Problems {
	data, prob, err := playbook.ReadFile(fsys, rel)
	if err != nil {
		return diag.Problems{diag.Errorf(shown, diag.Position{}, "file", "%v", err)}
	}
	if prob != nil {
		prob.Path = shown
		return diag.Problems{*prob}
	}
	_, problems := approval.ParseKeyring(shown, data)
	return problems
}
