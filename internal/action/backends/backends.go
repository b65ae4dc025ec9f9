// Package backends is the registry of action backend types and the
// builder of the backends writ.yaml configures. A backend type is declared
// by its own package (an action.BackendType: name, actions, settings
// schema, constructor) and registered here by one line in types; the
// builder checks every configured backend's settings against its type's
// schema (located errors, writ.yaml:line:col), builds it with its Deps and
// binds it to its actions in its environments.
package backends

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/action/nftables"
	"github.com/writ-sec/writ/internal/action/scim"
	"github.com/writ-sec/writ/internal/action/webhook"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/yamldoc"
)

// types are the backend types of this build, one line each. A list rather
// than init-time registration from each package: what a build contains is
// read in one place, no import is there for its side effect only, and the
// order (and so every listing of the types) is fixed.
var types = []action.BackendType{
	blocklist.Type,
	nftables.Type,
	scim.Type,
	webhook.Type,
}

// Types lists the backend types of this build.
func Types() []action.BackendType { return slices.Clone(types) }

// Lookup returns the backend type called name.
func Lookup(name string) (action.BackendType, bool) {
	i := slices.IndexFunc(types, func(t action.BackendType) bool { return t.Name == name })
	if i < 0 {
		return action.BackendType{}, false
	}
	return types[i], true
}

// Names lists the registered type names, in registration order.
func Names() []string {
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = t.Name
	}
	return out
}

var (
	schemaMu sync.Mutex
	compiled = map[string]*jsonschema.Schema{}
)

// Schema compiles a type's settings schema (once).
func Schema(t action.BackendType) (*jsonschema.Schema, error) {
	schemaMu.Lock()
	defer schemaMu.Unlock()
	if s, ok := compiled[t.Name]; ok {
		return s, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(t.Schema))
	if err != nil {
		return nil, fmt.Errorf("settings schema of backend type %s: %w", t.Name, err)
	}
	c := jsonschema.NewCompiler()
	url := "https://github.com/writ-sec/writ/backends/" + t.Name + ".settings.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("settings schema of backend type %s: %w", t.Name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("settings schema of backend type %s: %w", t.Name, err)
	}
	compiled[t.Name] = s
	return s, nil
}

// settingsOf returns a configured backend's settings and the JSON pointer
// they are written at: settings, or the deprecated blocklist section of
// earlier versions (the same settings under another key).
func settingsOf(cfg *config.Config, i int) (map[string]any, string) {
	b := cfg.Backends[i]
	if b.Blocklist != nil && b.Settings == nil {
		return b.Blocklist, fmt.Sprintf("/backends/%d/blocklist", i)
	}
	return b.Settings, fmt.Sprintf("/backends/%d/settings", i)
}

// Check checks every configured backend against its type: the type is
// registered, it serves the backend's actions, and the settings pass its
// schema. Every problem is located in the configuration file.
func Check(cfg *config.Config) diag.Problems {
	doc := cfg.Doc()
	var out diag.Problems
	for i, b := range cfg.Backends {
		ptr := fmt.Sprintf("/backends/%d", i)
		t, ok := Lookup(b.Type)
		if !ok {
			out = append(out, doc.Errorf(ptr+"/type", "unknown-backend-type", "backend %q: type %q is not a backend type of this build (%s)",
				b.Name, b.Type, strings.Join(Names(), ", ")))
			continue
		}
		for j, a := range b.Actions {
			if !t.Serves(a) {
				out = append(out, doc.Errorf(fmt.Sprintf("%s/actions/%d", ptr, j), "invalid-value", "a %s backend cannot serve %s (it serves %s)",
					t.Name, a, strings.Join(t.Actions, ", ")))
			}
		}
		s, err := Schema(t)
		if err != nil {
			out = append(out, doc.Errorf(ptr+"/type", "schema", "%v", err))
			continue
		}
		settings, at := settingsOf(cfg, i)
		v, ok := doc.ValueAt(at)
		if !ok {
			// No settings written (or a configuration made in code): the
			// settings as JSON values, {} when absent.
			if v, err = jsonValue(settings); err != nil {
				out = append(out, doc.Errorf(at, "schema", "%s: %v", yamldoc.FieldName(at), err))
				continue
			}
		}
		out = append(out, doc.ValidateAt(at, v, s, t.Hints)...)
	}
	out.Sort()
	return out
}

// jsonValue is m as the JSON-compatible values jsonschema validates.
func jsonValue(m map[string]any) (any, error) {
	if m == nil {
		return map[string]any{}, nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(raw))
}

var envNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`) })

// Build checks and builds the configured backends and binds each to its
// actions in its environments. Settings problems come back as
// diag.Problems (located); a backend that cannot be built (a secret is
// missing, a file cannot be read) as an error naming it. d.Catalog and
// d.RevertWith are filled from the configuration when unset.
//
// With no backend for block_ip, the embedded default applies: a blocklist
// file per environment, DATA_DIR/blocklist/ENVIRONMENT.txt.
func Build(ctx context.Context, cfg *config.Config, d action.Deps) (*action.Registry, error) {
	if problems := Check(cfg); problems.HasErrors() {
		return nil, problems
	}
	if d.Catalog == nil {
		d.Catalog = cfg.Catalog()
	}
	if d.RevertWith == nil {
		for name, def := range cfg.Actions {
			if def.RevertWith != "" {
				if d.RevertWith == nil {
					d.RevertWith = map[string]string{}
				}
				d.RevertWith[name] = def.RevertWith
			}
		}
	}
	reg := action.NewRegistry()
	hasBlock := false
	for i, bc := range cfg.Backends {
		t, _ := Lookup(bc.Type)
		settings, _ := settingsOf(cfg, i)
		b, err := t.New(ctx, action.Settings{Name: bc.Name, Values: settings}, d)
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		envs := bc.Environments
		if len(envs) == 0 {
			envs = []string{"*"}
		}
		for _, a := range bc.Actions {
			hasBlock = hasBlock || a == "block_ip"
			for _, e := range envs {
				reg.Register(a, e, b)
			}
		}
	}
	if !hasBlock {
		dir := filepath.Join(d.DataDir, "blocklist")
		reg.RegisterFactory("block_ip", func(env string) (action.Backend, error) {
			if !envNameRE().MatchString(env) {
				return nil, fmt.Errorf("environment %q is not a name", env)
			}
			b, err := blocklist.New(blocklist.Options{Path: filepath.Join(dir, env+".txt"), Name: "blocklist:" + env, ReadOnce: d.PlanOnly})
			if err != nil {
				return nil, err
			}
			return b, nil
		})
	}
	return reg, nil
}
