package scim

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

// settings are a scim backend's settings in writ.yaml.
type settings struct {
	URL       string         `json:"url"`
	Match     string         `json:"match"`
	TokenEnv  string         `json:"tokenEnv"`
	TokenFile string         `json:"tokenFile"`
	OAuth     *oauthSettings `json:"oauth"`
	outbound.Settings
}

type oauthSettings struct {
	ClientID         string   `json:"clientId"`
	ClientSecretEnv  string   `json:"clientSecretEnv"`
	ClientSecretFile string   `json:"clientSecretFile"`
	TokenURL         string   `json:"tokenURL"`
	Scopes           []string `json:"scopes"`
}

// Type is the SCIM 2.0 backend type (type: scim).
var Type = action.BackendType{
	Name:    "scim",
	Summary: "an identity provider's SCIM 2.0 users (active: false)",
	Actions: []string{"suspend_user"},
	Schema:  settingsSchema,
	Hints: map[string]string{
		"/url":                   "is not an http(s) URL",
		"/oauth/tokenURL":        "is not an http(s) URL",
		"/tokenEnv":              "is not an environment variable name (A-Z, 0-9, _)",
		"/oauth/clientSecretEnv": "is not an environment variable name (A-Z, 0-9, _)",
		"/tokenFile":             "must be an absolute path",
		"/caFile":                "must be an absolute path",
	},
	New: newBackend,
}

func newBackend(_ context.Context, s action.Settings, d action.Deps) (action.Backend, error) {
	var o settings
	if err := s.Decode(&o); err != nil {
		return nil, err
	}
	opts := Options{
		Name: "scim:" + s.Name, BaseURL: o.URL, Match: Match(o.Match), CAFile: o.CAFile,
		AllowHTTP: o.AllowInsecureHTTP, Retries: o.RetriesOption(), MaxResponseBytes: o.MaxResponseBytes,
		Logger: d.Logger().With(slog.String("backend", s.Name)),
	}
	var err error
	if opts.Timeout, opts.MaxRetryWait, err = o.Durations(); err != nil {
		return nil, err
	}
	if opts.Token, err = config.ResolveSecret(d.Getenv, o.TokenEnv, o.TokenFile); err != nil {
		return nil, fmt.Errorf("scim bearer token: %w", err)
	}
	if a := o.OAuth; a != nil {
		secret, err := config.ResolveSecret(d.Getenv, a.ClientSecretEnv, a.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("scim OAuth client secret: %w", err)
		}
		opts.OAuth = &OAuth{ClientID: a.ClientID, ClientSecret: secret, TokenURL: a.TokenURL, Scopes: a.Scopes}
	}
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	return b, nil
}
