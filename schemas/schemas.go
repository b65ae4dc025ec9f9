// Package schemas embeds the JSON Schemas of writ's user-facing formats
// (playbooks, the approvers file) and compiles them once.
package schemas

import (
	"bytes"
	"embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.schema.json
var FS embed.FS

// Names of the embedded schemas.
const (
	Playbook  = "playbook.schema.json"
	Approvers = "approvers.schema.json"
	Config    = "config.schema.json"
)

var (
	mu       sync.Mutex
	compiled = map[string]*jsonschema.Schema{}
)

// Get returns the compiled schema of an embedded file.
func Get(name string) (*jsonschema.Schema, error) {
	mu.Lock()
	defer mu.Unlock()
	if s, ok := compiled[name]; ok {
		return s, nil
	}
	raw, err := FS.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	url := "https://github.com/writ-sec/writ/schemas/" + name
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	compiled[name] = s
	return s, nil
}

// Must is Get for schemas known to compile (tested).
func Must(name string) *jsonschema.Schema {
	s, err := Get(name)
	if err != nil {
		panic(err)
	}
	return s
}
