package diag_test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/diag/sariftest"
)

// TestSARIFPathsAndColumns: files with a space, #, %, ü and a colon in
// their names, given relative to the working directory (inside and above
// it) or absolute, are written as percent-encoded references relative to
// %SRCROOT% that resolve to the files; a file outside the root as an
// absolute file URI without a base; the run says its columns count code
// points; the log matches the SARIF 2.1.0 schema.
func TestSARIFPathsAndColumns(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	outside := t.TempDir()
	if r, err := filepath.EvalSymlinks(outside); err == nil {
		outside = r
	}
	wd := filepath.Join(root, "playbooks")
	names := []string{"a b.yaml", "c#d.yaml", "100%.yaml", "grüße.yaml", "x:y.yaml", "sub dir/e?f.yaml"}
	var ps diag.Problems
	want := map[string]string{} // uri -> path relative to root
	for i, n := range names {
		full := filepath.Join(wd, n)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("x: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		shown := n // relative to the working directory
		if i%2 == 1 {
			shown = full // absolute
		}
		ps = append(ps, diag.Errorf(shown, diag.Position{Line: i + 1, Col: 7}, "schema", "problem %d", i))
		want[n] = filepath.ToSlash(filepath.Join("playbooks", n))
	}
	// Above the working directory, and outside the root.
	if err := os.WriteFile(filepath.Join(root, "top #1.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ps = append(ps, diag.Errorf("../top #1.yaml", diag.Position{Line: 1, Col: 1}, "schema", "above"))
	// A colon in the first segment would read as a scheme.
	ps = append(ps, diag.Errorf("../k:v.yaml", diag.Position{Line: 1, Col: 1}, "schema", "colon"))
	out := filepath.Join(outside, "far ü%.yaml")
	ps = append(ps, diag.Errorf(out, diag.Position{Line: 2, Col: 3}, "schema", "outside"))

	var buf bytes.Buffer
	if err := diag.WriteSARIF(&buf, diag.SARIFOptions{Version: "test", SrcRoot: root, WorkDir: wd}, ps); err != nil {
		t.Fatal(err)
	}
	log := sariftest.Check(t, buf.Bytes())
	run := log.Runs[0]
	if run.ColumnKind != "unicodeCodePoints" {
		t.Errorf("columnKind %q", run.ColumnKind)
	}
	base, err := url.Parse(run.OriginalURIBaseIDs[diag.SrcRootID].URI)
	if err != nil || base.Scheme != "file" || base.Path != root+"/" {
		t.Fatalf("originalUriBaseIds: %+v (root %s)", run.OriginalURIBaseIDs, root)
	}
	if len(run.Results) != len(ps) {
		t.Fatalf("%d results for %d problems", len(run.Results), len(ps))
	}
	got := map[string]bool{}
	for _, r := range run.Results {
		loc := r.Locations[0].PhysicalLocation
		a := loc.ArtifactLocation
		u, err := url.Parse(a.URI)
		if err != nil {
			t.Fatal(err)
		}
		switch r.Message.Text {
		case "outside":
			if a.URIBaseID != "" || u.Scheme != "file" || u.Path != out {
				t.Errorf("outside the root: %+v, want file://%s", a, out)
			}
			if loc.Region.StartLine != 2 || loc.Region.StartColumn != 3 {
				t.Errorf("region %+v", loc.Region)
			}
			continue
		case "above":
			if a.URIBaseID != diag.SrcRootID || a.URI != "top%20%231.yaml" {
				t.Errorf("above the working directory: %+v", a)
			}
			continue
		case "colon":
			if a.URIBaseID != diag.SrcRootID || a.URI != "./k:v.yaml" {
				t.Errorf("colon in the first segment: %+v", a)
			}
			continue
		}
		if a.URIBaseID != diag.SrcRootID {
			t.Errorf("%q: uriBaseId %q", a.URI, a.URIBaseID)
		}
		// Resolved against the base, it names the file.
		abs := base.ResolveReference(u)
		if _, err := os.Stat(abs.Path); err != nil {
			t.Errorf("%q resolves to %q: %v", a.URI, abs.Path, err)
		}
		rel := strings.TrimPrefix(abs.Path, root+"/")
		got[rel] = true
		var i int
		if _, err := fmt.Sscanf(r.Message.Text, "problem %d", &i); err != nil {
			t.Fatal(err)
		}
		if rel != want[names[i]] || loc.Region.StartLine != i+1 || loc.Region.StartColumn != 7 {
			t.Errorf("result %q: %s at %+v, want %s", r.Message.Text, rel, loc.Region, want[names[i]])
		}
	}
	if len(got) != len(names) {
		t.Errorf("files named: %v", got)
	}
	for _, enc := range []string{"playbooks/a%20b.yaml", "playbooks/c%23d.yaml", "playbooks/100%25.yaml", "playbooks/gr%C3%BC%C3%9Fe.yaml", "playbooks/x:y.yaml", "playbooks/sub%20dir/e%3Ff.yaml"} {
		if !strings.Contains(buf.String(), `"uri": "`+enc+`"`) {
			t.Errorf("no uri %q in\n%s", enc, buf.String())
		}
	}
}

// TestSARIFResultLimit: GitHub code scanning rejects a run of more than
// 25,000 results; writ writes that many at most (here a limit of 10),
// errors first, and says how many it left out.
func TestSARIFResultLimit(t *testing.T) {
	t.Parallel()
	var ps diag.Problems
	for i := range 13 {
		p := diag.Errorf(fmt.Sprintf("f%02d.yaml", i), diag.Position{Line: 1, Col: 1}, "schema", "p")
		if i < 5 {
			p.Severity = diag.Warning
		}
		ps = append(ps, p)
	}
	var buf bytes.Buffer
	if err := diag.WriteSARIF(&buf, diag.SARIFOptions{SrcRoot: "/repo", WorkDir: "/repo", MaxResults: 10}, ps); err != nil {
		t.Fatal(err)
	}
	log := sariftest.Check(t, buf.Bytes())
	run := log.Runs[0]
	if len(run.Results) != 10 {
		t.Fatalf("%d results", len(run.Results))
	}
	warnings := 0
	for _, r := range run.Results {
		if r.Level == "warning" {
			warnings++
		}
	}
	if warnings != 2 || len(run.Invocations) != 1 || !strings.Contains(run.Invocations[0].ToolExecutionNotifications[0].Message.Text, "3 of 13 problems are left out: GitHub code scanning accepts at most 10") {
		t.Fatalf("warnings %d, invocations %+v", warnings, run.Invocations)
	}
}

// TestStrictURI: the check itself refuses what a lenient parser accepts.
func TestStrictURI(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"a b.yaml", "c#d.yaml", "100%.yaml", "grüße.yaml", "e?f", "x:y.yaml", "%zz"} {
		if sariftest.StrictURI(bad) == nil {
			t.Errorf("%q passed", bad)
		}
	}
	for _, good := range []string{"a%20b.yaml", "file:///tmp/x%23.yaml", "./x:y.yaml", "p/q.yaml"} {
		if err := sariftest.StrictURI(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}
