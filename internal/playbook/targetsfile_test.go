package playbook

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

const bulkPlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-feed
spec:
  action: block_ip
  targetsFile: indicators/feed.txt
  justification: C2 addresses from the threat feed
  severity: high
  environment: production
`

func TestParseTargetsFile(t *testing.T) {
	t.Parallel()
	data := "# threat feed, 2026-03-04\r\n" +
		"203.0.113.7\r\n" +
		"\r\n" +
		"  198.51.100.0/24   # the whole range\n" +
		"\t2001:DB8::1\n" +
		"2001:db8::1 # repeats line 5 in another spelling\n" +
		"203.0.113.7\n" +
		"203.0.113.0/24\n" +
		"#203.0.113.9\n" +
		"192.0.2.1"
	targets, dups, problems := ParseTargetsFile("indicators/feed.txt", []byte(data))
	if problems != nil {
		t.Fatal(problems)
	}
	want := []string{"203.0.113.7", "198.51.100.0/24", "2001:DB8::1", "203.0.113.0/24", "192.0.2.1"}
	if strings.Join(targets, " ") != strings.Join(want, " ") {
		t.Errorf("targets %q, want %q", targets, want)
	}
	if dups != 2 {
		t.Errorf("%d duplicates merged, want 2", dups)
	}
}

func TestTargetsFileProblemsAreLocated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, data string
		want       string // the first problem
	}{
		{"bad address", "203.0.113.7\n  203.0.113.300 # typo\n", `indicators/x.txt:2:3: "203.0.113.300" is not a valid IP address or CIDR prefix`},
		{"host bits", "198.51.100.7/24\n", `indicators/x.txt:1:1: "198.51.100.7/24" has host bits set; write 198.51.100.0/24`},
		{"two per line", "203.0.113.7 203.0.113.8\n", `indicators/x.txt:1:1: "203.0.113.7 203.0.113.8": one address or prefix per line (a comment starts with '#')`},
		{"comma list", "203.0.113.7,203.0.113.8\n", `indicators/x.txt:1:1: "203.0.113.7,203.0.113.8" is not a valid IP address or CIDR prefix`},
		{"host name", "\n\nevil.example.com\n", `indicators/x.txt:3:1: "evil.example.com" is not a valid IP address or CIDR prefix`},
		{"mapped", "::ffff:203.0.113.7\n", `indicators/x.txt:1:1: "::ffff:203.0.113.7" is an IPv4-mapped IPv6 address; write 203.0.113.7`},
		{"zone", "fe80::1%eth0\n", `indicators/x.txt:1:1: "fe80::1%eth0" has an IPv6 zone, which cannot be blocked`},
		{"control", "203.0.113.7\n203.0.\x00113.8\n", `indicators/x.txt:2:7: control character U+0000: a targets file is plain text`},
		{"utf8", "# caf\xe9\n", `indicators/x.txt:1:6: invalid UTF-8 (byte 0xe9)`},
		{"only comments", "# nothing yet\n\n", `indicators/x.txt:1:1: no targets: the file holds only comments and blank lines`},
		{"empty", "", `indicators/x.txt:1:1: no targets: the file holds only comments and blank lines`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			targets, _, problems := ParseTargetsFile("indicators/x.txt", []byte(tc.data))
			if problems == nil {
				t.Fatalf("accepted: %q", targets)
			}
			if got := problems[0].String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if problems[0].Code != "invalid-target" {
				t.Errorf("code %q", problems[0].Code)
			}
		})
	}
}

func TestTargetsFileProblemsAreBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 250 {
		fmt.Fprintf(&b, "not-an-address-%d\n", i)
	}
	_, _, problems := ParseTargetsFile("indicators/x.txt", []byte(b.String()))
	if len(problems) != maxFileProblems+1 {
		t.Fatalf("%d problems, want %d", len(problems), maxFileProblems+1)
	}
	last := problems[len(problems)-1].Message
	if last != "150 more lines have problems (the first 100 are listed)" {
		t.Errorf("last problem: %s", last)
	}
}

func TestTargetsFileLimit(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range MaxFileTargets {
		fmt.Fprintf(&b, "10.%d.%d.%d\n", i>>16, (i>>8)&255, i&255)
	}
	targets, _, problems := ParseTargetsFile("indicators/x.txt", []byte(b.String()))
	if problems != nil || len(targets) != MaxFileTargets {
		t.Fatalf("%d targets, %v", len(targets), problems)
	}
	b.WriteString("10.0.0.1\n") // a duplicate does not count
	b.WriteString("# and one more:\n11.0.0.1\n")
	_, _, problems = ParseTargetsFile("indicators/x.txt", []byte(b.String()))
	if len(problems) != 1 || problems[0].String() != fmt.Sprintf("indicators/x.txt:%d:1: more than 100000 targets: split the list across playbooks", MaxFileTargets+3) {
		t.Fatalf("%v", problems)
	}
}

func repoFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

func TestPlaybookWithTargetsFile(t *testing.T) {
	t.Parallel()
	feed := "# feed\n203.0.113.7\n198.51.100.0/24\n203.0.113.7\n"
	fsys := repoFS(map[string]string{"playbooks/feed.yaml": bulkPlaybook, "indicators/feed.txt": feed})
	p, problems := Parse("playbooks/feed.yaml", []byte(bulkPlaybook), Options{Files: fsys})
	if problems != nil {
		t.Fatal(problems)
	}
	if strings.Join(p.Spec.Targets, " ") != "203.0.113.7 198.51.100.0/24" {
		t.Errorf("targets %q", p.Spec.Targets)
	}
	if p.TargetsFile == nil || p.TargetsFile.Path != "indicators/feed.txt" || p.TargetsFile.Duplicates != 1 || string(p.TargetsFile.Raw) != feed {
		t.Fatalf("targets file %+v", p.TargetsFile)
	}
	// The documented recipe: sha256 of a text naming both files' sha256.
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := sum("writ/v1 playbook with targets file\n" + sum(bulkPlaybook) + "\n" + sum(feed) + "\n")
	if p.Digest != want || p.Digest == Digest([]byte(bulkPlaybook)) {
		t.Errorf("digest %s, want %s", p.Digest, want)
	}
	spec := p.PolicyInput()["spec"].(map[string]any)
	if spec["targetsFile"] != "indicators/feed.txt" || len(spec["targets"].([]any)) != 2 {
		t.Errorf("policy input spec %v", spec)
	}

	// One changed line changes the digest.
	fsys["indicators/feed.txt"] = &fstest.MapFile{Data: []byte(strings.Replace(feed, "203.0.113.7\n1", "203.0.113.8\n1", 1))}
	q, problems := Parse("playbooks/feed.yaml", []byte(bulkPlaybook), Options{Files: fsys})
	if problems != nil {
		t.Fatal(problems)
	}
	if q.Digest == p.Digest {
		t.Error("editing the targets file kept the digest")
	}

	// A stored version parses to the same content.
	s, problems := ParseStored("playbooks/feed.yaml", []byte(bulkPlaybook), []byte(feed), Options{})
	if problems != nil || s.Digest != p.Digest || len(s.Spec.Targets) != 2 {
		t.Fatalf("stored: %v %v", s, problems)
	}
	if _, problems := ParseStored("playbooks/feed.yaml", []byte(bulkPlaybook), nil, Options{}); problems == nil ||
		!strings.Contains(problems.Error(), "the stored version has no copy of indicators/feed.txt") {
		t.Errorf("stored without its file: %v", problems)
	}

	// LoadFS reads targets files from the repository it loads.
	pbs, problems, err := LoadFS(fsys, Dir, Options{})
	if err != nil || problems != nil || len(pbs) != 1 || pbs[0].Digest != q.Digest {
		t.Fatalf("LoadFS: %v %v %v", pbs, problems, err)
	}
}

func TestTargetsFileRefusals(t *testing.T) {
	t.Parallel()
	with := func(old, repl string) string { return strings.Replace(bulkPlaybook, old, repl, 1) }
	files := map[string]string{"indicators/feed.txt": "203.0.113.7\n", "indicators/sub/feed.txt": "203.0.113.7\n", "other/feed.txt": "203.0.113.7\n"}
	cases := []struct {
		name, src string
		files     map[string]string
		want      string
	}{
		{"outside indicators", with("indicators/feed.txt", "other/feed.txt"), files,
			`playbooks/feed.yaml:7:16: spec.targetsFile: "other/feed.txt" is not a path under indicators/`},
		{"dot dot", with("indicators/feed.txt", "indicators/../other/feed.txt"), files,
			`playbooks/feed.yaml:7:16: spec.targetsFile: "indicators/../other/feed.txt" is not a path under indicators/`},
		{"absolute", with("indicators/feed.txt", "/etc/passwd"), files,
			`playbooks/feed.yaml:7:16: spec.targetsFile: "/etc/passwd" is not a path under indicators/`},
		{"hidden", with("indicators/feed.txt", "indicators/.feed"), files,
			`playbooks/feed.yaml:7:16: spec.targetsFile: "indicators/.feed" is not a path under indicators/`},
		{"missing", with("indicators/feed.txt", "indicators/none.txt"), files,
			`playbooks/feed.yaml:7:16: spec.targetsFile: indicators/none.txt does not exist in the repository`},
		{"a directory", with("indicators/feed.txt", "indicators/sub"), files,
			`playbooks/feed.yaml:7:16: spec.targetsFile: indicators/sub is not a regular file (a directory)`},
		{"both", with("  targetsFile:", "  targets: [203.0.113.9]\n  targetsFile:"), files,
			`playbooks/feed.yaml:8:16: spec.targets and spec.targetsFile exclude each other`},
		{"neither", with("  targetsFile: indicators/feed.txt\n", ""), files,
			`playbooks/feed.yaml:6:3: missing required field "targets" (or "targetsFile") in spec`},
		{"other action", with("block_ip", "suspend_user"), files,
			`playbooks/feed.yaml:7:16: spec.targetsFile: only block_ip takes its targets from a file`},
		{"bad line", bulkPlaybook, map[string]string{"indicators/feed.txt": "203.0.113.7\n\n 10.1.2\n"},
			`indicators/feed.txt:3:2: "10.1.2" is not a valid IP address or CIDR prefix`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, problems := Parse("playbooks/feed.yaml", []byte(tc.src), Options{Files: repoFS(tc.files)})
			if p != nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(problems[0].String(), tc.want) {
				t.Errorf("got  %s\nwant %s...", problems[0], tc.want)
			}
		})
	}
	if _, problems := Parse("playbooks/feed.yaml", []byte(bulkPlaybook), Options{}); problems == nil ||
		!strings.Contains(problems.Error(), "targets files are read from the playbook's repository") {
		t.Errorf("without a repository: %v", problems)
	}
}

// Symlinks are never followed, neither as the file nor as a directory on
// its way, even in a checkout (os.DirFS would follow them).
func TestTargetsFileSymlinks(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "feed.txt"), []byte("203.0.113.7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, link, target, want string }{
		{"file", "indicators/feed.txt", filepath.Join(outside, "feed.txt"), "indicators/feed.txt is not a regular file (a symlink)"},
		{"directory", "indicators", outside, "indicators is not a directory (a symlink)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(tc.link)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.target, filepath.Join(root, tc.link)); err != nil {
				t.Fatal(err)
			}
			_, problems := Parse("playbooks/feed.yaml", []byte(bulkPlaybook), Options{Files: os.DirFS(root)})
			if problems == nil || !strings.Contains(problems.Error(), tc.want) {
				t.Fatalf("got %v, want %q", problems, tc.want)
			}
		})
	}
}
