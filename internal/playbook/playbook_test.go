package playbook

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/writ-sec/writ/internal/diag"
)

const repoRoot = "../.."

func TestExamplePlaybooksAreValid(t *testing.T) {
	t.Parallel()
	pbs, problems, err := LoadFS(os.DirFS(repoRoot), Dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("example playbooks have problems:\n%v", problems)
	}
	actions := map[string]bool{}
	critical, bulk := false, false
	for _, p := range pbs {
		actions[p.Spec.Action] = true
		critical = critical || p.Spec.Severity == "critical"
		want := Digest(p.Raw)
		if p.TargetsFile != nil {
			bulk = true
			want = BundleDigest(p.Raw, p.TargetsFile.Raw)
		}
		if len(p.Digest) != 64 || p.Digest != want {
			t.Errorf("%s: digest %q is not the sha256 of its bytes (and of its targets file's)", p.Path, p.Digest)
		}
	}
	for _, a := range []string{"block_ip", "suspend_user", "isolate_host"} {
		if !actions[a] {
			t.Errorf("no example playbook for %s", a)
		}
	}
	if !critical {
		t.Error("no critical example playbook")
	}
	if !bulk {
		t.Error("no example playbook with a targets file")
	}
}

// Each invalid file must fail with its first problem at an exact position,
// and with a message that says what is wrong.
func TestInvalidPlaybooks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file    string
		pos     string // line:col of the first problem
		message string
	}{
		{"unknown-field.yaml", "11:3", `unknown field "priority" in spec`},
		{"duplicate-key.yaml", "10:3", `duplicate key "severity" (first at line 9, column 3)`},
		{"wrong-type.yaml", "7:12", "spec.targets: wrong type: expected a list, got a string"},
		{"invalid-ip.yaml", "9:7", `spec.targets[1]: "203.0.113.300" is not a valid IP address`},
		{"invalid-cidr.yaml", "7:13", `spec.targets[0]: "198.51.100.0/33" is not a valid CIDR prefix`},
		{"unknown-action.yaml", "6:11", `unknown action "nuke_host"; known actions: block_ip, isolate_host, suspend_user`},
		{"empty-justification.yaml", "8:18", "spec.justification"},
		{"alias-bomb.yaml", "1:4", "anchors (&a) are not allowed"},
		{"non-utf8.yaml", "8:21", "invalid UTF-8 at byte offset 132"},
		{"empty.yaml", "1:1", "file is empty"},
		{"list.yaml", "1:1", "a playbook is a mapping with apiVersion, kind, metadata and spec; found a list"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			name := filepath.Join(repoRoot, "testdata/playbooks/invalid", tc.file)
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			p, problems := Parse("playbooks/"+tc.file, data, Options{})
			if p != nil || len(problems) == 0 {
				t.Fatalf("accepted; want a problem at %s", tc.pos)
			}
			first := problems[0]
			if got := fmt.Sprintf("%d:%d", first.Line, first.Col); got != tc.pos {
				t.Errorf("first problem at %s; want %s (%s)", got, tc.pos, first)
			}
			if !strings.Contains(first.Message, tc.message) {
				t.Errorf("message %q does not contain %q", first.Message, tc.message)
			}
			if first.Path != "playbooks/"+tc.file {
				t.Errorf("path %q", first.Path)
			}
		})
	}
}

func TestTenMebibyteFileIsRefusedUnread(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("# padding padding padding padding\n"), (10<<20)/34+1)
	fsys := fstest.MapFS{"playbooks/big.yaml": {Data: big}}
	_, problems, err := LoadFS(fsys, Dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0].Message, "10.0 MiB; the limit is 1 MiB") {
		t.Fatalf("problems = %v", problems)
	}
	// Parse itself also refuses it, without looking inside.
	if _, ps := Parse("big.yaml", big, Options{}); len(ps) != 1 || ps[0].Line != 1 {
		t.Fatalf("Parse problems = %v", ps)
	}
}

func TestDuplicateNamesAcrossFiles(t *testing.T) {
	t.Parallel()
	fsys := os.DirFS(filepath.Join(repoRoot, "testdata/playbooks"))
	pbs, problems, err := LoadFS(fsys, "duplicate-name", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pbs) != 2 {
		t.Fatalf("%d playbooks parsed; both files are valid on their own", len(pbs))
	}
	if len(problems) != 1 {
		t.Fatalf("problems = %v", problems)
	}
	want := `duplicate-name/second.yaml:4:9: metadata.name "block-twice" is already used by duplicate-name/first.yaml:4:9`
	if problems[0].String() != want {
		t.Fatalf("got  %s\nwant %s", problems[0], want)
	}
}

func TestSymlinkedPlaybookIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "playbooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "playbooks", "evil.yaml")); err != nil {
		t.Fatal(err)
	}
	_, problems, err := LoadFS(os.DirFS(dir), Dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0].Message, "not a regular file") {
		t.Fatalf("problems = %v", problems)
	}
}

const valid = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: t
spec:
  action: %s
  targets: [%s]
  justification: because
  severity: high
  environment: production
%s`

func TestSemanticChecks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, action, targets, extra string
		opts                         Options
		want                         string // "" = valid
	}{
		{"ipv4", "block_ip", "203.0.113.7", "", Options{}, ""},
		{"ipv6", "block_ip", "'2001:db8::1'", "", Options{}, ""},
		{"ipv6 cidr", "block_ip", "'2001:db8::/48'", "", Options{}, ""},
		{"host bits", "block_ip", "10.1.2.3/8", "", Options{}, "has host bits set; write 10.0.0.0/8"},
		{"zone", "block_ip", "'fe80::1%eth0'", "", Options{}, "zone"},
		{"mapped", "block_ip", "'::ffff:1.2.3.4'", "", Options{}, "write 1.2.3.4"},
		{"leading zero", "block_ip", "010.1.1.1", "", Options{}, "not a valid IP"},
		{"repeat", "block_ip", "'2001:db8::1', '2001:0db8::1'", "", Options{}, "repeats spec.targets[0]"},
		{"user", "suspend_user", "j.doe@example.com", "", Options{}, ""},
		{"user with space", "suspend_user", "'j doe'", "", Options{}, "not a user name"},
		{"host", "isolate_host", "fin-ws-12", "", Options{}, ""},
		{"host shell", "isolate_host", "'a;rm -rf /'", "", Options{}, "not a host name"},
		{"expiry", "block_ip", "192.0.2.1", "  expiresAfter: 7d\n", Options{}, ""},
		{"expiry too short", "block_ip", "192.0.2.1", "  expiresAfter: 10s\n", Options{}, "shorter than 1m0s"},
		{"expiry too long", "block_ip", "192.0.2.1", "  expiresAfter: 400d\n", Options{}, "longer than 366d"},
		{"expiry garbage", "block_ip", "192.0.2.1", "  expiresAfter: soon\n", Options{}, "not a duration"},
		{"blank justification", "block_ip", "192.0.2.1", "", Options{}, ""},
		{"known environment", "block_ip", "192.0.2.1", "", Options{Environments: []string{"production"}}, ""},
		{"unknown environment", "block_ip", "192.0.2.1", "", Options{Environments: []string{"staging", "lab"}}, `environment "production" is not one of the server's environments: staging, lab`},
		{"custom action", "page_oncall", "'team: soc'", "", Options{Actions: Builtin.With(Catalog{"page_oncall": TargetAny})}, ""},
		{"manual", "block_ip", "192.0.2.1", "  execution: manual\n", Options{}, ""},
		{"bad execution", "block_ip", "192.0.2.1", "  execution: later\n", Options{}, `"later" is not one of auto, manual`},
		{"params", "block_ip", "192.0.2.1", "  params: {set: edge}\n", Options{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := fmt.Sprintf(valid, tc.action, tc.targets, tc.extra)
			p, problems := Parse("p.yaml", []byte(src), tc.opts)
			if tc.want == "" {
				if problems != nil {
					t.Fatalf("unexpected problems:\n%v", problems)
				}
				if p == nil {
					t.Fatal("nil playbook without problems")
				}
				return
			}
			if p != nil || !strings.Contains(problems.Error(), tc.want) {
				t.Fatalf("problems %q; want one containing %q", problems.Error(), tc.want)
			}
		})
	}
}

func TestStrictYAMLConstructs(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ src, want string }{
		"merge key":      {"base: {a: 1}\nx:\n  <<: {a: 1}\n", "merge keys"},
		"custom tag":     {"apiVersion: !env HOME\n", "tag !env is not allowed"},
		"binary tag":     {"apiVersion: !!binary aGVsbG8=\n", "tag !!binary is not allowed"},
		"two documents":  {"apiVersion: writ/v1\n---\nkind: Playbook\n", "2:1: a second YAML document"},
		"non-string key": {"1: x\n", "mapping keys must be plain strings"},
		"bad syntax":     {"a: [1, 2\nb: c\n", "p.yaml:"},
		"tab indent":     {"a:\n\tb: c\n", "p.yaml:2:1"},
		"deep":           {strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n", "nested deeper than"},
		"null doc":       {"~\n", "found nothing"},
		"scalar doc":     {"hello\n", "found a string"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, problems := Parse("p.yaml", []byte(tc.src), Options{})
			if p != nil || !strings.Contains(problems.Error(), tc.want) {
				t.Fatalf("problems %q; want %q", problems.Error(), tc.want)
			}
		})
	}
}

func TestAliasBombIsCheap(t *testing.T) {
	// A billion-laughs document with many more levels than the test file.
	var b strings.Builder
	b.WriteString("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	// Allocation, not wall time, is what would explode: check it stays
	// proportional to the input.
	allocs := testing.AllocsPerRun(3, func() {
		if p, ps := Parse("bomb.yaml", []byte(b.String()), Options{}); p != nil || len(ps) == 0 {
			t.Fatal("alias bomb accepted")
		}
	})
	if allocs > 20000 {
		t.Fatalf("%.0f allocations for a %d-byte document: aliases are being expanded", allocs, b.Len())
	}
}

func TestPolicyInput(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(repoRoot, "playbooks/network/block-c2-beacon.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, problems := Parse("playbooks/network/block-c2-beacon.yaml", data, Options{})
	if problems != nil {
		t.Fatal(problems)
	}
	in := p.PolicyInput()
	spec := in["spec"].(map[string]any)
	if in["path"] != "playbooks/network/block-c2-beacon.yaml" || spec["action"] != "block_ip" ||
		spec["expiresAfterSeconds"] != int64(72*3600) || len(spec["targets"].([]any)) != 2 ||
		spec["execution"] != "auto" {
		t.Fatalf("input = %#v", in)
	}
	if d, ok := p.Expiry(); !ok || d != 72*time.Hour {
		t.Fatalf("Expiry = %v, %v", d, ok)
	}
	if pos := p.TargetPos(1); pos != (diag.Position{Line: 10, Col: 7}) {
		t.Fatalf("TargetPos(1) = %+v", pos)
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"72h": 72 * time.Hour, "1h30m": 90 * time.Minute, "7d": 168 * time.Hour, "2w": 336 * time.Hour, "1.5h": 90 * time.Minute,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "h", "1x", "-1h", "1h-", "99999999999999999999w"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}
