package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/sergi/go-diff/diffmatchpatch"
)

// What a reviewer reads before signing: server-sent text made safe for a
// terminal, and line diffs.

// safeText makes text from a server (content of a pull request, in the
// end) safe to print on a terminal: control characters other than
// newline and tab, and the invisible and bidirectional formatting
// characters that can make a line read differently from what it is
// (Trojan Source), are shown as \u escapes instead of acting on the
// terminal or the reader.
func safeText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r == unicode.ReplacementChar:
			b.WriteString(`\ufffd`)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// diffContext is how many unchanged lines a diff shows around a change.
const diffContext = 3

// writeDiff writes a line diff of old → new with diffContext lines of
// context, each line prefixed "-", "+" or " " and indented by indent.
// Both sides are made safe with safeText first.
func writeDiff(w io.Writer, indent, old, new string) {
	dmp := diffmatchpatch.New()
	a, b, lines := dmp.DiffLinesToChars(safeText(old), safeText(new))
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
