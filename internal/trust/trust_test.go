package trust

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/policies"
)

const commit = "0123456789abcdef0123456789abcdef01234567"

func tree(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for p, c := range files {
		m[p] = &fstest.MapFile{Data: []byte(c), Mode: 0o644}
	}
	return m
}

const rego = "package writ\n\ndecision := {\"deny\": set(), \"require_approval\": set(), \"approvals_required\": 0, \"approver_roles\": set()}\n"

func TestDiff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := tree(map[string]string{"policies/decision.rego": rego, ".writ/approvers.yaml": "people: []\n", "playbooks/x.yaml": "x"})

	// What does not decide: a playbook, a policy test.
	same := tree(map[string]string{"policies/decision.rego": rego, "policies/decision_test.rego": "package writ_test\n",
		".writ/approvers.yaml": "people: []\n", "playbooks/x.yaml": "changed"})
	if c, err := Diff(ctx, commit, base, same, nil); err != nil || c != nil {
		t.Fatalf("a change that decides alike: %+v %v", c, err)
	}

	// A new policy set and a changed, an added and a removed file under .writ/.
	head := tree(map[string]string{"policies/decision.rego": rego + "# stricter\n", ".writ/approvers.yaml": "people: [x]\n", ".writ/notes.txt": "n"})
	base[".writ/old.txt"] = &fstest.MapFile{Data: []byte("gone")}
	c, err := Diff(ctx, commit, base, head, nil)
	if err != nil || c == nil {
		t.Fatalf("diff: %+v %v", c, err)
	}
	oldSet, _ := PolicyDigest(base, nil)
	newSet, _ := PolicyDigest(head, nil)
	want := map[string][2]string{ // subject -> new digest, replaced digest
		approval.PoliciesSubject: {approval.PolicySetSubject(newSet).Digest, approval.PolicySetSubject(oldSet).Digest},
		".writ/approvers.yaml":   {playbook.Digest([]byte("people: [x]\n")), playbook.Digest([]byte("people: []\n"))},
		".writ/notes.txt":        {playbook.Digest([]byte("n")), playbook.Digest(nil)},
		".writ/old.txt":          {playbook.Digest(nil), playbook.Digest([]byte("gone"))},
	}
	if len(c.Subjects) != len(want) || c.Transition.TrustedCommit != commit || len(c.Transition.Replaces) != len(want) {
		t.Fatalf("change %+v", c)
	}
	for _, s := range c.Subjects {
		w, ok := want[s.Path]
		if !ok || s.Digest != w[0] || c.Transition.Replaces[s.Path] != w[1] {
			t.Errorf("subject %s: %s replacing %s; want %v", s.Path, s.Digest, c.Transition.Replaces[s.Path], w)
		}
	}
	if got := c.Digests(); len(got) != len(want) {
		t.Fatalf("digests %v", got)
	}
}

// A tree without policies/ is judged by the defaults: removing policies/
// changes what decides only when the defaults differ.
func TestDiffDefaults(t *testing.T) {
	t.Parallel()
	def, err := PolicyDigest(tree(nil), policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	own := tree(map[string]string{"policies/decision.rego": rego})
	c, err := Diff(context.Background(), commit, own, tree(nil), policies.FS)
	if err != nil || c == nil || c.Subjects[0].Digest != approval.PolicySetSubject(def).Digest {
		t.Fatalf("removing policies/: %+v %v", c, err)
	}
}

// A policy set that cannot be read still has a digest, so a change to it
// is held and signed, never an error that stops the engine.
func TestUnreadablePolicies(t *testing.T) {
	t.Parallel()
	broken := tree(map[string]string{"policies/data.json": "{not json"})
	d := TrustedPolicyDigest(broken, nil)
	if len(d) != 64 {
		t.Fatalf("digest %q", d)
	}
	if d2 := TrustedPolicyDigest(tree(map[string]string{"policies/data.json": "{still not json"}), nil); d2 == d {
		t.Fatal("two different broken sets have one digest")
	}
	tr := Load(commit, broken, LoadOptions{})
	if tr.PolicyErr == nil || !tr.Policies.Failed() || tr.PolicyDigest != d {
		t.Fatalf("load of a broken set: %v %v %s", tr.PolicyErr, tr.Policies.Failed(), tr.PolicyDigest)
	}
	if !errors.Is(tr.KeyringErr, ErrNoApprovers) || tr.Keyring != nil {
		t.Fatalf("keyring of a tree without approvers: %v", tr.KeyringErr)
	}
}

func TestIsTrustPath(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"policies": true, "policies/x.rego": true, ".writ": true, ".writ/approvers.yaml": true,
		"playbooks/x.yaml": false, "policiesx/y": false, ".writer/x": false, "README.md": false,
	} {
		if IsTrustPath(p) != want {
			t.Errorf("IsTrustPath(%q) = %v", p, !want)
		}
	}
}
