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
