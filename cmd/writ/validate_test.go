package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/diag/sariftest"
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

// TestValidateSARIFOddNames runs writ validate --format sarif in a git
// repository whose playbooks have a space, #, % and non-ASCII letters in
// their names: from the root, from a subdirectory (relative and absolute
// arguments) and from outside the repository. Every log matches the SARIF
// 2.1.0 schema; files are percent-encoded references relative to
// %SRCROOT%, the work tree's root, whatever the current directory (or
// absolute file URIs from outside it); columns count code points (the
// second target sits after an emoji: column 18, where UTF-16 would say 19
// and bytes 21). Not parallel: it changes the working directory.
func TestValidateSARIFOddNames(t *testing.T) {
	repo := t.TempDir()
	if r, err := filepath.EvalSymlinks(repo); err == nil {
		repo = r
	}
	if out, err := exec.Command("git", "init", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	files := map[string]string{ // name -> its URI relative to %SRCROOT%
		"a b.yaml":   "playbooks/a%20b.yaml",
		"c#d.yaml":   "playbooks/c%23d.yaml",
		"100%.yaml":  "playbooks/100%25.yaml",
		"grüße.yaml": "playbooks/gr%C3%BC%C3%9Fe.yaml",
	}
	i := 0
	for name := range files {
		i++
		pb := fmt.Sprintf("apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: odd-%d\nspec:\n  action: block_ip\n"+
			"  targets: [\"😀\", \"203.0.113.300\"]\n  justification: test\n  severity: high\n  environment: production\n", i)
		writeFile(t, filepath.Join(repo, "playbooks", name), pb)
	}
	abs := func(name string) string { return filepath.Join(repo, "playbooks", name) }

	type want struct{ uri, base string }
	check := func(t *testing.T, dir, root string, args []string, expect map[string]want) {
		t.Chdir(dir)
		code, out, errOut := runCLI(t, append([]string{"validate", "--format", "sarif"}, args...)...)
		if code != exitFailure {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		log := sariftest.Check(t, []byte(out))
		run := log.Runs[0]
		if run.ColumnKind != "unicodeCodePoints" {
			t.Errorf("columnKind %q", run.ColumnKind)
		}
		if got, want := run.OriginalURIBaseIDs["%SRCROOT%"].URI, (&url.URL{Scheme: "file", Path: root + "/"}).String(); got != want {
			t.Errorf("%%SRCROOT%% is %q, want %q", got, want)
		}
		seen := map[string]int{}
		for _, r := range run.Results {
			loc := r.Locations[0].PhysicalLocation
			a := loc.ArtifactLocation
			seen[a.URI]++
			if loc.Region.StartLine != 7 || (loc.Region.StartColumn != 13 && loc.Region.StartColumn != 18) {
				t.Errorf("%s: region %+v", a.URI, loc.Region)
			}
			if strings.Contains(r.Message.Text, "203.0.113.300") && loc.Region.StartColumn != 18 {
				t.Errorf("%s: the second target at column %d, want 18 (code points)", a.URI, loc.Region.StartColumn)
			}
			ok := false
			for _, w := range expect {
				if a.URI == w.uri && a.URIBaseID == w.base {
					ok = true
				}
			}
			if !ok {
				t.Errorf("unexpected location %+v", a)
			}
		}
		for _, w := range expect {
			if seen[w.uri] != 2 {
				t.Errorf("%s: %d results, want 2", w.uri, seen[w.uri])
			}
		}
	}
	all := map[string]want{}
	for name, uri := range files {
		all[name] = want{uri, "%SRCROOT%"}
	}
	t.Run("root", func(t *testing.T) { check(t, repo, repo, []string{"."}, all) })
	t.Run("subdirectory", func(t *testing.T) {
		check(t, filepath.Join(repo, "playbooks"), repo, []string{"a b.yaml", "c#d.yaml", abs("100%.yaml"), abs("grüße.yaml")}, all)
	})
	t.Run("absolute root from a subdirectory", func(t *testing.T) {
		check(t, filepath.Join(repo, "playbooks"), repo, []string{repo}, all)
	})
	t.Run("outside the repository", func(t *testing.T) {
		outside := t.TempDir()
		if r, err := filepath.EvalSymlinks(outside); err == nil {
			outside = r
		}
		ext := map[string]want{}
		for name := range files {
			ext[name] = want{(&url.URL{Scheme: "file", Path: abs(name)}).String(), ""}
		}
		check(t, outside, outside, []string{repo}, ext)
	})
}
