package action

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/writ-sec/writ/internal/playbook"
)

// BackendType is a kind of backend writ.yaml can configure (type: NAME):
// what it is called, which actions it can serve, the JSON Schema of its
// settings, and how to build one. Each backend package declares its type
// (e.g. blocklist.Type); internal/action/backends lists them and builds
// the configured backends.
type BackendType struct {
	// Name is the value of type: in writ.yaml.
	Name string
	// Summary says in a few words what it drives (for messages and docs).
	Summary string
	// Actions are the actions it can serve; nil: any action of the
	// catalog, built in or team-defined under actions:.
	Actions []string
	// Schema is the JSON Schema (draft 2020-12) of its settings: strict
	// (additionalProperties: false), so an unknown setting is refused with
	// its line and column in writ.yaml. Absent settings are checked as {}.
	Schema []byte
	// Hints replace the generic message of a failed pattern for a setting,
	// keyed by JSON pointers relative to the settings ("/url").
	Hints map[string]string
	// New builds a backend from its settings, which passed Schema.
	New func(ctx context.Context, s Settings, d Deps) (Backend, error)
}

// Serves reports whether the type can serve an action.
func (t BackendType) Serves(actionName string) bool {
	if t.Actions == nil {
		return true
	}
	for _, a := range t.Actions {
		if a == actionName {
			return true
		}
	}
	return false
}

// Settings are one configured backend's name and settings.
type Settings struct {
	// Name is the backend's name in writ.yaml (name:).
	Name string
	// Values are its settings as written (settings:).
	Values map[string]any
}

// Decode decodes the settings strictly into a struct with json tags: a key
// the struct lacks is refused, so a schema that lets a key through by
// mistake cannot make a setting silently ignored.
func (s Settings) Decode(into any) error {
	m := s.Values
	if m == nil {
		m = map[string]any{}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	return nil
}

// Deps is what a backend constructor may use beyond its settings.
type Deps struct {
	// Getenv resolves secret references (config.ResolveSecret).
	Getenv func(string) string
	// Log is the server's logger; nil: discarded.
	Log *slog.Logger
	// DataDir is writ's data directory (--data-dir).
	DataDir string
	// Catalog is the actions playbooks may use, built in and team-defined,
	// with the kind of target each takes.
	Catalog playbook.Catalog
	// RevertWith names the revert command of each team-defined action
	// that declares one (actions.NAME.revertWith).
	RevertWith map[string]string
	// PlanOnly says the backends are built for a command that only plans
	// (writ plan): a backend may read the live state once and answer every
	// Plan from that read, instead of reading it again per playbook.
	PlanOnly bool
}

// Logger is d.Log, or a logger that discards.
func (d Deps) Logger() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}
