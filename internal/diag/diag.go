// Package diag holds located problems — what is wrong, and where (path,
// line, column) — as every checker of user content reports them, and writes
// them as text, JSON or SARIF.
package diag

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Position is a 1-based line and column in a file. Zero means unknown.
type Position struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// Severity of a problem.
type Severity string

// Severities.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Problem is one located finding.
type Problem struct {
	Path     string   `json:"path"`
	Line     int      `json:"line"`
	Col      int      `json:"col"`
	Severity Severity `json:"severity"`
	// Code classifies the problem for machines (SARIF rule id), e.g.
	// "yaml-syntax", "schema", "invalid-target", "duplicate-name",
	// "rego-compile".
	Code    string `json:"code"`
	Message string `json:"message"`
}

// String is the classic compiler form, path:line:col: message.
func (p Problem) String() string {
	line, col := max(p.Line, 1), max(p.Col, 1)
	return fmt.Sprintf("%s:%d:%d: %s", p.Path, line, col, p.Message)
}

// Errorf makes an error-severity problem.
func Errorf(path string, pos Position, code, format string, args ...any) Problem {
	return Problem{Path: path, Line: pos.Line, Col: pos.Col, Severity: Error, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Problems is a list of problems that is also an error.
type Problems []Problem

// Error joins the problems, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// HasErrors reports whether any problem is an error (not a warning).
func (ps Problems) HasErrors() bool {
	return slices.ContainsFunc(ps, func(p Problem) bool { return p.Severity != Warning })
}

// Err returns ps as an error, or nil when there are none.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Sort orders problems by path, line, column and message.
func (ps Problems) Sort() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col), cmp.Compare(a.Message, b.Message))
	})
}
