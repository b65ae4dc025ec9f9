// Package approval holds writ's signed approvals (docs/approvals.md; the
// trust rules they serve are in docs/design.md): the
// in-toto Statement and approval predicate, their DSSE envelope, signing and
// strict decoding, the approvers keyring read from .writ/approvers.yaml, and
// the quorum rules that decide whether a playbook — or a change to the
// policies or the keyring itself — is approved.
//
// An approval is a DSSE envelope (payloadType application/vnd.in-toto+json)
// holding an in-toto Statement (v1, or v0.1 as cosign attest-blob writes it)
// whose predicate says who decided what (propose, approve or reject) about
// which exact content: the playbook's sha256, the digest of the policy set
// that judged it and the digest of its dry-run plan. Nothing here trusts the
// channel an envelope arrived by; only signatures by keys of the trusted
// keyring count.
package approval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	ita1 "github.com/in-toto/attestation/go/v1"
)

// Types and limits of the format.
const (
	// PredicateType names writ's approval predicate.
	PredicateType = "https://github.com/writ-sec/writ/attestation/approval/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// StatementV1 and StatementV01 are the in-toto statement types accepted;
	// writ writes v1, cosign attest-blob writes v0.1.
	StatementV1  = ita1.StatementTypeUri
	StatementV01 = "https://in-toto.io/Statement/v0.1"
	// MaxEnvelopeBytes bounds an envelope (the approvals table enforces it too).
	MaxEnvelopeBytes = 256 << 10
	// MaxReasonBytes bounds a predicate's reason.
	MaxReasonBytes = 4096
	// MaxSubjects bounds the subjects of one statement.
	MaxSubjects = 256
)

// Decisions a predicate can carry.
const (
	Propose = "propose"
	Approve = "approve"
	Reject  = "reject"
)

// Operations a playbook statement can be about. A statement about a
// playbook counts only for the operation it names: a proposal or approval
// of an apply never authorises a revert of the same content, nor the other
// way round. A statement that names none is about an apply.
const (
	OperationApply  = "apply"
	OperationRevert = "revert"
	// OperationHeal re-applies what drift removed from live state
	// (docs/design.md, Drift): a statement about a heal names its
	// incident, and counts for that incident's heal only.
	OperationHeal = "heal"
)

// Transition is what a statement about a change to policies/ or .writ/
// approves: the change from the trust in force to the subjects' new
// content. It binds the statement to one adoption, so that it is never
// valid for another: not for the same files changed from another base,
// and not for a change that was adopted, reverted and pushed again (the
// trusted commit has moved on by then).
type Transition struct {
	// TrustedCommit is the commit whose policies and approvers were in force
	// when the change was approved (writ's adopted commit).
	TrustedCommit string `json:"trustedCommit"`
	// Replaces maps each subject's name to the hex sha256 of the content it
	// replaces: the trusted policy set's digest for "policies/", the old
	// file's digest for a file under .writ/ (the digest of no content when
	// the file is new).
	Replaces map[string]string `json:"replaces"`
}

// Predicate is writ's approval predicate (docs/approvals.md). Decoding
// refuses unknown fields.
type Predicate struct {
	// Decision is propose, approve or reject.
	Decision string `json:"decision"`
	// Approver is the signer's person id in the approvers file.
	Approver string `json:"approver"`
	// Operation is apply or revert for a statement about playbooks (empty
	// means apply); empty for a change to policies/ or .writ/.
	Operation string `json:"operation,omitempty"`
	// Incident is the drift incident a heal answers: set exactly when
	// Operation is heal.
	Incident int64 `json:"incident,omitempty"`
	// Transition is set exactly when the statement is about a change to
	// policies/ or .writ/.
	Transition *Transition `json:"transition,omitempty"`
	// Repository is OWNER/NAME of the content repository. A statement counts
	// only in the repository it names.
	Repository string `json:"repository,omitempty"`
	// PullRequest is the pull request number, when the decision was made on one.
	PullRequest int `json:"pullRequest,omitempty"`
	// HeadCommit is the commit the signer looked at, when known.
	HeadCommit string `json:"headCommit,omitempty"`
	// PolicyDigest is the digest of the policy set that judged the subjects
	// (for a change to policies/ or .writ/: the trusted, old one).
	PolicyDigest string `json:"policyDigest,omitempty"`
	// PlanDigest is the digest of the dry-run plan approved (empty for a
	// change to policies/ or .writ/).
	PlanDigest string `json:"planDigest,omitempty"`
	// BreakGlass marks an approval that invokes break-glass: signed by a
	// holder of the break-glass role, it alone lets an emergency apply run
	// (where the policies allow emergencies), and it never counts toward
	// the normal quorum the apply must still gather (docs/design.md,
	// Break-glass containment). Only an approval of an apply may carry it.
	BreakGlass bool `json:"breakGlass,omitempty"`
	// Reason says why; rejections should always say.
	Reason string `json:"reason,omitempty"`
	// IssuedAt and ExpiresAt bound the statement's validity.
	IssuedAt  time.Time `json:"issuedAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Descriptor is one subject of a statement: a name (a repository path, or
// a file's base name as cosign writes it) and digests by algorithm.
type Descriptor struct {
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest"`
}

// SHA256 is the descriptor's sha256 digest ("" when absent).
func (d Descriptor) SHA256() string { return d.Digest["sha256"] }

// Statement is an in-toto Statement carrying an approval predicate.
type Statement struct {
	Type          string       `json:"_type"`
	Subject       []Descriptor `json:"subject"`
	PredicateType string       `json:"predicateType"`
	Predicate     Predicate    `json:"predicate"`
}

// Subject is something a statement approves: a repository path and the hex
// sha256 of its content (for a playbook, playbook.Digest of its bytes).
type Subject struct {
	Path   string
	Digest string
}

// NewStatement makes an in-toto Statement v1 over subjects.
func NewStatement(subjects []Subject, p Predicate) Statement {
	st := Statement{Type: StatementV1, PredicateType: PredicateType, Predicate: p}
	for _, s := range subjects {
		st.Subject = append(st.Subject, Descriptor{Name: s.Path, Digest: map[string]string{"sha256": s.Digest}})
	}
	return st
}

var (
	personIDRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)
	repositoryRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$`) })
	commitRE     = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// Policy digests are written by package policy; accept a hex digest
	// with an optional algorithm prefix.
	policyDigestRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([a-z0-9]{1,16}:)?[0-9a-f]{32,128}$`) })
)

// Validate checks a statement is well formed: the statement type, subjects
// with sha256 digests, writ's predicate type and a complete predicate.
func (st *Statement) Validate() error {
	if st.Type != StatementV1 && st.Type != StatementV01 {
		return fmt.Errorf("statement _type %q is not an in-toto statement (%s or %s)", st.Type, StatementV1, StatementV01)
	}
	if st.PredicateType != PredicateType {
		return &predicateTypeError{got: st.PredicateType}
	}
	if len(st.Subject) == 0 {
		return errors.New("statement has no subject")
	}
	if len(st.Subject) > MaxSubjects {
		return fmt.Errorf("statement has %d subjects; the limit is %d", len(st.Subject), MaxSubjects)
	}
	for i, s := range st.Subject {
		rd := &ita1.ResourceDescriptor{Name: s.Name, Digest: s.Digest}
		if err := rd.Validate(); err != nil {
			return fmt.Errorf("subject[%d]: %w", i, err)
		}
		if !sha256RE.MatchString(s.SHA256()) {
			return fmt.Errorf("subject[%d]: digest.sha256 must be 64 lowercase hex digits", i)
		}
		if err := checkText("subject name", s.Name, 4096); err != nil {
			return fmt.Errorf("subject[%d]: %w", i, err)
		}
	}
	return st.Predicate.validate()
}

type predicateTypeError struct{ got string }

func (e *predicateTypeError) Error() string {
	return fmt.Sprintf("predicateType %q is not writ's approval predicate %s", e.got, PredicateType)
}

func (p *Predicate) validate() error {
	switch p.Decision {
	case Propose, Approve, Reject:
	case "":
		return errors.New("predicate.decision is missing")
	default:
		return fmt.Errorf("predicate.decision %q is not propose, approve or reject", p.Decision)
	}
	if p.Approver == "" {
		return errors.New("predicate.approver is missing")
	}
	if !personIDRE.MatchString(p.Approver) {
		return fmt.Errorf("predicate.approver %q is not a person id", p.Approver)
	}
	if p.Repository != "" && !repositoryRE().MatchString(p.Repository) {
		return fmt.Errorf("predicate.repository %q is not OWNER/NAME", p.Repository)
	}
	switch p.Operation {
	case "", OperationApply, OperationRevert:
		if p.Incident != 0 {
			return errors.New("predicate.incident names a drift incident: it is for a heal only")
		}
	case OperationHeal:
		if p.Incident <= 0 {
			return errors.New("predicate.incident is missing: a statement about a heal names the drift incident it answers")
		}
	default:
		return fmt.Errorf("predicate.operation %q is not apply, revert or heal", p.Operation)
	}
	if p.BreakGlass {
		switch {
		case p.Decision != Approve:
			return fmt.Errorf("predicate.breakGlass is for approvals; a %s never invokes break-glass", p.Decision)
		case p.Transition != nil:
			return errors.New("predicate.breakGlass is for playbook applies; a change to policies/ or .writ/ never breaks glass")
		case p.Operation != "" && p.Operation != OperationApply:
			return fmt.Errorf("predicate.breakGlass is for applies; a %s never breaks glass", p.Operation)
		}
	}
	if t := p.Transition; t != nil {
		if p.Operation != "" {
			return errors.New("predicate.operation is for playbooks; a statement with a transition names none")
		}
		if !commitRE.MatchString(t.TrustedCommit) {
			return fmt.Errorf("predicate.transition.trustedCommit %q is not a lowercase hex commit id", t.TrustedCommit)
		}
		if len(t.Replaces) == 0 {
			return errors.New("predicate.transition.replaces is empty: it names the content each subject replaces")
		}
		if len(t.Replaces) > MaxSubjects {
			return fmt.Errorf("predicate.transition.replaces has %d entries; the limit is %d", len(t.Replaces), MaxSubjects)
		}
		for name, d := range t.Replaces {
			if err := checkText("predicate.transition.replaces key", name, 4096); err != nil {
				return err
			}
			if !sha256RE.MatchString(d) {
				return fmt.Errorf("predicate.transition.replaces[%q] is not 64 lowercase hex digits", name)
			}
		}
	}
	if p.PullRequest < 0 {
		return fmt.Errorf("predicate.pullRequest %d is not a pull request number", p.PullRequest)
	}
	if p.HeadCommit != "" && !commitRE.MatchString(p.HeadCommit) {
		return fmt.Errorf("predicate.headCommit %q is not a lowercase hex commit id", p.HeadCommit)
	}
	if p.PolicyDigest != "" && !policyDigestRE().MatchString(p.PolicyDigest) {
		return fmt.Errorf("predicate.policyDigest %q is not a digest", p.PolicyDigest)
	}
	if p.PlanDigest != "" && !sha256RE.MatchString(p.PlanDigest) {
		return fmt.Errorf("predicate.planDigest %q is not 64 lowercase hex digits", p.PlanDigest)
	}
	if p.Decision == Approve && p.PolicyDigest == "" {
		return errors.New("predicate.policyDigest is missing: an approval names the policy set that judged the change")
	}
	if err := checkText("predicate.reason", p.Reason, MaxReasonBytes); err != nil {
		return err
	}
	if p.IssuedAt.IsZero() {
		return errors.New("predicate.issuedAt is missing")
	}
	if p.ExpiresAt.IsZero() {
		return errors.New("predicate.expiresAt is missing")
	}
	if !p.ExpiresAt.After(p.IssuedAt) {
		return fmt.Errorf("predicate.expiresAt %s is not after issuedAt %s", p.ExpiresAt.Format(time.RFC3339), p.IssuedAt.Format(time.RFC3339))
	}
	return nil
}

// checkText refuses oversized text and control characters other than
// newlines and tabs (they could forge lines in logs and PR comments).
func checkText(what, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s is %d bytes; the limit is %d", what, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not UTF-8", what)
	}
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%s contains control character %U", what, r)
		}
	}
	return nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields,
// duplicate keys, nesting deeper than maxJSONDepth and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return cleanJSONErr(err)
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return checkDuplicateKeys(data)
}

func cleanJSONErr(err error) error {
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return errors.New(msg)
}

// maxJSONDepth bounds nesting in untrusted JSON.
const maxJSONDepth = 32

// checkDuplicateKeys scans a JSON document that is known to be valid (it
// decoded) and refuses an object with the same key twice — encoding/json
// would silently keep the last — and nesting deeper than maxJSONDepth. Keys
// are compared after unescaping ("a" and "\u0061" are the same key).
func checkDuplicateKeys(data []byte) error {
	type frame struct {
		object bool
		keys   [][]byte
	}
	var stack []frame
	expectKey := false
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("JSON nested deeper than %d levels", maxJSONDepth)
			}
			stack = append(stack, frame{object: data[i] == '{'})
			expectKey = data[i] == '{'
		case '}', ']':
			if len(stack) == 0 {
				return errors.New("unbalanced JSON")
			}
			stack = stack[:len(stack)-1]
			expectKey = false
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1].object
		case '"':
			end, escaped := stringEnd(data, i)
			if end < 0 {
				return errors.New("unterminated JSON string")
			}
			if expectKey && len(stack) > 0 {
				key := data[i+1 : end]
				if escaped {
					var s string
					if err := json.Unmarshal(data[i:end+1], &s); err != nil {
						return cleanJSONErr(err)
					}
					key = []byte(s)
				}
				f := &stack[len(stack)-1]
				for _, k := range f.keys {
					if bytes.Equal(k, key) {
						return fmt.Errorf("duplicate JSON key %q", key)
					}
				}
				f.keys = append(f.keys, key)
				expectKey = false
			}
			i = end
		}
	}
	return nil
}

// stringEnd returns the index of the quote closing the string that starts
// at data[start], and whether it holds escapes; -1 when unterminated.
func stringEnd(data []byte, start int) (int, bool) {
	escaped := false
	for j := start + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j, escaped
		}
	}
	return -1, escaped
}
