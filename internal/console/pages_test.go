package console

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/server"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

// pagesEnv is a database with an audit log, accounts, and the console
// mounted on a server with the API's guard, on loopback.
type pagesEnv struct {
	t    testing.TB
	ctx  context.Context
	st   *store.Store
	alog *audit.Log
	key  *audit.SigningKey
	auth *auth.Authenticator
	http *httptest.Server
	// sessions are session cookies by role.
	sessions map[string]string
}

type envOptions struct {
	// trusted are the console's trusted audit keys: "log" (the log's
	// own key), "none", or "other" (a key that signed nothing).
	trusted string
	// recordAccess: the console records exports in the log
	// (Options.Audit).
	recordAccess bool
}

func newPagesEnv(t testing.TB, o envOptions) *pagesEnv {
	t.Helper()
	ctx := context.Background()
	e := &pagesEnv{t: t, ctx: ctx, sessions: map[string]string{}}
	log := slog.New(slog.DiscardHandler)
	e.st = dbtest.Store(t)
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	if e.key, err = audit.NewSigningKey(k); err != nil {
		t.Fatal(err)
	}
	if e.alog, err = audit.NewLog(audit.LogOptions{Store: e.st, Key: e.key, Logger: log}); err != nil {
		t.Fatal(err)
	}
	e.auth, err = auth.New(auth.Options{Store: e.st, Audit: e.alog, Hash: auth.HashParams{Time: 1, MemoryKiB: 64, Threads: 1}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	denials, err := server.NewDenialAuditor(server.DenialOptions{Log: e.alog, Store: e.st, Burst: 1000, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetGuard(server.Guard{Auth: e.auth, Denials: denials}); err != nil {
		t.Fatal(err)
	}
	var trusted *audit.KeySet
	switch o.trusted {
	case "", "log":
		pub, err := audit.NewPublicKey(e.key.Public())
		if err != nil {
			t.Fatal(err)
		}
		trusted = audit.NewKeySet(pub)
	case "other":
		other, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := audit.NewPublicKey(other.Public())
		if err != nil {
			t.Fatal(err)
		}
		trusted = audit.NewKeySet(pub)
	}
	opts := Options{Store: e.st, Auth: e.auth, TrustedKeys: trusted, Logger: log}
	if o.recordAccess {
		opts.Audit = e.alog
	}
	con, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	con.Register(srv)
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(e.http.Close)
	for _, role := range []auth.Role{auth.Viewer, auth.Admin} {
		name, pw := "u-"+string(role), "a long enough password for "+string(role)
		if _, _, err := e.auth.CreateUser(ctx, audit.SystemActor, auth.NewUser{Username: name, Roles: auth.Roles(role), Password: pw}); err != nil {
			t.Fatal(err)
		}
		res, err := e.auth.Login(ctx, name, pw, "")
		if err != nil {
			t.Fatal(err)
		}
		e.sessions[string(role)] = res.Token
	}
	return e
}

// get fetches a page as a role ("" for no session).
func (e *pagesEnv) get(role, path string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, e.http.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if role != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: e.sessions[role]})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

// mustGet fetches a page that must answer status.
func (e *pagesEnv) mustGet(role, path string, status int) string {
	e.t.Helper()
	resp, body := e.get(role, path)
	if resp.StatusCode != status {
		e.t.Fatalf("GET %s as %s: %d, want %d\n%s", path, role, resp.StatusCode, status, body)
	}
	return body
}

func contains(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: no %q in\n%s", what, w, body)
		}
	}
}

func lacks(t *testing.T, what, body string, nots ...string) {
	t.Helper()
	for _, n := range nots {
		if strings.Contains(body, n) {
			t.Errorf("%s: %q should not be in\n%s", what, n, body)
		}
	}
}

const xss = `<script>alert("x")</script>`

// escaped is how html/template writes s in text.
func escaped(s string) string { return html.EscapeString(s) }

// seeded is what seedPlaybooks recorded.
type seeded struct {
	failed, completed, waiting *store.Execution
}

func pbContent(name, env string, targets ...string) string {
	return "apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: " + name + "\nspec:\n  action: block_ip\n  targets: [" +
		strings.Join(targets, ", ") + "]\n  justification: seen beaconing to " + xss + "\n  severity: high\n  environment: " + env + "\n"
}

func (e *pagesEnv) version(name, env, commit string, targets ...string) *store.PlaybookVersion {
	e.t.Helper()
	content := pbContent(name, env, targets...)
	v, _, err := e.st.EnsurePlaybookVersion(e.ctx, store.PlaybookVersion{Name: name, Path: "playbooks/" + name + ".yaml",
		Digest: playbook.Digest([]byte(content)), Content: []byte(content), Action: "block_ip", Environment: env, Severity: "high", CommitSHA: commit})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// seedPlaybooks records two playbooks: block-c2 (two versions; the
// current one failed at the backend, with an approval counted and one
// not) and allow-dns in production (completed).
func (e *pagesEnv) seedPlaybooks() seeded {
	t := e.t
	var s seeded
	old := e.version("block-c2", "staging", strings.Repeat("a", 40), "198.51.100.1")
	if err := e.st.SetPlaybookStatus(e.ctx, old.ID, store.StatusCompleted, "applied", strings.Repeat("a", 40)); err != nil {
		t.Fatal(err)
	}
	cur := e.version("block-c2", "staging", strings.Repeat("b", 40), "203.0.113.7", "203.0.113.8")
	if err := e.st.SetPlaybookStatus(e.ctx, cur.ID, store.StatusFailed, "backend refused "+xss, strings.Repeat("b", 40)); err != nil {
		t.Fatal(err)
	}
	verdict, _ := json.Marshal(map[string]any{"quorum_met": true, "required": 1, "missing": 0, "counted": []string{"alice"},
		"proposer": "", "summary": "approved by alice (1 approval, 1 required)",
		"not_counted": []map[string]string{{"approver": "mallory", "code": "unknown_key", "message": "signed by a key not in the keyring " + xss}}})
	var err error
	s.failed, _, err = e.st.CreateExecution(e.ctx, store.Execution{VersionID: cur.ID, Name: "block-c2", Digest: cur.Digest, Path: cur.Path,
		Action: "block_ip", Environment: "staging", Operation: "apply", State: store.ExecFailed, Targets: []string{"203.0.113.7", "203.0.113.8"},
		Trigger: "merge", ChangeType: "update", Verdict: verdict, Plan: json.RawMessage(`{"add":["203.0.113.7/32","203.0.113.8/32"]}`),
		ReasonCode: "backend_error", Reason: "the backend failed " + xss})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.SaveTargetResults(e.ctx, s.failed.ID, []store.TargetResult{
		{Target: "203.0.113.7", Planned: "add", Result: "failed", Detail: "firewall API answered 503: " + xss},
		{Target: "203.0.113.8", Planned: "add", Result: "changed"},
	}); err != nil {
		t.Fatal(err)
	}
	for i, a := range []struct{ who, decision, reason string }{{"alice", "approve", "checked the IOC " + xss}, {"mallory", "approve", "me too"}} {
		env := []byte("envelope " + a.who)
		sum := sha256.Sum256(env)
		now := time.Now().UTC()
		if _, _, err := e.st.InsertApproval(e.ctx, store.Approval{Envelope: env, EnvelopeSHA256: hex.EncodeToString(sum[:]), StatementSHA256: hex.EncodeToString(sum[:]), Decision: a.decision,
			Approver: a.who, Reason: a.reason, IssuedAt: now.Add(time.Duration(i) * time.Second), ExpiresAt: now.Add(24 * time.Hour), Source: "api",
			Subjects: []store.ApprovalSubject{{Digest: cur.Digest, Name: "block-c2"}}}); err != nil {
			t.Fatal(err)
		}
	}
	dns := e.version("allow-dns", "production", strings.Repeat("c", 40), "192.0.2.53")
	if err := e.st.SetPlaybookStatus(e.ctx, dns.ID, store.StatusCompleted, "applied to 1 target", ""); err != nil {
		t.Fatal(err)
	}
	s.completed, _, err = e.st.CreateExecution(e.ctx, store.Execution{VersionID: dns.ID, Name: "allow-dns", Digest: dns.Digest, Path: dns.Path,
		Action: "block_ip", Environment: "production", Operation: "apply", State: store.ExecCompleted, Targets: []string{"192.0.2.53"},
		Trigger: "merge", ChangeType: "create"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The playbook pages show what the store holds: statuses with reasons,
// operations with reason codes, approvals counted or not, the backend's
// error per target; every string escaped.
func TestPlaybookPages(t *testing.T) {
	t.Parallel()
	e := newPagesEnv(t, envOptions{})
	s := e.seedPlaybooks()

	list := e.mustGet("viewer", "/playbooks", 200)
	contains(t, "list", list, `href="/playbooks/block-c2"`, `href="/playbooks/allow-dns"`, `<span class="state failed">failed</span>`,
		escaped("backend refused "+xss), `<td>2</td>`, `<td>production</td>`, `href="/executions/`, `<span class="state completed">completed</span>`)
	lacks(t, "list", list, xss)

	// Filters.
	failed := e.mustGet("viewer", "/playbooks?status=failed", 200)
	contains(t, "status=failed", failed, "block-c2", "1 playbook,")
	lacks(t, "status=failed", failed, "allow-dns")
	prod := e.mustGet("viewer", "/playbooks?environment=production", 200)
	contains(t, "environment=production", prod, "allow-dns")
	lacks(t, "environment=production", prod, `href="/playbooks/block-c2"`)
	none := e.mustGet("viewer", "/playbooks?status=completed&environment=staging", 200)
	contains(t, "no match", none, "No playbook matches.")
	for q, param := range map[string]string{
		"status=bogus":                            "status",
		"environment=Not_A_Label":                 "environment",
		"status=" + url.QueryEscape("failed\x01"): "status",
	} {
		body := e.mustGet("viewer", "/playbooks?"+q, 400)
		contains(t, q, body, "Query parameter &#34;"+param+"&#34;")
	}
	body := e.mustGet("viewer", "/playbooks?status="+url.QueryEscape(xss), 400)
	lacks(t, "bad status", body, xss)

	// One playbook.
	pb := e.mustGet("viewer", "/playbooks/block-c2", 200)
	contains(t, "playbook", pb,
		escaped("backend refused "+xss), "applied", "first seen", // the status history of both versions
		"backend_error", escaped("the backend failed "+xss), `href="/executions/`,
		"alice", escaped("checked the IOC "+xss), `<span class="state counted">counted</span>`,
		"mallory", escaped("not counted: unknown_key: signed by a key not in the keyring "+xss),
		"approved by alice", "203.0.113.8", escaped("justification: seen beaconing to "+xss), // the content
		strings.Repeat("b", 12))
	lacks(t, "playbook", pb, xss)
	e.mustGet("viewer", "/playbooks/no-such-playbook", 404)
	notFound := e.mustGet("viewer", "/playbooks/"+url.PathEscape(xss), 404)
	lacks(t, "bad name", notFound, xss)

	// One execution.
	ex := e.mustGet("viewer", "/executions/"+itoa(s.failed.ID), 200)
	contains(t, "execution", ex, `<span class="state failed">failed</span>`, "backend_error", escaped("the backend failed "+xss),
		"203.0.113.7", escaped("firewall API answered 503: "+xss), `<span class="state changed">changed</span>`,
		escaped(`"203.0.113.7/32"`), `href="/playbooks/block-c2"`, "apply", "unknown_key",
		"Partly applied: 1 applied, 1 failed, 0 pending.", "writ retry "+itoa(s.failed.ID), "remove the playbook from the branch")
	lacks(t, "execution", ex, xss)
	e.mustGet("viewer", "/executions/"+itoa(s.completed.ID), 200)
	e.mustGet("viewer", "/executions/999999", 404)
	e.mustGet("viewer", "/executions/abc", 404)

	// Without a session, a page load goes to the sign-in form.
	resp, _ := e.get("", "/playbooks")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
		t.Fatalf("no session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// appendEntries records entries by bob and carol, one with a hostile
// actor id and subject.
func (e *pagesEnv) appendEntries() {
	e.t.Helper()
	var es []audit.Entry
	for i := range 6 {
		who := "bob"
		if i%2 == 1 {
			who = "carol"
		}
		es = append(es, audit.Entry{Actor: audit.Actor{ID: who, Role: "analyst"}, Event: "test.step", Success: i != 3,
			Subject: audit.Subject{Kind: audit.SubjectPlaybook, Name: "pb-" + itoa(int64(i%3))}})
	}
	es = append(es, audit.Entry{Actor: audit.Actor{ID: xss, Role: "viewer"}, Event: "test.hostile", Success: true,
		Subject: audit.Subject{Kind: audit.SubjectUser, Name: xss}})
	if _, err := e.alog.Append(e.ctx, e.st, es...); err != nil {
		e.t.Fatal(err)
	}
}

var seqCell = regexp.MustCompile(`<tr id="seq-(\d+)">`)

// The audit page is the admins': entries newest first, filtered and
// paginated, each verified with the trusted keys, with the latest
// checkpoint checked against the log; the export verifies offline.
func TestAuditPage(t *testing.T) {
	t.Parallel()
	e := newPagesEnv(t, envOptions{})
	e.appendEntries()

	// A viewer cannot see it.
	body := e.mustGet("viewer", "/audit", 403)
	contains(t, "viewer", body, `class="problem"`)
	e.mustGet("viewer", "/audit/export", 403)

	page := e.mustGet("admin", "/audit", 200)
	contains(t, "audit", page, "test.step", "bob", "carol", "(analyst)", escaped(xss), `<span class="state verified">verified</span> verified:`,
		"The log has no checkpoint yet.", `href="/audit/export"`)
	lacks(t, "audit", page, xss, "broken")
	seqs := seqCell.FindAllStringSubmatch(page, -1)
	if len(seqs) < 7 {
		t.Fatalf("%d rows", len(seqs))
	}
	for i := 1; i < len(seqs); i++ {
		if len(seqs[i][1]) > len(seqs[i-1][1]) || len(seqs[i][1]) == len(seqs[i-1][1]) && seqs[i][1] > seqs[i-1][1] {
			t.Fatalf("not newest first: %v", seqs)
		}
	}

	// Filters.
	bob := e.mustGet("admin", "/audit?actor=bob", 200)
	if n := strings.Count(bob, `<tr id="seq-`); n != 3 {
		t.Fatalf("actor=bob: %d rows", n)
	}
	lacks(t, "actor=bob", bob, "carol")
	contains(t, "actor=bob", bob, `href="/audit/export?actor=bob"`)
	if n := strings.Count(e.mustGet("admin", "/audit?event=test.hostile", 200), `<tr id="seq-`); n != 1 {
		t.Fatalf("event filter: %d rows", n)
	}
	sub := e.mustGet("admin", "/audit?subject=playbook:pb-1", 200)
	if n := strings.Count(sub, `<tr id="seq-`); n != 2 {
		t.Fatalf("subject=playbook:pb-1: %d rows\n%s", n, sub)
	}
	if n := strings.Count(e.mustGet("admin", "/audit?subject="+url.QueryEscape(xss), 200), `<tr id="seq-`); n != 1 {
		t.Fatalf("subject by name: %d rows", n)
	}
	if n := strings.Count(e.mustGet("admin", "/audit?since=1h&actor=bob", 200), `<tr id="seq-`); n != 3 {
		t.Fatalf("since=1h: %d rows", n)
	}
	if n := strings.Count(e.mustGet("admin", "/audit?until=1h", 200), `<tr id="seq-`); n != 0 {
		t.Fatalf("until=1h: %d rows", n)
	}
	if n := strings.Count(e.mustGet("admin", "/audit?since="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+"&event=test.step", 200), `<tr id="seq-`); n != 6 {
		t.Fatalf("since RFC 3339: %d rows", n)
	}

	// Pages.
	first := e.mustGet("admin", "/audit?actor=bob&limit=2", 200)
	m := regexp.MustCompile(`href="(/audit\?[^"]*before=[^"]*)" rel="next"`).FindStringSubmatch(first)
	if strings.Count(first, `<tr id="seq-`) != 2 || m == nil {
		t.Fatalf("first page:\n%s", first)
	}
	second := e.mustGet("admin", html.UnescapeString(m[1]), 200)
	if strings.Count(second, `<tr id="seq-`) != 1 || !strings.Contains(second, "bob") || strings.Contains(second, "carol") {
		t.Fatalf("second page:\n%s", second)
	}

	// Bad filters name the parameter.
	for q, param := range map[string]string{
		"limit=0": "limit", "limit=501": "limit", "limit=x": "limit", "before=0": "before", "before=-4": "before",
		"since=yesterday": "since", "until=2026-13-01": "until", "since=1h&until=2h": "since",
		"actor=" + url.QueryEscape("a\x00b"): "actor", "event=" + strings.Repeat("e", 200): "event",
	} {
		body := e.mustGet("admin", "/audit?"+q, 400)
		contains(t, q, body, "Query parameter &#34;"+param+"&#34;")
	}

	// A checkpoint: signed by the trusted key, contained in the log.
	cp, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: e.alog})
	if err != nil {
		t.Fatal(err)
	}
	made, err := cp.Checkpoint(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	withCP := e.mustGet("admin", "/audit", 200)
	contains(t, "checkpoint", withCP, "size "+itoa(int64(made.Size)), hex.EncodeToString(made.Root),
		`<span class="state signed">signed</span>`, `<span class="state contained">contained</span>`)
}

// Without trusted keys the page says it cannot verify; with a key that
// did not sign the log, it says where the log breaks.
func TestAuditPageVerification(t *testing.T) {
	t.Parallel()
	none := newPagesEnv(t, envOptions{trusted: "none"})
	none.appendEntries()
	body := none.mustGet("admin", "/audit", 200)
	contains(t, "no keys", body, "cannot verify: no trusted keys", `<span class="state unverifiable">unverifiable</span>`)
	lacks(t, "no keys", body, `<span class="state verified">`)

	other := newPagesEnv(t, envOptions{trusted: "other"})
	other.appendEntries()
	body = other.mustGet("admin", "/audit?limit=3", 200)
	if !regexp.MustCompile(`broken at seq \d+: signed by key [0-9a-f]+, which is not trusted`).MatchString(body) {
		t.Fatalf("untrusted key:\n%s", body)
	}
	contains(t, "untrusted", body, `<span class="state broken">broken</span>`)
}

// The export is the API's: NDJSON, a download, verified offline by the
// audit package; filtered, it carries the proofs that make it verifiable.
func TestAuditExport(t *testing.T) {
	t.Parallel()
	e := newPagesEnv(t, envOptions{})
	e.appendEntries()
	pub, err := audit.NewPublicKey(e.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	trusted := audit.NewKeySet(pub)

	resp, body := e.get("admin", "/audit/export")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if cd := resp.Header.Get("Content-Disposition"); !regexp.MustCompile(`^attachment; filename="writ-audit-\d{8}T\d{6}Z\.ndjson"$`).MatchString(cd) {
		t.Fatalf("Content-Disposition %q", cd)
	}
	lines := 0
	for sc := bufio.NewScanner(strings.NewReader(body)); sc.Scan(); lines++ {
		if !json.Valid(sc.Bytes()) {
			t.Fatalf("line %d is not JSON: %s", lines, sc.Text())
		}
	}
	rep, err := audit.VerifyExport(e.ctx, strings.NewReader(body), audit.VerifyOptions{Trusted: trusted})
	if err != nil || rep.Bad != nil {
		t.Fatalf("verify export: %v %+v", err, rep)
	}
	all, err := e.st.AuditEntries(e.ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != uint64(len(all)) || lines != len(all)+2 {
		t.Fatalf("export verified %d entries in %d lines; the log has %d", rep.Entries, lines, len(all))
	}

	// Filtered: proofs in the latest checkpoint, none yet.
	e.mustGet("admin", "/audit/export?actor=bob", 409)
	if _, err := mustCheckpointer(t, e.alog).Checkpoint(e.ctx); err != nil {
		t.Fatal(err)
	}
	resp, body = e.get("admin", "/audit/export?actor=bob&event=test.step")
	if resp.StatusCode != 200 {
		t.Fatalf("filtered export %d\n%s", resp.StatusCode, body)
	}
	rep, err = audit.VerifyExport(e.ctx, strings.NewReader(body), audit.VerifyOptions{Trusted: trusted})
	if err != nil || rep.Bad != nil || rep.Entries != 3 {
		t.Fatalf("verify filtered export: %v %+v", err, rep)
	}
	// A tampered copy does not verify.
	bad := bytes.Replace([]byte(body), []byte(`"id":"bob"`), []byte(`"id":"eve"`), 1)
	if rep, err := audit.VerifyExport(e.ctx, bytes.NewReader(bad), audit.VerifyOptions{Trusted: trusted}); err == nil && rep.Bad == nil {
		t.Fatal("a tampered export verified")
	}
	for q, param := range map[string]string{"since=soon": "since", "subject=x": "subject", "proofs=maybe": "proofs", "format=csv": "format"} {
		body := e.mustGet("admin", "/audit/export?"+q, 400)
		contains(t, q, body, "Query parameter &#34;"+param+"&#34;")
	}
}

func mustCheckpointer(t *testing.T, l *audit.Log) *audit.Checkpointer {
	t.Helper()
	cp, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: l})
	if err != nil {
		t.Fatal(err)
	}
	return cp
}
