package approval

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/display"
)

// Code says why an envelope did not count. Codes are stable: the API, PR
// checks and the audit log carry them.
type Code string

// Codes, one per reason an envelope is not counted.
const (
	CodeMalformed            Code = "malformed"              // not a DSSE envelope with an approval statement
	CodeWrongPredicateType   Code = "wrong_predicate_type"   // an in-toto statement of another kind
	CodeBadSignature         Code = "bad_signature"          // the named key does not verify the signature
	CodeUnknownKey           Code = "unknown_key"            // no key in the keyring verifies it
	CodeKeyOfAnotherPerson   Code = "key_of_another_person"  // signed by someone other than the named approver
	CodePersonDisabled       Code = "person_disabled"        // the signer is disabled in the keyring
	CodeLoginMismatch        Code = "login_mismatch"         // submitted by a forge login that is not the signer's
	CodeSubjectMismatch      Code = "subject_mismatch"       // about other content
	CodeRepositoryMismatch   Code = "repository_mismatch"    // about another repository
	CodePolicyDigestMismatch Code = "policy_digest_mismatch" // judged by another policy set
	CodePlanDigestMismatch   Code = "plan_digest_mismatch"   // approved another dry-run plan
	CodeExpired              Code = "expired"                // past expiresAt, or older than MaxAge
	CodeIssuedInFuture       Code = "issued_in_future"       // issuedAt beyond the clock skew
	CodeSelfApproval         Code = "self_approval"          // the proposer approving their own change
	CodeProposerNotAnalyst   Code = "proposer_not_analyst"   // a proposal by someone without the role
	CodeDuplicatePerson      Code = "duplicate_person"       // another envelope of the same person counts
	CodeRoleNotQualified     Code = "role_not_qualified"     // the signer holds no qualifying role
	CodeOperationMismatch    Code = "operation_mismatch"     // about another operation (apply or revert) of the content
	CodeTransitionMismatch   Code = "transition_mismatch"    // about another change of policies/ or .writ/, or not about one
	CodeBreakGlassMismatch   Code = "break_glass_mismatch"   // a break-glass statement where the quorum is counted, or an ordinary one where break-glass is
	CodeNotPending           Code = "not_pending"            // refused at the door: about an operation already done, or a superseded change
	CodeWithdrawn            Code = "withdrawn"              // refused at the door: the statement was withdrawn (its review dismissed, its text edited away)
	CodeRejectionNotBinding  Code = "rejection_not_binding"  // a rejection of a revert the approved content or a lapsed break-glass makes due: it does not hold it back
)

// Submitted is one envelope as it reached writ, with where it came from.
// The channel is never trusted; it only narrows: when SourceLogin is set
// (a GitHub review, a GitLab note), Source is the forge, and the signer's
// login on that forge (the approvers file's logins) must be SourceLogin.
type Submitted struct {
	Envelope    []byte
	Source      string // api, cli, console, import, or a forge: github, gitlab
	SourceRef   string // e.g. the GitHub review id
	SourceLogin string // the forge account that submitted it, when any
	// Remote is the client address it came from (the API), for the audit
	// of refusals only; it never affects a verdict.
	Remote string
}

// LoginMismatch says why a statement a forge delivered cannot count for
// p: it was submitted by an account that is not p's login on that forge.
// "" when it can (or no forge account submitted it).
func (sub Submitted) LoginMismatch(p *Person) string {
	if sub.SourceLogin == "" {
		return ""
	}
	login := p.Login(sub.Source)
	switch {
	case login == "":
		return fmt.Sprintf("submitted by %s user %q, but %q has no %s login in the approvers file", forgeName(sub.Source), sub.SourceLogin, p.ID, sub.Source)
	case !strings.EqualFold(login, sub.SourceLogin):
		return fmt.Sprintf("submitted by %s user %q, but %q is %s user %q", forgeName(sub.Source), sub.SourceLogin, p.ID, forgeName(sub.Source), login)
	}
	return ""
}

// Options tune the rules; the zero value is the default.
type Options struct {
	// MaxAge bounds how long an approval counts after it was issued,
	// whatever its expiresAt says. Default 24h.
	MaxAge time.Duration
	// ClockSkew is how far in the future issuedAt may be. Default 5m.
	ClockSkew time.Duration
	// RelaxProposal lets an allowed playbook (ApprovalsRequired 0) pass
	// without a signed proposal. A playbook that needs approvals always
	// needs one (docs/approvals.md, Quorum). Default false: proposals
	// required.
	RelaxProposal bool
	// RejectionsDoNotBind: signed rejections do not block (they are
	// reported as not counted, CodeRejectionNotBinding). For the reverts
	// that are due whatever anyone signs now: the one expiresAfter
	// scheduled (its time was part of the approved content) and the one a
	// lapsed break-glass records (the lapse is how the missing quorum is
	// enforced). Default false: a rejection blocks.
	RejectionsDoNotBind bool
}

// Defaults of Options.
const (
	DefaultMaxAge    = 24 * time.Hour
	DefaultClockSkew = 5 * time.Minute
)

func (o *Options) setDefaults() {
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.ClockSkew == 0 {
		o.ClockSkew = DefaultClockSkew
	}
}

func (o *Options) validate() error {
	if o.MaxAge < 0 {
		return fmt.Errorf("max age %s is negative", o.MaxAge)
	}
	if o.ClockSkew < 0 {
		return fmt.Errorf("clock skew %s is negative", o.ClockSkew)
	}
	return nil
}

// Input is everything Verify judges a playbook's approvals on. All of it
// comes from the trusted base and the engine's own evaluation, except the
// envelopes.
type Input struct {
	// Subject is the playbook: its repository path and digest.
	Subject Subject
	// Operation is what is judged: OperationApply or OperationRevert
	// (empty: apply). Statements count only for the operation they name.
	Operation string
	// Incident is the drift incident a heal answers (Operation heal only):
	// statements count only for the incident they name.
	Incident int64
	// Repository is OWNER/NAME of the content repository, always known.
	// Statements count only when they name it.
	Repository string
	// ApprovalsRequired and ApproverRoles come from the policy decision.
	// No roles means "approver".
	ApprovalsRequired int
	ApproverRoles     []string
	// PolicyDigest and PlanDigest are what approvals must cite.
	PolicyDigest string
	PlanDigest   string
	// Keyring is the trusted base's approvers file.
	Keyring   *Keyring
	Envelopes []Submitted
	Now       time.Time
	Options   Options
}

// Counted is an approval that counts toward the quorum.
type Counted struct {
	Approver      string    `json:"approver"`
	Role          string    `json:"role"` // the role it counts as
	EnvelopeIndex int       `json:"envelopeIndex"`
	KeyID         string    `json:"keyId"`
	IssuedAt      time.Time `json:"issuedAt"`
	// ValidUntil is when it stops counting: expiresAt, or issuedAt+MaxAge
	// when earlier.
	ValidUntil time.Time `json:"validUntil"`
}

// Rejection is a valid signed rejection by a qualified person; it blocks.
type Rejection struct {
	Approver      string    `json:"approver"`
	Role          string    `json:"role"`
	Reason        string    `json:"reason"`
	EnvelopeIndex int       `json:"envelopeIndex"`
	IssuedAt      time.Time `json:"issuedAt"`
}

// Proposal is a valid signed proposal: its signer is the author.
type Proposal struct {
	Proposer      string    `json:"proposer"`
	EnvelopeIndex int       `json:"envelopeIndex"`
	IssuedAt      time.Time `json:"issuedAt"`
	ExpiresAt     time.Time `json:"expiresAt"`
}

// NotCounted says why an envelope did not count.
type NotCounted struct {
	EnvelopeIndex int    `json:"envelopeIndex"`
	Code          Code   `json:"code"`
	Message       string `json:"message"`
	// Approver is the signer when known, else the approver the statement
	// names, else "".
	Approver string `json:"approver,omitempty"`
	Decision string `json:"decision,omitempty"`
}

// Verdict is the outcome of Verify or VerifyMeta.
type Verdict struct {
	// QuorumMet: enough counted approvals, a signed proposal where one is
	// needed, and no rejection.
	QuorumMet bool `json:"quorumMet"`
	// Err is set when the input itself was unusable (no keyring, no
	// subject); nothing counts then. InputError is its text, for JSON.
	Err        error  `json:"-"`
	InputError string `json:"inputError,omitempty"`
	// Required is the number of approvals needed.
	Required int `json:"required"`
	// Proposer is the author: the signer of the earliest valid proposal.
	// Proposals lists every valid one (co-authors may all sign; none of
	// them may approve).
	Proposer        string       `json:"proposer,omitempty"`
	Proposals       []Proposal   `json:"proposals,omitempty"`
	ProposalMissing bool         `json:"proposalMissing,omitempty"`
	Counted         []Counted    `json:"counted,omitempty"`
	Rejected        []Rejection  `json:"rejected,omitempty"`
	NotCounted      []NotCounted `json:"notCounted,omitempty"`
	// Missing is how many more approvals are needed.
	Missing int `json:"missing"`
	// ValidUntil is when a met quorum lapses (the first counted approval or
	// proposal to expire); zero when not met.
	ValidUntil *time.Time `json:"validUntil,omitempty"`
}

// Summary is the verdict in one line, e.g. "approved by bob, carol (2
// approvals, 2 required); proposed by alice".
func (v *Verdict) Summary() string {
	var b strings.Builder
	var who []string
	for _, c := range v.Counted {
		who = append(who, c.Approver)
	}
	switch {
	case v.Err != nil:
		return fmt.Sprintf("not approved: %v", v.Err)
	case len(v.Rejected) > 0:
		var rs []string
		for _, r := range v.Rejected {
			rs = append(rs, fmt.Sprintf("%s (%s)", r.Approver, display.Line(r.Reason, 200)))
		}
		fmt.Fprintf(&b, "rejected by %s", strings.Join(rs, ", "))
	case v.QuorumMet && v.Required == 0:
		b.WriteString("approved: no approvals required")
	case v.QuorumMet:
		fmt.Fprintf(&b, "approved by %s (%s, %d required)", strings.Join(who, ", "), plural(len(v.Counted), "approval"), v.Required)
	default:
		fmt.Fprintf(&b, "not approved: %d of %s", len(v.Counted), plural(v.Required, "approval"))
		if len(who) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(who, ", "))
		}
		if v.ProposalMissing {
			b.WriteString(", no signed proposal")
		}
	}
	if v.Proposer != "" {
		fmt.Fprintf(&b, "; proposed by %s", v.Proposer)
	}
	if n := len(v.NotCounted); n > 0 {
		fmt.Fprintf(&b, "; %d not counted", n)
	}
	return b.String()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Verify judges the envelopes submitted for one playbook: which are valid
// signed statements by people of the keyring about exactly this content,
// policy set and plan, who proposed it, which approvals count, and whether
// the quorum is met. It does no I/O.
func Verify(in Input) Verdict {
	if err := in.validate(); err != nil {
		return inputError(err, in.ApprovalsRequired)
	}
	in.Options.setDefaults()
	roles := in.ApproverRoles
	if len(roles) == 0 {
		roles = []string{RoleApprover}
	}
	return rules{
		subjects:        []Subject{in.Subject},
		repository:      in.Repository,
		operation:       cmp.Or(in.Operation, OperationApply),
		incident:        in.Incident,
		required:        in.ApprovalsRequired,
		approverRoles:   roles,
		proposerRoles:   []string{RoleAnalyst},
		policyDigest:    in.PolicyDigest,
		planDigest:      in.PlanDigest,
		requireProposal: in.ApprovalsRequired > 0 || !in.Options.RelaxProposal,
		noVeto:          in.Options.RejectionsDoNotBind,
		keyring:         in.Keyring,
		now:             in.Now,
		maxAge:          in.Options.MaxAge,
		skew:            in.Options.ClockSkew,
	}.judge(in.Envelopes)
}

// VerifyBreakGlass judges whether the envelopes invoke break-glass for an
// emergency apply: a valid approval marked breakGlass, about exactly this
// content, policy set, plan, repository and operation, signed by a person
// holding the break-glass role. One is enough, and it needs no proposal
// (in an emergency the responder may be the author). Rejections are not
// judged here: Verify's verdict, which sees every ordinary statement,
// blocks on them. The caller asks only when the policies allow an
// emergency for the operation; in.ApprovalsRequired and in.ApproverRoles
// are ignored. in.Operation must be apply (or empty) with no incident:
// for any other operation nothing counts (InputError).
func VerifyBreakGlass(in Input) Verdict {
	in.ApprovalsRequired = 1
	if err := in.validate(); err != nil {
		return inputError(err, 1)
	}
	if op := cmp.Or(in.Operation, OperationApply); op != OperationApply || in.Incident != 0 {
		// Break-glass lets an emergency apply run, nothing else: not a
		// revert, and not a heal, which is judged for its incident only.
		return inputError(fmt.Errorf("break-glass lets only the apply of a playbook run, not a %s (incident %d)", op, in.Incident), 1)
	}
	in.Options.setDefaults()
	return rules{
		subjects:      []Subject{in.Subject},
		repository:    in.Repository,
		operation:     OperationApply,
		incident:      in.Incident,
		required:      1,
		approverRoles: []string{RoleBreakGlass},
		proposerRoles: []string{RoleAnalyst},
		policyDigest:  in.PolicyDigest,
		planDigest:    in.PlanDigest,
		breakGlass:    true,
		keyring:       in.Keyring,
		now:           in.Now,
		maxAge:        in.Options.MaxAge,
		skew:          in.Options.ClockSkew,
	}.judge(in.Envelopes)
}

func inputError(err error, required int) Verdict {
	return Verdict{Err: err, InputError: err.Error(), Required: required, Missing: max(required, 0)}
}

func (in *Input) validate() error {
	if in.Keyring == nil {
		return errors.New("no keyring")
	}
	if err := validateSubject(in.Subject); err != nil {
		return err
	}
	if err := validateRepository(in.Repository); err != nil {
		return err
	}
	switch in.Operation {
	case "", OperationApply, OperationRevert:
	case OperationHeal:
		if in.Incident <= 0 {
			return errors.New("a heal is judged for its drift incident: none given")
		}
	default:
		return fmt.Errorf("operation %q is not apply, revert or heal", in.Operation)
	}
	if in.ApprovalsRequired < 0 {
		return fmt.Errorf("approvals required %d is negative", in.ApprovalsRequired)
	}
	for _, r := range in.ApproverRoles {
		if !slices.Contains(Roles, r) {
			return fmt.Errorf("approver role %q is not one of %s", r, strings.Join(Roles, ", "))
		}
	}
	if in.PolicyDigest == "" {
		return errors.New("no policy digest")
	}
	if in.PlanDigest == "" {
		return errors.New("no plan digest")
	}
	if in.Now.IsZero() {
		return errors.New("no time given")
	}
	return in.Options.validate()
}

func validateRepository(repo string) error {
	if repo == "" {
		return errors.New("no repository identity: statements count only in the repository they name")
	}
	if !repositoryRE().MatchString(repo) {
		return fmt.Errorf("repository %q is not OWNER/NAME", repo)
	}
	return nil
}

func validateSubject(s Subject) error {
	if s.Path == "" {
		return errors.New("subject has no path")
	}
	if !sha256RE.MatchString(s.Digest) {
		return fmt.Errorf("subject %s: digest %q is not 64 lowercase hex digits", s.Path, s.Digest)
	}
	return nil
}

// rules is one judgement's parameters, shared by Verify and VerifyMeta.
type rules struct {
	subjects   []Subject // every one must be covered by a statement
	repository string
	// operation is the playbook operation judged (apply or revert); empty
	// for a change to policies/ or .writ/, which transition describes.
	operation       string
	incident        int64
	transition      *Transition
	required        int
	approverRoles   []string
	proposerRoles   []string
	policyDigest    string
	planDigest      string
	requireProposal bool
	// noVeto: rejections do not block (Options.RejectionsDoNotBind).
	noVeto bool
	// breakGlass: only break-glass statements count (VerifyBreakGlass);
	// otherwise they never do.
	breakGlass   bool
	keyring      *Keyring
	now          time.Time
	maxAge, skew time.Duration
}

// checked is one envelope after the per-envelope checks.
type checked struct {
	index     int
	env       *Envelope
	person    *Person
	key       *Key
	role      string
	code      Code
	msg       string
	validTill time.Time
	// authentic: signed by the named person and about this content, whether
	// or not it is still valid. An authentic proposal makes its signer an
	// author, even when it no longer counts as the proposal.
	authentic bool
}

// parallelThreshold is the number of envelopes above which they are
// checked on several goroutines (signature checks dominate).
const parallelThreshold = 64

func (r rules) judge(subs []Submitted) Verdict {
	res := make([]checked, len(subs))
	check := func(i int) { res[i] = r.check(i, subs[i]) }
	if workers := min(runtime.GOMAXPROCS(0), len(subs)/parallelThreshold+1); workers > 1 {
		var wg sync.WaitGroup
		next := make(chan int, len(subs))
		for i := range subs {
			next <- i
		}
		close(next)
		for range workers {
			wg.Go(func() {
				for i := range next {
					check(i)
				}
			})
		}
		wg.Wait()
	} else {
		for i := range subs {
			check(i)
		}
	}
	return r.tally(res)
}

// check runs every check that concerns one envelope alone.
func (r rules) check(i int, sub Submitted) checked {
	c := checked{index: i}
	fail := func(code Code, format string, args ...any) checked {
		c.code, c.msg = code, fmt.Sprintf(format, args...)
		return c
	}
	env, err := Parse(sub.Envelope)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": ")
		if errors.Is(err, ErrNotApproval) {
			return fail(CodeWrongPredicateType, "%s", strings.TrimPrefix(msg, ErrNotApproval.Error()+": "))
		}
		return fail(CodeMalformed, "%s", msg)
	}
	c.env = env
	p := &env.Statement.Predicate

	key, code, msg := r.identify(env)
	if code != "" {
		return fail(code, "%s", msg)
	}
	c.key, c.person = key, key.Person
	if key.Person.ID != p.Approver {
		return fail(CodeKeyOfAnotherPerson, "signed with a key of %q (key %.16s…), but the statement names %q as approver", key.Person.ID, key.ID, p.Approver)
	}
	if key.Person.Disabled {
		return fail(CodePersonDisabled, "%q is disabled in the approvers file", key.Person.ID)
	}
	if msg := sub.LoginMismatch(key.Person); msg != "" {
		return fail(CodeLoginMismatch, "%s", msg)
	}
	if msg := r.coverage(&env.Statement); msg != "" {
		return fail(CodeSubjectMismatch, "%s", msg)
	}
	if code, msg := r.context(p, &env.Statement); code != "" {
		return fail(code, "%s", msg)
	}
	c.authentic = true
	switch {
	case p.Repository == "":
		return fail(CodeRepositoryMismatch, "statement names no repository; it counts only in the repository it names (%s)", r.repository)
	case !strings.EqualFold(p.Repository, r.repository):
		return fail(CodeRepositoryMismatch, "statement is for repository %s, not %s", p.Repository, r.repository)
	}
	if p.IssuedAt.After(r.now.Add(r.skew)) {
		return fail(CodeIssuedInFuture, "issued at %s, %s in the future (clock skew allowed: %s)",
			stamp(p.IssuedAt), p.IssuedAt.Sub(r.now).Round(time.Second), r.skew)
	}
	if !r.now.Before(p.ExpiresAt) {
		return fail(CodeExpired, "expired at %s", stamp(p.ExpiresAt))
	}
	c.validTill = p.ExpiresAt
	switch p.Decision {
	case Propose:
		role := firstRole(key.Person, r.proposerRoles)
		if role == "" {
			return fail(CodeProposerNotAnalyst, "%q proposes but holds none of the roles %s", key.Person.ID, strings.Join(r.proposerRoles, ", "))
		}
		c.role = role
	case Approve:
		if limit := p.IssuedAt.Add(r.maxAge); !r.now.Before(limit) {
			return fail(CodeExpired, "issued at %s: approvals count for %s", stamp(p.IssuedAt), r.maxAge)
		} else if limit.Before(c.validTill) {
			c.validTill = limit
		}
		if p.PolicyDigest != r.policyDigest {
			return fail(CodePolicyDigestMismatch, "approves under policy set %s, but the change was judged by %s", short(p.PolicyDigest), short(r.policyDigest))
		}
		if p.PlanDigest != r.planDigest {
			if r.planDigest == "" {
				return fail(CodePlanDigestMismatch, "cites plan %s, but this change has no plan: planDigest must be empty", short(p.PlanDigest))
			}
			return fail(CodePlanDigestMismatch, "approves plan %s, but the current dry-run plan is %s", short(p.PlanDigest), short(r.planDigest))
		}
		fallthrough
	case Reject:
		role := firstRole(key.Person, r.approverRoles)
		if role == "" {
			return fail(CodeRoleNotQualified, "%q holds none of the roles that may %s this change (%s)", key.Person.ID, p.Decision, strings.Join(r.approverRoles, ", "))
		}
		c.role = role
	}
	return c
}

// context checks the statement is about the operation judged: the same
// playbook operation (apply or revert), or for a change to policies/ or
// .writ/ exactly this transition (the same trusted commit, the same
// content replaced, and no other subject).
func (r rules) context(p *Predicate, st *Statement) (Code, string) {
	if r.transition == nil {
		if p.Transition != nil {
			return CodeTransitionMismatch, "a statement about a change to policies/ or .writ/, not about a playbook"
		}
		if op := cmp.Or(p.Operation, OperationApply); op != r.operation {
			return CodeOperationMismatch, fmt.Sprintf("a statement about the %s of this content, not its %s", op, r.operation)
		}
		if p.Incident != r.incident {
			return CodeOperationMismatch, fmt.Sprintf("a statement about the heal of drift incident %d, not of incident %d", p.Incident, r.incident)
		}
		switch {
		case p.BreakGlass && !r.breakGlass:
			return CodeBreakGlassMismatch, "a break-glass statement: it lets an emergency apply run, and never counts toward the quorum"
		case !p.BreakGlass && r.breakGlass && p.Decision == Approve:
			return CodeBreakGlassMismatch, "an ordinary approval: only a statement marked breakGlass invokes break-glass"
		case !p.BreakGlass && r.breakGlass:
			return CodeBreakGlassMismatch, "not a break-glass statement"
		}
		return "", ""
	}
	t := p.Transition
	if t == nil {
		return CodeTransitionMismatch, "names no transition: a change to policies/ or .writ/ is approved as the change from the trust in force (transition.trustedCommit, transition.replaces)"
	}
	if t.TrustedCommit != r.transition.TrustedCommit {
		return CodeTransitionMismatch, fmt.Sprintf("approves a change from trusted commit %.12s, but the trust in force is commit %.12s", t.TrustedCommit, r.transition.TrustedCommit)
	}
	if len(st.Subject) != len(r.subjects) {
		return CodeTransitionMismatch, fmt.Sprintf("covers %d subjects, but the change has %d: a statement approves exactly one change", len(st.Subject), len(r.subjects))
	}
	if len(t.Replaces) != len(r.subjects) {
		return CodeTransitionMismatch, fmt.Sprintf("names what %d subjects replace, but the change has %d", len(t.Replaces), len(r.subjects))
	}
	for _, s := range r.subjects {
		got, ok := t.Replaces[s.Path]
		if !ok {
			return CodeTransitionMismatch, fmt.Sprintf("does not say what %s replaces", s.Path)
		}
		if want := r.transition.Replaces[s.Path]; got != want {
			return CodeTransitionMismatch, fmt.Sprintf("approves %s replacing %s, but the content in force is %s", s.Path, short(got), short(want))
		}
	}
	return "", ""
}

// identify finds the key that verifies the envelope's signature. The keyid
// hint, when it names a key of the keyring, is the only key tried: if that
// fails, the signature is bad. Without a usable hint (cosign writes none),
// the named approver's keys are tried first, then everyone else's.
//
// An SSH signature names its key: only that key is tried, found by its
// fingerprint, and the message says why it does not count (docs/approvals.md,
// SSH keys). A WebAuthn signature likewise names its credential
// (docs/approvals.md, Passkeys (WebAuthn)).
func (r rules) identify(env *Envelope) (*Key, Code, string) {
	kr := r.keyring
	if env.KeyID != "" {
		if k, ok := kr.Key(env.KeyID); ok {
			if err := env.verify(k); err != nil {
				msg := fmt.Sprintf("signature does not verify with key %.16s… of %q", k.ID, k.Person.ID)
				if k.SSH != nil || env.ssh.armored || k.WebAuthn != nil || env.webauthn.shaped {
					msg += ": " + err.Error()
				}
				return nil, CodeBadSignature, msg
			}
			return k, "", ""
		}
	}
	if env.ssh.armored || env.webauthn.shaped {
		k, err := env.namedKey(kr)
		switch {
		case k == nil:
			return nil, CodeUnknownKey, err.Error()
		case err != nil:
			return nil, CodeBadSignature, fmt.Sprintf("signature does not verify with key %.16s… of %q: %v", k.ID, k.Person.ID, err)
		}
		return k, "", ""
	}
	claimed, _ := kr.Person(env.Statement.Predicate.Approver)
	if claimed != nil {
		for _, k := range claimed.Keys {
			if env.verify(k) == nil {
				return k, "", ""
			}
		}
	}
	for _, k := range kr.keys {
		if k.Person == claimed {
			continue
		}
		if env.verify(k) == nil {
			return k, "", ""
		}
	}
	if env.KeyID != "" {
		return nil, CodeUnknownKey, fmt.Sprintf("key %q is not in the approvers file, and no key there verifies the signature", env.KeyID)
	}
	return nil, CodeUnknownKey, "no key in the approvers file verifies the signature (an unregistered key, or an altered envelope)"
}

// coverage checks the statement names every subject: by sha256, and by
// name where the name is a repository path (cosign names a subject by the
// file's base name, which only the digest then binds). It returns "" when
// covered, else what is wrong.
func (r rules) coverage(st *Statement) string {
	for _, want := range r.subjects {
		found := false
		var misnamed string
		for _, d := range st.Subject {
			if d.SHA256() != want.Digest {
				continue
			}
			if strings.Contains(d.Name, "/") && d.Name != want.Path {
				misnamed = d.Name
				continue
			}
			found = true
			break
		}
		if found {
			continue
		}
		if misnamed != "" {
			return fmt.Sprintf("the statement names the content %s, not %s", misnamed, want.Path)
		}
		var have []string
		for _, d := range st.Subject {
			have = append(have, fmt.Sprintf("%s@%s", cmp.Or(d.Name, "(unnamed)"), short(d.SHA256())))
		}
		return fmt.Sprintf("the statement covers %s, not %s@%s", strings.Join(have, ", "), want.Path, short(want.Digest))
	}
	return ""
}

// tally applies the rules across envelopes: authorship, separation of
// duties, one decision per person, rejections, the quorum.
func (r rules) tally(res []checked) Verdict {
	v := Verdict{Required: r.required}
	notCounted := func(c *checked, code Code, format string, args ...any) {
		c.code, c.msg = code, fmt.Sprintf(format, args...)
	}
	// Proposals: the earliest valid one per person.
	proposers := map[string]int{} // person -> index into res
	for i := range res {
		c := &res[i]
		if c.code != "" || c.env.Statement.Predicate.Decision != Propose {
			continue
		}
		id := c.person.ID
		if j, dup := proposers[id]; dup {
			first, later := j, i
			if c.env.Statement.Predicate.IssuedAt.Before(res[j].env.Statement.Predicate.IssuedAt) {
				first, later = i, j
			}
			notCounted(&res[later], CodeDuplicatePerson, "a second proposal by %q (envelope %d is the one kept)", id, first)
			proposers[id] = first
			continue
		}
		proposers[id] = i
	}
	for _, i := range proposers {
		p := res[i].env.Statement.Predicate
		v.Proposals = append(v.Proposals, Proposal{Proposer: res[i].person.ID, EnvelopeIndex: i, IssuedAt: p.IssuedAt, ExpiresAt: p.ExpiresAt})
	}
	slices.SortFunc(v.Proposals, func(a, b Proposal) int {
		return cmp.Or(a.IssuedAt.Compare(b.IssuedAt), cmp.Compare(a.EnvelopeIndex, b.EnvelopeIndex))
	})
	if len(v.Proposals) > 0 {
		v.Proposer = v.Proposals[0].Proposer
	}

	// Authors: everyone who signed a proposal of this content, valid or not.
	authors := map[string]bool{}
	for _, c := range res {
		if c.authentic && c.env.Statement.Predicate.Decision == Propose {
			authors[c.person.ID] = true
		}
	}

	// Approvals and rejections: never an approval from an author; one
	// decision per person, the latest.
	latest := map[string]int{}
	for i := range res {
		c := &res[i]
		if c.code != "" {
			continue
		}
		p := c.env.Statement.Predicate
		if p.Decision == Propose {
			continue
		}
		id := c.person.ID
		if authors[id] && p.Decision == Approve {
			notCounted(c, CodeSelfApproval, "%q proposed this change and cannot approve it (separation of duties)", id)
			continue
		}
		if j, dup := latest[id]; dup {
			keep, drop := j, i
			if !p.IssuedAt.Before(res[j].env.Statement.Predicate.IssuedAt) {
				keep, drop = i, j
			}
			latest[id] = keep
			notCounted(&res[drop], CodeDuplicatePerson, "another envelope of %q counts instead (envelope %d, issued later)", id, keep)
			continue
		}
		latest[id] = i
	}
	for i := range res {
		c := &res[i]
		if c.code != "" {
			v.NotCounted = append(v.NotCounted, c.notCounted())
			continue
		}
		p := c.env.Statement.Predicate
		switch p.Decision {
		case Approve:
			v.Counted = append(v.Counted, Counted{Approver: c.person.ID, Role: c.role, EnvelopeIndex: i,
				KeyID: c.key.ID, IssuedAt: p.IssuedAt, ValidUntil: c.validTill})
		case Reject:
			if r.noVeto {
				notCounted(c, CodeRejectionNotBinding, "a rejection does not hold back this revert: it is due by the approved content (a scheduled expiry) or by a break-glass whose quorum did not come")
				v.NotCounted = append(v.NotCounted, c.notCounted())
				continue
			}
			v.Rejected = append(v.Rejected, Rejection{Approver: c.person.ID, Role: c.role,
				Reason: cmp.Or(p.Reason, "(no reason given)"), EnvelopeIndex: i, IssuedAt: p.IssuedAt})
		}
	}
	v.Missing = max(r.required-len(v.Counted), 0)
	v.ProposalMissing = r.requireProposal && len(v.Proposals) == 0
	v.QuorumMet = len(v.Rejected) == 0 && v.Missing == 0 && !v.ProposalMissing
	if v.QuorumMet {
		// The quorum lapses when the approvals it needs lapse: with more
		// counted than required, the latest-expiring ones carry it.
		var until time.Time
		if r.required > 0 {
			ends := make([]time.Time, 0, len(v.Counted))
			for _, c := range v.Counted {
				ends = append(ends, c.ValidUntil)
			}
			slices.SortFunc(ends, func(a, b time.Time) int { return b.Compare(a) })
			until = ends[r.required-1]
		}
		if r.requireProposal {
			latestProposal := v.Proposals[0].ExpiresAt
			for _, p := range v.Proposals[1:] {
				if p.ExpiresAt.After(latestProposal) {
					latestProposal = p.ExpiresAt
				}
			}
			if until.IsZero() || latestProposal.Before(until) {
				until = latestProposal
			}
		}
		if !until.IsZero() {
			v.ValidUntil = &until
		}
	}
	return v
}

func (c *checked) notCounted() NotCounted {
	nc := NotCounted{EnvelopeIndex: c.index, Code: c.code, Message: c.msg}
	if c.env != nil {
		nc.Decision = c.env.Statement.Predicate.Decision
		nc.Approver = c.env.Statement.Predicate.Approver
	}
	if c.person != nil {
		nc.Approver = c.person.ID
	}
	return nc
}

func firstRole(p *Person, roles []string) string {
	for _, r := range roles {
		if p.Has(r) {
			return r
		}
	}
	return ""
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// short abbreviates a digest for messages.
func short(d string) string {
	if d == "" {
		return "(none)"
	}
	if len(d) > 16 {
		return d[:16] + "…"
	}
	return d
}
