package webhook

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/outbound"
	"github.com/writ-sec/writ/internal/config"
)

//go:embed settings.schema.json
var settingsSchema []byte

// settings are a webhook backend's settings in writ.yaml.
type settings struct {
	URL        string `json:"url"`
	StatusURL  string `json:"statusURL"`
	SecretEnv  string `json:"secretEnv"`
	SecretFile string `json:"secretFile"`
	outbound.Settings
}

// Type is the signed HTTP webhook backend type (type: webhook). It serves
// any action: isolate_host, block_ip and the team-defined ones.
var Type = action.BackendType{
	Name:    "webhook",
	Summary: "signed HTTP requests to a service of yours (EDR, firewall manager)",
	Schema:  settingsSchema,
	Hints: map[string]string{
		"/url":        "is not an http(s) URL",
		"/statusURL":  "is not an http(s) URL",
		"/secretEnv":  "is not an environment variable name (A-Z, 0-9, _)",
		"/secretFile": "must be an absolute path",
		"/caFile":     "must be an absolute path",
	},
	New: newBackend,
}

func newBackend(_ context.Context, s action.Settings, d action.Deps) (action.Backend, error) {
	var o settings
	if err := s.Decode(&o); err != nil {
		return nil, err
	}
	opts := Options{
		Name: "webhook:" + s.Name, URL: o.URL, StatusURL: o.StatusURL, CAFile: o.CAFile,
		AllowHTTP: o.AllowInsecureHTTP, Retries: o.RetriesOption(), MaxResponseBytes: o.MaxResponseBytes,
		Logger:         d.Logger().With(slog.String("backend", s.Name)),
		Catalog:        d.Catalog,
		RevertCommands: d.RevertWith,
	}
	var err error
	if opts.Timeout, opts.MaxRetryWait, err = o.Durations(); err != nil {
		return nil, err
	}
	if opts.Secret, err = config.ResolveSecret(d.Getenv, o.SecretEnv, o.SecretFile); err != nil {
		return nil, fmt.Errorf("webhook signing secret: %w", err)
	}
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	return b, nil
}
