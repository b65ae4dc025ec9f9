package audit

import "strings"

// This file is the catalogue of the events writ records: one constant per
// event, and in Catalogue a line saying what it means and the payload
// fields it carries. Every emitter names its events by these constants;
// TestNoEventLiterals fails on an event name written as a string literal
// anywhere else, and TestEventCatalogue keeps docs/audit.md's table equal
// to Catalogue (go test ./internal/audit -run TestEventCatalogue -update
// rewrites it).

// Event is an entry's event name: dotted lower-case words (pr.checked).
// Events recorded by `writ audit append` may use any name outside the
// reserved "audit." namespace; the constants below are writ's own.
type Event string

// The log's own events ("audit." namespace: only this package writes them).
const (
	EventKeyRotated  Event = "audit.key_rotated"
	EventAuditExport Event = "audit.export"
	EventAuditVerify Event = "audit.verify"
	// A witness's state changed (internal/audit Witnesser).
	EventWitnessCosigned Event = "audit.witness_cosigned"
	EventWitnessRefused  Event = "audit.witness_refused"
)

// Sign-in, accounts and tokens (internal/auth), and refused API requests
// (internal/server).
const (
	EventAuthLogin           Event = "auth.login"
	EventAuthLogout          Event = "auth.logout"
	EventAuthLocked          Event = "auth.locked"
	EventAuthDenied          Event = "auth.denied"
	EventAuthDeniedSummary   Event = "auth.denied_summary"
	EventUserCreated         Event = "user.created"
	EventUserUpdated         Event = "user.updated"
	EventUserDisabled        Event = "user.disabled"
	EventUserEnabled         Event = "user.enabled"
	EventUserUnlocked        Event = "user.unlocked"
	EventUserPasswordChanged Event = "user.password_changed"
	EventUserPasswordReset   Event = "user.password_reset"
	EventSessionRevoked      Event = "session.revoked"
	EventTokenCreated        Event = "token.created"
	EventTokenRevoked        Event = "token.revoked"
)

// The content repository and its trust configuration (internal/reconcile).
const (
	EventRepositoryBootstrap        Event = "repository.bootstrap"
	EventMergeSeen                  Event = "merge.seen"
	EventCommitRefused              Event = "commit.refused"
	EventRepositoryHistoryRewritten Event = "repository.history_rewritten"
	EventRepositoryHoldAcknowledged Event = "repository.hold_acknowledged"
	EventRepositoryResync           Event = "repository.resync"
	EventPolicyChangeHeld           Event = "policy.change_held"
	EventPolicyChangeAdopted        Event = "policy.change_adopted"
	EventPolicyChangeDismissed      Event = "policy.change_dismissed"
	EventPolicyHoldReleased         Event = "policy.hold_released"
	EventAuditRollbackHeld          Event = "audit_log.rollback_held"
	EventAuditRollbackAcknowledged  Event = "audit_log.rollback_acknowledged"
)

// Playbooks (internal/reconcile).
const (
	EventPlaybookMerged          Event = "playbook.merged"
	EventPlaybookInvalid         Event = "playbook.invalid"
	EventPlaybookStatus          Event = "playbook.status"
	EventPlaybookExpiryScheduled Event = "playbook.expiry_scheduled"
)

// Approvals (internal/reconcile).
const (
	EventApprovalReceived       Event = "approval.received"
	EventApprovalRefused        Event = "approval.refused"
	EventApprovalRefusedSummary Event = "approval.refused_summary"
	EventApprovalWithdrawn      Event = "approval.withdrawn"
)

// Operations (executions) of playbooks (internal/reconcile). The state
// events (waiting … cancelled) are named after store.ExecState.
const (
	EventExecutionIntended    Event = "execution.intended"
	EventExecutionNotRepeated Event = "execution.not_repeated"
	EventExecutionManualStart Event = "execution.manual_start"
	EventExecutionStarted     Event = "execution.started"
	EventExecutionResumed     Event = "execution.resumed"
	EventExecutionRetry       Event = "execution.retry"
	EventExecutionStopped     Event = "execution.stopped"
	EventExecutionWaiting     Event = "execution.waiting"
	EventExecutionPending     Event = "execution.pending"
	EventExecutionCompleted   Event = "execution.completed"
	EventExecutionFailed      Event = "execution.failed"
	EventExecutionDenied      Event = "execution.denied"
	EventExecutionRejected    Event = "execution.rejected"
	EventExecutionCancelled   Event = "execution.cancelled"

	// EventExecutionRetryRequested: an executor asked for a new attempt of
	// a failed (or partly applied) operation with the statements it has.
	EventExecutionRetryRequested Event = "execution.retry_requested"
)

// Drift: live state compared with the desired state of active playbooks
// (internal/reconcile/drift.go).
const (
	// EventDriftDetected: live state differs from what active playbooks
	// put in force (targets missing, unexpected or changed).
	EventDriftDetected Event = "drift.detected"
	// EventDriftResolved: live state matches the desired state again.
	EventDriftResolved Event = "drift.resolved"
)

// Break-glass containment: an emergency playbook executed on one signed
// statement by a holder of the break-glass role, which must gather its
// normal quorum within a window or is reverted.
const (
	// EventBreakGlassInvoked: an emergency apply was allowed on a
	// break-glass statement; its quorum is due by a deadline.
	EventBreakGlassInvoked Event = "breakglass.invoked"
	// EventBreakGlassConfirmed: the emergency apply gathered its normal
	// quorum within the window; it stays in force.
	EventBreakGlassConfirmed Event = "breakglass.confirmed"
	// EventBreakGlassLapsed: the window passed without the quorum; the
	// emergency apply is reverted.
	EventBreakGlassLapsed Event = "breakglass.lapsed"
)

// Housekeeping (internal/retention).
const (
	EventRetentionRun Event = "retention.run"
)

// EventSpec describes one event of the catalogue.
type EventSpec struct {
	Name Event
	// Actor is who the entry names as actor.
	Actor string
	// Subject is the subject's kind (and name, when fixed).
	Subject string
	// Summary is what the entry records, in one line.
	Summary string
	// Payload lists the payload fields; an item "name: what" describes
	// a field's parts (an object's fields; "before/after:" the entry's
	// before and after).
	Payload []string
}

// Payload fields shared by several events.
var (
	executionFields = []string{"execution", "operation", "state", "path", "action", "environment", "targets",
		"targets_total", "targets_sha256", "trigger", "attempts", "reason", "reason_code", "policy_digest", "plan_digest",
		"decision", "approvals", "error"}
	resultFields  = []string{"results", "results_total", "results_counts", "results_sha256"}
	summaryFields = []string{"window_start", "window_end", "audited_individually", "counted"}
	userChange    = []string{"before/after: the account (username, display_name, roles, disabled, …)", "sessions_revoked", "unlocked"}
)

func with(base []string, more ...string) []string {
	return append(append([]string(nil), base...), more...)
}

// catalogue is every event writ records, grouped as the constants are.
var catalogue = []EventSpec{
	{EventKeyRotated, "the rotating operator", "key: new key id", "the signing key changed (writ audit rotate-key); signed by the old key, with the new key's proof of possession",
		[]string{"new_key_algorithm", "new_key_id", "new_public_key", "old_key_id", "proof"}},
	{EventAuditExport, "the caller", "audit_log", "the log, or a filtered part of it, was exported (API or console); recorded after the export ended, also when it failed",
		[]string{"via", "format", "filter: since, until, actor, event", "proofs", "entries", "omitted", "size", "complete", "columns_disagree", "error"}},
	{EventAuditVerify, "the caller", "audit_log", "the server verified the log (POST /api/v1/audit/verify): the outcome, also when verification could not run",
		[]string{"ok", "checkpoints_given", "entries", "size", "signatures", "checkpoints", "bad_seq", "bad_reason", "error"}},
	{EventWitnessCosigned, "writ", "audit_log: the witness's name", "a witness of audit.witnesses cosigned a checkpoint: its first cosignature since the server started or since it failed or refused (each cosignature is stored in audit_witness_cosignatures)",
		[]string{"witness", "url", "key", "size", "root", "cosigned_at"}},
	{EventWitnessRefused, "writ", "audit_log: the witness's name", "a witness refused the log's checkpoint: the log forked or was rolled back (inconsistent, rolled_back), or the witness does not know the log or its key; recorded when the refusal starts or its reason changes",
		[]string{"witness", "url", "key", "reason", "status", "size", "root", "witness_size", "error"}},

	{EventAuthLogin, "the user", "user", "a user signed in and got a session", []string{"method", "session", "remote", "expires_at", "must_change_password"}},
	{EventAuthLogout, "the user", "user", "a user signed out: the session ended", []string{"session"}},
	{EventAuthLocked, "writ", "user", "too many failed sign-ins locked an account", []string{"failed_logins", "remote", "locked_until"}},
	{EventAuthDenied, "the caller, or anonymous", "api: the route", "an API request was refused (401 and 429 are counted into auth.denied_summary beyond a bound)",
		[]string{"status", "reason", "remote", "request_id", "detail", "method"}},
	{EventAuthDeniedSummary, "anonymous", "api: *", "refused requests counted in a window instead of audited one by one",
		with(summaryFields, "by_reason", "reasons", "by_route", "routes", "by_remote", "remotes")},
	{EventUserCreated, "the admin", "user", "an account was created", []string{"before/after: the account (after only)"}},
	{EventUserUpdated, "the admin", "user", "an account's display name or roles changed", userChange},
	{EventUserDisabled, "the admin", "user", "an account was disabled (its sessions revoked)", userChange},
	{EventUserEnabled, "the admin", "user", "a disabled account was enabled again", userChange},
	{EventUserUnlocked, "the admin", "user", "a locked account was unlocked", userChange},
	{EventUserPasswordChanged, "the user", "user", "a user changed their own password", []string{"other_sessions_revoked"}},
	{EventUserPasswordReset, "the admin", "user", "an admin set a user's password", []string{"sessions_revoked"}},
	{EventSessionRevoked, "the admin", "user", "an admin revoked a user's sessions", []string{"sessions_revoked"}},
	{EventTokenCreated, "the admin or user", "user: the token's owner", "an API token was created", []string{"token", "name", "roles", "expires_at"}},
	{EventTokenRevoked, "the admin or user", "user: the token's owner", "an API token was revoked", []string{"token", "name"}},

	{EventRepositoryBootstrap, "writ", "config: repository", "the first pass over the content repository", []string{"branch", "commit", "playbooks", "policy_digest"}},
	{EventMergeSeen, "writ", "config: repository", "a commit on the branch was processed", []string{"commit", "parent", "subject", "playbooks", "meta_changed"}},
	{EventCommitRefused, "writ", "config: repository", "a commit was refused (a malformed file); its playbook changes are not processed",
		[]string{"commit", "parent", "subject", "problem", "path", "reason", "playbooks_not_processed"}},
	{EventRepositoryHistoryRewritten, "writ", "config: repository", "the branch's history was rewritten: held until an admin acknowledges it",
		[]string{"hold", "processed", "head", "branch"}},
	{EventRepositoryHoldAcknowledged, "the admin", "config: repository", "an admin acknowledged a held history rewrite", []string{"hold", "kind", "commit", "resolution", "detail"}},
	{EventRepositoryResync, "writ", "config: repository", "after an acknowledged rewrite, writ adopted the new head", []string{"hold", "acknowledged_by", "from", "to"}},
	{EventAuditRollbackHeld, "writ", "config: audit-log", "the audit log no longer contains a tree this server knows (rolled back, truncated or forked): held until a quorum of admins signs its acknowledgement",
		[]string{"hold", "reason", "problem", "log", "expected", "source"}},
	{EventAuditRollbackAcknowledged, "writ", "config: audit-log", "a quorum of admins (or the recovery keys) acknowledged an audit rollback hold: the log as it is is the one expected",
		[]string{"hold", "how", "recovery", "by", "replaced", "base", "reason"}},
	{EventPolicyChangeHeld, "writ", "config: policies", "a change to policies/ or .writ/ lacks its admin approvals, or is malformed: held, the trusted version stays in force",
		[]string{"hold", "commit", "trusted_commit", "subjects", "transition", "approvals", "malformed"}},
	{EventPolicyChangeAdopted, "writ", "config: policies", "a change to policies/ or .writ/ was adopted with its quorum (or the recovery keys)",
		[]string{"commit", "previous", "subjects", "transition", "how", "recovery"}},
	{EventPolicyChangeDismissed, "the admin", "config: repository", "an admin dismissed a held policy change: refused and not held again",
		[]string{"hold", "kind", "commit", "resolution", "detail"}},
	{EventPolicyHoldReleased, "writ", "config: policies", "a held policy change was released unadopted: the branch is back to (or decides as) the trusted version", []string{"reason"}},

	{EventPlaybookMerged, "writ", "playbook", "a new playbook version reached the branch", []string{"commit", "path", "action", "environment", "severity", "change"}},
	{EventPlaybookInvalid, "writ", "playbook: the path", "a playbook file on the branch is not a valid playbook; nothing runs", []string{"commit", "path", "problems"}},
	{EventPlaybookStatus, "writ", "playbook", "a playbook version's status changed", []string{"before/after: status, reason"}},
	{EventPlaybookExpiryScheduled, "writ", "playbook", "a playbook's expiry (its revert) was scheduled, when its apply first acted: completed, or failed after applying some targets (partly_applied)", []string{"expires_at", "after", "partly_applied"}},

	{EventApprovalReceived, "the signer", "approval: the decision, envelope sha256", "a signed approval envelope was accepted and stored",
		[]string{"id", "key_id", "decision", "subjects", "policy_digest", "plan_digest", "source", "source_ref", "source_login", "issued_at", "expires_at"}},
	{EventApprovalRefused, "anonymous", "approval: the approver named", "an approval envelope was refused (counted into approval.refused_summary beyond a bound)",
		[]string{"reason", "code", "source", "source_ref", "source_login", "remote"}},
	{EventApprovalRefusedSummary, "anonymous", "approval: *", "refused approvals counted in a window instead of audited one by one",
		with(summaryFields, "by_reason", "reasons", "by_source", "sources", "by_client", "clients")},
	{EventApprovalWithdrawn, "the channel's user", "approval: the source reference", "approvals that came through a channel were withdrawn (a dismissed review, an edited text)",
		[]string{"source", "source_ref", "withdrawn", "kept"}},

	{EventExecutionIntended, "writ", "playbook", "an operation (apply or revert) was recorded, to be judged; `revived`: a revert cancelled before it ran (its version back on the branch) taken up again by a new removal, update or expiry, the same execution",
		with(executionFields, "revived")},
	{EventExecutionNotRepeated, "writ", "playbook", "an apply was not recorded again: this exact playbook content was already handled once", executionFields},
	{EventExecutionManualStart, "the executor", "playbook", "an executor started a waiting operation by hand", executionFields},
	{EventExecutionRetryRequested, "the executor", "playbook", "an executor asked for a new attempt of a failed (or partly applied) operation: its content, policy set and plan unchanged, its statements still count; only the targets not applied are attempted, after the check at the moment of use",
		with(executionFields, "applied", "remaining")},
	{EventExecutionStarted, "writ", "playbook", "an operation was claimed and is about to touch its backend", executionFields},
	{EventExecutionResumed, "writ", "playbook", "an operation interrupted by a crash was claimed again", executionFields},
	{EventExecutionRetry, "writ", "playbook", "a transient backend error: the operation is tried again later", with(executionFields, resultFields...)},
	{EventExecutionStopped, "writ", "playbook", "the check at the moment of use stopped a claimed operation before its backend was called", executionFields},
	{EventExecutionWaiting, "writ", "playbook", "an operation waits (for approvals, a runner, its time)", executionFields},
	{EventExecutionPending, "writ", "playbook", "an operation is allowed and approved: it runs next", executionFields},
	{EventExecutionCompleted, "writ", "playbook", "an operation completed", with(executionFields, resultFields...)},
	{EventExecutionFailed, "writ", "playbook", "an operation failed", with(executionFields, resultFields...)},
	{EventExecutionDenied, "writ", "playbook", "policy denied an operation", executionFields},
	{EventExecutionRejected, "writ", "playbook", "an approver rejected an operation", executionFields},
	{EventExecutionCancelled, "writ", "playbook", "an operation was cancelled before it ran (superseded, or its playbook removed; a revert whose version is back on the branch: restored)", executionFields},

	{EventDriftDetected, "writ", "environment: the environment", "live state differs from the desired state of the active playbooks of an environment and backend (report or heal)",
		[]string{"environment", "action", "backend", "mode", "missing", "unexpected", "changed", "counts", "playbooks", "heal", "findings_sha256"}},
	{EventDriftResolved, "writ", "environment: the environment", "live state matches the desired state of an environment and backend again", []string{"environment", "action", "backend", "since", "reason"}},

	{EventBreakGlassInvoked, "the break-glass signer", "playbook", "an emergency apply was allowed on one break-glass statement; its normal quorum is due by the deadline or it is reverted",
		with(executionFields, "signer", "deadline", "window")},
	{EventBreakGlassConfirmed, "writ", "playbook", "an emergency apply gathered its normal quorum within its window: it stays in force", with(executionFields, "deadline")},
	{EventBreakGlassLapsed, "writ", "playbook", "an emergency apply's window passed without its normal quorum: its revert is scheduled", with(executionFields, "deadline", "revert")},

	{EventRetentionRun, "writ", "config: retention", "the retention jobs ran (audit entries are never deleted)", []string{"sessions_deleted", "approvals_withdrawn", "playbooks_archived"}},
}

// reserved reports whether e is in the namespace only this package writes.
func (e Event) reserved() bool { return strings.HasPrefix(string(e), reservedPrefix) }

// Catalogue returns every event writ records, with what it means.
func Catalogue() []EventSpec {
	out := make([]EventSpec, len(catalogue))
	copy(out, catalogue)
	return out
}

// Known reports whether e is one of writ's own events.
func Known(e Event) bool {
	for _, s := range catalogue {
		if s.Name == e {
			return true
		}
	}
	return false
}
