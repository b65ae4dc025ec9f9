package playbook

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the decoder: it must never panic, and
// it must either return a playbook and no problems, or problems (each
// located) and no playbook.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"playbooks/*/*.yaml", "testdata/playbooks/*/*.yaml"} {
		files, _ := filepath.Glob(filepath.Join(repoRoot, glob))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("{a: 1, a: 2}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, problems := Parse("f.yaml", data, Options{})
		switch {
		case p != nil && problems != nil:
			t.Fatalf("both a playbook and problems: %v", problems)
		case p == nil && len(problems) == 0:
			t.Fatal("neither a playbook nor problems")
		case p != nil:
			if p.Digest != Digest(data) {
				t.Fatal("digest is not the sha256 of the input")
			}
			if p.Metadata.Name == "" || len(p.Spec.Targets) == 0 {
				t.Fatalf("accepted a playbook without name or targets: %+v", p)
			}
		}
		for _, pr := range problems {
			if pr.Path != "f.yaml" || pr.Line < 1 || pr.Col < 1 || pr.Message == "" {
				t.Fatalf("unlocated problem: %+v", pr)
			}
		}
	})
}

// FuzzParseTargetsFile feeds arbitrary bytes as a targets file: it must
// never panic; it returns targets that each parse (and no problems), or
// located problems (and no targets).
func FuzzParseTargetsFile(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(repoRoot, "indicators/threat-feed.txt")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("203.0.113.7\r\n# c\n\n 2001:db8::/32 # x\n2001:DB8::/32\n"))
	f.Add([]byte("\xef\xbb\xbf10.0.0.1\n10.0.0.1/32\n\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		targets, dups, problems := ParseTargetsFile("indicators/f.txt", data)
		if (targets == nil) == (problems == nil) {
			t.Fatalf("targets %q and problems %v", targets, problems)
		}
		seen := map[string]bool{}
		for _, tg := range targets {
			canon, err := ParseTarget(TargetIP, tg)
			if err != nil || seen[canon] {
				t.Fatalf("returned %q: %v (repeated: %v)", tg, err, seen[canon])
			}
			seen[canon] = true
		}
		if dups < 0 || len(targets) > MaxFileTargets {
			t.Fatalf("%d targets, %d duplicates", len(targets), dups)
		}
		for _, pr := range problems {
			if pr.Path != "indicators/f.txt" || pr.Line < 1 || pr.Col < 1 || pr.Message == "" {
				t.Fatalf("unlocated problem: %+v", pr)
			}
		}
	})
}
