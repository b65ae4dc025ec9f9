// Package display makes text from a repository, a webhook or a person safe
// to show to someone: on a terminal, in a notification, in a mail.
package display

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Safe returns s with control characters other than newline and tab, and
// the invisible and bidirectional formatting characters that can make a
// line read differently from what it is (Trojan Source), written as \u
// escapes, so they neither act on a terminal nor mislead the reader.
func Safe(s string) string {
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

// Line is s on one line (runs of white space, newlines included, become
// one space) and at most limit bytes, cut at a character boundary and
// marked with "…" when cut; limit <= 0 keeps it whole. For summaries,
// log attributes and stored error texts.
func Line(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if limit <= 0 || len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
