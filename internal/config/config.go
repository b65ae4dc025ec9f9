// Package config is writ's server configuration (writ.yaml): the content
// repository to follow, the environments policies see, the action backends
// per action and environment, approval and audit settings. It is read
// strictly (located errors) and holds secrets only as references (an
// environment variable or a file), resolved when needed and never printed.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/yamldoc"
	"github.com/writ-sec/writ/schemas"
)

// Config is the server configuration.
type Config struct {
	APIVersion    string                    `yaml:"apiVersion"`
	Kind          string                    `yaml:"kind"`
	Listen        string                    `yaml:"listen,omitempty"`
	Repository    Repository                `yaml:"repository,omitempty"`
	Environments  map[string]map[string]any `yaml:"environments,omitempty"`
	Actions       map[string]ActionDef      `yaml:"actions,omitempty"`
	Backends      []Backend                 `yaml:"backends,omitempty"`
	Approvals     Approvals                 `yaml:"approvals,omitempty"`
	Audit         Audit                     `yaml:"audit,omitempty"`
	Notifications *Notifications            `yaml:"notifications,omitempty"`
	Retention     Retention                 `yaml:"retention,omitempty"`
	Drift         Drift                     `yaml:"drift,omitempty"`
	TLS           *TLS                      `yaml:"tls,omitempty"`
	Console       *Console                  `yaml:"console,omitempty"`
	Auth          *Auth                     `yaml:"auth,omitempty"`
	GitHub        *GitHub                   `yaml:"github,omitempty"`
	GitLab        *GitLab                   `yaml:"gitlab,omitempty"`

	// Path is where the configuration was read from ("" for defaults).
	Path string `yaml:"-"`
	// Warnings are what is accepted but should change (deprecated forms),
	// located; writ config check prints them.
	Warnings diag.Problems `yaml:"-"`

	doc *yamldoc.Doc
}

// Doc is the document the configuration was parsed from, to locate
// problems found after parsing (backend settings); a configuration made
// in code has an empty one (problems at line 1 of Path).
func (c *Config) Doc() *yamldoc.Doc {
	if c.doc == nil {
		return &yamldoc.Doc{Path: c.Path}
	}
	return c.doc
}

// Repository is the content repository writ follows.
type Repository struct {
	URL string `yaml:"url"`
	// Name is the repository's identity (OWNER/NAME) signed statements
	// must name; see RepositoryName.
	Name                string `yaml:"name,omitempty"`
	Branch              string `yaml:"branch,omitempty"`
	PollInterval        string `yaml:"pollInterval,omitempty"`
	Username            string `yaml:"username,omitempty"`
	PasswordEnv         string `yaml:"passwordEnv,omitempty"`
	PasswordFile        string `yaml:"passwordFile,omitempty"`
	SSHKeyFile          string `yaml:"sshKeyFile,omitempty"`
	SSHKeyPassphraseEnv string `yaml:"sshKeyPassphraseEnv,omitempty"`
	KnownHostsFile      string `yaml:"knownHostsFile,omitempty"`
}

// ActionDef declares a team-defined action.
type ActionDef struct {
	Targets    string `yaml:"targets"`
	RevertWith string `yaml:"revertWith,omitempty"`
}

// Backend binds a backend of a type (internal/action/backends) to actions
// in environments. Its settings are its type's: internal/action/backends
// checks them against the type's schema and builds the backend.
type Backend struct {
	Name         string         `yaml:"name"`
	Type         string         `yaml:"type"`
	Actions      []string       `yaml:"actions"`
	Environments []string       `yaml:"environments,omitempty"`
	Settings     map[string]any `yaml:"settings,omitempty"`
	// Blocklist is the deprecated name of settings for type blocklist
	// (earlier versions): read as its settings, with a warning.
	Blocklist map[string]any `yaml:"blocklist,omitempty"`
}

// Approvals settings.
type Approvals struct {
	MaxAge          string `yaml:"maxAge,omitempty"`
	ClockSkew       string `yaml:"clockSkew,omitempty"`
	RequireProposal *bool  `yaml:"requireProposal,omitempty"`
	AdminApprovals  int    `yaml:"adminApprovals,omitempty"`
	// BreakGlassWindow is how long an emergency apply that ran on a
	// break-glass statement has to gather its normal quorum before it is
	// reverted (default 4h).
	BreakGlassWindow string    `yaml:"breakGlassWindow,omitempty"`
	Recovery         *Recovery `yaml:"recovery,omitempty"`
}

// Recovery is lost-key recovery: public keys the server's operator keeps
// off the repository, approvalsRequired of which may sign the adoption of
// a change to policies/ or .writ/ when the admins cannot.
type Recovery struct {
	ApprovalsRequired int           `yaml:"approvalsRequired,omitempty"`
	Keys              []RecoveryKey `yaml:"keys"`
}

// RecoveryKey names one recovery public key file.
type RecoveryKey struct {
	ID      string `yaml:"id"`
	KeyFile string `yaml:"keyFile"`
}

// Notifications configures outbound notifications (docs/notifications.md):
// named channels and routes. The fields before Channels are the shorthand
// of earlier versions, one signed webhook; Normalized turns it into a
// channel named "default" and its route.
type Notifications struct {
	URL               string   `yaml:"url,omitempty"`
	URLEnv            string   `yaml:"urlEnv,omitempty"` // the URL itself is a secret (Slack), from the environment
	SecretEnv         string   `yaml:"secretEnv,omitempty"`
	SecretFile        string   `yaml:"secretFile,omitempty"`
	CAFile            string   `yaml:"caFile,omitempty"`
	AllowInsecureHTTP bool     `yaml:"allowInsecureHTTP,omitempty"`
	Events            []string `yaml:"events,omitempty"`

	// ConsoleURL is the console as people reach it, for links (default
	// console.origin).
	ConsoleURL string                `yaml:"consoleURL,omitempty"`
	Channels   []NotificationChannel `yaml:"channels,omitempty"`
	Routes     []NotificationRoute   `yaml:"routes,omitempty"`
}

// NotificationChannel is one place notifications go: a name and one of
// Webhook, Slack or Email.
type NotificationChannel struct {
	Name    string          `yaml:"name"`
	Webhook *WebhookChannel `yaml:"webhook,omitempty"`
	Slack   *SlackChannel   `yaml:"slack,omitempty"`
	Email   *EmailChannel   `yaml:"email,omitempty"`
}

// Kind is the channel's kind: webhook, slack or email.
func (c NotificationChannel) Kind() string {
	switch {
	case c.Webhook != nil:
		return "webhook"
	case c.Slack != nil:
		return "slack"
	case c.Email != nil:
		return "email"
	}
	return ""
}

// WebhookChannel is writ's signed outbound webhook.
type WebhookChannel struct {
	URL               string `yaml:"url,omitempty"`
	URLEnv            string `yaml:"urlEnv,omitempty"`
	SecretEnv         string `yaml:"secretEnv,omitempty"`
	SecretFile        string `yaml:"secretFile,omitempty"`
	CAFile            string `yaml:"caFile,omitempty"`
	AllowInsecureHTTP bool   `yaml:"allowInsecureHTTP,omitempty"`
}

// SlackChannel is a Slack-compatible incoming webhook; its URL is a
// credential, by reference only.
type SlackChannel struct {
	URLEnv            string `yaml:"urlEnv,omitempty"`
	URLFile           string `yaml:"urlFile,omitempty"`
	CAFile            string `yaml:"caFile,omitempty"`
	AllowInsecureHTTP bool   `yaml:"allowInsecureHTTP,omitempty"`
}

// EmailChannel is an SMTP server: STARTTLS unless AllowPlaintext (loopback
// only), AUTH PLAIN when Username is set.
type EmailChannel struct {
	Address        string `yaml:"address"`
	From           string `yaml:"from"`
	Username       string `yaml:"username,omitempty"`
	PasswordEnv    string `yaml:"passwordEnv,omitempty"`
	PasswordFile   string `yaml:"passwordFile,omitempty"`
	CAFile         string `yaml:"caFile,omitempty"`
	ServerName     string `yaml:"serverName,omitempty"`
	AllowPlaintext bool   `yaml:"allowPlaintext,omitempty"`
}

// NotificationRoute sends events (names or groups) to channels and, for
// email channels, to recipients.
type NotificationRoute struct {
	Events   []string    `yaml:"events"`
	Channels []string    `yaml:"channels"`
	To       *Recipients `yaml:"to,omitempty"`
}

// Recipients of an email route: addresses, people of the approvers file in
// force by id, holders of roles, and MustAct, the people who must act next
// on the event.
type Recipients struct {
	Addresses []string `yaml:"addresses,omitempty"`
	People    []string `yaml:"people,omitempty"`
	Roles     []string `yaml:"roles,omitempty"`
	MustAct   bool     `yaml:"mustAct,omitempty"`
}

// DefaultNotificationChannel names the channel of the shorthand form.
const DefaultNotificationChannel = "default"

// Shorthand reports whether the section is the single-webhook form of
// earlier versions.
func (n *Notifications) Shorthand() bool { return n.URL != "" || n.URLEnv != "" }

// Normalized is the section as channels and routes: the shorthand becomes
// a webhook channel named "default" sent its events (defaultEvents when it
// names none).
func (n *Notifications) Normalized(defaultEvents []string) ([]NotificationChannel, []NotificationRoute) {
	if !n.Shorthand() {
		return n.Channels, n.Routes
	}
	events := n.Events
	if len(events) == 0 {
		events = defaultEvents
	}
	return []NotificationChannel{{Name: DefaultNotificationChannel, Webhook: &WebhookChannel{
			URL: n.URL, URLEnv: n.URLEnv, SecretEnv: n.SecretEnv, SecretFile: n.SecretFile, CAFile: n.CAFile, AllowInsecureHTTP: n.AllowInsecureHTTP}}},
		[]NotificationRoute{{Events: events, Channels: []string{DefaultNotificationChannel}}}
}

// Retention configures the clean-up jobs (durations like 24h, 90d).
type Retention struct {
	Sessions  string `yaml:"sessions,omitempty"`
	Approvals string `yaml:"approvals,omitempty"`
	Playbooks string `yaml:"playbooks,omitempty"`
	Interval  string `yaml:"interval,omitempty"`
}

// Drift configures drift detection: how often live state is compared with
// what the active playbooks put in force. Whether drift is only reported
// or also healed is per environment: environments.NAME.drift (report, the
// default, or heal).
type Drift struct {
	// Interval between checks; default DefaultDriftInterval, "0s": only on
	// demand (POST /api/v1/drift/check, writ drift --check).
	Interval string `yaml:"interval,omitempty"`
}

// DefaultDriftInterval is how often drift is checked by default.
const DefaultDriftInterval = 5 * time.Minute

// DriftInterval is the time between drift checks (0: on demand only).
func (c *Config) DriftInterval() time.Duration {
	return durationOr(c.Drift.Interval, DefaultDriftInterval)
}

// DriftModes maps each environment to its drift mode: report (the
// default) or heal (environments.NAME.drift).
func (c *Config) DriftModes() map[string]string {
	out := map[string]string{}
	for name, env := range c.EnvironmentMap() {
		mode, _ := env["drift"].(string)
		if mode != "heal" {
			mode = "report"
		}
		out[name] = mode
	}
	return out
}

// RetentionDurations parses the retention settings (zero: default).
func (r Retention) RetentionDurations() (sessions, approvals, playbooks, interval time.Duration) {
	return durationOr(r.Sessions, 0), durationOr(r.Approvals, 0), durationOr(r.Playbooks, 0), durationOr(r.Interval, 0)
}

// TLS is the server's certificate and key.
type TLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// Console is the web console served at / (docs/console.md).
type Console struct {
	// Origin is the console's public origin as browsers reach it
	// (https://host[:port], http only for localhost): forms must come from
	// it, and passkeys registered in the console are bound to it (its host
	// is the WebAuthn relying party id). Empty: the request's own origin,
	// and passkeys only when the console is opened as localhost.
	Origin string `yaml:"origin,omitempty"`
	// Disabled serves no console: the API only.
	Disabled bool `yaml:"disabled,omitempty"`
}

// GitHub is the GitHub integration (PR checks, signed reviews, webhooks).
// Secrets only by reference.
type GitHub struct {
	Repository        string     `yaml:"repository"`
	BaseURL           string     `yaml:"baseURL,omitempty"`
	WebhookSecretEnv  string     `yaml:"webhookSecretEnv,omitempty"`
	WebhookSecretFile string     `yaml:"webhookSecretFile,omitempty"`
	TokenEnv          string     `yaml:"tokenEnv,omitempty"`
	TokenFile         string     `yaml:"tokenFile,omitempty"`
	App               *GitHubApp `yaml:"app,omitempty"`
	CheckName         string     `yaml:"checkName,omitempty"`
	DetailsURL        string     `yaml:"detailsURL,omitempty"`
	RefreshInterval   string     `yaml:"refreshInterval,omitempty"`
	// MaxPlaybooks bounds the playbook files judged in one pull request
	// (0: the reconciler's default, 1000).
	MaxPlaybooks int `yaml:"maxPlaybooksPerPullRequest,omitempty"`
}

// GitLab is the GitLab integration (merge request statuses and report
// notes, signed notes, webhooks). Secrets only by reference.
type GitLab struct {
	// BaseURL is the instance without /api/v4 (default https://gitlab.com).
	BaseURL string `yaml:"baseURL,omitempty"`
	// Project is the project's path with namespace or its numeric id.
	Project           string `yaml:"project"`
	TokenEnv          string `yaml:"tokenEnv,omitempty"`
	TokenFile         string `yaml:"tokenFile,omitempty"`
	WebhookSecretEnv  string `yaml:"webhookSecretEnv,omitempty"`
	WebhookSecretFile string `yaml:"webhookSecretFile,omitempty"`
	StatusName        string `yaml:"statusName,omitempty"`
	DetailsURL        string `yaml:"detailsURL,omitempty"`
	RefreshInterval   string `yaml:"refreshInterval,omitempty"`
}

// GitHubApp authenticates writ as a GitHub App installation.
type GitHubApp struct {
	AppID          int64  `yaml:"appId"`
	InstallationID int64  `yaml:"installationId"`
	PrivateKeyFile string `yaml:"privateKeyFile"`
}

// Audit settings.
type Audit struct {
	SigningKeyFile        string `yaml:"signingKeyFile,omitempty"`
	SigningKeyPasswordEnv string `yaml:"signingKeyPasswordEnv,omitempty"`
	TrustedKeysDir        string `yaml:"trustedKeysDir,omitempty"`
	CheckpointDir         string `yaml:"checkpointDir,omitempty"`
	CheckpointInterval    string `yaml:"checkpointInterval,omitempty"`
	CheckpointRef         string `yaml:"checkpointRef,omitempty"`
	Origin                string `yaml:"origin,omitempty"`
	// Witnesses cosign the log's checkpoints (C2SP tlog-witness).
	Witnesses []AuditWitness `yaml:"witnesses,omitempty"`
	// SIEM destinations the log is streamed to (docs/audit.md).
	SIEM []SIEMDestination `yaml:"siem,omitempty"`
}

// AuditWitness is a witness the log's checkpoints are sent to: its name
// (in messages, metrics and audit events), its submission prefix (POST
// URL/add-checkpoint) and its verifier key in signed-note form
// ("<name>+<hash>+<base64 key>": Ed25519, cosignature/v1 or ML-DSA-44).
type AuditWitness struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	Key  string `yaml:"key"`
}

// SIEMDestination is one SIEM the audit log is streamed to: a name (its
// cursor's key) and one of Syslog or Webhook.
type SIEMDestination struct {
	Name    string       `yaml:"name"`
	Syslog  *SIEMSyslog  `yaml:"syslog,omitempty"`
	Webhook *SIEMWebhook `yaml:"webhook,omitempty"`
}

// SIEMSyslog is an RFC 5424 syslog receiver over TLS.
type SIEMSyslog struct {
	Address    string `yaml:"address"`
	CAFile     string `yaml:"caFile,omitempty"`
	ServerName string `yaml:"serverName,omitempty"`
	CertFile   string `yaml:"certFile,omitempty"`
	KeyFile    string `yaml:"keyFile,omitempty"`
	AppName    string `yaml:"appName,omitempty"`
}

// SIEMWebhook is an HTTPS receiver of signed batches. Its secret comes by
// reference only.
type SIEMWebhook struct {
	URL        string `yaml:"url"`
	SecretEnv  string `yaml:"secretEnv,omitempty"`
	SecretFile string `yaml:"secretFile,omitempty"`
	CAFile     string `yaml:"caFile,omitempty"`
}

// Defaults used where the file is silent.
const (
	DefaultListen             = "127.0.0.1:8080"
	DefaultBranch             = "main"
	DefaultPollInterval       = 30 * time.Second
	DefaultApprovalMaxAge     = 24 * time.Hour
	DefaultClockSkew          = 5 * time.Minute
	DefaultAdminApprovals     = 2
	DefaultCheckpointInterval = 10 * time.Minute
)

// DefaultEnvironments are what policies see when the configuration names
// none.
func DefaultEnvironments() map[string]map[string]any {
	return map[string]map[string]any{
		"production": {"production": true},
		"staging":    {"production": false},
	}
}

// Default is the configuration with no file: the embedded defaults.
func Default() *Config {
	return &Config{APIVersion: "writ/v1", Kind: "ServerConfig"}
}

var hints = yamldoc.Hints{
	"/repository/pollInterval":        "is not a duration such as 30s or 5m",
	"/approvals/maxAge":               "is not a duration such as 24h",
	"/approvals/clockSkew":            "is not a duration such as 5m",
	"/audit/checkpointInterval":       "is not a duration such as 10m",
	"/audit/siem/*/name":              "is not a destination name: lowercase letters, digits and '-'",
	"/audit/siem/*/syslog/address":    "is not host:port",
	"/audit/siem/*/webhook/url":       "is not an https URL",
	"/audit/siem/*/webhook/secretEnv": "is not an environment variable name (A-Z, 0-9, _)",
	"/repository/passwordEnv":         "is not an environment variable name (A-Z, 0-9, _)",
	"/repository/passwordFile":        "must be an absolute path",
	"/backends/*/name":                "is not a backend name: lowercase letters, digits and '-'",
}

// Load reads and checks a configuration file. Every problem is located
// (path:line:col).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data)
}

// Parse checks configuration bytes.
func Parse(path string, data []byte) (*Config, error) {
	doc, problems := yamldoc.Parse(path, data, yamldoc.Limits{})
	if problems != nil {
		return nil, problems
	}
	if problems := doc.Validate(schemas.Must(schemas.Config), hints); problems != nil {
		return nil, problems
	}
	c := &Config{Path: path, doc: doc}
	if err := doc.Decode(c); err != nil {
		return nil, err
	}
	if problems := c.check(doc); problems != nil {
		return nil, problems
	}
	return c, nil
}

// check runs what the schema cannot express.
func (c *Config) check(doc *yamldoc.Doc) diag.Problems {
	var out diag.Problems
	durations := map[string]string{
		"/repository/pollInterval":    c.Repository.PollInterval,
		"/approvals/maxAge":           c.Approvals.MaxAge,
		"/approvals/clockSkew":        c.Approvals.ClockSkew,
		"/approvals/breakGlassWindow": c.Approvals.BreakGlassWindow,
		"/audit/checkpointInterval":   c.Audit.CheckpointInterval,
		"/retention/sessions":         c.Retention.Sessions,
		"/retention/approvals":        c.Retention.Approvals,
		"/retention/playbooks":        c.Retention.Playbooks,
		"/retention/interval":         c.Retention.Interval,
	}
	for ptr, v := range durations {
		if v == "" {
			continue
		}
		if _, err := time.ParseDuration(expandDays(v)); err != nil {
			out = append(out, doc.Errorf(ptr, "invalid-value", "%s: %q is not a duration", yamldoc.FieldName(ptr), v))
		}
	}
	out = append(out, c.checkNotifications(doc)...)
	witnesses := map[string]bool{}
	for i, w := range c.Audit.Witnesses {
		ptr := fmt.Sprintf("/audit/witnesses/%d", i)
		if witnesses[w.Name] {
			out = append(out, doc.Errorf(ptr+"/name", "invalid-value", "%s: witness name %q is used twice", yamldoc.FieldName(ptr+"/name"), w.Name))
		}
		witnesses[w.Name] = true
		if u, err := url.Parse(w.URL); err == nil && (u.RawQuery != "" || u.ForceQuery) {
			out = append(out, doc.Errorf(ptr+"/url", "invalid-value", "%s: a witness's URL is a prefix: no query", yamldoc.FieldName(ptr+"/url")))
		}
		if _, err := fnote.NewVerifierForCosignatureV1(w.Key); err != nil {
			out = append(out, doc.Errorf(ptr+"/key", "invalid-value", "%s: %q is not a witness's signed-note verifier key (<name>+<hash>+<base64 key>, Ed25519 or ML-DSA-44): %v",
				yamldoc.FieldName(ptr+"/key"), w.Key, err))
		}
	}
	out = append(out, c.checkSIEM(doc)...)
	if c.Repository.PasswordEnv != "" && c.Repository.PasswordFile != "" {
		out = append(out, doc.Errorf("/repository/passwordFile", "invalid-value", "give passwordEnv or passwordFile, not both"))
	}
	if rc := c.Approvals.Recovery; rc != nil {
		need := rc.ApprovalsRequired
		if need == 0 {
			need = DefaultAdminApprovals
		}
		if need > len(rc.Keys) {
			out = append(out, doc.Errorf("/approvals/recovery", "invalid-value", "%d recovery approvals are required but only %d recovery keys are listed: no change could ever be adopted by them",
				need, len(rc.Keys)))
		}
		ids := map[string]bool{}
		for i, k := range rc.Keys {
			if ids[k.ID] {
				out = append(out, doc.Errorf(fmt.Sprintf("/approvals/recovery/keys/%d/id", i), "invalid-value", "recovery key id %q is used twice", k.ID))
			}
			ids[k.ID] = true
		}
	}
	if c.Repository.Name != "" && c.GitHub != nil && !strings.EqualFold(c.Repository.Name, c.GitHub.Repository) {
		out = append(out, doc.Errorf("/repository/name", "invalid-value", "repository.name %q differs from github.repository %q: a repository has one identity",
			c.Repository.Name, c.GitHub.Repository))
	}
	actions := c.Catalog()
	seen := map[string]string{} // action/env -> backend
	names := map[string]bool{}
	for i, b := range c.Backends {
		ptr := fmt.Sprintf("/backends/%d", i)
		if names[b.Name] {
			out = append(out, doc.Errorf(ptr+"/name", "invalid-value", "backend name %q is used twice", b.Name))
		}
		names[b.Name] = true
		if b.Blocklist != nil {
			switch {
			case b.Type != "blocklist":
				out = append(out, doc.Errorf(ptr+"/blocklist", "invalid-value", "a blocklist section belongs to type blocklist, not %s: write settings", b.Type))
			case b.Settings != nil:
				out = append(out, doc.Errorf(ptr+"/blocklist", "invalid-value", "give settings or the deprecated blocklist section, not both"))
			default:
				w := diag.Errorf(doc.Path, doc.KeyPos(ptr+"/blocklist"), "deprecated",
					"%s: the blocklist section is deprecated: write the same keys under settings", yamldoc.FieldName(ptr+"/blocklist"))
				w.Severity = diag.Warning
				c.Warnings = append(c.Warnings, w)
			}
		}
		envs := b.Environments
		if len(envs) == 0 {
			envs = []string{"*"}
		}
		for j, a := range b.Actions {
			if _, ok := actions[a]; !ok {
				out = append(out, doc.Errorf(fmt.Sprintf("%s/actions/%d", ptr, j), "unknown-action",
					"action %q is neither built in nor declared under actions", a))
			}
			for _, e := range envs {
				if e != "*" && !c.hasEnvironment(e) {
					out = append(out, doc.Errorf(ptr+"/environments", "invalid-value", "environment %q is not declared under environments", e))
				}
				key := a + "/" + e
				if prev, dup := seen[key]; dup {
					out = append(out, doc.Errorf(ptr, "invalid-value", "%s in environment %s already goes to backend %q", a, e, prev))
				}
				seen[key] = b.Name
			}
		}
	}
	out = append(out, c.checkAuth(doc)...)
	out = append(out, c.checkGitHub(doc)...)
	out = append(out, c.checkGitLab(doc)...)
	if len(out) == 0 {
		return nil
	}
	out.Sort()
	return out
}

// checkSIEM: each destination is one kind, names are unique, a webhook's
// secret comes from one place, a client certificate has its key.
func (c *Config) checkSIEM(doc *yamldoc.Doc) diag.Problems {
	var out diag.Problems
	names := map[string]bool{}
	for i, d := range c.Audit.SIEM {
		ptr := fmt.Sprintf("/audit/siem/%d", i)
		if names[d.Name] {
			out = append(out, doc.Errorf(ptr+"/name", "invalid-value", "SIEM destination name %q is used twice", d.Name))
		}
		names[d.Name] = true
		if (d.Syslog == nil) == (d.Webhook == nil) {
			out = append(out, doc.Errorf(ptr, "invalid-value", "SIEM destination %q needs syslog or webhook (one of them)", d.Name))
		}
		if s := d.Syslog; s != nil && (s.CertFile == "") != (s.KeyFile == "") {
			out = append(out, doc.Errorf(ptr+"/syslog", "invalid-value", "a client certificate needs certFile and keyFile"))
		}
		if w := d.Webhook; w != nil && (w.SecretEnv == "") == (w.SecretFile == "") {
			out = append(out, doc.Errorf(ptr+"/webhook", "invalid-value", "a SIEM webhook is signed: give secretEnv or secretFile (one of them)"))
		}
	}
	return out
}

func (c *Config) hasEnvironment(name string) bool {
	_, ok := c.EnvironmentMap()[name]
	return ok
}

// EnvironmentMap is the configured environments, or the defaults.
func (c *Config) EnvironmentMap() map[string]map[string]any {
	if len(c.Environments) == 0 {
		return DefaultEnvironments()
	}
	return c.Environments
}

// EnvironmentNames lists the environments, sorted.
func (c *Config) EnvironmentNames() []string {
	var names []string
	for n := range c.EnvironmentMap() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Catalog is the actions playbooks may use: the built-in ones and those
// declared under actions.
func (c *Config) Catalog() playbook.Catalog {
	more := playbook.Catalog{}
	for name, def := range c.Actions {
		more[name] = playbook.TargetKind(def.Targets)
	}
	return playbook.Builtin.With(more)
}

// ListenAddr is the HTTP address.
func (c *Config) ListenAddr() string {
	if c.Listen == "" {
		return DefaultListen
	}
	return c.Listen
}

// RepositoryName is the configured identity (OWNER/NAME) of the content
// repository: repository.name, else github.repository, else "" (writ serve
// then derives it from the URL or path, gitsrc.Identity). Signed statements
// count only when they name it.
func (c *Config) RepositoryName() string {
	if c.Repository.Name != "" {
		return c.Repository.Name
	}
	if c.GitHub != nil {
		return c.GitHub.Repository
	}
	return ""
}

// Branch is the tracked branch.
func (c *Config) Branch() string {
	if c.Repository.Branch == "" {
		return DefaultBranch
	}
	return c.Repository.Branch
}

// PollInterval is how often the repository is fetched.
func (c *Config) PollInterval() time.Duration {
	return durationOr(c.Repository.PollInterval, DefaultPollInterval)
}

// DefaultBreakGlassWindow is how long an emergency apply has to gather its
// quorum unless approvals.breakGlassWindow says otherwise.
const DefaultBreakGlassWindow = 4 * time.Hour

// BreakGlassWindow is how long an emergency apply that ran on a
// break-glass statement has to gather its normal quorum.
func (c *Config) BreakGlassWindow() time.Duration {
	return durationOr(c.Approvals.BreakGlassWindow, DefaultBreakGlassWindow)
}

// ApprovalMaxAge is how long an approval is valid at most.
func (c *Config) ApprovalMaxAge() time.Duration {
	return durationOr(c.Approvals.MaxAge, DefaultApprovalMaxAge)
}

// ClockSkew tolerated for approvals issued "in the future".
func (c *Config) ClockSkew() time.Duration {
	return durationOr(c.Approvals.ClockSkew, DefaultClockSkew)
}

// RequireProposal: allowed playbooks, too, need their analyst's signed
// proposal unless this is false. (A playbook that needs approvals always
// needs one.)
func (c *Config) RequireProposal() bool {
	return c.Approvals.RequireProposal == nil || *c.Approvals.RequireProposal
}

// AdminApprovals needed for a change to policies/ or .writ/.
func (c *Config) AdminApprovals() int {
	if c.Approvals.AdminApprovals == 0 {
		return DefaultAdminApprovals
	}
	return c.Approvals.AdminApprovals
}

// CheckpointInterval between periodic audit checkpoints.
func (c *Config) CheckpointInterval() time.Duration {
	return durationOr(c.Audit.CheckpointInterval, DefaultCheckpointInterval)
}

func durationOr(s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(expandDays(s))
	if err != nil {
		return def
	}
	return d
}

// expandDays rewrites d and w units (which time.ParseDuration lacks) as
// hours.
func expandDays(s string) string {
	if d, err := playbook.ParseDuration(s); err == nil {
		return d.String()
	}
	return s
}

// Secret is a secret resolved from the environment or a file. It prints
// as [redacted] in every format, including slog.
type Secret struct{ value string }

// Value is the secret itself; use it only where it is sent.
func (s Secret) Value() string { return s.value }

// String redacts.
func (s Secret) String() string { return "[redacted]" }

// GoString redacts.
func (s Secret) GoString() string { return "[redacted]" }

// LogValue redacts.
func (s Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// MarshalText redacts.
func (s Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// ResolveSecret reads a secret from an environment variable or a file (one
// of them), trimming a trailing newline from files. An empty reference
// yields an empty secret.
func ResolveSecret(getenv func(string) string, envName, file string) (Secret, error) {
	switch {
	case envName != "" && file != "":
		return Secret{}, errors.New("a secret comes from an environment variable or a file, not both")
	case envName != "":
		v := getenv(envName)
		if v == "" {
			return Secret{}, fmt.Errorf("environment variable %s is empty or unset", envName)
		}
		return Secret{value: v}, nil
	case file != "":
		if !filepath.IsAbs(file) {
			return Secret{}, fmt.Errorf("secret file %q must be an absolute path", file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return Secret{}, fmt.Errorf("read secret file: %w", err)
		}
		return Secret{value: strings.TrimRight(string(b), "\r\n")}, nil
	}
	return Secret{}, nil
}

// checkGitHub checks the github section: one webhook secret reference,
// and a token or an app, not both.
func (c *Config) checkGitHub(doc *yamldoc.Doc) diag.Problems {
	g := c.GitHub
	if g == nil {
		return nil
	}
	var out diag.Problems
	if (g.WebhookSecretEnv == "") == (g.WebhookSecretFile == "") {
		out = append(out, doc.Errorf("/github", "invalid-value", "give webhookSecretEnv or webhookSecretFile (one of them): deliveries are verified with it"))
	}
	token := g.TokenEnv != "" || g.TokenFile != ""
	switch {
	case g.TokenEnv != "" && g.TokenFile != "":
		out = append(out, doc.Errorf("/github/tokenFile", "invalid-value", "give tokenEnv or tokenFile, not both"))
	case token && g.App != nil:
		out = append(out, doc.Errorf("/github/app", "invalid-value", "authenticate with a token or as an app, not both"))
	case !token && g.App == nil:
		out = append(out, doc.Errorf("/github", "invalid-value", "give tokenEnv, tokenFile or app: writ writes check runs"))
	}
	if g.RefreshInterval != "" {
		if _, err := time.ParseDuration(expandDays(g.RefreshInterval)); err != nil {
			out = append(out, doc.Errorf("/github/refreshInterval", "invalid-value", "refreshInterval: %q is not a duration", g.RefreshInterval))
		}
	}
	return out
}

// checkGitLab checks the gitlab section: one webhook secret reference and
// one token reference.
func (c *Config) checkGitLab(doc *yamldoc.Doc) diag.Problems {
	g := c.GitLab
	if g == nil {
		return nil
	}
	var out diag.Problems
	if (g.WebhookSecretEnv == "") == (g.WebhookSecretFile == "") {
		out = append(out, doc.Errorf("/gitlab", "invalid-value", "give webhookSecretEnv or webhookSecretFile (one of them): deliveries are authenticated with it"))
	}
	if (g.TokenEnv == "") == (g.TokenFile == "") {
		out = append(out, doc.Errorf("/gitlab", "invalid-value", "give tokenEnv or tokenFile (one of them): writ sets commit statuses and writes notes with it"))
	}
	if strings.Contains(g.Project, "..") {
		out = append(out, doc.Errorf("/gitlab/project", "invalid-value", "project %q is not a path with namespace", g.Project))
	}
	if g.RefreshInterval != "" {
		if _, err := time.ParseDuration(expandDays(g.RefreshInterval)); err != nil {
			out = append(out, doc.Errorf("/gitlab/refreshInterval", "invalid-value", "refreshInterval: %q is not a duration", g.RefreshInterval))
		}
	}
	return out
}

// GitLabRefreshInterval is how often open merge requests are re-read and
// re-checked.
func (c *Config) GitLabRefreshInterval() time.Duration {
	if c.GitLab == nil {
		return 0
	}
	return durationOr(c.GitLab.RefreshInterval, 5*time.Minute)
}

// GitHubRefreshInterval is how often open pull requests are re-checked.
func (c *Config) GitHubRefreshInterval() time.Duration {
	if c.GitHub == nil {
		return 0
	}
	return durationOr(c.GitHub.RefreshInterval, 5*time.Minute)
}

// ReadFile reads a file writ.yaml or a flag names (a key, a CA, a
// recovery key) of at most limit bytes: a larger one is refused rather
// than read whole.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
