// Package policies embeds writ's default policy set: Rego v1 policies,
// their tests (*_test.rego, run by `opa test policies/` and
// `writ policy test`) and their data (data.yaml). writ uses it when no
// policies/ directory is given.
package policies

import "embed"

// FS holds the default policy set at its root ("."): load it with
// policy.LoadFS(policies.FS, ".", opts).
//
//go:embed *.rego data.yaml
var FS embed.FS
