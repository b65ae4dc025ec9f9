package nftables

import (
	"context"
	_ "embed"

	"github.com/writ-sec/writ/internal/action"
)

//go:embed settings.schema.json
var settingsSchema []byte

// settings are an nftables backend's settings in writ.yaml.
type settings struct {
	Table string `json:"table"`
	NetNS string `json:"netns"`
}

// Type is the nftables backend type (type: nftables).
var Type = action.BackendType{
	Name:    "nftables",
	Summary: "a set in writ's own nftables table, dropped in input and forward",
	Actions: []string{"block_ip"},
	Schema:  settingsSchema,
	Hints: map[string]string{
		"/table": "is not a table name: a letter, then letters, digits, _ or - (at most 31)",
		"/netns": "is not a namespace name: a letter, then letters, digits, _ or - (at most 31)",
	},
	New: func(_ context.Context, s action.Settings, _ action.Deps) (action.Backend, error) {
		var o settings
		if err := s.Decode(&o); err != nil {
			return nil, err
		}
		b, err := New(Options{Table: o.Table, NetNS: o.NetNS, Name: "nftables:" + s.Name})
		if err != nil {
			return nil, err
		}
		return b, nil
	},
}
