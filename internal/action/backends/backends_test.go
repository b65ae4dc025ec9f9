package backends

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/config"
)

const head = "apiVersion: writ/v1\nkind: ServerConfig\nbackends:\n  - name: b\n"

func parse(t *testing.T, body string) *config.Config {
	t.Helper()
	c, err := config.Parse("w.yaml", []byte(head+body))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

// Every registered type has a name, a strict schema that compiles, and a
// constructor: what docs/backends.md's recipe asks of a new backend.
func TestRegisteredTypes(t *testing.T) {
	t.Parallel()
	if got := strings.Join(Names(), ","); got != "blocklist,nftables,scim,webhook" {
		t.Fatalf("types %s", got)
	}
	for _, ty := range Types() {
		if ty.Name == "" || ty.Summary == "" || ty.New == nil {
			t.Errorf("type %q is incomplete", ty.Name)
		}
		if _, err := Schema(ty); err != nil {
			t.Errorf("%s: %v", ty.Name, err)
		}
		var doc map[string]any
		if err := json.Unmarshal(ty.Schema, &doc); err != nil || doc["additionalProperties"] != false {
			t.Errorf("%s: the settings schema must refuse unknown keys (additionalProperties: false): %v", ty.Name, err)
		}
	}
}

// Settings problems are located in writ.yaml, named as settings of the
// backend, by the type's own schema.
func TestSettingsProblemsAreLocated(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ body, want string }{
		"scim unknown key":      {"    type: scim\n    actions: [suspend_user]\n    settings: {url: https://idp.example/scim/v2, tokne: X}\n", `w.yaml:7:50: unknown field "tokne" in backends[0].settings`},
		"scim no url":           {"    type: scim\n    actions: [suspend_user]\n    settings: {tokenEnv: TOKEN}\n", `w.yaml:7:15: missing required field "url" in backends[0].settings`},
		"scim bad url":          {"    type: scim\n    actions: [suspend_user]\n    settings: {url: idp.example}\n", `w.yaml:7:21: backends[0].settings.url: "idp.example" is not an http(s) URL`},
		"scim bad match":        {"    type: scim\n    actions: [suspend_user]\n    settings: {url: https://i.example, match: phone}\n", "backends[0].settings.match: \"phone\" is not one of"},
		"scim oauth":            {"    type: scim\n    actions: [suspend_user]\n    settings:\n      url: https://i.example\n      oauth: {clientId: w}\n", `w.yaml:9:14: missing required field "tokenURL" in backends[0].settings.oauth`},
		"webhook retries":       {"    type: webhook\n    actions: [isolate_host]\n    settings: {url: https://e.example, retries: 99}\n", "w.yaml:7:49: backends[0].settings.retries: maximum: got 99, want 10"},
		"webhook retries type":  {"    type: webhook\n    actions: [isolate_host]\n    settings: {url: https://e.example, retries: \"3\"}\n", "w.yaml:7:49: backends[0].settings.retries: wrong type: expected a number, got a string"},
		"webhook secretEnv":     {"    type: webhook\n    actions: [isolate_host]\n    settings: {url: https://e.example, secretEnv: lower}\n", `backends[0].settings.secretEnv: "lower" is not an environment variable name`},
		"webhook timeout":       {"    type: webhook\n    actions: [isolate_host]\n    settings: {url: https://e.example, timeout: soon}\n", "backends[0].settings.timeout"},
		"webhook no settings":   {"    type: webhook\n    actions: [isolate_host]\n", `w.yaml:4:5: missing required field "url" in backends[0].settings`},
		"nftables key":          {"    type: nftables\n    actions: [block_ip]\n    settings: {tabel: x}\n", `w.yaml:7:16: unknown field "tabel" in backends[0].settings`},
		"nftables table type":   {"    type: nftables\n    actions: [block_ip]\n    settings:\n      table: [a, b]\n", "w.yaml:8:14: backends[0].settings.table: wrong type: expected a string, got a list"},
		"blocklist no path":     {"    type: blocklist\n    actions: [block_ip]\n", `missing required field "path" in backends[0].settings`},
		"blocklist relative":    {"    type: blocklist\n    actions: [block_ip]\n    settings: {path: rel.txt}\n", `w.yaml:7:22: backends[0].settings.path: "rel.txt" must be an absolute path`},
		"blocklist format":      {"    type: blocklist\n    actions: [block_ip]\n    settings:\n      path: /x\n      format: csv\n", "w.yaml:9:15: backends[0].settings.format: \"csv\" is not one of plain, nginx, ipset"},
		"old form unknown key":  {"    type: blocklist\n    actions: [block_ip]\n    blocklist: {path: /x, jornal: /y}\n", `w.yaml:7:27: unknown field "jornal" in backends[0].blocklist`},
		"old form wrong type":   {"    type: blocklist\n    actions: [block_ip]\n    blocklist: {path: 7}\n", "w.yaml:7:23: backends[0].blocklist.path: wrong type: expected a string, got a number"},
		"action not served":     {"    type: scim\n    actions: [block_ip]\n    settings: {url: https://i.example}\n", "w.yaml:6:15: a scim backend cannot serve block_ip (it serves suspend_user)"},
		"unknown type":          {"    type: pagerduty\n    actions: [block_ip]\n", `w.yaml:5:11: backend "b": type "pagerduty" is not a backend type of this build (blocklist, nftables, scim, webhook)`},
		"unknown type settings": {"    type: firewall\n    actions: [block_ip]\n    settings: {x: 1}\n", "(blocklist, nftables, scim, webhook)"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := parse(t, tc.body)
			problems := Check(c)
			if !strings.Contains(problems.Error(), tc.want) {
				t.Fatalf("problems:\n%v\nwant %q", problems, tc.want)
			}
			// Build refuses the same configuration, with the same problems.
			_, err := Build(context.Background(), c, action.Deps{DataDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("build: %v", err)
			}
		})
	}
}

// What only the backend can check (secrets, lengths) names the backend,
// and never shows a secret.
func TestBuildErrorsNameTheBackend(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SHORT": "short", "TOKEN": "t0k3n-value-long-enough"}
	getenv := func(k string) string { return env[k] }
	for name, tc := range map[string]struct{ body, want string }{
		"unset secret":   {"    type: webhook\n    actions: [isolate_host]\n    settings: {url: https://e.example, secretEnv: MISSING}\n", "environment variable MISSING is empty or unset"},
		"short secret":   {"    type: webhook\n    actions: [isolate_host]\n    settings: {url: https://e.example, secretEnv: SHORT}\n", "at least 16 bytes"},
		"no scim auth":   {"    type: scim\n    actions: [suspend_user]\n    settings: {url: https://i.example}\n", "bearer token (tokenEnv or tokenFile) or OAuth"},
		"http":           {"    type: scim\n    actions: [suspend_user]\n    settings: {url: http://i.example, tokenEnv: TOKEN}\n", "allowInsecureHTTP"},
		"both secrets":   {"    type: scim\n    actions: [suspend_user]\n    settings: {url: https://i.example, tokenEnv: TOKEN, tokenFile: /run/t}\n", "not both"},
		"missing secret": {"    type: webhook\n    actions: [isolate_host]\n    settings: {url: https://e.example, secretFile: /nonexistent/secret}\n", "read secret file"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := parse(t, tc.body)
			_, err := Build(context.Background(), c, action.Deps{Getenv: getenv, DataDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "backend b:") {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "t0k3n-value") {
				t.Fatal("a secret is in the error")
			}
		})
	}
	// A working one, with allowInsecureHTTP for a sidecar on loopback.
	c := parse(t, "    type: scim\n    actions: [suspend_user]\n    settings: {url: http://127.0.0.1:9/scim/v2, tokenEnv: TOKEN, allowInsecureHTTP: true, retries: 0, maxRetryWait: 1m}\n")
	reg, err := Build(context.Background(), c, action.Deps{Getenv: getenv, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := reg.Lookup("suspend_user", "production"); err != nil || b.Name() != "scim:b" {
		t.Fatalf("lookup: %v %v", b, err)
	}
}

// The blocklist section of earlier versions still builds the same backend
// as settings, with a deprecation warning at its key.
func TestDeprecatedBlocklistSection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	apply := func(body string) (string, string, *config.Config) {
		t.Helper()
		c := parse(t, body)
		reg, err := Build(context.Background(), c, action.Deps{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		b, err := reg.Lookup("block_ip", "staging")
		if err != nil {
			t.Fatal(err)
		}
		bl, ok := b.(*blocklist.Backend)
		if !ok {
			t.Fatalf("%T is not a blocklist", b)
		}
		req := action.Request{Playbook: "p", Digest: "d", Action: "block_ip", Environment: "staging", Operation: action.Apply, Targets: []string{"192.0.2.1", "198.51.100.0/24"}}
		if _, err := bl.Apply(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(bl.Path())
		if err != nil {
			t.Fatal(err)
		}
		return b.Name(), string(data), c
	}
	oldName, oldFile, old := apply("    type: blocklist\n    actions: [block_ip]\n    blocklist: {path: " + filepath.Join(dir, "old.conf") + ", format: nginx}\n")
	newName, newFile, cur := apply("    type: blocklist\n    actions: [block_ip]\n    settings: {path: " + filepath.Join(dir, "new.conf") + ", format: nginx}\n")
	if oldName != newName || oldFile != newFile || !strings.Contains(oldFile, "deny 192.0.2.1;") {
		t.Fatalf("the old form built %s writing %q; settings %s writing %q", oldName, oldFile, newName, newFile)
	}
	if len(cur.Warnings) != 0 {
		t.Fatalf("settings warned: %v", cur.Warnings)
	}
	if len(old.Warnings) != 1 || old.Warnings.HasErrors() ||
		!strings.Contains(old.Warnings.Error(), "w.yaml:7:5: backends[0].blocklist: the blocklist section is deprecated: write the same keys under settings") {
		t.Fatalf("warnings: %v", old.Warnings)
	}
}

// With no backend for block_ip, each environment gets its blocklist file
// in DATA_DIR/blocklist; an environment that is not a name gets none.
func TestDefaultBlocklist(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	reg, err := Build(context.Background(), config.Default(), action.Deps{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Lookup("block_ip", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if bl := b.(*blocklist.Backend); bl.Path() != filepath.Join(dataDir, "blocklist", "staging.txt") || b.Name() != "blocklist:staging" {
		t.Fatalf("default %s at %s", b.Name(), bl.Path())
	}
	if _, err := reg.Lookup("block_ip", "../etc"); err == nil {
		t.Fatal("an environment that is not a name got a file")
	}
	// A configured block_ip backend replaces the default everywhere.
	c := parse(t, "    type: nftables\n    actions: [block_ip]\n    environments: [production]\n")
	reg, err = Build(context.Background(), c, action.Deps{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Lookup("block_ip", "staging"); err == nil {
		t.Fatal("the default applies beside a configured block_ip backend")
	}
	if b, err := reg.Lookup("block_ip", "production"); err != nil || b.Name() != "nftables:b" {
		t.Fatalf("production: %v %v", b, err)
	}
}

// Team-defined actions reach the webhook backend: their target kind and
// revert command.
func TestTeamDefinedActions(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("w.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\nactions:\n  page_oncall: {targets: identity, revertWith: unpage_oncall}\n"+
		"backends:\n  - name: pager\n    type: webhook\n    actions: [page_oncall]\n    settings: {url: https://pager.example/hook, secretEnv: S}\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Build(context.Background(), c, action.Deps{Getenv: func(string) string { return "a secret of at least 16 bytes" }})
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Lookup("page_oncall", "production")
	if err != nil {
		t.Fatal(err)
	}
	req := action.Request{Playbook: "p", Action: "page_oncall", Environment: "production", Operation: action.Apply, Targets: []string{"not an identity!"}}
	if err := b.Validate(req); err == nil {
		t.Fatal("a target of the wrong kind for a team-defined action was accepted")
	}
	req.Targets = []string{"oncall@example.com"}
	if err := b.Validate(req); err != nil {
		t.Fatalf("an identity target: %v", err)
	}
}

// docs/backends.md documents every setting of every registered type.
func TestSettingsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../../docs/backends.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, ty := range Types() {
		var schema struct {
			Properties map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(ty.Schema, &schema); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "type: "+ty.Name) {
			t.Errorf("docs/backends.md has no example of type %s", ty.Name)
		}
		for key := range schema.Properties {
			if !strings.Contains(string(doc), "| `"+key+"`") && !strings.Contains(string(doc), "`, `"+key+"` |") {
				t.Errorf("docs/backends.md has no settings row for %s's %q", ty.Name, key)
			}
		}
	}
}
