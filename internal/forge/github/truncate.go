package github

import fr "github.com/writ-sec/writ/internal/forge/report"

// GitHub's documented limits on a check run's text (REST API, "Create a
// check run"): output.summary and output.text at most 65535 characters;
// an annotation's title at most 255 characters, its message and
// raw_details at most 64 KB. output.title has no documented limit; writ
// keeps it to a line. The cutting itself is internal/forge/report's.
const (
	maxSummary = 65535 // characters
	maxTitle   = fr.MaxTitle
	// maxAnnotationTitle is an annotation title's limit, in characters.
	maxAnnotationTitle = 255
	// maxAnnotationMessage is an annotation message's limit, "64 KB",
	// taken as the smallest reading: 64,000 bytes (within 64 KiB, and
	// within 65,535 characters however they are counted).
	maxAnnotationMessage = 64000
)

// truncatedMark ends a text writ cut to fit a limit.
const truncatedMark = fr.TruncatedMark

// maxBackoff bounds how far a cut moves back to keep a combining sequence
// whole.
const maxBackoff = fr.MaxBackoff

const zwj = fr.ZWJ

func chars(r rune) int                                 { return fr.Chars(r) }
func fitChars(s string, limit int, mark string) string { return fr.FitChars(s, limit, mark) }
func fitBytes(s string, limit int, mark string) string { return fr.FitBytes(s, limit, mark) }
func measure(s string, size func(rune) int) int        { return fr.Measure(s, size) }
func extends(r rune) bool                              { return fr.Extends(r) }
func splitsFlag(head string, next rune) bool           { return fr.SplitsFlag(head, next) }
