package yamldoc

import (
	"testing"

	"github.com/writ-sec/writ/internal/diag"
)

// Pos and KeyPos find positions by following the pointer through the node
// tree: values, keys, escaped keys, sequence items, and the nearest
// existing ancestor of a pointer that names nothing.
func TestPositions(t *testing.T) {
	src := "a: 1\nspec:\n  targets:\n    - x\n    -   y\n  \"a/b~c\": {k: v}\n  \"01\": z\n"
	d, problems := Parse("p.yaml", []byte(src), Limits{})
	if problems != nil {
		t.Fatal(problems)
	}
	pos := func(line, col int) diag.Position { return diag.Position{Line: line, Col: col} }
	for _, c := range []struct {
		ptr      string
		val, key diag.Position
	}{
		{"", pos(1, 1), pos(1, 1)},
		{"/a", pos(1, 4), pos(1, 1)},
		{"/spec", pos(3, 3), pos(2, 1)},
		{"/spec/targets", pos(4, 5), pos(3, 3)},
		{"/spec/targets/0", pos(4, 7), pos(4, 7)},
		{"/spec/targets/1", pos(5, 9), pos(5, 9)},
		{"/spec/targets/2", pos(4, 5), pos(4, 5)},  // no third item: the sequence
		{"/spec/targets/01", pos(4, 5), pos(4, 5)}, // not an index as JSON pointers write them
		{"/spec/a~1b~0c", pos(6, 12), pos(6, 3)},
		{"/spec/a~1b~0c/k", pos(6, 16), pos(6, 13)},
		{"/spec/01", pos(7, 9), pos(7, 3)},
		{"/spec/missing/deeper", pos(3, 3), pos(3, 3)},
		{"/a/under-a-scalar", pos(1, 4), pos(1, 4)},
		{"not-a-pointer", pos(1, 1), pos(1, 1)},
	} {
		if got := d.Pos(c.ptr); got != c.val {
			t.Errorf("Pos(%q) = %v, want %v", c.ptr, got, c.val)
		}
		if got := d.KeyPos(c.ptr); got != c.key {
			t.Errorf("KeyPos(%q) = %v, want %v", c.ptr, got, c.key)
		}
	}
	if got := (&Doc{Path: "x"}).Pos("/a"); got != pos(1, 1) {
		t.Errorf("a document without nodes: Pos = %v", got)
	}
}
