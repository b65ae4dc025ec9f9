package policy

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/yamldoc"
)

// Environments are the server's descriptions of its environments, by name:
// what policies see as input.environment. Load them with LoadEnvironments
// or use DefaultEnvironments.
type Environments map[string]map[string]any

//go:embed environments.yaml
var defaultEnvironmentsYAML []byte

//go:embed environments.schema.json
var environmentsSchemaJSON []byte

// MaxEnvironmentsBytes bounds an environments file.
const MaxEnvironmentsBytes = 1 << 20

var environmentNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`) })

// DefaultEnvironments are production (production: true) and staging
// (production: false), used when the server is given no environments file.
func DefaultEnvironments() Environments {
	envs, err := ParseEnvironments("environments.yaml (embedded)", defaultEnvironmentsYAML)
	if err != nil {
		// The embedded file is tested; this cannot happen in a release.
		panic(fmt.Sprintf("policy: embedded environments: %v", err))
	}
	return envs
}

// LoadEnvironments reads an environments file:
//
//	environments:
//	  production: {production: true}
//	  staging:    {production: false}
//
// Each entry is a mapping with at least production (a boolean); any other
// fields are passed to policies as they are. Names are DNS labels, as in a
// playbook's spec.environment. Problems are returned as diag.Problems,
// located path:line:col.
func LoadEnvironments(path string) (Environments, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load environments: %w", err)
	}
	defer f.Close()
	// One byte past the limit is enough for the parser to report the size.
	data, err := io.ReadAll(io.LimitReader(f, MaxEnvironmentsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load environments from %s: %w", path, err)
	}
	return ParseEnvironments(path, data)
}

// ParseEnvironments decodes an environments file's bytes; path names it in
// problems.
func ParseEnvironments(path string, data []byte) (Environments, error) {
	doc, problems := yamldoc.Parse(path, data, yamldoc.Limits{MaxBytes: MaxEnvironmentsBytes})
	if problems != nil {
		return nil, problems
	}
	schema, err := environmentsSchema()
	if err != nil {
		return nil, err
	}
	if problems := doc.Validate(schema, nil); problems != nil {
		return nil, problems
	}
	root := doc.Value.(map[string]any)["environments"].(map[string]any)
	envs := make(Environments, len(root))
	for _, name := range slices.Sorted(maps.Keys(root)) {
		ptr := "/environments/" + name
		desc := root[name].(map[string]any)
		if !environmentNameRE().MatchString(name) {
			problems = append(problems, diag.Errorf(path, doc.KeyPos(ptr), "schema",
				"environment name %q is not a DNS label: lowercase letters, digits and '-', as in a playbook's spec.environment", name))
			continue
		}
		if _, ok := desc["name"]; ok {
			problems = append(problems, diag.Errorf(path, doc.KeyPos(ptr+"/name"), "schema",
				"environments.%s.name: writ sets input.environment.name itself; remove this field", name))
			continue
		}
		envs[name] = desc
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return envs, nil
}

var environmentsSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(environmentsSchemaJSON))
	if err != nil {
		return nil, fmt.Errorf("environments schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	const url = "https://github.com/writ-sec/writ/schemas/environments.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("environments schema: %w", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("environments schema: %w", err)
	}
	return s, nil
})

// Lookup returns input.environment for a name: a copy of its description
// with "name" set. ok is false for an unknown environment.
func (e Environments) Lookup(name string) (map[string]any, bool) {
	desc, ok := e[name]
	if !ok {
		return nil, false
	}
	out := make(map[string]any, len(desc)+1)
	maps.Copy(out, desc)
	out["name"] = name
	return out, true
}

// Names lists the environments, sorted.
func (e Environments) Names() []string {
	return slices.Sorted(maps.Keys(e))
}
