package playbook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/writ-sec/writ/internal/diag"
)

// Bulk targets: a block_ip playbook may take its targets from a file of
// the same repository (spec.targetsFile) instead of listing them inline, so
// that a threat-intelligence feed or an incident's indicator list of
// thousands of addresses is one playbook. The file is read at the same
// commit as the playbook, never from a working tree, and is part of the
// content approvals sign (BundleDigest).
const (
	// IndicatorsDir is the only directory targets files are read from.
	IndicatorsDir = "indicators"
	// TargetsFileAction is the only action that takes a targets file.
	TargetsFileAction = "block_ip"
	// MaxFileTargets is the most targets one targets file may hold (after
	// duplicates are merged). Inline spec.targets keep the schema's and the
	// policies' limits.
	MaxFileTargets = 100_000
	// MaxTargetsFileBytes is the largest targets file accepted: 100,000
	// full-length IPv6 prefixes with a comment each fit.
	MaxTargetsFileBytes = 8 << 20
	// maxFileProblems bounds the problems reported for one targets file;
	// the rest are counted in one last problem.
	maxFileProblems = 100
)

// TargetsFile is the file a playbook's targets come from, as read.
type TargetsFile struct {
	// Path is its slash-separated path in the repository (spec.targetsFile).
	Path string
	// Raw is its bytes; Digest their hex sha256.
	Raw    []byte
	Digest string
	// Duplicates counts the lines whose target repeats an earlier line's
	// (compared in canonical form): they are merged, the first line counts.
	Duplicates int
}

// targetsFileRE is the form of spec.targetsFile: a relative path under
// indicators/ whose segments start with a letter, digit or '_' (so no '.',
// '..' or hidden names) and hold only letters, digits, '.', '_' and '-'.
// The schema carries the same pattern (and a length limit of 512).
var targetsFileRE = regexp.MustCompile(`^indicators(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$`)

// ValidTargetsFilePath reports whether p may name a targets file.
func ValidTargetsFilePath(p string) bool { return len(p) <= 512 && targetsFileRE.MatchString(p) }

// BundleDigest is the content digest of a playbook that takes its targets
// from a file: the hex sha256 of the text
//
//	writ/v1 playbook with targets file\n<sha256 of the playbook>\n<sha256 of the targets file>\n
//
// (digests in lowercase hex). It changes whenever either file changes, so an
// approval of the playbook covers the targets file's bytes exactly as it
// covers the playbook's; it can be recomputed with sha256sum.
func BundleDigest(playbook, targets []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "writ/v1 playbook with targets file\n%s\n%s\n", Digest(playbook), Digest(targets))
	return hex.EncodeToString(h.Sum(nil))
}

// ReadTargetsFile reads a targets file from a repository tree (fsys is
// rooted at the repository). Only a regular file whose every parent is a
// plain directory is read: a symlink anywhere on the path, or a file over
// MaxTargetsFileBytes, is a problem located at the playbook's
// spec.targetsFile; err is for I/O failures. A file that does not exist is
// a problem too.
func ReadTargetsFile(fsys fs.FS, name string) ([]byte, string, error) {
	if !ValidTargetsFilePath(name) {
		return nil, fmt.Sprintf("%q is not a path under %s/ (letters, digits, '.', '_' and '-'; no '..')", name, IndicatorsDir), nil
	}
	parts := strings.Split(name, "/")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		fi, err := fs.Lstat(fsys, p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Sprintf("%s does not exist in the repository", name), nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read %s: %w", name, err)
		}
		last := i == len(parts)
		switch {
		case !last && !fi.IsDir():
			return nil, fmt.Sprintf("%s is not a directory (%s): targets files are plain files in the repository", p, describeMode(fi.Mode())), nil
		case last && !fi.Mode().IsRegular():
			return nil, fmt.Sprintf("%s is not a regular file (%s): targets files are plain files in the repository", p, describeMode(fi.Mode())), nil
		case last && fi.Size() > MaxTargetsFileBytes:
			return nil, fmt.Sprintf("%s is %.1f MiB; the limit is %d MiB", p, float64(fi.Size())/(1<<20), MaxTargetsFileBytes>>20), nil
		}
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxTargetsFileBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > MaxTargetsFileBytes {
		return nil, fmt.Sprintf("%s is larger than the limit of %d MiB", name, MaxTargetsFileBytes>>20), nil
	}
	return data, "", nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeIrregular != 0:
		return "a submodule or special file"
	}
	return m.Type().String()
}

// ParseTargetsFile reads the targets of a targets file: one IPv4 or IPv6
// address or CIDR prefix per line; '#' starts a comment that runs to the
// end of the line; blank lines, spaces and tabs around a target and
// CRLF line ends are allowed. A target that repeats an earlier one (in
// canonical form: 2001:DB8::1 repeats 2001:db8::1) is merged into it and
// counted in dups. Every bad line is a problem at path:line:col (at most
// 100 are listed, the rest counted); so are an empty list and more than
// MaxFileTargets targets. Targets are returned as written, in file order.
func ParseTargetsFile(path string, data []byte) (targets []string, dups int, problems diag.Problems) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	seen := make(map[string]struct{}, min(bytes.Count(data, []byte{'\n'})+1, MaxFileTargets+1))
	more := 0
	report := func(line, col int, format string, args ...any) {
		if len(problems) >= maxFileProblems {
			more++
			return
		}
		problems = append(problems, diag.Errorf(path, diag.Position{Line: line, Col: col}, "invalid-target", format, args...))
	}
	tooMany := false
	line := 0
	for len(data) > 0 {
		line++
		var raw []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			raw, data = data[:i], data[i+1:]
		} else {
			raw, data = data, nil
		}
		raw = bytes.TrimSuffix(raw, []byte{'\r'})
		if col, bad := badText(raw); bad != "" {
			report(line, col, "%s", bad)
			continue
		}
		text := string(raw)
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		start := len(text) - len(strings.TrimLeft(text, " \t"))
		token := strings.TrimRight(text[start:], " \t")
		if token == "" {
			continue
		}
		col := utf8.RuneCountInString(text[:start]) + 1
		if i := strings.IndexAny(token, " \t"); i >= 0 {
			report(line, col, "%q: one address or prefix per line (a comment starts with '#')", token)
			continue
		}
		canon, err := ParseTarget(TargetIP, token)
		if err != nil {
			report(line, col, "%v", err)
			continue
		}
		if _, dup := seen[canon]; dup {
			dups++
			continue
		}
		if len(targets) == MaxFileTargets {
			if !tooMany {
				report(line, col, "more than %d targets: split the list across playbooks", MaxFileTargets)
				tooMany = true
			}
			continue
		}
		seen[canon] = struct{}{}
		targets = append(targets, token)
	}
	if more > 0 {
		problems = append(problems, diag.Errorf(path, diag.Position{Line: line, Col: 1}, "invalid-target",
			"%d more lines have problems (the first %d are listed)", more, maxFileProblems))
	}
	if len(targets) == 0 && len(problems) == 0 {
		problems = append(problems, diag.Errorf(path, diag.Position{Line: 1, Col: 1}, "invalid-target",
			"no targets: the file holds only comments and blank lines"))
	}
	if len(problems) > 0 {
		return nil, 0, problems
	}
	return targets, dups, nil
}

// badText returns the column and a description of the first byte of line
// that is not text: invalid UTF-8, or a control character other than tab.
func badText(line []byte) (int, string) {
	col := 1
	for i := 0; i < len(line); {
		r, n := utf8.DecodeRune(line[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return col, fmt.Sprintf("invalid UTF-8 (byte 0x%02x)", line[i])
		case r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)):
			return col, fmt.Sprintf("control character %U: a targets file is plain text", r)
		}
		i += n
		col++
	}
	return 0, ""
}
