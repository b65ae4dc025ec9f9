// Package playbook holds writ's playbook format (apiVersion writ/v1, kind
// Playbook): the model, strict decoding with located errors, JSON Schema and
// semantic validation, and the content digest approvals bind to.
package playbook

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/yamldoc"
	"github.com/writ-sec/writ/schemas"
)

// APIVersion and Kind of a playbook document.
const (
	APIVersion = "writ/v1"
	Kind       = "Playbook"
	// MaxFileBytes is the largest playbook file accepted.
	MaxFileBytes = 1 << 20
)

// Severities, lowest first.
var Severities = []string{"low", "medium", "high", "critical"}

// Playbook is one decoded playbook file.
type Playbook struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`

	// Path is the file's path, relative to the repository root where known.
	Path string `yaml:"-" json:"path"`
	// Digest is the content digest approvals sign: the hex sha256 of the
	// file's bytes, or for a playbook with a targets file the BundleDigest
	// of both files.
	Digest string `yaml:"-" json:"digest"`
	// Raw is the file's bytes.
	Raw []byte `yaml:"-" json:"-"`
	// TargetsFile is the file Spec.Targets were read from (spec.targetsFile),
	// or nil when the targets are inline.
	TargetsFile *TargetsFile `yaml:"-" json:"-"`

	doc *yamldoc.Doc
	// namePos is where metadata.name is, kept when doc is released.
	namePos diag.Position
}

// Metadata identifies a playbook.
type Metadata struct {
	Name   string            `yaml:"name" json:"name"`
	Ticket string            `yaml:"ticket,omitempty" json:"ticket,omitempty"`
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Spec is the desired containment state.
type Spec struct {
	Action  string   `yaml:"action" json:"action"`
	Targets []string `yaml:"targets" json:"targets"`
	// TargetsFile names the file of the repository the targets are read
	// from instead (block_ip only); Targets then holds what it lists.
	TargetsFile   string `yaml:"targetsFile,omitempty" json:"targetsFile,omitempty"`
	Justification string `yaml:"justification" json:"justification"`
	Severity      string `yaml:"severity" json:"severity"`
	Environment   string `yaml:"environment" json:"environment"`
	ThreatType    string `yaml:"threatType,omitempty" json:"threatType,omitempty"`
	ExpiresAfter  string `yaml:"expiresAfter,omitempty" json:"expiresAfter,omitempty"`
	Execution     string `yaml:"execution,omitempty" json:"execution,omitempty"`
	// Emergency asks for break-glass: the apply may run on one signed
	// break-glass statement where the policies allow it, and must gather
	// its normal quorum within the server's window or is reverted
	// (docs/design.md, Break-glass containment).
	Emergency bool           `yaml:"emergency,omitempty" json:"emergency,omitempty"`
	Params    map[string]any `yaml:"params,omitempty" json:"params,omitempty"`
}

// Digest returns the hex sha256 of b, the digest approvals cite.
func Digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Expiry is the parsed expiresAfter; ok is false when none is set.
func (p *Playbook) Expiry() (d time.Duration, ok bool) {
	if p.Spec.ExpiresAfter == "" {
		return 0, false
	}
	d, err := ParseDuration(p.Spec.ExpiresAfter)
	return d, err == nil
}

// Manual reports whether the playbook waits for an executor.
func (p *Playbook) Manual() bool { return p.Spec.Execution == "manual" }

// Pos returns the position of the value at a JSON pointer such as
// "/spec/targets/2", or of its nearest ancestor.
func (p *Playbook) Pos(ptr string) diag.Position {
	if p.doc == nil {
		if ptr == "/metadata/name" && p.namePos.Line > 0 {
			return p.namePos
		}
		return diag.Position{Line: 1, Col: 1}
	}
	return p.doc.Pos(ptr)
}

// Release drops the parsed document positions are read from, keeping the
// position of metadata.name (CheckUniqueNames reports it); Pos gives 1:1
// for anything else after it. writ plan releases each playbook once it is
// parsed, so that thousands of documents are not kept while they are
// judged.
func (p *Playbook) Release() { p.doc = nil }

// TargetPos returns the position of the i-th target.
func (p *Playbook) TargetPos(i int) diag.Position { return p.Pos(fmt.Sprintf("/spec/targets/%d", i)) }

// Problemf makes a problem located at the value at ptr in this playbook.
func (p *Playbook) Problemf(ptr, code, format string, args ...any) diag.Problem {
	return diag.Errorf(p.Path, p.Pos(ptr), code, format, args...)
}

// PolicyInput is the playbook as policies see it (input.playbook): its
// metadata, spec and path, as JSON-compatible values.
func (p *Playbook) PolicyInput() map[string]any {
	targets := make([]any, len(p.Spec.Targets))
	for i, t := range p.Spec.Targets {
		targets[i] = t
	}
	labels := map[string]any{}
	for k, v := range p.Metadata.Labels {
		labels[k] = v
	}
	params := p.Spec.Params
	if params == nil {
		params = map[string]any{}
	}
	spec := map[string]any{
		"action":        p.Spec.Action,
		"targets":       targets,
		"justification": p.Spec.Justification,
		"severity":      p.Spec.Severity,
		"environment":   p.Spec.Environment,
		"execution":     cmpOr(p.Spec.Execution, "auto"),
		"params":        params,
	}
	if p.Spec.Emergency {
		spec["emergency"] = true
	}
	if p.Spec.ThreatType != "" {
		spec["threatType"] = p.Spec.ThreatType
	}
	if p.Spec.TargetsFile != "" {
		spec["targetsFile"] = p.Spec.TargetsFile
	}
	if p.Spec.ExpiresAfter != "" {
		spec["expiresAfter"] = p.Spec.ExpiresAfter
		if d, ok := p.Expiry(); ok {
			spec["expiresAfterSeconds"] = int64(d / time.Second)
		}
	}
	meta := map[string]any{"name": p.Metadata.Name, "labels": labels}
	if p.Metadata.Ticket != "" {
		meta["ticket"] = p.Metadata.Ticket
	}
	return map[string]any{
		"path":       p.Path,
		"digest":     p.Digest,
		"apiVersion": p.APIVersion,
		"kind":       p.Kind,
		"metadata":   meta,
		"spec":       spec,
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Options configure validation beyond the schema.
type Options struct {
	// Actions maps known action types to the kind of targets they take.
	// Nil means the built-in actions.
	Actions Catalog
	// Environments the server knows. Empty: any DNS label is accepted.
	Environments []string
	// Files is the repository the playbook belongs to, rooted at its top:
	// spec.targetsFile is read from it (the tree of the playbook's commit,
	// or a checkout for the CLI). LoadFS defaults it to the file system it
	// loads from. Nil: a playbook that names a targets file is refused.
	Files fs.FS
	// FilesRoot prefixes a targets file's path in problems, e.g. "repo/"
	// when the repository is not the working directory.
	FilesRoot string

	// stored is the targets file's bytes as kept with a stored version
	// (ParseStored); it replaces Files.
	stored *[]byte
}

var hints = yamldoc.Hints{
	"/metadata/name":      "is not a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
	"/spec/action":        "is not an action name: lowercase letters, digits and '_'",
	"/spec/environment":   "is not an environment name: lowercase letters, digits and '-'",
	"/spec/expiresAfter":  "is not a duration such as 30m, 72h or 7d",
	"/spec/justification": "must say why, not just be blank",
	"/spec/threatType":    "is not a threat type: lowercase letters, digits, '-' and '_'",
	"/metadata/ticket":    "must not contain control characters",
	"/spec/targetsFile":   "is not a path under indicators/: segments of letters, digits, '.', '_' and '-', not starting with '.'",
}

// ParseStored parses a stored version: the playbook's bytes and the bytes
// of its targets file as they were read at its commit (nil when it has
// none).
func ParseStored(path string, data, targetsFile []byte, opts Options) (*Playbook, diag.Problems) {
	opts.Files, opts.stored = nil, &targetsFile
	return Parse(path, data, opts)
}

// Parse decodes and validates one playbook file, and the targets file it
// names (read from opts.Files). On any problem it returns a nil playbook
// and every problem found, each located path:line:col.
func Parse(path string, data []byte, opts Options) (*Playbook, diag.Problems) {
	doc, problems := yamldoc.Parse(path, data, yamldoc.Limits{MaxBytes: MaxFileBytes})
	if problems != nil {
		return nil, problems
	}
	if _, ok := doc.Value.(map[string]any); !ok {
		return nil, diag.Problems{doc.Errorf("", "schema",
			"a playbook is a mapping with apiVersion, kind, metadata and spec; found %s", describeValue(doc.Value))}
	}
	if problems := doc.Validate(schemas.Must(schemas.Playbook), hints); problems != nil {
		return nil, problems
	}
	p := &Playbook{Path: path, Digest: Digest(data), Raw: data, doc: doc, namePos: doc.Pos("/metadata/name")}
	if err := doc.Decode(p); err != nil {
		return nil, diag.Problems{doc.Errorf("", "schema", "%v", err)}
	}
	if problems := p.check(opts); problems != nil {
		return nil, problems
	}
	if p.Spec.TargetsFile != "" {
		if problems := p.readTargets(opts); problems != nil {
			return nil, problems
		}
	}
	return p, nil
}

// readTargets reads and checks the targets file, fills Spec.Targets with
// its targets and makes Digest cover it.
func (p *Playbook) readTargets(opts Options) diag.Problems {
	name := p.Spec.TargetsFile
	var data []byte
	switch {
	case opts.stored != nil:
		if *opts.stored == nil {
			return diag.Problems{p.Problemf("/spec/targetsFile", "file", "spec.targetsFile: the stored version has no copy of %s", name)}
		}
		data = *opts.stored
	case opts.Files == nil:
		return diag.Problems{p.Problemf("/spec/targetsFile", "file", "spec.targetsFile: %s cannot be read here: targets files are read from the playbook's repository", name)}
	default:
		var why string
		var err error
		data, why, err = ReadTargetsFile(opts.Files, name)
		if err != nil {
			return diag.Problems{p.Problemf("/spec/targetsFile", "file", "spec.targetsFile: %v", err)}
		}
		if why != "" {
			return diag.Problems{p.Problemf("/spec/targetsFile", "file", "spec.targetsFile: %s", why)}
		}
	}
	if len(data) > MaxTargetsFileBytes {
		return diag.Problems{p.Problemf("/spec/targetsFile", "file", "spec.targetsFile: %s is larger than the limit of %d MiB", name, MaxTargetsFileBytes>>20)}
	}
	targets, dups, problems := ParseTargetsFile(opts.FilesRoot+name, data)
	if problems != nil {
		return problems
	}
	p.Spec.Targets = targets
	p.TargetsFile = &TargetsFile{Path: name, Raw: data, Digest: Digest(data), Duplicates: dups}
	p.Digest = BundleDigest(p.Raw, data)
	return nil
}

func describeValue(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case string:
		return "a string"
	case nil:
		return "nothing (null)"
	}
	return fmt.Sprintf("a %T", v)
}

// check runs the semantic checks the schema cannot express.
func (p *Playbook) check(opts Options) diag.Problems {
	var out diag.Problems
	actions := opts.Actions
	if actions == nil {
		actions = Builtin
	}
	kind, known := actions[p.Spec.Action]
	switch {
	case p.Spec.TargetsFile != "" && p.Spec.Targets != nil:
		out = append(out, p.Problemf("/spec/targetsFile", "schema",
			"spec.targets and spec.targetsFile exclude each other: list the targets inline or in the file, not both"))
	case p.Spec.TargetsFile == "" && p.Spec.Targets == nil:
		out = append(out, p.Problemf("/spec", "schema", `missing required field "targets" (or "targetsFile") in spec`))
	case p.Spec.TargetsFile != "" && p.Spec.Action != TargetsFileAction:
		out = append(out, p.Problemf("/spec/targetsFile", "schema",
			"spec.targetsFile: only %s takes its targets from a file; list the targets of %s inline", TargetsFileAction, p.Spec.Action))
	}
	if !known {
		out = append(out, p.Problemf("/spec/action", "unknown-action", "unknown action %q; known actions: %s",
			p.Spec.Action, strings.Join(actions.Names(), ", ")))
	} else {
		seen := make(map[string]int, len(p.Spec.Targets))
		for i, t := range p.Spec.Targets {
			canon, err := ParseTarget(kind, t)
			if err != nil {
				out = append(out, diag.Errorf(p.Path, p.TargetPos(i), "invalid-target", "spec.targets[%d]: %v", i, err))
				continue
			}
			if first, dup := seen[canon]; dup {
				out = append(out, diag.Errorf(p.Path, p.TargetPos(i), "invalid-target",
					"spec.targets[%d]: %q repeats spec.targets[%d]", i, t, first))
				continue
			}
			seen[canon] = i
		}
	}
	if len(opts.Environments) > 0 && !slices.Contains(opts.Environments, p.Spec.Environment) {
		out = append(out, p.Problemf("/spec/environment", "invalid-value", "environment %q is not one of the server's environments: %s",
			p.Spec.Environment, strings.Join(opts.Environments, ", ")))
	}
	if p.Spec.ExpiresAfter != "" {
		if _, err := ParseDuration(p.Spec.ExpiresAfter); err != nil {
			out = append(out, p.Problemf("/spec/expiresAfter", "invalid-value", "spec.expiresAfter: %v", err))
		}
	}
	if strings.TrimSpace(p.Spec.Justification) == "" {
		out = append(out, p.Problemf("/spec/justification", "invalid-value", "spec.justification: must say why, not just be blank"))
	}
	if len(out) == 0 {
		return nil
	}
	out.Sort()
	return out
}

// CheckUniqueNames reports every playbook whose metadata.name is already
// used by an earlier one (in the order given).
func CheckUniqueNames(pbs []*Playbook) diag.Problems {
	first := make(map[string]*Playbook, len(pbs))
	var out diag.Problems
	for _, p := range pbs {
		if prev, dup := first[p.Metadata.Name]; dup {
			pos := prev.Pos("/metadata/name")
			out = append(out, p.Problemf("/metadata/name", "duplicate-name",
				"metadata.name %q is already used by %s:%d:%d", p.Metadata.Name, prev.Path, pos.Line, pos.Col))
			continue
		}
		first[p.Metadata.Name] = p
	}
	return out
}
