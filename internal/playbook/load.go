package playbook

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/writ-sec/writ/internal/diag"
)

// Dir is where playbooks live in a content repository.
const Dir = "playbooks"

// IsPlaybookPath reports whether a slash-separated repository path names a
// playbook file: under playbooks/, ending in .yaml or .yml.
func IsPlaybookPath(p string) bool {
	return strings.HasPrefix(p, Dir+"/") && IsYAMLName(p)
}

// IsYAMLName reports whether a file name ends in .yaml or .yml.
func IsYAMLName(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// ReadFile reads one file from fsys with the playbook size limit, refusing
// anything that is not a regular file (symlinks included: a link could point
// outside the repository). A file over the limit yields a problem, not an
// error; err is for I/O failures.
func ReadFile(fsys fs.FS, name string) ([]byte, *diag.Problem, error) {
	fi, err := fs.Lstat(fsys, name)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		p := diag.Errorf(name, diag.Position{Line: 1, Col: 1}, "file", "not a regular file (%s): playbooks must be plain files in the repository", fi.Mode().Type())
		return nil, &p, nil
	}
	if fi.Size() > MaxFileBytes {
		p := diag.Errorf(name, diag.Position{Line: 1, Col: 1}, "file", "file is %.1f MiB; the limit is 1 MiB", float64(fi.Size())/(1<<20))
		return nil, &p, nil
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > MaxFileBytes {
		p := diag.Errorf(name, diag.Position{Line: 1, Col: 1}, "file", "file is larger than the limit of 1 MiB")
		return nil, &p, nil
	}
	return data, nil, nil
}

// LoadFS reads and validates every playbook file under dir in fsys (dir
// "playbooks" for a repository root), then checks names are unique. It
// returns the valid playbooks and every problem; err reports I/O failures
// only.
func LoadFS(fsys fs.FS, dir string, opts Options) ([]*Playbook, diag.Problems, error) {
	var names []string
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || !IsYAMLName(p) {
			return nil
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list playbooks under %s: %w", dir, err)
	}
	if opts.Files == nil {
		opts.Files = fsys
	}
	var (
		pbs      []*Playbook
		problems diag.Problems
	)
	for _, name := range names {
		data, prob, err := ReadFile(fsys, name)
		if err != nil {
			return nil, nil, err
		}
		if prob != nil {
			problems = append(problems, *prob)
			continue
		}
		p, ps := Parse(name, data, opts)
		problems = append(problems, ps...)
		if p != nil {
			pbs = append(pbs, p)
		}
	}
	problems = append(problems, CheckUniqueNames(pbs)...)
	problems.Sort()
	return pbs, problems, nil
}
