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
