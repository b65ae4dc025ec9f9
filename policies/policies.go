// Package policies embeds writ's default policy set: Rego v1 policies,
// their tests (*_test.rego, run by `opa test policies/` and
// `writ policy test`) and their data (data.yaml). writ uses it when no
// policies/ directory is given.
package policies

import (
	"embed"
	"io/fs"
	"strings"
)

// FS holds the default policy set at its root ("."): load it with
// policy.LoadFS(policies.FS, ".", opts).
//
//go:embed *.rego data.yaml
var FS embed.FS

// Files is the default policy set as a content repository carries it: its
// Rego and data files by their path under policies/, with the Rego tests
// (*_test.rego) when tests is set. Tests and `writ demo` seed content
// repositories with it.
func Files(tests bool) (map[string]string, error) {
	out := map[string]string{}
	err := fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !tests && strings.HasSuffix(p, "_test.rego") {
			return err
		}
		b, err := fs.ReadFile(FS, p)
		out["policies/"+p] = string(b)
		return err
	})
	return out, err
}
