package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	gh "github.com/google/go-github/v88/github"
	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/forge/github"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/trust"
	"github.com/writ-sec/writ/policies"
)

func init() { register(newApproveCmd) }

// Default validity of a signed statement, by decision. The engine counts an
// approval for 24h at most whatever it says; proposals and rejections stand
// until they expire.
const (
	defaultApprovalValidity = 24 * time.Hour
	defaultProposalValidity = 30 * 24 * time.Hour
	// A break-glass statement is for now, not for a later emergency.
	defaultBreakGlassValidity = 4 * time.Hour
)

// envelopeContentType is what `writ approve --server` posts.
const envelopeContentType = "application/vnd.dsse.envelope.v1+json"

type approveParams struct {
	keyFile     string
	sshKey      string
	yes         bool
	approver    string
	propose     bool
	reject      bool
	revert      bool
	at          string
	trustChange bool
	trusted     string
	reason      string
	repo        string
	pr          int
	head        string
	expires     string
	policies    string
	planDigest  string
	repoRoot    string
	out         string
	server      string
	github      bool
	githubURL   string
	breakGlass  bool
	playbooks   []string
}

func newApproveCmd(env *cliEnv, g *globals) *cobra.Command {
	p := approveParams{}
	cmd := &cobra.Command{
		Use:   "approve (ID | [--approver ID] [--revert | --trust-change] [PLAYBOOK...]) (--key FILE | --ssh-key FILE) [--propose | --reject] [flags]",
		Short: "Sign a proposal, approval or rejection of a pending item, of playbooks or of a policy/approver change",
		Long: `With an ID from writ pending (op-N: a playbook's apply, revert or heal; trust-N:
a change to policies/ and .writ/), approve signs that item in one step: it
fetches from the server (--server, else WRIT_SERVER, else the server you
logged in to) everything the statement binds, recomputes the content,
plan and policy digests (and a trust change as a whole) from what the
server sent and refuses to sign if they differ, shows the change against
the version it replaces, the policies' decision and the plan, asks for
confirmation (--yes skips it), signs and submits. Your approver id is
the person your key belongs to (--approver overrides). --propose and
--reject --reason work the same way.

Without an ID (offline, from a checkout), approve signs an in-toto
statement in a DSSE envelope saying that you (--approver, your id in
.writ/approvers.yaml) propose, approve or reject one
exact operation: the apply of the playbooks given (their sha256), or with
--revert their revert, judged by one policy set (its digest) and, for an
approval, with one dry-run plan (its digest), in one repository (--repo).
A statement counts for nothing else: not for another operation, another
content, plan, policy set or repository.

  (default)   approve one playbook; the statement cites its plan digest
  --propose   sign the authorship of one or more playbooks (analysts); a
              playbook that needs approval cannot be approved without it,
              and its proposer can never approve it
  --reject    reject one or more playbooks (--reason required); a signed
              rejection by a qualified approver blocks them
  --revert    the statement is about the revert of the playbooks: deleting
              a playbook, or the targets an update drops, is an operation
              of its own that needs its own proposal (and approvals where
              the policies ask). A playbook no longer in the working tree
              is read from the last commit of HEAD's history that had it.
  --trust-change
              sign the change to policies/ and .writ/ from the trusted
              commit (--trusted-commit, or the adopted commit --server
              reports) to HEAD (or --head): the new policy set's digest,
              every changed file under .writ/ and what each replaces.
              Admins approve such changes; no playbook is named.

The policy digest is computed from --policies, else the repository's
policies/, else writ's default policies. The plan digest is --plan-digest
(copy it from the PR check or the server) or a local dry-run of the
playbook. The repository is --repo, else derived from the checkout's
origin remote (OWNER/NAME: the last two elements of its URL), else from
its path, as writ serve derives it.

The envelope goes to --out, or to the server with --server (POST
URL/api/v1/approvals, with WRIT_TOKEN as bearer token when set, else the
session of writ login with that server), or to
GitHub with --github (--repo OWNER/NAME --pr N, token from GITHUB_TOKEN,
--github-url for Enterprise Server): an approval is posted as a PR review
(event APPROVE; a rejection REQUEST_CHANGES) and a proposal as a PR comment,
the envelope in a ` + "```writ" + ` block; else it goes to the server in
WRIT_SERVER, else to the server you logged in to, else to standard output. Attach it to a PR review or send it to the API; any
channel works, because only the signature counts. An encrypted key's
password comes from WRIT_KEY_PASSWORD or the terminal.

The key is --key, a PEM private key (writ keygen, cosign), or --ssh-key, an
OpenSSH key registered in .writ/approvers.yaml as an SSH line (ssh-ed25519,
ecdsa-sha2-nistp256, sk-ssh-ed25519@openssh.com): the private key file
(its passphrase from WRIT_KEY_PASSWORD or the terminal), or a public key
file (a path ending in .pub) to sign through ssh-agent (SSH_AUTH_SOCK),
which FIDO security keys need. An SSH key signs an SSHSIG in namespace
writ-approval (docs/approvals.md, SSH keys).

Validity (--expires): 24h for approvals, 30d for proposals and rejections.`,
		Example: `  writ pending
  writ approve op-12 --ssh-key ~/.ssh/id_ed25519
  writ approve op-12 --key alice.key --propose --yes
  writ approve trust-3 --key dave.key
  writ approve op-12 --key carol.key --reject --reason "198.51.100.0/24 is our CDN"
  writ approve --key alice.key --approver alice --propose playbooks/network/block-c2-beacon.yaml
  writ approve --key alice.key --approver alice --propose --revert playbooks/network/block-c2-beacon.yaml
  writ approve --key dave.key --approver dave --trust-change --server https://writ.example.com
  writ approve --key bob.key --approver bob --repo acme/secops --pr 42 \
      --plan-digest 77ab... --out bob.approval.json playbooks/network/block-c2-beacon.yaml
  writ approve --key bob.key --approver bob --github --repo acme/secops --pr 42 \
      --plan-digest 77ab... playbooks/network/block-c2-beacon.yaml
  writ approve --key carol.key --approver carol --reject --reason "198.51.100.0/24 is our CDN" \
      playbooks/network/block-c2-beacon.yaml
  writ approve --ssh-key ~/.ssh/id_ed25519 --approver bob --plan-digest 77ab... \
      playbooks/network/block-c2-beacon.yaml
  writ approve --ssh-key ~/.ssh/id_ed25519_sk.pub --approver bob --plan-digest 77ab... \
      playbooks/network/block-c2-beacon.yaml            # through ssh-agent`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if isPendingArg(args) {
				return runApprovePending(cmd.Context(), env, p, args[0])
			}
			p.playbooks = args
			return runApprove(cmd.Context(), g, env, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.keyFile, "key", "", "private key file (PEM, from writ keygen or cosign)")
	f.StringVar(&p.sshKey, "ssh-key", "", "OpenSSH key to sign with instead of --key: its private key file, or its .pub file to sign through ssh-agent (SSH_AUTH_SOCK)")
	f.StringVar(&p.approver, "approver", "", "your person id in .writ/approvers.yaml (with a pending ID: default, the person your key belongs to)")
	f.BoolVarP(&p.yes, "yes", "y", false, "with a pending ID: sign without asking for confirmation")
	f.BoolVar(&p.propose, "propose", false, "sign a proposal (authorship) instead of an approval")
	f.BoolVar(&p.reject, "reject", false, "sign a rejection instead of an approval")
	f.BoolVar(&p.breakGlass, "break-glass", false, "with a pending ID of an emergency apply: sign the break-glass statement that lets it run before its approvals (break-glass role; valid 4h unless --expires; its approvals are due within the server's window or it is reverted)")
	f.BoolVar(&p.revert, "revert", false, "the statement is about the revert of the playbooks (deletion, or targets an update drops)")
	f.StringVar(&p.at, "at", "", "read the playbooks as this commit has them (a revision), e.g. the version an update replaced, whose dropped targets --revert releases")
	f.BoolVar(&p.trustChange, "trust-change", false, "sign the change to policies/ and .writ/ from the trusted commit to HEAD (admins)")
	f.StringVar(&p.trusted, "trusted-commit", "", "with --trust-change: the commit whose policies and approvers are in force (default: the adopted commit --server reports)")
	f.StringVar(&p.reason, "reason", "", "why (required with --reject)")
	f.StringVar(&p.repo, "repo", "", "repository OWNER/NAME statements are about (default: derived from the checkout's origin remote or path, as writ serve does)")
	f.IntVar(&p.pr, "pr", 0, "pull request number")
	f.StringVar(&p.head, "head", "", "the commit you reviewed (a revision; with --trust-change the changed commit, default HEAD)")
	f.StringVar(&p.expires, "expires", "", "validity, e.g. 24h or 7d (default 24h; 30d for --propose and --reject)")
	f.StringVar(&p.policies, "policies", "", "policy directory the digest is computed from (default: the repository's policies/, else the built-in policies)")
	f.StringVar(&p.planDigest, "plan-digest", "", "the dry-run plan digest to cite (default: dry-run the playbook locally)")
	f.StringVar(&p.repoRoot, "repo-root", "", "repository root subjects are named relative to (default: the git repository holding the first playbook)")
	f.StringVar(&p.out, "out", "", "write the envelope to this file")
	f.StringVar(&p.server, "server", "", "send the envelope to this writ server (URL; default without --out or --github: WRIT_SERVER, else the server you logged in to)")
	f.BoolVar(&p.github, "github", false, "post the envelope to the pull request (--repo, --pr): a review, or with --propose a comment; token from GITHUB_TOKEN")
	f.StringVar(&p.githubURL, "github-url", "", "GitHub Enterprise Server URL for --github (default: github.com)")
	return cmd
}

var hexDigestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// statementKind is the decision a statement signs (--propose, --reject,
// else approve) and its validity (--expires, else by decision).
func statementKind(p approveParams) (decision string, validity time.Duration, err error) {
	decision = approval.Approve
	switch {
	case p.propose && p.reject:
		return "", 0, usageError("--propose and --reject exclude each other")
	case p.propose:
		decision = approval.Propose
	case p.reject:
		decision = approval.Reject
	}
	validity = defaultApprovalValidity
	if decision != approval.Approve {
		validity = defaultProposalValidity
	}
	if p.expires != "" {
		d, err := playbook.ParseDuration(p.expires)
		if err != nil || d <= 0 {
			return "", 0, usageError("--expires %q is not a positive duration such as 24h or 7d", p.expires)
		}
		validity = d
	}
	return decision, validity, nil
}

func runApprove(ctx context.Context, g *globals, env *cliEnv, p approveParams) error {
	decision, validity, err := statementKind(p)
	if err != nil {
		return err
	}
	if err := checkSignerFlags(p.keyFile, p.sshKey); err != nil {
		return err
	}
	switch {
	case p.breakGlass:
		return usageError("--break-glass signs a pending emergency apply: give its ID as writ pending lists it (writ approve op-N --break-glass)")
	case p.approver == "":
		return usageError("--approver is required: your person id in .writ/approvers.yaml")
	case p.trustChange && (len(p.playbooks) > 0 || p.revert || p.planDigest != "" || p.policies != "" || p.at != ""):
		return usageError("--trust-change signs the change to policies/ and .writ/: give no playbook, --revert, --at, --plan-digest or --policies")
	case !p.trustChange && p.trusted != "":
		return usageError("--trusted-commit goes with --trust-change")
	case !p.trustChange && len(p.playbooks) == 0:
		return usageError("name the playbook files to %s (or --trust-change)", decision)
	case decision == approval.Approve && len(p.playbooks) > 1:
		return usageError("an approval covers one playbook (it cites one plan digest): run writ approve once per playbook")
	case decision == approval.Reject && strings.TrimSpace(p.reason) == "":
		return usageError("--reject needs --reason: say why")
	case p.planDigest != "" && !hexDigestRE.MatchString(p.planDigest):
		return usageError("--plan-digest %q is not 64 lowercase hex digits", p.planDigest)
	case p.planDigest != "" && len(p.playbooks) > 1:
		return usageError("--plan-digest names the plan of one playbook; give one playbook")
	case p.pr < 0:
		return usageError("--pr %d is not a pull request number", p.pr)
	case p.repo != "" && !gitsrc.ValidIdentity(p.repo):
		return usageError("--repo %q is not OWNER/NAME", p.repo)
	}
	if err := checkGitHubParams(env, p); err != nil {
		return err
	}
	if !p.github && p.out == "" {
		// With no other destination, the envelope goes to the server you
		// use: WRIT_SERVER, else the one you logged in to (writ login).
		srv, err := resolveServer(env, p.server)
		if err != nil {
			return exitWith(exitFailure, err)
		}
		p.server = srv
	}
	if p.server != "" {
		if u, err := url.Parse(p.server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError("--server %q is not an http(s) URL", redactServerURL(p.server))
		}
	}

	var subject signedSubject
	if p.trustChange {
		subject, err = trustChangeSubject(ctx, env, p)
	} else {
		subject, err = playbookSubject(ctx, g, env.stderr, p, decision)
	}
	if err != nil {
		return err
	}
	if p.repo == "" {
		p.repo = subject.repository
	}
	if p.repo == "" && p.server != "" {
		// Nothing to derive it from here: the server knows the identity it
		// checks statements against.
		if st, err := serverStatus(ctx, env, p.server); err == nil {
			p.repo = st.Repository
		}
	}
	if p.repo == "" {
		return usageError("no repository identity: pass --repo OWNER/NAME (or --server, to ask the server)")
	}
	signer, err := openApprovalSigner(ctx, env, p.keyFile, p.sshKey)
	if err != nil {
		return err
	}
	for _, w := range keyringWarnings(subject.root, p.approver, decision, signer) {
		fmt.Fprintln(env.stderr, "writ: warning:", w)
	}

	now := time.Now().UTC().Truncate(time.Second)
	st := approval.NewStatement(subject.subjects, approval.Predicate{
		Decision:     decision,
		Approver:     p.approver,
		Operation:    subject.operation,
		Transition:   subject.transition,
		Repository:   p.repo,
		PullRequest:  p.pr,
		HeadCommit:   subject.headCommit,
		PolicyDigest: subject.policyDigest,
		PlanDigest:   subject.planDigest,
		Reason:       p.reason,
		IssuedAt:     now,
		ExpiresAt:    now.Add(validity),
	})
	if err := st.Validate(); err != nil {
		return usageError("%v", err)
	}
	envelope, err := approval.SignWith(ctx, signer, st)
	if err != nil {
		return exitWith(exitFailure, err)
	}

	out := append(envelope, '\n')
	if p.out != "" {
		if err := writeOutputFile(p.out, out); err != nil {
			return exitWith(exitFailure, fmt.Errorf("write %s: %w", p.out, err))
		}
	}
	var names []string
	for _, s := range subject.subjects {
		names = append(names, fmt.Sprintf("%s (sha256 %.12s…)", s.Path, s.Digest))
	}
	fmt.Fprintf(env.stderr, "signed %s of the %s of %s by %s in %s\n  policy set %.12s… (%s)", decision, subject.what, strings.Join(names, ", "),
		p.approver, p.repo, subject.policyDigest, subject.policySource)
	if subject.planDigest != "" {
		fmt.Fprintf(env.stderr, ", plan %.12s…", subject.planDigest)
	}
	if t := subject.transition; t != nil {
		fmt.Fprintf(env.stderr, ", from trusted commit %.12s", t.TrustedCommit)
	}
	fmt.Fprintf(env.stderr, ", valid until %s\n", st.Predicate.ExpiresAt.Format(time.RFC3339))

	if p.out != "" {
		fmt.Fprintf(env.stderr, "envelope written to %s\n", p.out)
	}
	if p.server != "" {
		return postEnvelope(ctx, env, p.server, envelope)
	}
	if p.github {
		return postToGitHub(ctx, env, p, decision, subject, envelope)
	}
	if p.out == "" {
		if _, err := env.stdout.Write(out); err != nil {
			return exitWith(exitFailure, err)
		}
	}
	return nil
}

// signedSubject is what a statement is about, ready to sign.
type signedSubject struct {
	what         string // "apply", "revert", "change to policies/ and .writ/"
	subjects     []approval.Subject
	operation    string
	transition   *approval.Transition
	policyDigest string
	policySource string
	planDigest   string
	headCommit   string
	root         string // the repository checkout ("" when none)
	repository   string // the identity derived from the checkout
}

// playbookSubject is the apply (or with --revert the revert) of playbooks.
func playbookSubject(ctx context.Context, g *globals, stderr io.Writer, p approveParams, decision string) (signedSubject, error) {
	s := signedSubject{what: "apply", operation: approval.OperationApply, headCommit: strings.ToLower(p.head)}
	op := action.Apply
	if p.revert {
		s.what, s.operation, op = "revert", approval.OperationRevert, action.Revert
	}
	root, err := subjectRepoRoot(p.repoRoot, p.playbooks[0])
	if err != nil {
		return s, usageError("%v", err)
	}
	s.root, s.repository = root, repoIdentity(root)
	var tree fs.FS
	if p.at != "" {
		// The playbooks as a commit has them (the version an update
		// replaced: its revert of the dropped targets is about that one).
		co, err := gitsrc.OpenCheckout(root)
		if err != nil {
			return s, usageError("--at: %v", err)
		}
		sha, err := co.Resolve(p.at)
		if err != nil {
			return s, usageError("--at: %v", err)
		}
		if tree, err = co.FS(sha); err != nil {
			return s, exitWith(exitFailure, err)
		}
		fmt.Fprintf(stderr, "writ: signing the playbooks as commit %.12s has them\n", sha)
	}
	var fromGit func(rel string) ([]byte, fs.FS, error)
	if p.revert && tree == nil {
		// A deleted playbook is no longer in the working tree: its revert
		// is about the content the deletion removed (and its targets file
		// as that commit has it).
		fromGit = func(rel string) ([]byte, fs.FS, error) {
			co, err := gitsrc.OpenCheckout(root)
			if err != nil {
				return nil, nil, err
			}
			head, err := co.Resolve("HEAD")
			if err != nil {
				return nil, nil, err
			}
			data, at, err := co.LastContent(head, rel, 10000)
			if err != nil {
				return nil, nil, err
			}
			fsys, err := co.FS(at)
			if err != nil {
				return nil, nil, err
			}
			fmt.Fprintf(stderr, "writ: %s is not in the working tree; signing its content at commit %.12s\n", rel, at)
			return data, fsys, nil
		}
	}
	pbs, err := loadSubjectPlaybooks(root, p.playbooks, tree, fromGit)
	if err != nil {
		return s, err
	}
	for _, pb := range pbs {
		s.subjects = append(s.subjects, approval.Subject{Path: pb.Path, Digest: pb.Digest})
	}
	s.policyDigest, s.policySource, err = policySetDigest(root, p.policies)
	if err != nil {
		return s, err
	}
	s.planDigest = p.planDigest
	if s.planDigest == "" && decision == approval.Approve {
		if s.planDigest, err = localPlanDigest(ctx, g, pbs[0], op); err != nil {
			return s, exitWith(exitFailure, err)
		}
	}
	return s, nil
}

// trustChangeSubject is the change to policies/ and .writ/ from the
// trusted commit to the changed one, computed as writ serve computes it
// (trust.Diff), so that what an admin signs is what the server checks.
func trustChangeSubject(ctx context.Context, env *cliEnv, p approveParams) (signedSubject, error) {
	s := signedSubject{what: "change to policies/ and .writ/"}
	dir := p.repoRoot
	if dir == "" {
		dir = "."
	}
	co, err := gitsrc.OpenCheckout(dir)
	if err != nil {
		return s, usageError("--trust-change reads the repository: %v", err)
	}
	if root, err := subjectRepoRoot(p.repoRoot, filepath.Join(dir, ".")); err == nil {
		s.root, s.repository = root, repoIdentity(root)
	}
	trusted := p.trusted
	if trusted == "" {
		if p.server == "" {
			return s, usageError("--trust-change needs --trusted-commit, or --server to ask which commit is trusted")
		}
		st, err := serverStatus(ctx, env, p.server)
		if err != nil {
			return s, exitWith(exitFailure, err)
		}
		trusted = st.Adopted
		if s.repository == "" || p.repo == "" {
			s.repository = st.Repository
		}
	}
	trustedSHA, err := co.Resolve(trusted)
	if err != nil {
		return s, usageError("--trusted-commit: %v (fetch it first)", err)
	}
	head := p.head
	if head == "" {
		head = "HEAD"
	}
	headSHA, err := co.Resolve(head)
	if err != nil {
		return s, usageError("--head: %v", err)
	}
	base, err := co.FS(trustedSHA)
	if err != nil {
		return s, exitWith(exitFailure, err)
	}
	changed, err := co.FS(headSHA)
	if err != nil {
		return s, exitWith(exitFailure, err)
	}
	change, err := trust.Diff(ctx, trustedSHA, base, changed, policies.FS)
	if err != nil {
		return s, exitWith(exitFailure, err)
	}
	if change == nil {
		return s, exitWith(exitFailure, fmt.Errorf("nothing that decides changed from %.12s to %.12s (policies/ and .writ/ decide alike); nothing signed", trustedSHA, headSHA))
	}
	s.subjects, s.transition, s.headCommit = change.Subjects, &change.Transition, headSHA
	// The trusted set's digest as the server computes it (trust.Load).
	s.policyDigest = trust.TrustedPolicyDigest(base, policies.FS)
	s.policySource = fmt.Sprintf("policies/ at trusted commit %.12s", trustedSHA)
	return s, nil
}

// repoIdentity derives a checkout's repository identity as writ serve
// does: from its origin remote's URL, else its path ("" when neither
// yields one).
func repoIdentity(root string) string {
	id, _ := gitsrc.IdentityOf(root)
	return id
}

// subjectRepoRoot is the directory subjects are named relative to: the
// given one, else the git repository (a directory holding .git) around
// the first playbook.
func subjectRepoRoot(given, firstPlaybook string) (string, error) {
	if given != "" {
		abs, err := filepath.Abs(given)
		if err != nil {
			return "", fmt.Errorf("--repo-root %s: %w", given, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return "", fmt.Errorf("--repo-root: %w", err)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("--repo-root %s is not a directory", given)
		}
		return filepath.EvalSymlinks(abs)
	}
	abs, err := filepath.Abs(firstPlaybook)
	if err != nil {
		return "", err
	}
	dir, err := resolveExisting(filepath.Dir(abs))
	if err != nil {
		return "", fmt.Errorf("playbook %s: %w", firstPlaybook, err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s is not in a git repository: pass --repo-root, the directory playbook paths are relative to", firstPlaybook)
		}
	}
}

// resolveExisting resolves symlinks in the longest existing prefix of an
// absolute directory and appends the rest as written: a deleted playbook's
// directory may be gone from the working tree (its revert is signed from
// git history).
func resolveExisting(dir string) (string, error) {
	var rest []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			real, err := filepath.EvalSymlinks(d)
			if err != nil {
				return "", err
			}
			for i := len(rest) - 1; i >= 0; i-- {
				real = filepath.Join(real, rest[i])
			}
			return real, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s: %w", dir, os.ErrNotExist)
		}
		rest = append(rest, filepath.Base(d))
	}
}

// subjectRepoPath is a file's slash-separated path relative to root; it must lie
// inside root.
func subjectRepoPath(root, file string) (string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", err
	}
	dir, err := resolveExisting(filepath.Dir(abs))
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	rel, err := filepath.Rel(root, filepath.Join(dir, filepath.Base(abs)))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s is outside the repository %s", file, root)
	}
	return filepath.ToSlash(rel), nil
}

// loadSubjectPlaybooks reads and validates playbooks, naming each by its
// repository path. Invalid playbooks end the command (exit 1) with their
// problems.
func loadSubjectPlaybooks(root string, files []string, tree fs.FS, fromGit func(rel string) ([]byte, fs.FS, error)) ([]*playbook.Playbook, error) {
	fsys := tree
	if fsys == nil {
		fsys = os.DirFS(root)
	}
	var pbs []*playbook.Playbook
	var problems diag.Problems
	seen := map[string]bool{}
	for _, file := range files {
		rel, err := subjectRepoPath(root, file)
		if err != nil {
			return nil, usageError("%v", err)
		}
		if seen[rel] {
			return nil, usageError("%s is given twice", rel)
		}
		seen[rel] = true
		// A targets file is read from the same tree as the playbook.
		repo := fsys
		data, prob, err := playbook.ReadFile(fsys, rel)
		if errors.Is(err, os.ErrNotExist) && fromGit != nil {
			data, repo, err = fromGit(rel)
			if err == nil && len(data) > playbook.MaxFileBytes {
				err = fmt.Errorf("%s is larger than 1 MiB", rel)
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, usageError("%s: no such file", file)
			}
			return nil, exitWith(exitFailure, err)
		}
		if prob != nil {
			problems = append(problems, *prob)
			continue
		}
		pb, ps := playbook.Parse(rel, data, playbook.Options{Files: repo})
		problems = append(problems, ps...)
		if pb != nil {
			pbs = append(pbs, pb)
		}
	}
	if len(problems) > 0 {
		problems.Sort()
		return nil, exitWith(exitFailure, fmt.Errorf("invalid playbook; nothing signed:\n%w", problems))
	}
	return pbs, nil
}

// approvalPolicyDir picks the policy set: the given directory, else root/policies,
// else the built-in default policies. It returns the file system, the
// directory in it and how to name it.
func approvalPolicyDir(root, given string) (fsys fs.FS, shown string, err error) {
	if given != "" {
		fi, err := os.Stat(given)
		if err != nil {
			return nil, "", usageError("--policies: %v", err)
		}
		if !fi.IsDir() {
			return nil, "", usageError("--policies %s is not a directory", given)
		}
		return os.DirFS(given), given, nil
	}
	if root != "" {
		d := filepath.Join(root, "policies")
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return os.DirFS(d), d, nil
		}
	}
	return policies.FS, "built-in policies", nil
}

// policySetDigest is the digest of the policy set approvalPolicyDir picks.
// Errors carry their exit code.
func policySetDigest(root, given string) (digest, shown string, err error) {
	fsys, shown, err := approvalPolicyDir(root, given)
	if err != nil {
		return "", "", err
	}
	digest, err = policy.DigestFS(fsys, ".")
	if err != nil {
		return "", "", exitWith(exitFailure, fmt.Errorf("policy set %s: %w", shown, err))
	}
	return digest, shown, nil
}

// localPlanDigest dry-runs a playbook's operation with the local backends.
func localPlanDigest(ctx context.Context, g *globals, pb *playbook.Playbook, op action.Operation) (string, error) {
	reg, err := backendRegistry(ctx, g)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	plan, err := reg.Plan(ctx, action.RequestFor(pb, op))
	if err != nil {
		return "", fmt.Errorf("dry-run %s: %w (pass --plan-digest with the digest from the PR check or the server)", pb.Path, err)
	}
	return plan.Digest(), nil
}

// writeOutputFile writes data to a new file or over an existing regular
// file; never through a symlink, never over a device, directory or other
// special file.
func writeOutputFile(path string, data []byte) error {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s); refusing to replace it", path, fi.Mode().Type())
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var ghRepoRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$`) })

// checkGitHubParams checks --github and its companions before anything is
// signed.
func checkGitHubParams(env *cliEnv, p approveParams) error {
	if !p.github {
		if p.githubURL != "" {
			return usageError("--github-url needs --github")
		}
		return nil
	}
	switch {
	case p.server != "":
		return usageError("--github and --server exclude each other: a review's envelope must arrive through the review, so that dismissing it withdraws it")
	case !ghRepoRE().MatchString(p.repo):
		return usageError("--github needs --repo OWNER/NAME")
	case p.pr <= 0:
		return usageError("--github needs --pr, the pull request number")
	case env.getenv("GITHUB_TOKEN") == "":
		return usageError("--github needs a token in GITHUB_TOKEN (scope: pull requests, read and write)")
	}
	return nil
}

// postToGitHub posts the envelope to the pull request: an approval or a
// rejection as a review (APPROVE, REQUEST_CHANGES), a proposal as a
// comment, the envelope in a ```writ block writ reads back.
func postToGitHub(ctx context.Context, env *cliEnv, p approveParams, decision string, subject signedSubject, envelope []byte) error {
	client, err := github.NewClient(github.ClientOptions{BaseURL: p.githubURL, Token: env.getenv("GITHUB_TOKEN"), UserAgent: "writ/" + versionString()})
	if err != nil {
		return usageError("%v", err)
	}
	owner, name, _ := strings.Cut(p.repo, "/")
	var paths []string
	for _, s := range subject.subjects {
		paths = append(paths, fmt.Sprintf("`%s` (sha256 `%.12s`)", s.Path, s.Digest))
	}
	intro := fmt.Sprintf("writ: signed **%s** of the %s of %s by `%s`, policy set `%.12s`", decision, subject.what, strings.Join(paths, ", "), p.approver, subject.policyDigest)
	if subject.planDigest != "" {
		intro += fmt.Sprintf(", plan `%.12s`", subject.planDigest)
	}
	if p.reason != "" {
		intro += ".\n\n> " + strings.Join(strings.Fields(p.reason), " ")
	}
	body := github.FormatEnvelope(intro, envelope)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	where := fmt.Sprintf("%s#%d", p.repo, p.pr)
	if decision == approval.Propose {
		c, _, err := client.Issues.CreateComment(ctx, owner, name, p.pr, &gh.IssueComment{Body: gh.Ptr(body)})
		if err != nil {
			return exitWith(exitFailure, fmt.Errorf("post the proposal to %s: %w", where, err))
		}
		fmt.Fprintf(env.stderr, "posted the proposal as comment %d on %s: %s\n", c.GetID(), where, c.GetHTMLURL())
		return nil
	}
	event := "APPROVE"
	if decision == approval.Reject {
		event = "REQUEST_CHANGES"
	}
	req := &gh.PullRequestReviewRequest{Body: gh.Ptr(body), Event: gh.Ptr(event)}
	if p.head != "" {
		req.CommitID = gh.Ptr(strings.ToLower(p.head))
	}
	rv, _, err := client.PullRequests.CreateReview(ctx, owner, name, p.pr, req)
	if err != nil {
		return exitWith(exitFailure, fmt.Errorf("post the review to %s: %w", where, err))
	}
	fmt.Fprintf(env.stderr, "posted the %s as review %d on %s: %s\n", decision, rv.GetID(), where, rv.GetHTMLURL())
	return nil
}
