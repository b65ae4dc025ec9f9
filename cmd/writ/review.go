package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/sergi/go-diff/diffmatchpatch"

	"github.com/writ-sec/writ/internal/display"
)

// What a reviewer reads before signing: server-sent text made safe for a
// terminal, and line diffs.

// diffContext is how many unchanged lines a diff shows around a change.
const diffContext = 3

// writeDiff writes a line diff of old → new with diffContext lines of
// context, each line prefixed "-", "+" or " " and indented by indent.
// Both sides are made safe with display.Safe first.
func writeDiff(w io.Writer, indent, old, new string) {
	dmp := diffmatchpatch.New()
	a, b, lines := dmp.DiffLinesToChars(display.Safe(old), display.Safe(new))
	diffs := dmp.DiffCharsToLines(dmp.DiffMain(a, b, false), lines)
	type line struct {
		op   diffmatchpatch.Operation
		text string
	}
	var all []line
	for _, d := range diffs {
		text := strings.TrimSuffix(d.Text, "\n")
		for _, l := range strings.Split(text, "\n") {
			all = append(all, line{d.Type, l})
		}
	}
	show := make([]bool, len(all))
	for i, l := range all {
		if l.op == diffmatchpatch.DiffEqual {
			continue
		}
		for j := max(0, i-diffContext); j <= min(len(all)-1, i+diffContext); j++ {
			show[j] = true
		}
	}
	skipped := false
	for i, l := range all {
		if !show[i] {
			skipped = true
			continue
		}
		if skipped {
			fmt.Fprintf(w, "%s  ⋯\n", indent)
			skipped = false
		}
		mark := " "
		switch l.op {
		case diffmatchpatch.DiffInsert:
			mark = "+"
		case diffmatchpatch.DiffDelete:
			mark = "-"
		}
		fmt.Fprintf(w, "%s%s %s\n", indent, mark, l.text)
	}
	if skipped {
		fmt.Fprintf(w, "%s  ⋯\n", indent)
	}
}
