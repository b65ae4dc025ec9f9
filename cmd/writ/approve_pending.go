package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing/fstest"
	"time"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/trust"
	"github.com/writ-sec/writ/policies"
)

// isPendingArg reports whether writ approve's arguments name a pending
// item (op-N, trust-N) rather than playbook files: one argument of that
// form that is not a file.
func isPendingArg(args []string) bool {
	if len(args) != 1 || !reconcile.ValidPendingID(args[0]) {
		return false
	}
	_, err := os.Lstat(args[0])
	return errors.Is(err, fs.ErrNotExist)
}

// runApprovePending signs a statement about one pending item: everything
// it binds comes from the server, is checked here (the content's, the
// plan's and the policy set's digests are recomputed from what the server
// sent), shown, confirmed, signed and sent back.
func runApprovePending(ctx context.Context, env *cliEnv, p approveParams, id string) error {
	decision, validity, err := statementKind(p)
	if err != nil {
		return err
	}
	if err := checkSignerFlags(p.keyFile, p.sshKey); err != nil {
		return err
	}
	switch {
	case p.revert || p.at != "" || p.trustChange || p.trusted != "" || p.planDigest != "" || p.policies != "" ||
		p.repo != "" || p.pr != 0 || p.head != "" || p.repoRoot != "" || p.github || p.githubURL != "":
		return usageError("%s names a pending item: the server says what it binds (operation, content, digests, repository); drop --revert, --at, --trust-change, --trusted-commit, --plan-digest, --policies, --repo, --pr, --head, --repo-root and --github", id)
	case decision == approval.Reject && strings.TrimSpace(p.reason) == "":
		return usageError("--reject needs --reason: say why")
	case p.breakGlass && decision != approval.Approve:
		return usageError("--break-glass signs an approval that invokes break-glass: drop --propose and --reject")
	case p.breakGlass && strings.TrimSpace(p.reason) == "":
		return usageError("--break-glass needs --reason: say why this cannot wait for approvals (it is audited and notified)")
	}
	if p.breakGlass && p.expires == "" {
		validity = defaultBreakGlassValidity
	}
	server, err := resolveServer(env, p.server)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if server == "" {
		return usageError("%s is a pending item on a writ server: pass --server URL, set WRIT_SERVER, or log in (writ login)", id)
	}
	signer, err := openApprovalSigner(ctx, env, p.keyFile, p.sshKey)
	if err != nil {
		return err
	}
	keyID, err := signer.KeyID()
	if err != nil {
		return exitWith(exitFailure, fmt.Errorf("key id: %w", err))
	}

	item, err := fetchPending(ctx, env, server, id)
	if err != nil {
		return err
	}
	if err := checkPending(ctx, item, decision); err != nil {
		return exitWith(exitFailure, fmt.Errorf("%s: %w; nothing signed", id, err))
	}
	if p.breakGlass {
		switch {
		case item.BreakGlass == nil:
			return exitWith(exitFailure, fmt.Errorf("%s cannot break glass: the policies allow no emergency for it (only the apply of a playbook marked emergency: true, where the policies allow emergencies); nothing signed", id))
		case item.BreakGlass.InvokedAt != nil:
			return exitWith(exitFailure, fmt.Errorf("%s already ran on break-glass by %s: it needs its approvals now (writ approve %s); nothing signed", id, display.Safe(item.BreakGlass.Signer), id))
		}
	}
	approver := p.approver
	if approver == "" {
		if p.breakGlass {
			approver, err = breakGlassSignerFor(item, keyID)
		} else {
			approver, err = approverFor(item, keyID, decision)
		}
		if err != nil {
			return usageError("%v", err)
		}
	}
	what := decision
	if p.breakGlass {
		what = "break-glass"
	}
	showPending(env.stdout, item, what, approver)
	if !p.yes {
		ok, err := confirm(env, fmt.Sprintf("Sign %s of %s as %s? [y/N] ", what, describePending(item), approver))
		if err != nil {
			return exitWith(exitFailure, err)
		}
		if !ok {
			return exitWith(exitFailure, errors.New("not confirmed; nothing signed"))
		}
	}

	var st approval.Statement
	if p.breakGlass {
		st, err = item.BreakGlassStatement(approver, p.reason, time.Now(), validity)
	} else {
		st, err = item.Statement(decision, approver, p.reason, time.Now(), validity)
	}
	if err != nil {
		return exitWith(exitFailure, fmt.Errorf("%s: %w; nothing signed", id, err))
	}
	envelope, err := approval.SignWith(ctx, signer, st)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if p.out != "" {
		if err := writeOutputFile(p.out, append(envelope, '\n')); err != nil {
			return exitWith(exitFailure, fmt.Errorf("write %s: %w", p.out, err))
		}
		fmt.Fprintf(env.stderr, "envelope written to %s\n", p.out)
	}
	fmt.Fprintf(env.stderr, "signed %s of %s by %s, valid until %s\n", what, describePending(item), approver, st.Predicate.ExpiresAt.Format(time.RFC3339))
	return postEnvelope(ctx, env, server, envelope)
}

// fetchPending asks the server for one pending item.
func fetchPending(ctx context.Context, env *cliEnv, server, id string) (*reconcile.PendingDetail, error) {
	resp, body, shown, err := callServer(ctx, env, server, http.MethodGet, nil, "api", "v1", "pending", id)
	if err != nil {
		return nil, exitWith(exitFailure, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, exitWith(exitFailure, fmt.Errorf("%s: %s; nothing signed", id, serverMessage(body)))
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, exitWith(exitFailure, fmt.Errorf("%s answered %s: %s (log in with writ login, or set WRIT_TOKEN)", shown, resp.Status, serverMessage(body)))
	case resp.StatusCode != http.StatusOK:
		return nil, exitWith(exitFailure, fmt.Errorf("%s answered %s: %s", shown, resp.Status, serverMessage(body)))
	}
	var d reconcile.PendingDetail
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, exitWith(exitFailure, fmt.Errorf("%s: the answer is not a pending item: %w", shown, err))
	}
	if d.ID != id {
		return nil, exitWith(exitFailure, fmt.Errorf("%s answered with item %q, not %s", shown, d.ID, id))
	}
	return &d, nil
}

// checkPending recomputes, from what the server sent, every digest the
// statement will bind, so that what the reviewer is shown is what is
// signed: the playbook's content digest, the plan digest, and the trusted
// policy set's digest; for a change to what decides, the whole change
// (subjects and transition) as writ serve computes it (trust.Diff).
func checkPending(ctx context.Context, d *reconcile.PendingDetail, decision string) error {
	if !gitsrc.ValidIdentity(d.Repository) {
		return fmt.Errorf("the server names repository %q, which is not OWNER/NAME", d.Repository)
	}
	if !hexDigestRE.MatchString(d.PolicyDigest) {
		return fmt.Errorf("the server sent policy digest %q", d.PolicyDigest)
	}
	trusted := fstest.MapFS{}
	for _, f := range d.TrustedFiles {
		trusted[f.Path] = &fstest.MapFile{Data: []byte(f.Content), Mode: 0o644}
	}
	if d.Kind == reconcile.PendingTrustChange {
		return checkTrustChange(ctx, d, trusted)
	}
	if d.Kind == reconcile.PendingAuditRollback {
		return checkAuditAck(d, decision)
	}
	if d.Kind != reconcile.PendingApply && d.Kind != reconcile.PendingRevert && d.Kind != reconcile.PendingHeal || d.Operation != d.Kind {
		return fmt.Errorf("the server sent an item of kind %q, operation %q", d.Kind, d.Operation)
	}
	if (d.Kind == reconcile.PendingHeal) != (d.Incident > 0) {
		return fmt.Errorf("the server sent a %s naming drift incident %d: a heal, and only a heal, names its incident", d.Kind, d.Incident)
	}
	if len(d.Subjects) != 1 || d.Content == nil {
		return errors.New("the server sent a playbook operation without exactly one subject and its content")
	}
	s := d.Subjects[0]
	if s.Path != d.Content.Path || s.Path != d.Path {
		return fmt.Errorf("the server names the subject %s but sent the content of %s", s.Path, d.Content.Path)
	}
	got := playbook.Digest([]byte(d.Content.Content))
	if d.TargetsFile != nil {
		// The content is the playbook and its targets file together.
		if !playbook.ValidTargetsFilePath(d.TargetsFile.Path) {
			return fmt.Errorf("the server sent a targets file named %q, which is not under %s/", d.TargetsFile.Path, playbook.IndicatorsDir)
		}
		got = playbook.BundleDigest([]byte(d.Content.Content), []byte(d.TargetsFile.Content))
	}
	if got != s.Digest {
		return fmt.Errorf("the content the server sent has sha256 %.12s…, not the subject's %.12s…", got, s.Digest)
	}
	var set string
	var err error
	if d.DefaultPolicies {
		set, err = policy.DigestFS(policies.FS, ".")
	} else {
		set, err = policy.DigestFS(trusted, trust.PoliciesDir)
	}
	if err != nil {
		return fmt.Errorf("the trusted policies the server sent: %w", err)
	}
	if set != d.PolicyDigest {
		if d.DefaultPolicies {
			return fmt.Errorf("the server judges with its built-in policies (%.12s…), which differ from this writ's (%.12s…): use a writ of the server's version", d.PolicyDigest, set)
		}
		return fmt.Errorf("the trusted policies the server sent have digest %.12s…, but it cites %.12s…", set, d.PolicyDigest)
	}
	if decision != approval.Approve {
		return nil
	}
	if len(d.Plan) == 0 || !hexDigestRE.MatchString(d.PlanDigest) {
		return errors.New("there is no dry-run plan to approve yet (the server could not plan it); try again later")
	}
	var plan action.Plan
	dec := json.NewDecoder(bytes.NewReader(d.Plan))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&plan); err != nil {
		return fmt.Errorf("the plan the server sent: %w", err)
	}
	if got := plan.Digest(); got != d.PlanDigest {
		return fmt.Errorf("the plan the server sent has digest %.12s…, but it cites %.12s…", got, d.PlanDigest)
	}
	return nil
}

// checkAuditAck checks the shape of an audit rollback acknowledgement: one
// subject, audit-log/rollback, and a transition from the trusted commit
// replacing the missing tree's root. Its digest binds the server's hold
// record (the tree found missing and the log as found), which the approver
// cannot recompute: the reason shown is what is signed for.
func checkAuditAck(d *reconcile.PendingDetail, decision string) error {
	if len(d.Subjects) != 1 || d.Subjects[0].Path != reconcile.AuditAckSubject || !hexDigestRE.MatchString(d.Subjects[0].Digest) {
		return fmt.Errorf("the server sent an audit acknowledgement whose subjects are not exactly %s", reconcile.AuditAckSubject)
	}
	if d.Transition == nil || d.Transition.Replaces[reconcile.AuditAckSubject] == "" || len(d.Transition.Replaces) != 1 {
		return errors.New("the server sent an audit acknowledgement without the transition it replaces")
	}
	if decision == approval.Propose {
		return errors.New("an audit acknowledgement is approved or rejected by admins, not proposed")
	}
	return nil
}

// checkTrustChange recomputes a change to what decides from the trusted
// and changed files the server sent.
func checkTrustChange(ctx context.Context, d *reconcile.PendingDetail, trusted fstest.MapFS) error {
	if d.Transition == nil {
		return errors.New("the server sent a change to policies/ and .writ/ without its transition")
	}
	changed := fstest.MapFS{}
	for _, f := range d.ChangedFiles {
		changed[f.Path] = &fstest.MapFile{Data: []byte(f.Content), Mode: 0o644}
	}
	if got := trust.TrustedPolicyDigest(trusted, policies.FS); got != d.PolicyDigest {
		return fmt.Errorf("the trusted policies the server sent have digest %.12s…, but it cites %.12s…", got, d.PolicyDigest)
	}
	c, err := trust.Diff(ctx, d.Transition.TrustedCommit, trusted, changed, policies.FS)
	if err != nil {
		return fmt.Errorf("recompute the change: %w", err)
	}
	if c == nil {
		return errors.New("the files the server sent decide alike: there is no change to sign")
	}
	var want []reconcile.PendingSubject
	for _, s := range c.Subjects {
		want = append(want, reconcile.PendingSubject{Path: s.Path, Digest: s.Digest})
	}
	if !slices.Equal(want, d.Subjects) {
		return fmt.Errorf("the server names subjects %v, but its files make %v", d.Subjects, want)
	}
	if !maps.Equal(c.Transition.Replaces, d.Transition.Replaces) {
		return fmt.Errorf("the server says the change replaces %v, but its files say %v", d.Transition.Replaces, c.Transition.Replaces)
	}
	return nil
}

// approverFor finds who the key belongs to among those who may sign.
func approverFor(d *reconcile.PendingDetail, keyID, decision string) (string, error) {
	var may []string
	for _, e := range d.Needs.Eligible {
		if slices.Contains(e.KeyIDs, keyID) {
			if e.Decision != decision && decision != approval.Reject {
				return "", fmt.Errorf("%s may %s %s, not %s it (it needs %s)", e.ID, e.Decision, d.ID, decision, needsText(d.Needs))
			}
			return e.ID, nil
		}
		may = append(may, e.ID)
	}
	if len(may) == 0 {
		return "", fmt.Errorf("your key %s is not among those who may sign %s, and nobody else's is either (%s): pass --approver to sign anyway", keyID, d.ID, d.Needs.Summary)
	}
	return "", fmt.Errorf("your key %s belongs to none of those who may sign %s now (%s); pass --approver ID to sign anyway", keyID, d.ID, strings.Join(may, ", "))
}

// breakGlassSignerFor is the holder of the break-glass role whose key is
// keyID.
func breakGlassSignerFor(d *reconcile.PendingDetail, keyID string) (string, error) {
	var may []string
	for _, e := range d.BreakGlass.Eligible {
		if slices.Contains(e.KeyIDs, keyID) {
			return e.ID, nil
		}
		may = append(may, e.ID)
	}
	if len(may) == 0 {
		return "", fmt.Errorf("nobody holds the break-glass role in the approvers file in force, so %s cannot break glass", d.ID)
	}
	return "", fmt.Errorf("your key %s belongs to none of the break-glass holders (%s); pass --approver ID to sign anyway", keyID, strings.Join(may, ", "))
}

// describePending names an item in one line.
func describePending(d *reconcile.PendingDetail) string {
	if d.Kind == reconcile.PendingAuditRollback {
		return fmt.Sprintf("%s (acknowledge the audit log rollback hold)", d.ID)
	}
	if d.Kind == reconcile.PendingTrustChange {
		var paths []string
		for _, s := range d.Subjects {
			paths = append(paths, s.Path)
		}
		return fmt.Sprintf("%s (change to %s from trusted commit %.12s)", d.ID, strings.Join(paths, ", "), d.Transition.TrustedCommit)
	}
	if d.Kind == reconcile.PendingHeal {
		return fmt.Sprintf("%s (heal of drift incident %d: re-apply %s, %s)", d.ID, d.Incident, d.Path, d.Environment)
	}
	return fmt.Sprintf("%s (%s of %s, %s)", d.ID, d.Operation, d.Path, d.Environment)
}

// needsText says what an item still needs.
func needsText(n reconcile.PendingNeeds) string {
	var parts []string
	if n.Proposal {
		parts = append(parts, fmt.Sprintf("a signed proposal by %s", strings.Join(n.ProposerRoles, " or ")))
	}
	if n.Missing > 0 {
		parts = append(parts, fmt.Sprintf("%d more of %d approvals by %s", n.Missing, n.Approvals, strings.Join(n.Roles, " or ")))
	}
	if len(parts) == 0 {
		return "nothing more"
	}
	return strings.Join(parts, " and ")
}

// showPending prints what the reviewer signs: the operation, why it
// waits, what the policies said, the change (a diff against what it
// replaces) and the plan.
func showPending(w io.Writer, d *reconcile.PendingDetail, decision, approver string) {
	fmt.Fprintf(w, "%s\n", display.Safe(describePending(d)))
	fmt.Fprintf(w, "  repository  %s at commit %.12s\n", display.Safe(d.Repository), display.Safe(d.Commit))
	if d.Kind == reconcile.PendingApply || d.Kind == reconcile.PendingRevert || d.Kind == reconcile.PendingHeal {
		fmt.Fprintf(w, "  playbook    %s (action %s, environment %s)\n", display.Safe(d.Playbook), display.Safe(d.Action), display.Safe(d.Environment))
		if len(d.Targets) > 0 {
			fmt.Fprintf(w, "  targets     %s\n", display.Safe(targetsText(d.Targets)))
		}
	}
	fmt.Fprintf(w, "  waits for   %s\n", needsText(d.Needs))
	for _, s := range d.Needs.Signed {
		state := "counts"
		if !s.Counted {
			state = "does not count: " + s.Note
		}
		fmt.Fprintf(w, "  signed      %s %s (%s)\n", display.Safe(s.Approver), s.Decision, display.Safe(state))
	}
	if len(d.Decision) > 0 {
		var dec policy.Decision
		if json.Unmarshal(d.Decision, &dec) == nil {
			fmt.Fprintf(w, "  policies    %s (policy set %.12s…)\n", dec.Outcome, d.PolicyDigest)
			for _, r := range dec.Reasons {
				fmt.Fprintf(w, "    %s: %s\n", r.Kind, display.Safe(r.Message))
			}
		}
	}
	switch {
	case d.Kind == reconcile.PendingAuditRollback:
		fmt.Fprintf(w, "  the hold    %s\n", display.Safe(d.Reason))
		fmt.Fprintf(w, "  signing accepts the audit log as it is now as the one writ expects; the missing tree stays on record (the checkpoints keep it)\n")
	case d.Kind == reconcile.PendingTrustChange:
		fmt.Fprintf(w, "  the change (trusted commit %.12s → %.12s):\n", display.Safe(d.Transition.TrustedCommit), display.Safe(d.Commit))
		old, changed := filesByPath(d.TrustedFiles), filesByPath(d.ChangedFiles)
		paths := slices.Sorted(maps.Keys(old))
		for p := range changed {
			if _, ok := old[p]; !ok {
				paths = append(paths, p)
			}
		}
		slices.Sort(paths)
		for _, p := range paths {
			if old[p] == changed[p] {
				continue
			}
			fmt.Fprintf(w, "  %s\n", display.Safe(p))
			writeDiff(w, "    ", old[p], changed[p])
		}
	case d.Kind == reconcile.PendingHeal:
		fmt.Fprintf(w, "  the heal re-applies, from %s@%.12s… in force, the targets drift removed from live state (incident %d):\n", display.Safe(d.Path), d.Subjects[0].Digest, d.Incident)
		writeDiff(w, "    ", d.Content.Content, d.Content.Content)
	case d.Kind == reconcile.PendingRevert:
		fmt.Fprintf(w, "  the revert undoes %s@%.12s…:\n", display.Safe(d.Path), d.Subjects[0].Digest)
		writeDiff(w, "    ", d.Content.Content, "")
		writeTargetsFileChange(w, d.TargetsFile, nil)
	case d.Replaces != nil:
		fmt.Fprintf(w, "  the change to %s:\n", display.Safe(d.Path))
		writeDiff(w, "    ", d.Replaces.Content, d.Content.Content)
		writeTargetsFileChange(w, d.TargetsFile, d.ReplacesTargetsFile)
	default:
		fmt.Fprintf(w, "  the new playbook %s:\n", display.Safe(d.Path))
		writeDiff(w, "    ", "", d.Content.Content)
		writeTargetsFileChange(w, d.TargetsFile, nil)
	}
	if len(d.Plan) > 0 && (d.Kind == reconcile.PendingApply || d.Kind == reconcile.PendingRevert || d.Kind == reconcile.PendingHeal) {
		var plan action.Plan
		if json.Unmarshal(d.Plan, &plan) == nil {
			fmt.Fprintf(w, "  plan %.12s… (%s through %s): %s\n", d.PlanDigest, plan.Operation, display.Safe(plan.Backend), plan.CountsText())
			shown, more := plan.Shown()
			for _, t := range shown {
				line := t.Target + " " + t.Result
				if t.Detail != "" {
					line += ": " + t.Detail
				}
				fmt.Fprintf(w, "    %s\n", display.Safe(line))
			}
			if more > 0 {
				fmt.Fprintf(w, "    … and %s more (GET /api/v1/pending/%s lists every target)\n", action.Thousands(more), d.ID)
			}
		}
	}
	fmt.Fprintf(w, "  you sign    %s as %s\n", decision, display.Safe(approver))
}

// targetsText lists the first targets of a list, and how many more.
func targetsText(targets []string) string {
	if len(targets) <= action.ShownTargets {
		return strings.Join(targets, ", ")
	}
	return fmt.Sprintf("%s, … and %s more (%s in all)", strings.Join(targets[:action.ShownTargets], ", "),
		action.Thousands(len(targets)-action.ShownTargets), action.Thousands(len(targets)))
}

// writeTargetsFileChange shows a playbook's targets file (what the
// statement's content digest covers with the playbook): its size, and
// against the version replaced, the targets added and removed (the first
// of each, and how many).
func writeTargetsFileChange(w io.Writer, now, was *reconcile.PendingFile) {
	if now == nil {
		return
	}
	targets, dups, problems := playbook.ParseTargetsFile(now.Path, []byte(now.Content))
	if problems != nil {
		fmt.Fprintf(w, "  targets file %s does not parse: %s\n", display.Safe(now.Path), display.Safe(problems[0].String()))
		return
	}
	fmt.Fprintf(w, "  targets file %s (sha256 %.12s…): %s targets", display.Safe(now.Path), playbook.Digest([]byte(now.Content)), action.Thousands(len(targets)))
	if dups > 0 {
		fmt.Fprintf(w, ", %s repeated lines merged", action.Thousands(dups))
	}
	fmt.Fprintln(w)
	if was == nil {
		fmt.Fprintf(w, "    %s\n", display.Safe(targetsText(targets)))
		return
	}
	before, _, _ := playbook.ParseTargetsFile(was.Path, []byte(was.Content))
	added, removed := targetsDiff(before, targets)
	fmt.Fprintf(w, "  against %s of the version replaced: %s added, %s removed\n", display.Safe(was.Path),
		action.Thousands(len(added)), action.Thousands(len(removed)))
	if len(added) > 0 {
		fmt.Fprintf(w, "    + %s\n", display.Safe(targetsText(added)))
	}
	if len(removed) > 0 {
		fmt.Fprintf(w, "    - %s\n", display.Safe(targetsText(removed)))
	}
}

// targetsDiff lists the targets of now not in was, and of was not in now
// (compared as written), each in its list's order.
func targetsDiff(was, now []string) (added, removed []string) {
	in := func(list []string) map[string]bool {
		m := make(map[string]bool, len(list))
		for _, t := range list {
			m[t] = true
		}
		return m
	}
	old, cur := in(was), in(now)
	for _, t := range now {
		if !old[t] {
			added = append(added, t)
		}
	}
	for _, t := range was {
		if !cur[t] {
			removed = append(removed, t)
		}
	}
	return added, removed
}

func filesByPath(files []reconcile.PendingFile) map[string]string {
	m := make(map[string]string, len(files))
	for _, f := range files {
		m[f.Path] = f.Content
	}
	return m
}

// confirm asks a yes/no question on standard error and reads the answer
// from standard input: only y or yes (any case) is yes.
func confirm(env *cliEnv, question string) (bool, error) {
	fmt.Fprint(env.stderr, question)
	line, err := bufio.NewReader(io.LimitReader(env.stdin, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read the answer: %w", err)
	}
	if errors.Is(err, io.EOF) && line == "" {
		fmt.Fprintln(env.stderr)
		return false, errors.New("no answer (standard input is closed): pass --yes to sign without asking")
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

// keyIDOf is the DSSE key id (SHA256:... fingerprint) of a public key.
func keyIDOf(pub crypto.PublicKey) (string, error) {
	return ssldsse.SHA256KeyID(pub)
}
