package diag

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
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

// SARIF 2.1.0, the subset GitHub code scanning reads.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
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
	URI string `json:"uri"`
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

// WriteSARIF writes a SARIF 2.1.0 log for GitHub code scanning.
func WriteSARIF(w io.Writer, version string, ps Problems) error {
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
				ArtifactLocation: sarifArtifact{URI: p.Path},
				Region:           sarifRegion{StartLine: max(p.Line, 1), StartColumn: max(p.Col, 1)},
			}}},
		})
	}
	slices.SortFunc(rules, func(a, b sarifRule) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	if rules == nil {
		rules = []sarifRule{}
	}
	log := sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs: []sarifRun{{
			Tool: sarifTool{Driver: sarifDriver{
				Name: "writ", Version: version,
				InformationURI: "https://github.com/writ-sec/writ",
				Rules:          rules,
			}},
			Results: results,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}
