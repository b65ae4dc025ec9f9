package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	t.Parallel()
	c, err := Load("../../testdata/config/writ.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Branch() != "main" || c.PollInterval() != 30*time.Second || c.AdminApprovals() != 2 || !c.RequireProposal() {
		t.Fatalf("config %+v", c)
	}
	if got := strings.Join(c.EnvironmentNames(), ","); got != "production,staging" {
		t.Fatalf("environments %s", got)
	}
	if c.EnvironmentMap()["production"]["region"] != "eu" {
		t.Fatal("environment attributes lost")
	}
	if w := c.Audit.Witnesses; len(w) != 2 || w[0].Name != "w1" || w[0].URL != "https://witness.example.com/w1" || !strings.HasPrefix(w[0].Key, "witness.example.com/w1+") {
		t.Fatalf("witnesses %+v", w)
	}
	if s := c.Audit.SIEM; len(s) != 2 || s[0].Syslog == nil || s[0].Syslog.Address != "siem.example.com:6514" || s[0].Syslog.KeyFile == "" ||
		s[1].Webhook == nil || s[1].Webhook.SecretEnv != "WRIT_SIEM_WEBHOOK_SECRET" {
		t.Fatalf("audit.siem %+v", s)
	}
}

func TestGitHubPlaybookLimit(t *testing.T) {
	t.Parallel()
	c, err := Parse("c.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\ngithub:\n  repository: a/b\n  tokenEnv: GITHUB_TOKEN\n  webhookSecretEnv: WRIT_GITHUB_WEBHOOK_SECRET\n  maxPlaybooksPerPullRequest: 5000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.GitHub.MaxPlaybooks != 5000 {
		t.Fatalf("maxPlaybooksPerPullRequest = %d", c.GitHub.MaxPlaybooks)
	}
}

func TestGitLab(t *testing.T) {
	t.Parallel()
	head := "apiVersion: writ/v1\nkind: ServerConfig\n"
	c, err := Parse("c.yaml", []byte(head+"gitlab:\n  baseURL: https://gitlab.example.com/gitlab\n  project: secops/sub/content\n"+
		"  tokenFile: /run/secrets/gitlab-token\n  webhookSecretEnv: WRIT_GITLAB_WEBHOOK_SECRET\n  statusName: writ/judge\n"+
		"  detailsURL: https://writ.example.com/pending\n  refreshInterval: 2m\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := c.GitLab
	if g.BaseURL != "https://gitlab.example.com/gitlab" || g.Project != "secops/sub/content" || g.TokenFile != "/run/secrets/gitlab-token" ||
		g.WebhookSecretEnv != "WRIT_GITLAB_WEBHOOK_SECRET" || g.StatusName != "writ/judge" || c.GitLabRefreshInterval() != 2*time.Minute {
		t.Fatalf("gitlab %+v", g)
	}
	c, err = Parse("c.yaml", []byte(head+"gitlab: {project: '1234', tokenEnv: GITLAB_TOKEN, webhookSecretFile: /run/secrets/hook}\n"))
	if err != nil || c.GitLab.Project != "1234" || c.GitLabRefreshInterval() != 5*time.Minute {
		t.Fatalf("numeric project: %+v %v", c, err)
	}
	if Default().GitLabRefreshInterval() != 0 {
		t.Fatal("a refresh interval without a gitlab section")
	}
	ok := "  tokenEnv: GITLAB_TOKEN\n  webhookSecretEnv: HOOK\n"
	for name, tc := range map[string]struct{ body, want string }{
		"no project":       {"gitlab:\n" + ok, "project"},
		"no namespace":     {"gitlab:\n  project: content\n" + ok, "gitlab.project"},
		"dot-dot":          {"gitlab:\n  project: a/../b\n" + ok, "is not a path with namespace"},
		"no token":         {"gitlab:\n  project: a/b\n  webhookSecretEnv: HOOK\n", "give tokenEnv or tokenFile"},
		"two tokens":       {"gitlab:\n  project: a/b\n  tokenEnv: T\n  tokenFile: /t\n  webhookSecretEnv: HOOK\n", "give tokenEnv or tokenFile"},
		"no secret":        {"gitlab:\n  project: a/b\n  tokenEnv: T\n", "give webhookSecretEnv or webhookSecretFile"},
		"inline token":     {"gitlab:\n  project: a/b\n  token: glpat-x\n" + ok, "unknown field \"token\""},
		"relative secret":  {"gitlab:\n  project: a/b\n  tokenEnv: T\n  webhookSecretFile: hook\n", "gitlab.webhookSecretFile"},
		"URL credentials":  {"gitlab:\n  project: a/b\n  baseURL: https://u:p@gitlab.example.com\n" + ok, "gitlab.baseURL"},
		"bad interval":     {"gitlab:\n  project: a/b\n  refreshInterval: often\n" + ok, "gitlab.refreshInterval"},
		"status over line": {"gitlab:\n  project: a/b\n  statusName: \"a\\nb\"\n" + ok, "gitlab.statusName"},
	} {
		_, err := Parse("c.yaml", []byte(head+tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", name, err, tc.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := Default()
	if c.ListenAddr() != DefaultListen || c.ApprovalMaxAge() != 24*time.Hour || c.ClockSkew() != 5*time.Minute ||
		c.CheckpointInterval() != 10*time.Minute || len(c.EnvironmentNames()) != 2 {
		t.Fatalf("defaults %+v", c)
	}
	if _, ok := c.Catalog()["block_ip"]; !ok {
		t.Fatal("built-in actions missing from the catalog")
	}
}

const exampleWitnessKey = "witness.example.org+59aa8660+BGkg7nNCFpsIi8UldObcpB4EOMLARn6DIBY/9wR4+6NQ"

func TestBadConfigurations(t *testing.T) {
	t.Parallel()
	head := "apiVersion: writ/v1\nkind: ServerConfig\n"
	for name, tc := range map[string]struct{ body, want string }{
		"unknown field":   {"listen: x\nlisen: y\n", "c.yaml:4:1: unknown field \"lisen\""},
		"inline password": {"repository:\n  url: /x\n  password: hunter2\n", "unknown field \"password\" in repository"},
		"bad duration":    {"repository:\n  url: /x\n  pollInterval: often\n", "c.yaml:5:17: repository.pollInterval: \"often\" is not a duration"},
		"unknown action":  {"backends:\n  - name: b\n    type: webhook\n    actions: [launch_missiles]\n", "action \"launch_missiles\" is neither built in nor declared"},
		"unknown env":     {"backends:\n  - name: b\n    type: blocklist\n    actions: [block_ip]\n    environments: [prod]\n    blocklist: {path: /x}\n", "environment \"prod\" is not declared"},
		"twice":           {"backends:\n  - name: a\n    type: blocklist\n    actions: [block_ip]\n    blocklist: {path: /x}\n  - name: b\n    type: blocklist\n    actions: [block_ip]\n    blocklist: {path: /y}\n", "already goes to backend \"a\""},
		"blocklist alias": {"backends:\n  - name: a\n    type: webhook\n    actions: [block_ip]\n    blocklist: {path: /x}\n", "c.yaml:7:16: a blocklist section belongs to type blocklist, not webhook"},
		"alias and settings": {"backends:\n  - name: a\n    type: blocklist\n    actions: [block_ip]\n    settings: {path: /x}\n    blocklist: {path: /x}\n",
			"give settings or the deprecated blocklist section, not both"},
		"both secrets": {"repository:\n  url: /x\n  passwordEnv: TOKEN\n  passwordFile: /run/token\n", "not both"},
		"alias":        {"listen: &l x\naudit: {origin: *l}\n", "anchors"},
		"no playbooks": {"github:\n  repository: a/b\n  maxPlaybooksPerPullRequest: 0\n", "c.yaml:5:31: github.maxPlaybooksPerPullRequest: minimum: got 0, want 1"},
		"few recovery keys": {"approvals:\n  recovery:\n    keys:\n      - {id: ops-1, keyFile: /etc/writ/ops-1.pub}\n",
			"2 recovery approvals are required but only 1 recovery keys are listed"},
		"recovery key twice": {"approvals:\n  recovery:\n    approvalsRequired: 1\n    keys:\n      - {id: ops-1, keyFile: /a.pub}\n      - {id: ops-1, keyFile: /b.pub}\n",
			"recovery key id \"ops-1\" is used twice"},
		"witness key": {"audit:\n  witnesses:\n    - {name: w, url: https://w.example, key: w+01234567+AQ==}\n", "c.yaml:5:46: audit.witnesses[0].key: \"w+01234567+AQ==\" is not a witness's signed-note verifier key"},
		"witness twice": {"audit:\n  witnesses:\n    - {name: w, url: https://w.example, key: " + exampleWitnessKey + "}\n    - {name: w, url: https://v.example, key: " + exampleWitnessKey + "}\n",
			"witness name \"w\" is used twice"},
		"witness url":    {"audit:\n  witnesses:\n    - {name: w, url: ftp://w.example, key: " + exampleWitnessKey + "}\n", "audit.witnesses[0].url"},
		"witness query":  {"audit:\n  witnesses:\n    - {name: w, url: \"https://w.example/?x=1\", key: " + exampleWitnessKey + "}\n", "audit.witnesses[0].url: a witness's URL is a prefix: no query"},
		"witness no key": {"audit:\n  witnesses:\n    - {name: w, url: https://w.example}\n", "key"},
		"two identities": {"repository:\n  name: acme/secops\ngithub:\n  repository: acme/other\n", "a repository has one identity"},
		"siem both kinds": {"audit:\n  siem:\n    - name: a\n      syslog: {address: 'h:6514'}\n      webhook: {url: 'https://h/x', secretEnv: S}\n",
			"SIEM destination \"a\" needs syslog or webhook (one of them)"},
		"siem no kind":       {"audit:\n  siem:\n    - name: a\n", "needs syslog or webhook"},
		"siem name twice":    {"audit:\n  siem:\n    - {name: a, syslog: {address: 'h:1'}}\n    - {name: a, syslog: {address: 'h:2'}}\n", "SIEM destination name \"a\" is used twice"},
		"siem bad name":      {"audit:\n  siem:\n    - {name: SOC, syslog: {address: 'h:1'}}\n", "is not a destination name"},
		"siem no port":       {"audit:\n  siem:\n    - {name: a, syslog: {address: siem.example.com}}\n", "is not host:port"},
		"siem cert alone":    {"audit:\n  siem:\n    - {name: a, syslog: {address: 'h:1', certFile: /c.pem}}\n", "needs certFile and keyFile"},
		"siem http":          {"audit:\n  siem:\n    - {name: a, webhook: {url: 'http://h/x', secretEnv: S}}\n", "is not an https URL"},
		"siem unsigned":      {"audit:\n  siem:\n    - {name: a, webhook: {url: 'https://h/x'}}\n", "give secretEnv or secretFile"},
		"siem inline secret": {"audit:\n  siem:\n    - {name: a, webhook: {url: 'https://h/x', secret: hunter2}}\n", "unknown field \"secret\""},
		"notify mixed": {"notifications:\n  urlEnv: HOOK\n  channels: [{name: a, slack: {urlEnv: S}}]\n  routes: [{events: [waiting], channels: [a]}]\n",
			"c.yaml:4:3: notifications: give channels and routes, or the single-webhook shorthand"},
		"notify empty":         {"notifications: {}\n", "notifications need channels and routes"},
		"notify unknown event": {"notifications:\n  url: https://h/x\n  events: [execution.waited]\n", "c.yaml:5:12: \"execution.waited\" is not an audit event"},
		"notify two kinds": {"notifications:\n  channels:\n    - {name: a, slack: {urlEnv: S}, webhook: {url: 'https://h/x'}}\n  routes: [{events: [waiting], channels: [a]}]\n",
			"c.yaml:5:7: notification channel \"a\" needs webhook, slack or email (one of them)"},
		"notify unknown channel": {"notifications:\n  channels: [{name: a, slack: {urlEnv: S}}]\n  routes:\n    - {events: [waiting], channels: [a, b]}\n",
			"c.yaml:6:41: no notification channel is named \"b\""},
		"notify unknown group": {"notifications:\n  channels: [{name: a, slack: {urlEnv: S}}]\n  routes:\n    - {events: [waitng], channels: [a]}\n",
			"\"waitng\" is neither a group (breakglass, denied, drift, failed, hold, invalid_merge, override, rejected, waiting) nor an audit event"},
		"notify unused channel": {"notifications:\n  channels: [{name: a, slack: {urlEnv: S}}, {name: b, slack: {urlEnv: T}}]\n  routes: [{events: [waiting], channels: [a]}]\n",
			"notification channel \"b\" is in no route"},
		"notify slack inline url": {"notifications:\n  channels: [{name: a, slack: {url: 'https://hooks.slack.com/x'}}]\n  routes: [{events: [waiting], channels: [a]}]\n",
			"unknown field \"url\""},
		"notify email no recipients": {"notifications:\n  channels: [{name: m, email: {address: 'smtp.example.com:587', from: w@example.com}}]\n  routes: [{events: [waiting], channels: [m]}]\n",
			"a route to an email channel needs recipients"},
		"notify recipients without email": {"notifications:\n  channels: [{name: a, slack: {urlEnv: S}}]\n  routes: [{events: [waiting], channels: [a], to: {roles: [admin]}}]\n",
			"recipients (to) are for email channels"},
		"notify plaintext remote": {"notifications:\n  channels:\n    - name: m\n      email: {address: 'smtp.example.com:25', from: w@example.com, allowPlaintext: true}\n  routes: [{events: [waiting], channels: [m], to: {mustAct: true}}]\n",
			"c.yaml:6:84: allowPlaintext sends mail (and any password) in the clear: only a server on loopback"},
		"notify password without user": {"notifications:\n  channels: [{name: m, email: {address: 'h:25', from: w@example.com, passwordEnv: P}}]\n  routes: [{events: [waiting], channels: [m], to: {mustAct: true}}]\n",
			"AUTH needs username and passwordEnv or passwordFile"},
		"notify bad from": {"notifications:\n  channels: [{name: m, email: {address: 'h:25', from: writ}}]\n  routes: [{events: [waiting], channels: [m], to: {mustAct: true}}]\n",
			"email.from"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("c.yaml", []byte(head+tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
}

// The notifications section: channels and routes, and the shorthand of
// earlier versions as a "default" webhook channel.
func TestNotifications(t *testing.T) {
	t.Parallel()
	c, err := Load("../../testdata/config/writ.yaml")
	if err != nil {
		t.Fatal(err)
	}
	chans, routes := c.Notifications.Normalized(nil)
	if len(chans) != 3 || chans[2].Kind() != "email" || chans[2].Email.Address != "smtp.example.com:587" || len(routes) != 3 || !routes[0].To.MustAct {
		t.Fatalf("channels %+v routes %+v", chans, routes)
	}
	c, err = Parse("c.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\nnotifications: {urlEnv: HOOK, secretEnv: SECRET}\n"))
	if err != nil {
		t.Fatal(err)
	}
	chans, routes = c.Notifications.Normalized([]string{"execution.failed"})
	if len(chans) != 1 || chans[0].Name != "default" || chans[0].Webhook.URLEnv != "HOOK" || chans[0].Webhook.SecretEnv != "SECRET" ||
		len(routes) != 1 || routes[0].Events[0] != "execution.failed" || routes[0].Channels[0] != "default" {
		t.Fatalf("shorthand: %+v %+v", chans, routes)
	}
	if _, err := Parse("c.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\nnotifications:\n  channels: [{name: m, email: {address: '127.0.0.1:25', from: w@example.com, allowPlaintext: true}}]\n  routes: [{events: [drift, breakglass.lapsed], channels: [m], to: {people: [dave]}}]\n")); err != nil {
		t.Fatalf("plaintext to a loopback relay: %v", err)
	}
}

func TestCustomActionsJoinTheCatalog(t *testing.T) {
	t.Parallel()
	c, err := Parse("c.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\nactions:\n  page_oncall: {targets: any}\nbackends:\n  - name: pager\n    type: webhook\n    actions: [page_oncall]\n    settings: {url: https://pager.example/hook}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Catalog()["page_oncall"] != "any" {
		t.Fatalf("catalog %v", c.Catalog())
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "token")
	if err := os.WriteFile(f, []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ResolveSecret(func(string) string { return "" }, "", f)
	if err != nil || s.Value() != "tok-from-file" {
		t.Fatalf("file secret %v", err)
	}
	e, err := ResolveSecret(func(k string) string { return map[string]string{"TOK": "tok-from-env"}[k] }, "TOK", "")
	if err != nil || e.Value() != "tok-from-env" {
		t.Fatalf("env secret %v", err)
	}
	var sb strings.Builder
	log := slog.New(slog.NewJSONHandler(&sb, nil))
	log.Info("x", "secret", s, "env", e)
	printed := fmt.Sprintf("%v %+v %#v %s", s, e, s, e) + sb.String()
	if strings.Contains(printed, "tok-from") {
		t.Fatalf("secret printed: %s", printed)
	}
	if _, err := ResolveSecret(func(string) string { return "" }, "MISSING", ""); err == nil || !strings.Contains(err.Error(), "MISSING") {
		t.Fatalf("missing env: %v", err)
	}
}
