package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateExamples(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, "validate", "../../playbooks")
	if code != exitOK || out != "" {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "5 files valid") {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestValidateRepositoryRoot(t *testing.T) {
	t.Parallel()
	// The product repository is itself a content repository: its root
	// validates (playbooks/ only; testdata/ is not walked).
	code, out, errOut := runCLI(t, "validate", "../..")
	if code != exitOK {
		t.Fatalf("code %d\n%s%s", code, out, errOut)
	}
}

// Each invalid file exits 1 with the problem at path:line:col.
func TestValidateInvalidFiles(t *testing.T) {
	t.Parallel()
	dir := "../../testdata/playbooks/invalid"
	for file, want := range map[string]string{
		"unknown-field.yaml":       "unknown-field.yaml:11:3: unknown field \"priority\" in spec",
		"duplicate-key.yaml":       "duplicate-key.yaml:10:3: duplicate key \"severity\"",
		"wrong-type.yaml":          "wrong-type.yaml:7:12: spec.targets: wrong type: expected a list, got a string",
		"invalid-ip.yaml":          "invalid-ip.yaml:9:7: spec.targets[1]: \"203.0.113.300\" is not a valid IP address",
		"invalid-cidr.yaml":        "invalid-cidr.yaml:7:13: spec.targets[0]: \"198.51.100.0/33\" is not a valid CIDR prefix",
		"unknown-action.yaml":      "unknown-action.yaml:6:11: unknown action \"nuke_host\"",
		"empty-justification.yaml": "empty-justification.yaml:8:18: spec.justification",
		"alias-bomb.yaml":          "alias-bomb.yaml:1:4: anchors (&a) are not allowed",
		"non-utf8.yaml":            "non-utf8.yaml:8:21: invalid UTF-8",
		"empty.yaml":               "empty.yaml:1:1: file is empty",
		"list.yaml":                "list.yaml:1:1: a playbook is a mapping",
	} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			code, out, _ := runCLI(t, "validate", filepath.Join(dir, file))
			if code != exitFailure {
				t.Fatalf("exit %d; want 1", code)
			}
			if !strings.Contains(out, want) {
				t.Fatalf("stdout %q\nwant %q", out, want)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if !strings.HasPrefix(line, filepath.Join(dir, file)+":") {
					t.Fatalf("line without path:line:col prefix: %q", line)
				}
			}
		})
	}
}

func TestValidateBigFileAndDuplicateNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", 10<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "validate", big)
	if code != exitFailure || !strings.Contains(out, "big.yaml:1:1: file is 10.0 MiB; the limit is 1 MiB") {
		t.Fatalf("big: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "validate", "../../testdata/playbooks/duplicate-name")
	if code != exitFailure || !strings.Contains(out, "second.yaml:4:9: metadata.name \"block-twice\" is already used by ../../testdata/playbooks/duplicate-name/first.yaml:4:9") {
		t.Fatalf("duplicate: %d %q", code, out)
	}
	// Names are unique across all paths on the command line, too.
	code, out, _ = runCLI(t, "validate", "../../testdata/playbooks/duplicate-name/first.yaml", "../../testdata/playbooks/duplicate-name/second.yaml")
	if code != exitFailure || !strings.Contains(out, "already used by") {
		t.Fatalf("duplicate across args: %d %q", code, out)
	}
}

func TestValidateFormats(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "validate", "--format", "json", "../../testdata/playbooks/invalid/invalid-ip.yaml")
	if code != exitFailure {
		t.Fatalf("json exit %d", code)
	}
	var rep struct {
		Valid    bool
		Files    int
		Problems []struct {
			Path, Message, Code string
			Line, Col           int
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if rep.Valid || rep.Files != 1 || len(rep.Problems) != 1 || rep.Problems[0].Line != 9 || rep.Problems[0].Col != 7 || rep.Problems[0].Code != "invalid-target" {
		t.Fatalf("json report %+v", rep)
	}

	code, out, _ = runCLI(t, "validate", "--format", "sarif", "../../testdata/playbooks/invalid/unknown-field.yaml")
	if code != exitFailure {
		t.Fatalf("sarif exit %d", code)
	}
	var sarif struct {
		Version string
		Runs    []struct {
			Tool    struct{ Driver struct{ Name string } }
			Results []struct {
				RuleID    string
				Level     string
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine, StartColumn int }
					}
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &sarif); err != nil {
		t.Fatalf("sarif output: %v", err)
	}
	r := sarif.Runs[0].Results[0]
	loc := r.Locations[0].PhysicalLocation
	if sarif.Version != "2.1.0" || sarif.Runs[0].Tool.Driver.Name != "writ" || r.RuleID != "schema" || r.Level != "error" ||
		loc.Region.StartLine != 11 || loc.Region.StartColumn != 3 || !strings.HasSuffix(loc.ArtifactLocation.URI, "unknown-field.yaml") {
		t.Fatalf("sarif %+v", sarif)
	}

	code, out, _ = runCLI(t, "validate", "--format", "json", "../../playbooks")
	if code != exitOK || !strings.Contains(out, `"valid": true`) || !strings.Contains(out, `"problems": []`) {
		t.Fatalf("valid json: %d %s", code, out)
	}
}

func TestValidateUsageErrors(t *testing.T) {
	t.Parallel()
	if code, _, errOut := runCLI(t, "validate", "--format", "xml", "."); code != exitUsage || !strings.Contains(errOut, "--format") {
		t.Fatalf("bad format: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "validate", "no/such/path"); code != exitUsage || !strings.Contains(errOut, "no/such/path") {
		t.Fatalf("missing path: %d %q", code, errOut)
	}
}

func TestValidateApproversFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".writ"), 0o755); err != nil {
		t.Fatal(err)
	}
	bad := "apiVersion: writ/v1\nkind: Approvers\npeople:\n  - id: alice\n    roles: [approver, wizard]\n    keys: [not-a-key]\n"
	if err := os.WriteFile(filepath.Join(dir, ".writ/approvers.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "validate", dir)
	if code != exitFailure || !strings.Contains(out, ".writ/approvers.yaml:5:23:") || !strings.Contains(out, ".writ/approvers.yaml:6:12:") {
		t.Fatalf("approvers: %d\n%s", code, out)
	}
}

func TestValidatePolicyDirectory(t *testing.T) {
	t.Parallel()
	// policies/ on its own compiles; its data.yaml is not read as a playbook.
	code, out, errOut := runCLI(t, "validate", "../../policies")
	if code != exitOK || out != "" {
		t.Fatalf("validate policies: %d\n%s%s", code, out, errOut)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "bad.rego"), []byte("package writ\n\ndeny contains msg if {\n  msg := \n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "validate", filepath.Join(dir, "policies"))
	if code != exitFailure || !strings.Contains(out, "policies/bad.rego:") {
		t.Fatalf("broken policy: %d %q", code, out)
	}
}
