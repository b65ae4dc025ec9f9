package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, "config", "check")
	if code != exitOK || !strings.Contains(out, "the embedded defaults: ok") || !strings.Contains(out, "block_ip") {
		t.Fatalf("defaults: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "config", "check", "../../testdata/config/writ.yaml")
	if code != exitFailure || !strings.Contains(out, "problems") {
		// The example names secrets by environment variable; none is set here.
		t.Fatalf("example without its secrets: %d\n%s", code, out)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "writ.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: writ/v1\nkind: ServerConfig\nlisten: x\nrepository: {url: /x, pollInterval: soon}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "config", "check", bad)
	if code != exitFailure || !strings.Contains(out, "writ.yaml:4:") {
		t.Fatalf("bad file: %d\n%s", code, out)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("apiVersion: writ/v1\nkind: ServerConfig\nrepository: {url: /srv/content, passwordEnv: WRIT_TEST_TOKEN}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLIEnv(t, map[string]string{"WRIT_TEST_TOKEN": "tok-secret-value"}, "config", "check", good)
	if code != exitOK || strings.Contains(out, "tok-secret-value") || !strings.Contains(out, "suspend_user") {
		t.Fatalf("good file: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "config", "check", good)
	if code != exitFailure || !strings.Contains(out, "WRIT_TEST_TOKEN") {
		t.Fatalf("missing secret: %d\n%s", code, out)
	}
	siem := filepath.Join(dir, "siem.yaml")
	if err := os.WriteFile(siem, []byte("apiVersion: writ/v1\nkind: ServerConfig\naudit:\n  siem:\n    - {name: soc, webhook: {url: 'https://siem.example.com/x', secretEnv: WRIT_TEST_SIEM}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ = runCLI(t, "config", "check", siem); code != exitFailure || !strings.Contains(out, "audit.siem soc secret: environment variable WRIT_TEST_SIEM") {
		t.Fatalf("SIEM webhook without its secret: %d\n%s", code, out)
	}
	if code, out, _ = runCLIEnv(t, map[string]string{"WRIT_TEST_SIEM": "siem-secret-value"}, "config", "check", siem); code != exitOK || strings.Contains(out, "siem-secret-value") {
		t.Fatalf("SIEM webhook with its secret: %d\n%s", code, out)
	}
	gitlab := filepath.Join(dir, "gitlab.yaml")
	if err := os.WriteFile(gitlab, []byte("apiVersion: writ/v1\nkind: ServerConfig\ngitlab: {project: secops/content, tokenEnv: WRIT_TEST_GL_TOKEN, webhookSecretEnv: WRIT_TEST_GL_HOOK}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ = runCLIEnv(t, map[string]string{"WRIT_TEST_GL_TOKEN": "glpat-secret-value"}, "config", "check", gitlab); code != exitFailure ||
		!strings.Contains(out, "gitlab webhook secret") || strings.Contains(out, "glpat-secret-value") {
		t.Fatalf("GitLab without its webhook secret: %d\n%s", code, out)
	}
	if code, out, _ = runCLIEnv(t, map[string]string{"WRIT_TEST_GL_TOKEN": "glpat-secret-value", "WRIT_TEST_GL_HOOK": "hook-secret-value"}, "config", "check", gitlab); code != exitOK ||
		strings.Contains(out, "glpat-secret-value") || strings.Contains(out, "hook-secret-value") {
		t.Fatalf("GitLab with its secrets: %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "config", "check", filepath.Join(dir, "none.yaml")); code != exitUsage {
		t.Fatalf("missing file: %d", code)
	}
}

// writ config check locates backend settings problems (checked against
// each type's schema) and warns about the deprecated blocklist section,
// which still builds its backend.
func TestConfigCheckBackendSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, backend string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("apiVersion: writ/v1\nkind: ServerConfig\nbackends:\n  - name: edge\n"+backend), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	list := filepath.Join(dir, "deny.conf")
	old := write("old.yaml", "    type: blocklist\n    actions: [block_ip]\n    blocklist: {path: "+list+", format: nginx}\n")
	code, out, errOut := runCLI(t, "config", "check", old)
	if code != exitOK || !strings.Contains(out, "old.yaml:7:5: warning: backends[0].blocklist: the blocklist section is deprecated: write the same keys under settings") ||
		!strings.Contains(out, "block_ip       production: blocklist:edge, staging: blocklist:edge") {
		t.Fatalf("deprecated form: %d\n%s%s", code, out, errOut)
	}
	cur := write("new.yaml", "    type: blocklist\n    actions: [block_ip]\n    settings: {path: "+list+", format: nginx}\n")
	if code, out, _ := runCLI(t, "config", "check", cur); code != exitOK || strings.Contains(out, "warning") {
		t.Fatalf("settings: %d\n%s", code, out)
	}
	bad := write("bad.yaml", "    type: nftables\n    actions: [block_ip]\n    settings: {tabel: writ}\n")
	if code, out, _ := runCLI(t, "config", "check", bad); code != exitFailure || !strings.Contains(out, `bad.yaml:7:16: unknown field "tabel" in backends[0].settings`) {
		t.Fatalf("unknown setting: %d\n%s", code, out)
	}
	unknown := write("type.yaml", "    type: pagerduty\n    actions: [block_ip]\n")
	if code, out, _ := runCLI(t, "config", "check", unknown); code != exitFailure ||
		!strings.Contains(out, `type.yaml:5:11: backend "edge": type "pagerduty" is not a backend type of this build (blocklist, nftables, scim, webhook)`) {
		t.Fatalf("unknown type: %d\n%s", code, out)
	}
}
