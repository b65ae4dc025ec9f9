package gitsrc

import (
	"bytes"
	"errors"
	"io/fs"
	"path"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/object"
)

// rawTree encodes entries as a tree object's content.
func rawTree(entries ...[2]string) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		b.WriteString(e[0] + " " + e[1] + "\x00")
		b.Write(bytes.Repeat([]byte{0xab}, 20))
	}
	return b.Bytes()
}

// FuzzParseTree feeds tree objects of any bytes to the decoder: it never
// panics, a failure is a bad_object, and every entry it reports without a
// problem has a name that is one plain path element (one a walk cannot
// leave its directory with) and a mode git writes.
func FuzzParseTree(f *testing.F) {
	f.Add(rawTree([2]string{"100644", "a.yaml"}, [2]string{"40000", "dir"}))
	f.Add(rawTree([2]string{"40000", ".."}, [2]string{"100644", "x"}))
	f.Add(rawTree([2]string{"177777", "x"}, [2]string{"100644", "x"}))
	f.Add(rawTree([2]string{"120000", ".git"}, [2]string{"160000", "b\\c"}))
	f.Add([]byte("100644 truncated\x00abc"))
	f.Add([]byte("100644 no-terminator"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseTree(data)
		if err != nil {
			var me *MalformedError
			if !errors.As(err, &me) || me.Problem != ProblemBadObject {
				t.Fatalf("parseTree error %v is not a bad_object", err)
			}
			return
		}
		if len(entries) > len(data)/22 { // the smallest entry: " \x00" and an id
			t.Fatalf("%d entries from %d bytes", len(entries), len(data))
		}
		for _, e := range entries {
			if e.problem != "" {
				continue
			}
			if !safeElement(e.name) {
				t.Fatalf("name %q passed as safe", e.name)
			}
			if e.mode == 0 {
				t.Fatalf("entry %q without a problem has no mode", e.name)
			}
		}
		firstProblem(entries, nil)
		firstProblem(entries, func(i int) bool { return i%2 == 0 })
	})
}

// FuzzCheckName: a name checkName lets through is one path element that
// no path operation cleans away or splits, that io/fs accepts, and that
// go-git's own tree lookup accepts as well.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"a.yaml", "..", ".", ".git", ".GIT ", "git~1", ".g\u200cit", "a/b", `a\b`, "a\x00b", "\xff", "", "x:y", ".gitignore", ".github"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if checkName(name) != "" {
			return
		}
		if !safeElement(name) {
			t.Fatalf("checkName(%q) passed an unsafe name", name)
		}
	})
}

func safeElement(name string) bool {
	joined := "playbooks/" + name
	if !fs.ValidPath(joined) || path.Join("playbooks", name) != joined || path.Dir(joined) != "playbooks" {
		return false
	}
	// go-git refuses to look up names it thinks unsafe; an entry writ
	// reads must not be one of them.
	_, err := (&object.Tree{}).FindEntry(name)
	return errors.Is(err, object.ErrEntryNotFound)
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"block.yaml": true, ".gitignore": true, ".github": true, ".writ": true, "naïve.yaml": true, "a b": true, "x:y": true,
		"": false, ".": false, "..": false, ".git": false, ".Git": false, ".git.": false, ".git ": false, ".git::$INDEX_ALLOCATION": false,
		"git~1": false, "GIT~1": false, ".g\u200cit": false, "\ufeff.git": false, "a/b": false, `a\b`: false, "a\tb": false, "a\x7fb": false, "\xff": false,
	} {
		if got := checkName(name) == ""; got != ok {
			t.Errorf("checkName(%q) = %q; want ok=%v", name, checkName(name), ok)
		}
	}
}
