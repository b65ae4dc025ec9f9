package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sergi/go-diff/diffmatchpatch"

	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/server"
)

// How long statements signed in the console count: as `writ approve`'s
// defaults.
const (
	approvalValidity = 24 * time.Hour
	proposalValidity = 30 * 24 * time.Hour
)

// personID is who the console signs as: the approvers file's person whose
// id is the account's name (a local account), or the SSO name without its
// "oidc:" prefix.
func personID(p *auth.Principal) string {
	if p == nil {
		return ""
	}
	return strings.TrimPrefix(p.Name, "oidc:")
}

func (c *Console) engine(w http.ResponseWriter, r *http.Request) server.Engine {
	if c.opts.Engine == nil {
		c.errorPage(w, r, http.StatusServiceUnavailable, "The reconciler is not running on this server (no repository): nothing waits here.")
		return nil
	}
	return c.opts.Engine
}

type pendingRow struct {
	reconcile.Pending
	Mine bool // the viewer may give a missing signature
}

// pendingPage lists what waits for signatures (the queue `writ pending`
// shows), the viewer's own items first when mine=1.
func (c *Console) pendingPage(w http.ResponseWriter, r *http.Request) {
	e := c.engine(w, r)
	if e == nil {
		return
	}
	mineOnly := false
	switch v := r.URL.Query().Get("mine"); v {
	case "", "0":
	case "1":
		mineOnly = true
	default:
		c.errorPage(w, r, http.StatusBadRequest, "mine must be 1 or 0.")
		return
	}
	items, err := e.Pending(r.Context())
	if err != nil {
		c.fail(w, r, "list what waits for signatures", err)
		return
	}
	me := personID(principal(r))
	rows := make([]pendingRow, 0, len(items))
	mine := 0
	for _, it := range items {
		row := pendingRow{Pending: it, Mine: slices.ContainsFunc(it.Needs.Eligible, func(s reconcile.PendingSigner) bool { return s.ID == me })}
		if row.Mine {
			mine++
		}
		if mineOnly && !row.Mine {
			continue
		}
		rows = append(rows, row)
	}
	c.render(w, r, http.StatusOK, "pending.html", "Waiting for signatures", map[string]any{
		"Rows": rows, "Total": len(items), "Mine": mine, "MineOnly": mineOnly, "Me": me,
	})
}

// diffLine is one line of a diff: op is " ", "+" or "-".
type diffLine struct {
	Op, Text string
}

// lineDiff is a line diff of two texts (old empty: everything added).
func lineDiff(old, new string) []diffLine {
	dmp := diffmatchpatch.New()
	a, b, lines := dmp.DiffLinesToChars(old, new)
	var out []diffLine
	for _, d := range dmp.DiffCharsToLines(dmp.DiffMain(a, b, false), lines) {
		op := " "
		switch d.Type {
		case diffmatchpatch.DiffInsert:
			op = "+"
		case diffmatchpatch.DiffDelete:
			op = "-"
		}
		for _, l := range strings.Split(strings.TrimSuffix(d.Text, "\n"), "\n") {
			out = append(out, diffLine{op, l})
		}
	}
	return out
}

type fileDiff struct {
	Path  string
	Lines []diffLine
}

// signer is what the viewer may sign of an item.
type signer struct {
	Person      string
	Decisions   []string // propose, approve (reject is always offered)
	Credentials []string // the person's passkeys (credential ids), when the keyring has them
	// BreakGlass: the viewer holds the break-glass role and the item is
	// an emergency apply the policies let break glass, not invoked yet.
	BreakGlass bool
}

// breakGlassDecision is what the console's statement request names to
// sign the break-glass statement of an emergency apply (an approval
// marked breakGlass: Pending.BreakGlassStatement).
const breakGlassDecision = "break_glass"

// breakGlassValidity is how long a break-glass statement signed in the
// console counts: as `writ approve ID --break-glass`'s default, for now
// and not for a later emergency.
const breakGlassValidity = 4 * time.Hour

// passkeyCredentials appends the passkey credential ids among a signer's
// key ids to creds, once each.
func passkeyCredentials(creds []string, keyIDs []string) []string {
	for _, k := range keyIDs {
		if cred, ok := strings.CutPrefix(k, approval.WebAuthnKeyIDPrefix); ok && !slices.Contains(creds, cred) {
			creds = append(creds, cred)
		}
	}
	return creds
}

// breakGlassHolder is the viewer's entry among those who may break glass
// on d now, or nil.
func breakGlassHolder(d *reconcile.PendingDetail, me string) *reconcile.PendingSigner {
	if d.BreakGlass == nil || d.BreakGlass.InvokedAt != nil {
		return nil
	}
	for i := range d.BreakGlass.Eligible {
		if d.BreakGlass.Eligible[i].ID == me {
			return &d.BreakGlass.Eligible[i]
		}
	}
	return nil
}

// pendingItemPage shows what signing an item means: the change against
// what it replaces, the decision and its reasons, the plan, the
// signatures there and those missing; and the buttons that sign it with a
// passkey.
func (c *Console) pendingItemPage(w http.ResponseWriter, r *http.Request) {
	e := c.engine(w, r)
	if e == nil {
		return
	}
	id := r.PathValue("id")
	if !reconcile.ValidPendingID(id) {
		c.errorPage(w, r, http.StatusBadRequest, fmt.Sprintf("%q is not a pending item id (op-N or trust-N).", id))
		return
	}
	d, err := e.PendingItem(r.Context(), id)
	if errors.Is(err, reconcile.ErrNotPending) {
		c.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("%s waits for no signature (any more): it was done, replaced or withdrawn.", id))
		return
	}
	if err != nil {
		c.fail(w, r, "read "+id, err)
		return
	}
	var diffs []fileDiff
	if d.Content != nil {
		old := ""
		if d.Replaces != nil {
			old = d.Replaces.Content
		}
		diffs = append(diffs, fileDiff{Path: d.Content.Path, Lines: lineDiff(old, d.Content.Content)})
		if d.TargetsFile != nil {
			diffs = append(diffs, targetsFileDiff(d.TargetsFile, d.ReplacesTargetsFile))
		}
	}
	if d.Kind == reconcile.PendingTrustChange {
		trusted := map[string]string{}
		for _, f := range d.TrustedFiles {
			trusted[f.Path] = f.Content
		}
		for _, f := range d.ChangedFiles {
			if f.Content == trusted[f.Path] && !f.Missing {
				continue
			}
			diffs = append(diffs, fileDiff{Path: f.Path, Lines: lineDiff(trusted[f.Path], f.Content)})
		}
	}
	p := principal(r)
	me := personID(p)
	var s *signer
	if !p.Roles.Intersect(signRoles).Empty() {
		s = &signer{Person: me}
		for _, el := range d.Needs.Eligible {
			if el.ID != me {
				continue
			}
			s.Decisions = append(s.Decisions, el.Decision)
			s.Credentials = passkeyCredentials(s.Credentials, el.KeyIDs)
		}
		if h := breakGlassHolder(d, me); h != nil {
			s.BreakGlass = true
			s.Credentials = passkeyCredentials(s.Credentials, h.KeyIDs)
		}
	}
	c.render(w, r, http.StatusOK, "pending_item.html", "Waiting: "+id, map[string]any{
		"Item": d, "Diffs": diffs, "Signer": s, "Passkeys": c.passkeysUsable(r),
		"Targets": viewTargets(d.Targets), "Plan": viewPlan(d.Plan),
	})
}

// statementRequest asks for the statement to sign.
type statementRequest struct {
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
}

// statementResponse is the statement to sign and how: the payload, and
// the WebAuthn request options whose challenge is the sha256 of its DSSE
// PAE.
type statementResponse struct {
	Payload          string   `json:"payload"` // base64
	Challenge        string   `json:"challenge"`
	RPID             string   `json:"rpId"`
	AllowCredentials []string `json:"allowCredentials"`
	Timeout          int      `json:"timeout"`
	Summary          string   `json:"summary"`
}

func decodeStrictJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("read the request: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the request is not the expected JSON: %v", err)
	}
	if dec.More() {
		return errors.New("the request has data after its JSON object")
	}
	return nil
}

func problemJSON(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}

// pendingStatement makes the statement the viewer is about to sign: the
// item's own statement (the same `writ approve ID` signs) with the
// viewer's person id, decision and reason. The server only proposes the
// bytes: the signature is made by the approver's passkey, and the intake
// judges it like any other.
func (c *Console) pendingStatement(w http.ResponseWriter, r *http.Request) {
	if c.opts.Engine == nil {
		problemJSON(w, http.StatusServiceUnavailable, "unavailable", "the reconciler is not running on this server")
		return
	}
	rp, err := c.relyingPartyFor(r)
	if err != nil {
		problemJSON(w, http.StatusConflict, "no_passkeys", err.Error())
		return
	}
	id := r.PathValue("id")
	if !reconcile.ValidPendingID(id) {
		problemJSON(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%q is not a pending item id", id))
		return
	}
	var req statementRequest
	if err := decodeStrictJSON(r, &req); err != nil {
		problemJSON(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	validity := proposalValidity
	switch req.Decision {
	case approval.Approve:
		validity = approvalValidity
	case approval.Propose:
	case approval.Reject:
		if strings.TrimSpace(req.Reason) == "" {
			problemJSON(w, http.StatusBadRequest, "bad_request", "a rejection needs a reason: say why")
			return
		}
	case breakGlassDecision:
		if strings.TrimSpace(req.Reason) == "" {
			problemJSON(w, http.StatusBadRequest, "bad_request", "breaking glass needs a reason: say why this cannot wait for approvals (it is audited and notified)")
			return
		}
		validity = breakGlassValidity
	default:
		problemJSON(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("decision %q: want approve, propose, reject or break_glass", req.Decision))
		return
	}
	d, err := c.opts.Engine.PendingItem(r.Context(), id)
	if errors.Is(err, reconcile.ErrNotPending) {
		problemJSON(w, http.StatusNotFound, "not_pending", id+" waits for no signature (any more)")
		return
	}
	if err != nil {
		c.fail(w, r, "read "+id, err)
		return
	}
	me := personID(principal(r))
	var (
		st      approval.Statement
		creds   []string
		summary = fmt.Sprintf("%s %s as %s", req.Decision, id, me)
	)
	if req.Decision == breakGlassDecision {
		h := breakGlassHolder(d, me)
		if h == nil {
			problemJSON(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%s cannot break glass as %s: only an emergency apply the policies let break glass, not yet run on it, by a holder of the break-glass role", id, me))
			return
		}
		st, err = d.BreakGlassStatement(me, req.Reason, c.opts.Now(), validity)
		creds = passkeyCredentials(nil, h.KeyIDs)
		summary = fmt.Sprintf("break glass on %s as %s", id, me)
	} else {
		st, err = d.Statement(req.Decision, me, req.Reason, c.opts.Now(), validity)
		for _, el := range d.Needs.Eligible {
			if el.ID == me {
				creds = passkeyCredentials(creds, el.KeyIDs)
			}
		}
	}
	if err != nil {
		problemJSON(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	payload, err := json.Marshal(st)
	if err != nil {
		c.fail(w, r, "encode the statement", err)
		return
	}
	writeJSON(w, http.StatusOK, statementResponse{
		Payload:          base64.StdEncoding.EncodeToString(payload),
		Challenge:        base64.RawURLEncoding.EncodeToString(approval.WebAuthnChallenge(payload)),
		RPID:             rp.id,
		AllowCredentials: creds,
		Timeout:          120000,
		Summary:          summary,
	})
}

// signRequest is the statement and the passkey's assertion over it.
type signRequest struct {
	Payload           string `json:"payload"` // base64, as statementResponse gave it
	CredentialID      string `json:"credentialId"`
	AuthenticatorData string `json:"authenticatorData"`
	ClientDataJSON    string `json:"clientDataJSON"`
	Signature         string `json:"signature"`
}

// pendingSign wraps the assertion and the statement into a DSSE envelope
// and hands it to the intake as POST /api/v1/approvals would: the
// signature is the authority, checked against the trusted approvers file.
// The statement must name the signed-in person, and be about this item.
func (c *Console) pendingSign(w http.ResponseWriter, r *http.Request) {
	if c.opts.Engine == nil {
		problemJSON(w, http.StatusServiceUnavailable, "unavailable", "the reconciler is not running on this server")
		return
	}
	id := r.PathValue("id")
	var req signRequest
	if err := decodeStrictJSON(r, &req); err != nil {
		problemJSON(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	payload, err := base64.StdEncoding.DecodeString(req.Payload)
	if err != nil {
		problemJSON(w, http.StatusBadRequest, "bad_request", "payload is not base64")
		return
	}
	var a approval.WebAuthnAssertion
	for _, f := range []struct {
		name string
		in   string
		out  *[]byte
	}{{"credentialId", req.CredentialID, &a.CredentialID}, {"authenticatorData", req.AuthenticatorData, &a.AuthenticatorData},
		{"clientDataJSON", req.ClientDataJSON, &a.ClientDataJSON}, {"signature", req.Signature, &a.Signature}} {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(f.in, "="))
		if err != nil || len(b) == 0 {
			problemJSON(w, http.StatusBadRequest, "bad_request", f.name+" is not unpadded base64url")
			return
		}
		*f.out = b
	}
	raw, err := approval.WebAuthnEnvelope(payload, a)
	if err != nil {
		problemJSON(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	env, err := approval.Parse(raw)
	if err != nil {
		problemJSON(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if me := personID(principal(r)); env.Statement.Predicate.Approver != me {
		problemJSON(w, http.StatusForbidden, "forbidden", fmt.Sprintf("the statement names %q; you are signed in as %q", env.Statement.Predicate.Approver, me))
		return
	}
	d, err := c.opts.Engine.PendingItem(r.Context(), id)
	if errors.Is(err, reconcile.ErrNotPending) {
		problemJSON(w, http.StatusConflict, "not_pending", id+" waits for no signature any more: nothing was submitted")
		return
	}
	if err != nil {
		c.fail(w, r, "read "+id, err)
		return
	}
	if !sameSubjects(d, env.Statement) {
		problemJSON(w, http.StatusBadRequest, "bad_request", "the statement is not about "+id)
		return
	}
	in, err := c.opts.Engine.SubmitApproval(r.Context(), raw, approval.Submitted{Source: "console", SourceRef: server.RequestID(r.Context()),
		Remote: c.srv.ClientAddress(r)})
	if errors.Is(err, reconcile.ErrRefused) {
		problemJSON(w, http.StatusUnprocessableEntity, "refused", err.Error())
		return
	}
	if err != nil {
		c.fail(w, r, "store the signature", err)
		return
	}
	c.opts.Engine.Nudge()
	msg := "writ stored the signature and judges the item again now."
	if in.Duplicate {
		msg = "writ already had this exact signature."
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "accepted", "message": msg, "intake": in})
}

// sameSubjects: the statement binds the item's subjects.
func sameSubjects(d *reconcile.PendingDetail, st approval.Statement) bool {
	if len(d.Subjects) != len(st.Subject) {
		return false
	}
	for i, s := range d.Subjects {
		if st.Subject[i].Name != s.Path || st.Subject[i].SHA256() != s.Digest {
			return false
		}
	}
	return true
}
