package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func TestPolicyTestDefaults(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, "policy", "test", "--coverage", "--threshold", "90", "../../policies")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	m := regexp.MustCompile(`(?m)^(\d+) passed, 0 failed$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in %q", out)
	}
	c := regexp.MustCompile(`(?m)^coverage +([0-9.]+)%  \(\d+ of \d+ lines\)$`).FindStringSubmatch(out)
	if c == nil {
		t.Fatalf("no coverage in %q", out)
	}
	if pct, _ := strconv.ParseFloat(c[1], 64); pct < 90 {
		t.Fatalf("coverage %s%%", c[1])
	}
	if strings.Contains(out, "_test.rego") {
		t.Fatalf("coverage lists test files:\n%s", out)
	}
}

func TestPolicyTestFailures(t *testing.T) {
	t.Parallel()
	dir := "../../testdata/policy/failing-tests"
	code, out, _ := runCLI(t, "policy", "test", dir)
	if code != exitFailure {
		t.Fatalf("exit %d\n%s", code, out)
	}
	want := []string{
		dir + "/decision_test.rego:12: data.writ_test.test_wrong_expectation: FAIL",
		dir + "/decision_test.rego:17: data.writ_test.test_builtin_error: ERROR: " + dir + "/decision_test.rego:18: eval_builtin_error: to_number",
		"2 passed, 2 failed, 1 skipped",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 {
		t.Errorf("want one line per failure and a summary, got:\n%s", out)
	}

	// Passing tests, coverage under the threshold: exit 1.
	code, out, errOut := runCLI(t, "policy", "test", "--run", "allowed|denied", "--threshold", "95", dir)
	if code != exitFailure || !strings.Contains(out, "2 passed, 0 failed") || !strings.Contains(errOut, "coverage 66.7% is below the threshold of 95%") {
		t.Fatalf("threshold: %d\n%s%s", code, out, errOut)
	}

	code, out, _ = runCLI(t, "policy", "test", "--format", "json", "-v", dir)
	var rep struct {
		Passed, Failed, Skipped int
		Results                 []struct {
			Name, File, Outcome string
			Line                int
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFailure {
		t.Fatalf("json: %d %v\n%s", code, err, out)
	}
	if rep.Passed != 2 || rep.Failed != 2 || rep.Skipped != 1 || len(rep.Results) != 5 {
		t.Fatalf("json report %+v", rep)
	}
}

func TestPolicyTestCompileErrorAndUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "decision.rego"), "package writ\n\ndecision := {}\n")
	writeFile(t, filepath.Join(dir, "decision_test.rego"), "package writ_test\n\ntest_x if {\n\tundefined_function(1)\n}\n")
	code, out, _ := runCLI(t, "policy", "test", dir)
	if code != exitFailure || !strings.Contains(out, dir+"/decision_test.rego:4:2: rego_type_error: undefined function undefined_function") {
		t.Fatalf("compile error: %d %q", code, out)
	}
	for _, args := range [][]string{
		{"policy", "test", filepath.Join(dir, "missing")},
		{"policy", "test", "--threshold", "101", dir},
		{"policy", "test", "--format", "xml", dir},
		{"policy", "test", "--run", "(", dir},
		{"policy", "test", dir, dir},
		{"policy"},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// writ validate compiles a repository's policies and reports Rego errors
// path:line:col.
func TestValidatePolicies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "playbooks", "ok.yaml"), playbookYAML("ok", "block_ip", "[203.0.113.7]", "low", "staging"))
	writeFile(t, filepath.Join(dir, "policies", "decision.rego"), "package writ\n\ndecision := {\"deny\": deny}\n\ndeny contains msg if {\n\tmsg := no_such_function(input)\n}\n")
	writeFile(t, filepath.Join(dir, "policies", "data.yaml"), "writ: {limit: 3}\n")
	code, out, _ := runCLI(t, "validate", "--format", "json", dir)
	var rep struct {
		Valid    bool
		Files    int
		Problems []struct {
			Path, Code, Message string
			Line, Col           int
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != exitFailure || rep.Valid || len(rep.Problems) != 1 || rep.Files != 3 {
		t.Fatalf("exit %d, %+v", code, rep)
	}
	p := rep.Problems[0]
	if p.Path != filepath.ToSlash(filepath.Join(dir, "policies", "decision.rego")) || p.Line != 6 || p.Col != 9 || p.Code != "rego-compile" || !strings.Contains(p.Message, "undefined function no_such_function") {
		t.Fatalf("problem %+v", p)
	}
	// Fixed, the root validates.
	writeFile(t, filepath.Join(dir, "policies", "decision.rego"), "package writ\n\ndecision := {\"deny\": set()}\n")
	if code, out, errOut := runCLI(t, "validate", dir); code != exitOK || !strings.Contains(errOut, "3 files valid") {
		t.Fatalf("fixed: %d %s%s", code, out, errOut)
	}
}

// The stock OPA CLI, at the version writ is built with, and writ policy
// test agree on the default policies and on a set with failing tests. It
// runs opa with `go run module@version`: it is skipped only when there is no
// Go toolchain.
func TestPolicyTestAgreesWithStockOPA(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no Go toolchain to run the stock OPA CLI with")
	}
	version := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/open-policy-agent/opa" {
				version = d.Version
			}
		}
	}
	if version == "" {
		t.Fatal("no OPA module in the build info")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"policies", "testdata/policy/failing-tests"} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(goBin, "run", "github.com/open-policy-agent/opa@"+version, "test", "--format", "json", dir)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		// opa exits 2 when a test fails, which go run reports as 1: an
		// exit status is fine, the JSON on stdout says what happened.
		var ee *exec.ExitError
		if err := cmd.Run(); err != nil && !errors.As(err, &ee) {
			t.Fatalf("opa test %s: %v\n%s", dir, err, stderr.String())
		}
		var results []struct {
			Fail  bool
			Skip  bool
			Error json.RawMessage
		}
		if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
			t.Fatalf("opa test %s output: %v\n%s", dir, err, stdout.String())
		}
		var opaPassed, opaFailed, opaSkipped int
		for _, r := range results {
			switch {
			case r.Skip:
				opaSkipped++
			case r.Fail || len(r.Error) > 0 && string(r.Error) != "null":
				opaFailed++
			default:
				opaPassed++
			}
		}
		_, out, _ := runCLI(t, "policy", "test", filepath.Join(root, dir))
		want := strconv.Itoa(opaPassed) + " passed, " + strconv.Itoa(opaFailed) + " failed"
		if opaSkipped > 0 {
			want += ", " + strconv.Itoa(opaSkipped) + " skipped"
		}
		if !strings.Contains(out, want+"\n") {
			t.Errorf("%s: opa test says %q; writ policy test says:\n%s", dir, want, out)
		}
		t.Logf("%s: opa %s and writ: %s", dir, version, want)
		if dir == "policies" && (opaFailed != 0 || opaPassed == 0) {
			t.Errorf("the stock opa test fails on the default policies: %s", want)
		}
	}
}

// A team that enables the shipped example check business_hours keeps every
// shipped policy test passing, whatever the time of day: the decision
// tests decide at a fixed clock within office hours, and the check's own
// tests fix theirs.
func TestShippedPolicyTestsWithBusinessHoursEnabled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	entries, err := os.ReadDir("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("../../policies", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "data.yaml" {
			on := bytes.Replace(b, []byte("    business_hours:\n      enabled: false\n"), []byte("    business_hours:\n      enabled: true\n"), 1)
			if bytes.Equal(on, b) {
				t.Fatal("policies/data.yaml no longer has business_hours.enabled: false where the test expects it")
			}
			b = on
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI(t, "policy", "test", dir)
	if code != exitOK || !regexp.MustCompile(`(?m)^\d+ passed, 0 failed$`).MatchString(out) {
		t.Fatalf("with business_hours enabled: exit %d\n%s%s", code, out, errOut)
	}
}
