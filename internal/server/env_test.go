package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

// clock is a test clock the authenticator and the OIDC verifier read.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// idp is an OpenID provider on loopback (TLS): discovery, a JWKS, and the
// keys to sign tokens with.
type idp struct {
	srv    *httptest.Server
	rsaKey *rsa.PrivateKey
	ecKey  *ecdsa.PrivateKey
}

func newIdP(t testing.TB) *idp {
	t.Helper()
	p := &idp{}
	var err error
	if p.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if p.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/keys",
			"authorization_endpoint": p.srv.URL + "/auth", "token_endpoint": p.srv.URL + "/token"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &p.rsaKey.PublicKey, KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
			{Key: &p.ecKey.PublicKey, KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
		}})
	})
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) sign(t testing.TB, alg jose.SignatureAlgorithm, key crypto.Signer, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *idp) claims(now time.Time, mod map[string]any) map[string]any {
	c := map[string]any{"iss": p.srv.URL, "aud": "writ", "sub": "u-1", "email": "sso-user@example.com",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Add(-time.Minute).Unix(), "groups": []string{"soc-viewers"}}
	for k, v := range mod {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// harness is a database, an audit log, accounts, a reconciler on a real
// repository, an OIDC provider and the server, on loopback.
type harness struct {
	t       testing.TB
	ctx     context.Context
	st      *store.Store
	alog    *audit.Log
	key     *audit.SigningKey
	auth    *auth.Authenticator
	rec     *reconcile.Reconciler
	repo    *gittest.Repo
	srv     *Server
	api     *API
	http    *httptest.Server
	idp     *idp
	clock   *clock
	logs    *syncBuffer
	denials *DenialAuditor
	// refusals audits refused approval envelopes (the reconciler's).
	refusals *audit.Bounded
	// approver signs approvals as "alice" when harnessOptions.approver.
	approver crypto.Signer
	// tokens are API tokens by role ("viewer" ... "admin", "norole").
	tokens map[string]string
}

type harnessOptions struct {
	burst     int
	perMinute int
	proxies   []string
	// refusalBurst and refusedPerMinute bound refused approval envelopes:
	// audited one by one per window, and per client a minute.
	refusalBurst     int
	refusedPerMinute int
	// bodyReadTimeout bounds reading a request body (default 10s).
	bodyReadTimeout time.Duration
	// approver puts .writ/approvers.yaml in the repository, with alice
	// (approver) and her key in harness.approver.
	approver bool
	// backends, when set, registers more backends (before the first pass).
	backends func(reg *action.Registry)
	// relaxProposal lets an operation the policies allow run without a
	// signed proposal (approvals.requireProposal: false).
	relaxProposal bool
}

const testPlaybook = `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-test-net
spec:
  action: block_ip
  targets: [203.0.113.7]
  justification: test traffic from a documentation range
  severity: low
  environment: staging
`

func newHarness(t testing.TB, ho harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, ctx: ctx, clock: &clock{now: time.Now().UTC().Truncate(time.Second)}, logs: &syncBuffer{}, tokens: map[string]string{}}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.st = dbtest.Store(t)
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	if h.key, err = audit.NewSigningKey(k); err != nil {
		t.Fatal(err)
	}
	if h.alog, err = audit.NewLog(audit.LogOptions{Store: h.st, Key: h.key, Logger: log}); err != nil {
		t.Fatal(err)
	}

	// A content repository with the default policies and one playbook.
	files := map[string]string{"playbooks/network/block-test-net.yaml": testPlaybook}
	seed, err := policies.Files(false)
	for p, c := range seed {
		files[p] = c
	}
	if err != nil {
		t.Fatal(err)
	}
	if ho.approver {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := keys.MarshalPublic(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		h.approver = k
		files[".writ/approvers.yaml"] = "apiVersion: writ/v1\nkind: Approvers\npeople:\n  - id: alice\n    roles: [approver]\n    keys:\n      - |\n" +
			"        " + strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        ") + "\n"
	}
	h.repo = gittest.New(t, files)
	src, err := gitsrc.Open(ctx, gitsrc.Options{URL: h.repo.Bare})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	reg := action.NewRegistry()
	reg.RegisterFactory("block_ip", func(environment string) (action.Backend, error) {
		return blocklist.New(blocklist.Options{Path: filepath.Join(dir, environment+".txt"), Name: "blocklist:" + environment})
	})
	if ho.backends != nil {
		ho.backends(reg)
	}
	h.refusals, err = reconcile.NewRefusalAuditor(audit.BoundedOptions{Log: h.alog, Store: h.st, Burst: orDefault(ho.refusalBurst, 100000),
		Now: h.clock.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.rec, err = reconcile.New(reconcile.Options{Source: src, Store: h.st, Audit: h.alog, Backends: reg, DefaultPolicies: policies.FS,
		Refusals: h.refusals, Logger: log, Repository: "acme/secops", Approval: approval.Options{RelaxProposal: ho.relaxProposal}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.rec.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}

	h.idp = newIdP(t)
	oidcV, err := auth.NewOIDC(auth.OIDCOptions{Issuer: h.idp.srv.URL, Audience: "writ", UsernameClaim: "email", RolesClaim: "groups",
		RoleMap: map[string][]auth.Role{"soc-viewers": {auth.Viewer}, "soc-admins": {auth.Admin}}, HTTPClient: h.idp.srv.Client(),
		Now: h.clock.Now, KeyRefreshInterval: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.auth, err = auth.New(auth.Options{Store: h.st, Audit: h.alog, OIDC: oidcV, Hash: auth.HashParams{Time: 1, MemoryKiB: 64, Threads: 1},
		LockoutThreshold: 3, LockoutDuration: 10 * time.Minute, Now: h.clock.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.denials, err = NewDenialAuditor(DenialOptions{Log: h.alog, Store: h.st, Burst: orDefault(ho.burst, 100000), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.srv, err = New(Options{Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	perMinute, refusedPerMinute := orDefault(ho.perMinute, 100000), orDefault(ho.refusedPerMinute, 100000)
	g := Guard{Auth: h.auth, Denials: h.denials, BodyReadTimeout: ho.bodyReadTimeout, Limiter: NewRateLimiter(RateLimitOptions{PerMinute: perMinute, Burst: min(perMinute, 5)}),
		RefusedApprovals: NewRateLimiter(RateLimitOptions{PerMinute: refusedPerMinute, Burst: refusedPerMinute, Now: h.clock.Now})}
	for _, p := range ho.proxies {
		pp, _ := parseTestPrefix(p)
		g.TrustedProxies = append(g.TrustedProxies, pp)
	}
	if err := h.srv.SetGuard(g); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: h.alog, Sinks: []audit.Sink{audit.DirSink{Dir: filepath.Join(dir, "checkpoints")}}})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.NewPublicKey(h.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	h.api, err = NewAPIWith(APIOptions{Store: h.st, Engine: h.rec, Drift: h.rec, Auth: h.auth, TrustedKeys: audit.NewKeySet(pub), Checkpointer: cp, Audit: h.alog, Logger: log,
		OIDCLogin: &OIDCLogin{Issuer: h.idp.srv.URL, ClientID: "writ-cli", Scopes: []string{"openid", "email", "offline_access"}}})
	if err != nil {
		t.Fatal(err)
	}
	h.api.Register(h.srv)
	// The routes other packages mount, with stand-in handlers: their
	// access comes from the declared table under test.
	h.srv.Handle("POST /webhooks/github", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	h.srv.Handle("POST /webhooks/gitlab", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	h.srv.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "writ_up 1\n") }))
	h.http = httptest.NewServer(h.srv.Handler())
	t.Cleanup(h.http.Close)

	// An account and an API token per role, and one with no role.
	for _, r := range append([]string{"norole"}, auth.Roles(auth.AllRoles...).Strings()...) {
		roles := auth.RoleSet(0)
		if r != "norole" {
			roles = auth.Roles(auth.Role(r))
		}
		if _, _, err := h.auth.CreateUser(ctx, audit.SystemActor, auth.NewUser{Username: "u-" + r, Roles: roles, NoPassword: true}); err != nil {
			t.Fatal(err)
		}
		_, tok, err := h.auth.CreateToken(ctx, audit.SystemActor, auth.NewToken{Username: "u-" + r, Name: "test"})
		if err != nil {
			t.Fatal(err)
		}
		h.tokens[r] = tok
	}
	return h
}

// do sends a request with an optional bearer credential and JSON body.
func (h *harness) do(method, path, cred string, body any, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(h.ctx, method, h.http.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, out
}

// countEvents counts audit entries of an event.
func (h *harness) countEvents(event audit.Event) int {
	h.t.Helper()
	es, err := h.st.AuditEntries(h.ctx, 0, 100000)
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Event == string(event) {
			n++
		}
	}
	return n
}

// auditEntries decodes the audit entries of an event.
func (h *harness) auditEntries(event audit.Event) []audit.Entry {
	h.t.Helper()
	es, err := h.st.AuditEntries(h.ctx, 0, 100000)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []audit.Entry
	for _, e := range es {
		if e.Event != string(event) {
			continue
		}
		d, err := audit.Decode(e.Entry)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func parseTestPrefix(s string) (netip.Prefix, error) { return netip.ParsePrefix(s) }

// orDefault is v, or def when v is 0.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
