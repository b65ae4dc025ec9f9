package server

import (
	"encoding/json"
	"net/http"
	"testing"
)

// A playbook file merged on the branch that does not parse is listed by
// GET /api/v1/playbooks with status invalid and its located problems
// (and only on the first page), until a commit fixes or deletes it.
func TestInvalidPlaybookVisibleUntilFixed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	viewer := h.tokens["viewer"]
	const path = "playbooks/network/broken.yaml"
	push := func(msg string, content string) {
		t.Helper()
		if content == "" {
			h.repo.Remove(path)
		} else {
			h.repo.Write(path, content)
		}
		h.repo.Commit(msg)
		h.repo.Push()
		if err := h.rec.ReconcileOnce(h.ctx); err != nil {
			t.Fatal(err)
		}
	}
	type listing struct {
		Playbooks []PlaybookSummary `json:"playbooks"`
		Invalid   []InvalidPlaybook `json:"invalid"`
	}
	list := func(query string) listing {
		t.Helper()
		resp, body := h.do("GET", "/api/v1/playbooks"+query, viewer, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var l listing
		if err := json.Unmarshal(body, &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	push("a typo", "apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: broken\n  ticket: INC-9\nspec:\n  action: block_ip\n  targets: [203.0.113.70]\n  justification: typo\n  severity: low\n  environment: staging\n  expires: soon\n")
	l := list("")
	if len(l.Invalid) != 1 {
		t.Fatalf("invalid %+v", l.Invalid)
	}
	inv := l.Invalid[0]
	if inv.Path != path || inv.Status != "invalid" || len(inv.Commit) < 40 || len(inv.Problems) == 0 ||
		inv.Problems[0].Path != path || inv.Problems[0].Line != 12 || inv.Problems[0].Col == 0 || inv.Problems[0].Message == "" {
		t.Fatalf("invalid entry %+v", inv)
	}
	if l := list("?status=active"); len(l.Invalid) != 0 {
		t.Fatalf("status=active lists invalid files: %+v", l.Invalid)
	}
	if l := list("?status=invalid"); len(l.Invalid) != 1 || len(l.Playbooks) != 0 {
		t.Fatalf("status=invalid: %+v", l)
	}
	if l := list("?before=999999"); l.Invalid != nil {
		t.Fatalf("a later page lists invalid files: %+v", l.Invalid)
	}
	push("fix it", "apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: broken\n  ticket: INC-9\nspec:\n  action: block_ip\n  targets: [203.0.113.70]\n  justification: typo\n  severity: low\n  environment: staging\n")
	if l := list(""); len(l.Invalid) != 0 {
		t.Fatalf("after the fix: %+v", l.Invalid)
	}
	push("break it again", "kind: [\n")
	if l := list(""); len(l.Invalid) != 1 || l.Invalid[0].Problems[0].Line == 0 {
		t.Fatalf("broken again: %+v", l.Invalid)
	}
	push("remove it", "")
	if l := list(""); len(l.Invalid) != 0 {
		t.Fatalf("after the removal: %+v", l.Invalid)
	}
}
