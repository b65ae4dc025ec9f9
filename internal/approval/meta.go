package approval

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/playbook"
)

// Subjects of a meta-change approval: a change to what decides whether
// playbooks run (docs/design.md, trust rules 1, 7 and 8).
//
//   - PoliciesSubject ("policies/") with the sha256 digest of the NEW
//     policy set (policy.DigestFS of the changed tree), when policies/
//     changes;
//   - KeyringPath (".writ/approvers.yaml") with the sha256 of the NEW file,
//     when the approvers file changes;
//   - any other changed file under .writ/, by its path and new sha256.
//
// One statement must cover exactly the changed subjects, and name the
// transition (Predicate.Transition): the trusted commit the change replaces
// and, per subject, the digest of the content it replaces. Its policyDigest
// is the TRUSTED (old) policy digest, the set that governs the change;
// planDigest is empty (a meta change has no dry-run).
const PoliciesSubject = "policies/"

// PolicySetSubject is the subject for a new policy set digest. A digest
// written as "sha256:HEX" is reduced to HEX.
func PolicySetSubject(digest string) Subject {
	return Subject{Path: PoliciesSubject, Digest: strings.TrimPrefix(digest, "sha256:")}
}

// FileSubject is the subject for a file's new content.
func FileSubject(path string, content []byte) Subject {
	return Subject{Path: path, Digest: playbook.Digest(content)}
}

// MetaOptions tune VerifyMeta; the zero value is the default.
type MetaOptions struct {
	// ApprovalsRequired is the number of admins who must approve.
	// Default 2.
	ApprovalsRequired int
	// MaxAge and ClockSkew as in Options (defaults 24h and 5m).
	MaxAge    time.Duration
	ClockSkew time.Duration
	// RequireProposal makes a signed proposal (by an analyst or admin)
	// mandatory. Default false; a valid proposal's signer never counts as
	// an approver of the same change either way.
	RequireProposal bool
}

// DefaultMetaApprovals is the default number of admin approvals for a
// change to policies/ or .writ/.
const DefaultMetaApprovals = 2

// MetaInput is what VerifyMeta judges a change to policies/ or .writ/ on.
type MetaInput struct {
	// Changes are the changed subjects (see PoliciesSubject).
	Changes []Subject
	// Transition is the change judged: the trusted (adopted) commit, and
	// per subject the digest of the content it replaces.
	Transition Transition
	// Repository is OWNER/NAME, always known, as in Input.
	Repository string
	// PolicyDigest is the trusted base's policy digest.
	PolicyDigest string
	// Keyring is the trusted base's approvers file, never the changed one.
	Keyring   *Keyring
	Envelopes []Submitted
	Now       time.Time
	Options   MetaOptions
}

func (in *MetaInput) validate() error {
	if in.Keyring == nil {
		return errors.New("no keyring")
	}
	if len(in.Changes) == 0 {
		return errors.New("no changed subjects")
	}
	if err := validateRepository(in.Repository); err != nil {
		return err
	}
	if !commitRE.MatchString(in.Transition.TrustedCommit) {
		return fmt.Errorf("trusted commit %q is not a commit id", in.Transition.TrustedCommit)
	}
	seen := map[string]bool{}
	for _, s := range in.Changes {
		if err := validateSubject(s); err != nil {
			return err
		}
		if seen[s.Path] {
			return fmt.Errorf("subject %s given twice", s.Path)
		}
		seen[s.Path] = true
		if !sha256RE.MatchString(in.Transition.Replaces[s.Path]) {
			return fmt.Errorf("subject %s: the digest of the content it replaces is missing", s.Path)
		}
	}
	if in.PolicyDigest == "" {
		return errors.New("no policy digest")
	}
	if in.Now.IsZero() {
		return errors.New("no time given")
	}
	if in.Options.ApprovalsRequired < 0 {
		return fmt.Errorf("approvals required %d is negative", in.Options.ApprovalsRequired)
	}
	o := Options{MaxAge: in.Options.MaxAge, ClockSkew: in.Options.ClockSkew}
	return o.validate()
}

// VerifyMeta judges the approvals of a change to policies/ or .writ/: the
// same checks as Verify, with admins as the only qualifying role, the
// number of approvals from the options (default 2), subjects as documented
// at PoliciesSubject, and no plan. It does no I/O.
func VerifyMeta(in MetaInput) Verdict {
	required := in.Options.ApprovalsRequired
	if required == 0 {
		required = DefaultMetaApprovals
	}
	if err := in.validate(); err != nil {
		return inputError(err, required)
	}
	o := Options{MaxAge: in.Options.MaxAge, ClockSkew: in.Options.ClockSkew}
	o.setDefaults()
	t := in.Transition
	return rules{
		subjects:        in.Changes,
		repository:      in.Repository,
		transition:      &t,
		required:        required,
		approverRoles:   []string{RoleAdmin},
		proposerRoles:   []string{RoleAnalyst, RoleAdmin},
		policyDigest:    in.PolicyDigest,
		planDigest:      "",
		requireProposal: in.Options.RequireProposal,
		keyring:         in.Keyring,
		now:             in.Now,
		maxAge:          o.MaxAge,
		skew:            o.ClockSkew,
	}.judge(in.Envelopes)
}
