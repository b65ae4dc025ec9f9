package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/scim"
	"github.com/writ-sec/writ/internal/action/webhook"
	"github.com/writ-sec/writ/internal/config"
)

// The settings of the scim and webhook backends in writ.yaml. The schema
// (schemas/config.schema.json) checks them with located errors first;
// decoding them again here is strict too, so a key the schema lets through
// by mistake is still refused.

type scimSettings struct {
	URL               string         `json:"url"`
	Match             string         `json:"match"`
	TokenEnv          string         `json:"tokenEnv"`
	TokenFile         string         `json:"tokenFile"`
	OAuth             *oauthSettings `json:"oauth"`
	CAFile            string         `json:"caFile"`
	AllowInsecureHTTP bool           `json:"allowInsecureHTTP"`
	Timeout           string         `json:"timeout"`
	Retries           *int           `json:"retries"`
	MaxRetryWait      string         `json:"maxRetryWait"`
	MaxResponseBytes  int64          `json:"maxResponseBytes"`
}

type oauthSettings struct {
	ClientID         string   `json:"clientId"`
	ClientSecretEnv  string   `json:"clientSecretEnv"`
	ClientSecretFile string   `json:"clientSecretFile"`
	TokenURL         string   `json:"tokenURL"`
	Scopes           []string `json:"scopes"`
}

type webhookSettings struct {
	URL               string `json:"url"`
	StatusURL         string `json:"statusURL"`
	SecretEnv         string `json:"secretEnv"`
	SecretFile        string `json:"secretFile"`
	CAFile            string `json:"caFile"`
	AllowInsecureHTTP bool   `json:"allowInsecureHTTP"`
	Timeout           string `json:"timeout"`
	Retries           *int   `json:"retries"`
	MaxRetryWait      string `json:"maxRetryWait"`
	MaxResponseBytes  int64  `json:"maxResponseBytes"`
}

// decodeSettings decodes a backend's settings map strictly into a struct.
func decodeSettings(kind string, m map[string]any, into any) error {
	if len(m) == 0 {
		return fmt.Errorf("%s backends need settings (at least url)", kind)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("%s settings: %w", kind, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("%s settings: %w", kind, err)
	}
	return nil
}

// durationSetting parses an optional duration setting.
func durationSetting(name, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("settings.%s: %q is not a positive duration such as 10s", name, v)
	}
	return d, nil
}

// retriesSetting maps settings.retries (absent: default, 0: none) onto the
// options' convention (0: default, -1: none).
func retriesSetting(v *int) int {
	switch {
	case v == nil:
		return 0
	case *v == 0:
		return -1
	}
	return *v
}

func newSCIMBackend(bc config.Backend, deps backendDeps) (action.Backend, error) {
	getenv := deps.getenv
	var s scimSettings
	if err := decodeSettings("scim", bc.Settings, &s); err != nil {
		return nil, err
	}
	o := scim.Options{
		Name: "scim:" + bc.Name, BaseURL: s.URL, Match: scim.Match(s.Match), CAFile: s.CAFile,
		AllowHTTP: s.AllowInsecureHTTP, Retries: retriesSetting(s.Retries), MaxResponseBytes: s.MaxResponseBytes,
		Logger: deps.log.With(slog.String("backend", bc.Name)),
	}
	var err error
	if o.Timeout, err = durationSetting("timeout", s.Timeout); err != nil {
		return nil, err
	}
	if o.MaxRetryWait, err = durationSetting("maxRetryWait", s.MaxRetryWait); err != nil {
		return nil, err
	}
	if o.Token, err = config.ResolveSecret(getenv, s.TokenEnv, s.TokenFile); err != nil {
		return nil, fmt.Errorf("scim bearer token: %w", err)
	}
	if a := s.OAuth; a != nil {
		secret, err := config.ResolveSecret(getenv, a.ClientSecretEnv, a.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("scim OAuth client secret: %w", err)
		}
		o.OAuth = &scim.OAuth{ClientID: a.ClientID, ClientSecret: secret, TokenURL: a.TokenURL, Scopes: a.Scopes}
	}
	b, err := scim.New(o)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func newWebhookBackend(bc config.Backend, deps backendDeps) (action.Backend, error) {
	getenv := deps.getenv
	var s webhookSettings
	if err := decodeSettings("webhook", bc.Settings, &s); err != nil {
		return nil, err
	}
	o := webhook.Options{
		Name: "webhook:" + bc.Name, URL: s.URL, StatusURL: s.StatusURL, CAFile: s.CAFile,
		AllowHTTP: s.AllowInsecureHTTP, Retries: retriesSetting(s.Retries), MaxResponseBytes: s.MaxResponseBytes,
		Logger:  deps.log.With(slog.String("backend", bc.Name)),
		Catalog: deps.cfg.Catalog(),
	}
	// Team-defined actions name their revert command in writ.yaml.
	for name, def := range deps.cfg.Actions {
		if def.RevertWith != "" {
			if o.RevertCommands == nil {
				o.RevertCommands = map[string]string{}
			}
			o.RevertCommands[name] = def.RevertWith
		}
	}
	var err error
	if o.Timeout, err = durationSetting("timeout", s.Timeout); err != nil {
		return nil, err
	}
	if o.MaxRetryWait, err = durationSetting("maxRetryWait", s.MaxRetryWait); err != nil {
		return nil, err
	}
	if o.Secret, err = config.ResolveSecret(getenv, s.SecretEnv, s.SecretFile); err != nil {
		return nil, fmt.Errorf("webhook signing secret: %w", err)
	}
	b, err := webhook.New(o)
	if err != nil {
		return nil, err
	}
	return b, nil
}
