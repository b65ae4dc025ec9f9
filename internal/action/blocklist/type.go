package blocklist

import (
	"context"
	_ "embed"

	"github.com/writ-sec/writ/internal/action"
)

//go:embed settings.schema.json
var settingsSchema []byte

// settings are a blocklist backend's settings in writ.yaml.
type settings struct {
	Path    string `json:"path"`
	Format  string `json:"format"`
	SetName string `json:"setName"`
	Journal string `json:"journal"`
}

// Type is the blocklist backend type (type: blocklist).
var Type = action.BackendType{
	Name:    "blocklist",
	Summary: "a file of blocked addresses (plain, nginx or ipset)",
	Actions: []string{"block_ip"},
	Schema:  settingsSchema,
	Hints: map[string]string{
		"/path":    "must be an absolute path",
		"/journal": "must be an absolute path",
		"/setName": "is not an ipset name: letters, digits, - and _, at most 30",
	},
	New: func(_ context.Context, s action.Settings, d action.Deps) (action.Backend, error) {
		var o settings
		if err := s.Decode(&o); err != nil {
			return nil, err
		}
		b, err := New(Options{Path: o.Path, Format: Format(o.Format), SetName: o.SetName, Journal: o.Journal, Name: "blocklist:" + s.Name, ReadOnce: d.PlanOnly})
		if err != nil {
			return nil, err
		}
		return b, nil
	},
}
