package report

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// TruncatedMark ends a text writ cut to fit a limit.
const TruncatedMark = "… (truncated)"

// Chars counts a character as a forge's "characters" may: one, or two for
// one outside the Basic Multilingual Plane (an emoji). GitHub validates
// lengths in code points (its JSON Schema's maxLength); counting UTF-16
// code units as well keeps a text within the limit read either way.
func Chars(r rune) int {
	if r > 0xFFFF {
		return 2
	}
	return 1
}

// UTF8Bytes counts a character's UTF-8 bytes.
func UTF8Bytes(r rune) int { return utf8.RuneLen(r) }

// FitChars keeps s within limit characters (see Chars), ending a cut text
// with mark.
func FitChars(s string, limit int, mark string) string { return Fit(s, limit, Chars, mark) }

// FitBytes keeps s within limit UTF-8 bytes, ending a cut text with mark.
func FitBytes(s string, limit int, mark string) string { return Fit(s, limit, UTF8Bytes, mark) }

// MaxBackoff bounds how far a cut moves back to keep a combining sequence
// whole; a longer sequence (hundreds of stacked marks) is cut inside.
const MaxBackoff = 32

// Fit keeps s within limit, each character weighing size(r): invalid
// UTF-8 is replaced first (U+FFFD), the cut falls on a character boundary
// before any combining mark, joiner, variation selector, emoji modifier or
// second regional indicator that would extend the character before it,
// and mark (which counts toward the limit) follows it.
func Fit(s string, limit int, size func(rune) int, mark string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if Measure(s, size) <= limit {
		return s
	}
	budget := max(limit-Measure(mark, size), 0)
	cut, n := 0, 0
	for i, r := range s {
		if n+size(r) > budget {
			cut = i
			break
		}
		n += size(r)
	}
	back := cut
	for steps := 0; back > 0; steps++ {
		if steps == MaxBackoff {
			back = cut
			break
		}
		next, _ := utf8.DecodeRuneInString(s[back:])
		prev, w := utf8.DecodeLastRuneInString(s[:back])
		if !Extends(next) && prev != ZWJ && !SplitsFlag(s[:back], next) {
			break
		}
		back -= w
	}
	return s[:back] + mark
}

// Measure is the size of s, each character weighing size(r).
func Measure(s string, size func(rune) int) int {
	n := 0
	for _, r := range s {
		n += size(r)
	}
	return n
}

// ZWJ is the zero-width joiner.
const ZWJ = '\u200D'

// Extends reports whether r belongs to the character before it: a
// combining mark (Mn, Mc, Me: accents, variation selectors), a zero-width
// joiner or an emoji skin-tone modifier.
func Extends(r rune) bool {
	return unicode.Is(unicode.M, r) || r == ZWJ || (r >= 0x1F3FB && r <= 0x1F3FF)
}

func isRegionalIndicator(r rune) bool { return r >= 0x1F1E6 && r <= 0x1F1FF }

// SplitsFlag reports whether cutting before next separates the two
// regional indicators of a flag: an odd run of them ends head.
func SplitsFlag(head string, next rune) bool {
	if !isRegionalIndicator(next) {
		return false
	}
	n := 0
	for len(head) > 0 {
		r, w := utf8.DecodeLastRuneInString(head)
		if !isRegionalIndicator(r) {
			break
		}
		n++
		head = head[:len(head)-w]
	}
	return n%2 == 1
}
