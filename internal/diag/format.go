package diag

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
)

// WriteText writes one line per problem: path:line:col: message.
func WriteText(w io.Writer, ps Problems) error {
	for _, p := range ps {
		prefix := ""
		if p.Severity == Warning {
			prefix = "warning: "
		}
		if _, err := fmt.Fprintf(w, "%s:%d:%d: %s%s\n", p.Path, max(p.Line, 1), max(p.Col, 1), prefix, p.Message); err != nil {
			return err
		}
	}
	return nil
}

// JSONReport is the JSON output of a check.
type JSONReport struct {
	Valid    bool      `json:"valid"`
	Files    int       `json:"files"`
	Problems []Problem `json:"problems"`
}

// WriteJSON writes a JSONReport.
func WriteJSON(w io.Writer, files int, ps Problems) error {
	if ps == nil {
		ps = Problems{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(JSONReport{Valid: !ps.HasErrors(), Files: files, Problems: ps})
}

// SARIF 2.1.0 (OASIS), the subset writ writes and GitHub code scanning
// reads.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool sarifTool `json:"tool"`
	// Invocations say when results were left out (maxSARIFResults).
	Invocations []sarifInvocation `json:"invocations,omitempty"`
	// OriginalURIBaseIDs gives the absolute URI of %SRCROOT%.
	OriginalURIBaseIDs map[string]sarifArtifact `json:"originalUriBaseIds,omitempty"`
	Results            []sarifResult            `json:"results"`
	// ColumnKind says how region columns count (SARIF §3.14.27: required
	// when results carry columns).
	ColumnKind string `json:"columnKind"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string       `json:"id"`
	ShortDescription sarifMessage `json:"shortDescription"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level   string       `json:"level"`
	Message sarifMessage `json:"message"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	Level     string          `json:"level"`
	Message   sarifMessage    `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn"`
}

// ruleDescriptions describe the codes writ's checkers use.
var ruleDescriptions = map[string]string{
	"file":           "The file cannot be read as a playbook (size, encoding, emptiness).",
	"yaml-syntax":    "The file is not well-formed YAML.",
	"yaml-strict":    "The YAML uses a construct writ refuses (anchors, aliases, merge keys, duplicate keys, custom tags, several documents).",
	"schema":         "The document does not match its JSON Schema.",
	"invalid-target": "A target is not valid for the action.",
	"unknown-action": "The action is not one the server knows.",
	"invalid-value":  "A field's value is not valid.",
	"duplicate-name": "Two playbooks share a metadata.name.",
	"rego-compile":   "A Rego policy does not compile.",
	"policy-data":    "A policy data file is not valid.",
}

// SrcRootID is the uriBaseId of paths relative to the source root.
const SrcRootID = "%SRCROOT%"

// ColumnKind is how writ counts columns: Unicode code points. The YAML
// decoder (go.yaml.in/yaml/v3) advances its column by one per character,
// whatever its UTF-8 length, as do OPA's Rego scanner and writ's own
// positions in JSON data and invalid UTF-8; an astral character such as
// an emoji is one column, where UTF-16 would count two.
const ColumnKind = "unicodeCodePoints"

// maxSARIFResults is what GitHub code scanning accepts in one run: an
// upload with more results is rejected as a whole.
const maxSARIFResults = 25000

// SARIFOptions places a SARIF log's paths.
type SARIFOptions struct {
	// Version is writ's version (tool.driver.version).
	Version string
	// SrcRoot is the absolute directory %SRCROOT% stands for: the root of
	// the repository being analysed. A problem's file under it is written
	// as a relative reference with uriBaseId %SRCROOT%; any other as an
	// absolute file URI.
	SrcRoot string
	// WorkDir is the absolute directory relative problem paths start
	// from (the current directory).
	WorkDir string
	// MaxResults bounds the results of the run; 0: 25,000, what code
	// scanning accepts.
	MaxResults int
}

// artifact turns a problem's path (as shown: relative to WorkDir, or
// absolute) into an artifact location: a percent-encoded URI reference
// (RFC 3986) relative to %SRCROOT%, or an absolute file URI for a file
// outside the source root (SARIF §3.4.4: uriBaseId only with a relative
// reference). An empty path stays empty.
func (o SARIFOptions) artifact(path string) sarifArtifact {
	if path == "" {
		return sarifArtifact{}
	}
	p := filepath.FromSlash(path)
	if !filepath.IsAbs(p) {
		p = filepath.Join(o.WorkDir, p)
	}
	p = filepath.Clean(p)
	if dir, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		// The root was found through the resolved working directory: a
		// path typed through a symbolic link must resolve like it.
		p = filepath.Join(dir, filepath.Base(p))
	}
	if o.SrcRoot != "" {
		if rel, err := filepath.Rel(o.SrcRoot, p); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			// net/url escapes what a path segment may not hold (space, #,
			// %, ?, non-ASCII as UTF-8 octets) and writes "./" before a
			// first segment holding a colon, which would read as a scheme.
			return sarifArtifact{URI: (&url.URL{Path: filepath.ToSlash(rel)}).String(), URIBaseID: SrcRootID}
		}
	}
	return sarifArtifact{URI: fileURI(p)}
}

// fileURI is the file URI of an absolute path (RFC 8089), percent-encoded.
func fileURI(p string) string {
	s := filepath.ToSlash(p)
	if !strings.HasPrefix(s, "/") {
		s = "/" + s // a Windows drive: file:///C:/...
	}
	return (&url.URL{Scheme: "file", Path: s}).String()
}

// WriteSARIF writes a SARIF 2.1.0 log for GitHub code scanning: one run
// whose columns count Unicode code points and whose files are named
// relative to %SRCROOT% (declared in originalUriBaseIds). At most
// MaxResults (25,000) results are written, errors first; a notification
// says how many were left out.
func WriteSARIF(w io.Writer, opts SARIFOptions, ps Problems) error {
	ps = slices.Clone(ps)
	limit := cmp.Or(opts.MaxResults, maxSARIFResults)
	var inv []sarifInvocation
	if len(ps) > limit {
		slices.SortStableFunc(ps, func(a, b Problem) int {
			return cmp.Compare(severityRank(a.Severity), severityRank(b.Severity))
		})
		inv = []sarifInvocation{{ExecutionSuccessful: true, ToolExecutionNotifications: []sarifNotification{{
			Level: "warning",
			Message: sarifMessage{Text: fmt.Sprintf("%d of %d problems are left out: GitHub code scanning accepts at most %d results in a run; run writ validate for them all",
				len(ps)-limit, len(ps), limit)},
		}}}}
		ps = ps[:limit]
		ps.Sort()
	}
	seen := map[string]bool{}
	var rules []sarifRule
	results := make([]sarifResult, 0, len(ps))
	for _, p := range ps {
		code := p.Code
		if code == "" {
			code = "writ"
		}
		if !seen[code] {
			seen[code] = true
			desc := ruleDescriptions[code]
			if desc == "" {
				desc = code
			}
			rules = append(rules, sarifRule{ID: code, ShortDescription: sarifMessage{Text: desc}})
		}
		level := "error"
		if p.Severity == Warning {
			level = "warning"
		}
		results = append(results, sarifResult{
			RuleID:  code,
			Level:   level,
			Message: sarifMessage{Text: p.Message},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
				ArtifactLocation: opts.artifact(p.Path),
				Region:           sarifRegion{StartLine: max(p.Line, 1), StartColumn: max(p.Col, 1)},
			}}},
		})
	}
	slices.SortFunc(rules, func(a, b sarifRule) int { return cmp.Compare(a.ID, b.ID) })
	if rules == nil {
		rules = []sarifRule{}
	}
	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{
			Name: "writ", Version: opts.Version,
			InformationURI: "https://github.com/writ-sec/writ",
			Rules:          rules,
		}},
		Invocations: inv,
		Results:     results,
		ColumnKind:  ColumnKind,
	}
	if opts.SrcRoot != "" {
		root := fileURI(opts.SrcRoot)
		if !strings.HasSuffix(root, "/") {
			root += "/" // §3.14.14: a base URI ends with a slash
		}
		run.OriginalURIBaseIDs = map[string]sarifArtifact{SrcRootID: {URI: root}}
	}
	log := sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []sarifRun{run},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

func severityRank(s Severity) int {
	if s == Warning {
		return 1
	}
	return 0
}
