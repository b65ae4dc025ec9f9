package github

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// GitHub's documented limits on a check run's text (REST API, "Create a
// check run"): output.summary and output.text at most 65535 characters;
// an annotation's title at most 255 characters, its message and
// raw_details at most 64 KB. output.title has no documented limit; writ
// keeps it to a line.
const (
	maxSummary = 65535 // characters
	maxTitle   = 255   // characters (writ's own bound for output.title)
	// maxAnnotationTitle is an annotation title's limit, in characters.
	maxAnnotationTitle = 255
	// maxAnnotationMessage is an annotation message's limit, "64 KB",
	// taken as the smallest reading: 64,000 bytes (within 64 KiB, and
	// within 65,535 characters however they are counted).
	maxAnnotationMessage = 64000
)

// truncatedMark ends a text writ cut to fit a limit.
const truncatedMark = "… (truncated)"

// chars counts a character as GitHub's "characters" may: one, or two for
// one outside the Basic Multilingual Plane (an emoji). GitHub validates
// lengths in code points (its JSON Schema's maxLength); counting UTF-16
// code units as well keeps a text within the limit read either way.
func chars(r rune) int {
	if r > 0xFFFF {
		return 2
	}
	return 1
}

// utf8Bytes counts a character's UTF-8 bytes.
func utf8Bytes(r rune) int { return utf8.RuneLen(r) }

// fitChars keeps s within limit characters (see chars), ending a cut text
// with mark.
func fitChars(s string, limit int, mark string) string { return fit(s, limit, chars, mark) }

// fitBytes keeps s within limit UTF-8 bytes, ending a cut text with mark.
func fitBytes(s string, limit int, mark string) string { return fit(s, limit, utf8Bytes, mark) }

// maxBackoff bounds how far a cut moves back to keep a combining sequence
// whole; a longer sequence (hundreds of stacked marks) is cut inside.
const maxBackoff = 32

// fit keeps s within limit, each character weighing size(r): invalid
// UTF-8 is replaced first (U+FFFD), the cut falls on a character boundary
// before any combining mark, joiner, variation selector, emoji modifier or
// second regional indicator that would extend the character before it,
// and mark (which counts toward the limit) follows it.
func fit(s string, limit int, size func(rune) int, mark string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if measure(s, size) <= limit {
		return s
	}
	budget := max(limit-measure(mark, size), 0)
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
		if steps == maxBackoff {
			back = cut
			break
		}
		next, _ := utf8.DecodeRuneInString(s[back:])
		prev, w := utf8.DecodeLastRuneInString(s[:back])
		if !extends(next) && prev != zwj && !splitsFlag(s[:back], next) {
			break
		}
		back -= w
	}
	return s[:back] + mark
}

func measure(s string, size func(rune) int) int {
	n := 0
	for _, r := range s {
		n += size(r)
	}
	return n
}

const zwj = '\u200D'

// extends reports whether r belongs to the character before it: a
// combining mark (Mn, Mc, Me: accents, variation selectors), a zero-width
// joiner or an emoji skin-tone modifier.
func extends(r rune) bool {
	return unicode.Is(unicode.M, r) || r == zwj || (r >= 0x1F3FB && r <= 0x1F3FF)
}

func isRegionalIndicator(r rune) bool { return r >= 0x1F1E6 && r <= 0x1F1FF }

// splitsFlag reports whether cutting before next separates the two
// regional indicators of a flag: an odd run of them ends head.
func splitsFlag(head string, next rune) bool {
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
