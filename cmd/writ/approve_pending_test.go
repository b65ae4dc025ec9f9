package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/policies"
)

// pendingServer answers GET /api/v1/pending/op-7 with item (as a
// compromised or buggy server might shape it) and counts envelopes posted.
func pendingServer(t *testing.T, item *reconcile.PendingDetail) (string, *atomic.Int32) {
	t.Helper()
	var posted atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/pending/op-7":
			_ = json.NewEncoder(w).Encode(item)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/pending/"):
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"code":"not_pending","message":"not pending: the apply of playbooks/x.yaml waits for no signature: it is completed (applied)"}`))
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/approvals":
			posted.Add(1)
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":1}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &posted
}

// honestItem is a pending apply whose digests match what it carries.
func honestItem(t *testing.T, keyID string) *reconcile.PendingDetail {
	t.Helper()
	content := dayPlaybook
	set, err := policy.DigestFS(policies.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	plan := action.Plan{Action: "block_ip", Backend: "blocklist:prod-list", Environment: "production", Operation: action.Apply,
		Targets: []action.TargetPlan{{Target: "203.0.113.77", Result: "would_block"}}}
	planJSON, _ := json.Marshal(plan)
	return &reconcile.PendingDetail{
		Pending: reconcile.Pending{
			ID: "op-7", Kind: "apply", Playbook: "block-c2", Path: "playbooks/block-c2.yaml", Action: "block_ip", Environment: "production",
			Operation: "apply", Subjects: []reconcile.PendingSubject{{Path: "playbooks/block-c2.yaml", Digest: playbook.Digest([]byte(content))}},
			Repository: "acme/secops", Commit: strings.Repeat("a", 40), PolicyDigest: set, PlanDigest: plan.Digest(),
			ReasonCode: "awaiting_approval", Reason: "not approved: 0 of 1 approval",
			Needs: reconcile.PendingNeeds{Approvals: 1, Missing: 1, Roles: []string{"approver"},
				Eligible: []reconcile.PendingSigner{{ID: "bob", Roles: []string{"approver"}, Decision: "approve", KeyIDs: []string{keyID}}}},
			Command: "writ approve op-7",
		},
		Content: &reconcile.PendingFile{Path: "playbooks/block-c2.yaml", Content: content}, Plan: planJSON,
		TrustedFiles: []reconcile.PendingFile{}, DefaultPolicies: true,
	}
}

func bobKey(t *testing.T) (file, keyID string) {
	t.Helper()
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := keys.MarshalPrivate(k, nil)
	file = filepath.Join(t.TempDir(), "bob.key")
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	keyID, err = keyIDOf(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return file, keyID
}

// writ approve ID signs what it checked, and refuses, before signing, an
// item whose digests do not match what the server sent with it.
func TestApprovePendingChecksWhatTheServerSends(t *testing.T) {
	t.Parallel()
	key, keyID := bobKey(t)
	{
		item := honestItem(t, keyID)
		url, posted := pendingServer(t, item)
		code, out, errOut := runCLIInput(t, nil, "", "approve", "op-7", "--key", key, "--server", url, "--yes")
		if code != exitOK || posted.Load() != 1 || !strings.Contains(errOut, "signed approve of op-7") || !strings.Contains(out, "you sign    approve as bob") {
			t.Fatalf("the honest item: %d %d\n%s\n%s", code, posted.Load(), out, errOut)
		}
	}
	cases := []struct {
		name   string
		tamper func(d *reconcile.PendingDetail)
		want   string
	}{
		{"content", func(d *reconcile.PendingDetail) {
			d.Content.Content = strings.Replace(d.Content.Content, "203.0.113.77", "10.0.0.1", 1)
		}, "the content the server sent has sha256"},
		{"plan", func(d *reconcile.PendingDetail) { d.PlanDigest = strings.Repeat("b", 64) }, "the plan the server sent has digest"},
		{"policy set", func(d *reconcile.PendingDetail) { d.PolicyDigest = strings.Repeat("c", 64) }, "built-in policies"},
		{"trusted policies", func(d *reconcile.PendingDetail) {
			d.DefaultPolicies = false
			d.TrustedFiles = []reconcile.PendingFile{{Path: "policies/decision.rego", Content: "package writ.decision\n"}}
		}, "trusted policies"},
		{"subject path", func(d *reconcile.PendingDetail) { d.Subjects[0].Path = "playbooks/other.yaml" }, "names the subject playbooks/other.yaml"},
		{"repository", func(d *reconcile.PendingDetail) { d.Repository = "not a repo" }, "not OWNER/NAME"},
		{"no plan", func(d *reconcile.PendingDetail) { d.Plan = nil }, "no dry-run plan to approve"},
		{"kind", func(d *reconcile.PendingDetail) { d.Kind = "revert" }, "kind \"revert\""},
	}
	for _, c := range cases {
		item := honestItem(t, keyID)
		c.tamper(item)
		url, posted := pendingServer(t, item)
		code, _, errOut := runCLIInput(t, nil, "", "approve", "op-7", "--key", key, "--server", url, "--yes")
		if code != exitFailure || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "nothing signed") || posted.Load() != 0 {
			t.Errorf("%s: %d %d %s", c.name, code, posted.Load(), errOut)
		}
	}
}

// What the reviewer reads cannot be rewritten by terminal escapes or
// bidirectional overrides in the content; the question needs a yes.
func TestApprovePendingShowsContentSafely(t *testing.T) {
	t.Parallel()
	key, keyID := bobKey(t)
	item := honestItem(t, keyID)
	item.Content.Content = strings.Replace(dayPlaybook, "C2 beaconing seen by EDR", "C2 \x1b[2K\r\u202eRDE yb nees\u202c", 1)
	item.Subjects[0].Digest = playbook.Digest([]byte(item.Content.Content))
	url, posted := pendingServer(t, item)
	code, out, errOut := runCLIInput(t, nil, "no\n", "approve", "op-7", "--key", key, "--server", url)
	if code != exitFailure || posted.Load() != 0 || !strings.Contains(errOut, "not confirmed") {
		t.Fatalf("declined: %d %d %s", code, posted.Load(), errOut)
	}
	if strings.ContainsAny(out, "\x1b\r\u202e") || !strings.Contains(out, `C2 \u001b[2K\u000d\u202eRDE yb nees\u202c`) {
		t.Fatalf("shown:\n%q", out)
	}
	// No answer at all (standard input closed) is no.
	code, _, errOut = runCLIInput(t, nil, "", "approve", "op-7", "--key", key, "--server", url)
	if code != exitFailure || posted.Load() != 0 || !strings.Contains(errOut, "pass --yes") {
		t.Fatalf("no answer: %d %s", code, errOut)
	}
}

func TestApprovePendingRefusals(t *testing.T) {
	t.Parallel()
	key, keyID := bobKey(t)
	url, posted := pendingServer(t, honestItem(t, keyID))
	other, _ := bobKey(t)
	for _, c := range []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{"approve", "op-7", "--key", key}, nil, exitUsage, "pass --server URL, set WRIT_SERVER, or log in"},
		{[]string{"approve", "op-7", "--server", url}, nil, exitUsage, "--key is required: the private key you sign with (or --ssh-key"},
		{[]string{"approve", "op-7", "--key", key, "--server", url, "--revert"}, nil, exitUsage, "names a pending item"},
		{[]string{"approve", "op-7", "--key", key, "--server", url, "--plan-digest", strings.Repeat("a", 64)}, nil, exitUsage, "names a pending item"},
		{[]string{"approve", "op-7", "--key", key, "--reject", "--yes"}, map[string]string{"WRIT_SERVER": url}, exitUsage, "--reject needs --reason"},
		{[]string{"approve", "op-8", "--key", key, "--yes"}, map[string]string{"WRIT_SERVER": url}, exitFailure, "waits for no signature: it is completed"},
		{[]string{"approve", "op-7", "--key", other, "--yes"}, map[string]string{"WRIT_SERVER": url}, exitUsage, "belongs to none of those who may sign op-7 now (bob)"},
		{[]string{"approve", "op-7", "--key", key, "--propose", "--yes"}, map[string]string{"WRIT_SERVER": url}, exitUsage, "bob may approve op-7, not propose it"},
	} {
		code, _, errOut := runCLIInput(t, c.env, "", c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: %d %s", c.args, code, errOut)
		}
	}
	if posted.Load() != 0 {
		t.Fatalf("%d envelopes posted by refused commands", posted.Load())
	}
	// --approver overrides who the key is said to belong to (the server
	// judges whether it counts).
	code, _, errOut := runCLIInput(t, map[string]string{"WRIT_SERVER": url}, "", "approve", "op-7", "--key", other, "--approver", "bob", "--yes")
	if code != exitOK || posted.Load() != 1 {
		t.Fatalf("--approver: %d %s", code, errOut)
	}
}

// writ approve op-N signs a heal as it signs an apply: the statement names
// the heal and its drift incident (so it never counts for another
// incident's heal, nor for the apply); an item claiming a heal without an
// incident, or an apply with one, is refused before anything is signed.
func TestApprovePendingSignsAHeal(t *testing.T) {
	t.Parallel()
	key, keyID := bobKey(t)
	heal := func() *reconcile.PendingDetail {
		item := honestItem(t, keyID)
		item.Kind, item.Operation, item.Incident, item.Trigger = "heal", "heal", 12, "drift"
		return item
	}
	var body atomic.Value
	item := heal()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/pending/op-7":
			_ = json.NewEncoder(w).Encode(item)
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/approvals":
			b, _ := io.ReadAll(r.Body)
			body.Store(b)
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":1}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	code, out, errOut := runCLIInput(t, nil, "", "approve", "op-7", "--key", key, "--server", srv.URL, "--yes")
	if code != exitOK || !strings.Contains(out, "heal of drift incident 12") {
		t.Fatalf("signing a heal: %d\n%s\n%s", code, out, errOut)
	}
	raw, _ := body.Load().([]byte)
	env, err := approval.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if p := env.Statement.Predicate; p.Operation != "heal" || p.Incident != 12 || p.PlanDigest != item.PlanDigest {
		t.Fatalf("signed predicate: %+v", p)
	}
	for name, tamper := range map[string]func(d *reconcile.PendingDetail){
		"heal without incident": func(d *reconcile.PendingDetail) { d.Incident = 0 },
		"apply with incident":   func(d *reconcile.PendingDetail) { d.Kind, d.Operation = "apply", "apply" },
	} {
		bad := heal()
		tamper(bad)
		url, posted := pendingServer(t, bad)
		code, _, errOut := runCLIInput(t, nil, "", "approve", "op-7", "--key", key, "--server", url, "--yes")
		if code != exitFailure || !strings.Contains(errOut, "names its incident") || posted.Load() != 0 {
			t.Errorf("%s: %d %d %s", name, code, posted.Load(), errOut)
		}
	}
}

// writ approve ID --break-glass signs the one statement that lets an
// emergency apply run: an approval marked breakGlass, by the holder of
// the break-glass role its key belongs to; it refuses an item the
// policies let break no glass, one already broken, and a missing reason.
func TestApprovePendingBreakGlass(t *testing.T) {
	t.Parallel()
	key, keyID := bobKey(t)
	emergency := func() *reconcile.PendingDetail {
		item := honestItem(t, "SHA256:someone-else")
		item.BreakGlass = &reconcile.PendingBreakGlass{Command: "writ approve op-7 --break-glass",
			Eligible: []reconcile.PendingSigner{{ID: "frank", Roles: []string{"break-glass"}, Decision: "approve", KeyIDs: []string{keyID}}}}
		return item
	}
	item := emergency()
	url, posted := pendingServer(t, item)
	out := filepath.Join(t.TempDir(), "bg.json")
	code, stdout, errOut := runCLIInput(t, nil, "", "approve", "op-7", "--break-glass", "--reason", "ransomware spreading", "--key", key,
		"--server", url, "--out", out, "--yes")
	if code != exitOK || posted.Load() != 1 || !strings.Contains(errOut, "signed break-glass of op-7") || !strings.Contains(stdout, "break-glass as frank") {
		t.Fatalf("break-glass: %d %d\n%s\n%s", code, posted.Load(), stdout, errOut)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env, err := approval.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := env.Statement.Predicate
	if !p.BreakGlass || p.Decision != approval.Approve || p.Approver != "frank" || p.PlanDigest != item.PlanDigest ||
		p.ExpiresAt.Sub(p.IssuedAt) != 4*time.Hour || p.Reason != "ransomware spreading" {
		t.Fatalf("predicate %+v", p)
	}

	refusals := []struct {
		name string
		item func() *reconcile.PendingDetail
		args []string
		code int
		want string
	}{
		{"no emergency", func() *reconcile.PendingDetail { return honestItem(t, keyID) }, []string{"--reason", "x"}, exitFailure, "cannot break glass"},
		{"already broken", func() *reconcile.PendingDetail {
			d := emergency()
			now := time.Now()
			d.BreakGlass.InvokedAt, d.BreakGlass.Signer, d.BreakGlass.Command = &now, "frank", ""
			return d
		}, []string{"--reason", "x"}, exitFailure, "already ran on break-glass"},
		{"no reason", emergency, nil, exitUsage, "--break-glass needs --reason"},
		{"reject", emergency, []string{"--reason", "x", "--reject"}, exitUsage, "drop --propose and --reject"},
	}
	for _, c := range refusals {
		url, posted := pendingServer(t, c.item())
		args := append([]string{"approve", "op-7", "--break-glass", "--key", key, "--server", url, "--yes"}, c.args...)
		code, _, errOut := runCLIInput(t, nil, "", args...)
		if code != c.code || !strings.Contains(errOut, c.want) || posted.Load() != 0 {
			t.Errorf("%s: %d %d %s", c.name, code, posted.Load(), errOut)
		}
	}
}
