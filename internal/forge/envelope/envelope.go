// Package envelope finds the signed writ statements a forge's Markdown
// text carries: DSSE envelopes in ```writ fenced blocks.
package envelope

import (
	"bytes"
	"fmt"
	"strings"
)

// Fence is the info string of the fenced code block that carries a signed
// writ statement in a forge's text (a GitHub review body, a pull or merge request's
// description, a comment or a GitLab note):
//
//	```writ
//	{"payloadType":"application/vnd.in-toto+json","payload":"…","signatures":[…]}
//	```
//
// The opening line is exactly three backticks and "writ" (up to three
// spaces of indentation, trailing spaces allowed); the block ends at the
// next line of three or more backticks. A body may carry several blocks.
const Fence = "writ"

// MaxPerBody bounds how many envelopes one body may carry.
const MaxPerBody = 10

// ErrTooMany is returned for a body with more than
// MaxPerBody blocks.
var ErrTooMany = fmt.Errorf("more than %d writ blocks in one body", MaxPerBody)

// Extract returns the contents of the ```writ blocks of a
// Markdown body, trimmed; an unterminated block is an error.
func Extract(body string) ([][]byte, error) {
	var out [][]byte
	lines := strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		if !isOpening(lines[i]) {
			continue
		}
		start := i + 1
		end := -1
		for j := start; j < len(lines); j++ {
			if isClosing(lines[j]) {
				end = j
				break
			}
		}
		if end < 0 {
			return out, fmt.Errorf("the ```%s block opened at line %d is not closed", Fence, i+1)
		}
		if len(out) == MaxPerBody {
			return out, ErrTooMany
		}
		content := bytes.TrimSpace([]byte(strings.Join(lines[start:end], "\n")))
		out = append(out, content)
		i = end
	}
	return out, nil
}

func isOpening(line string) bool {
	l := strings.TrimRight(line, " \t")
	trimmed := strings.TrimLeft(l, " ")
	if len(l)-len(trimmed) > 3 {
		return false
	}
	return trimmed == "```"+Fence
}

func isClosing(line string) bool {
	l := strings.TrimRight(line, " \t")
	trimmed := strings.TrimLeft(l, " ")
	if len(l)-len(trimmed) > 3 || len(trimmed) < 3 {
		return false
	}
	return strings.Trim(trimmed, "`") == ""
}

// Format is the Markdown writ posts: a line saying what it is and
// the envelope in a ```writ block.
func Format(intro string, envelope []byte) string {
	var b strings.Builder
	if intro != "" {
		b.WriteString(intro)
		b.WriteString("\n\n")
	}
	b.WriteString("```" + Fence + "\n")
	b.Write(bytes.TrimSpace(envelope))
	b.WriteString("\n```\n")
	return b.String()
}
