package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	libscim "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
)

// users is a SCIM users store for elimity-com/scim (read-only here).
type users map[string]libscim.ResourceAttributes

func (u users) Create(*http.Request, libscim.ResourceAttributes) (libscim.Resource, error) {
	return libscim.Resource{}, scimerrors.ScimError{Status: http.StatusNotImplemented}
}
func (u users) Get(_ *http.Request, id string) (libscim.Resource, error) {
	a, ok := u[id]
	if !ok {
		return libscim.Resource{}, scimerrors.ScimErrorResourceNotFound(id)
	}
	return libscim.Resource{ID: id, Attributes: a}, nil
}
func (u users) GetAll(_ *http.Request, p libscim.ListRequestParams) (libscim.Page, error) {
	page := libscim.Page{Resources: []libscim.Resource{}}
	for id, a := range u {
		if p.FilterValidator == nil || p.FilterValidator.PassesFilter(a) == nil {
			page.Resources = append(page.Resources, libscim.Resource{ID: id, Attributes: a})
		}
	}
	page.TotalResults = len(page.Resources)
	return page, nil
}
func (u users) Replace(*http.Request, string, libscim.ResourceAttributes) (libscim.Resource, error) {
	return libscim.Resource{}, scimerrors.ScimError{Status: http.StatusNotImplemented}
}
func (u users) Delete(*http.Request, string) error { return nil }
func (u users) Patch(*http.Request, string, []libscim.PatchOperation) (libscim.Resource, error) {
	return libscim.Resource{}, scimerrors.ScimError{Status: http.StatusForbidden, Detail: "plans never patch"}
}

// tlsServer starts h over TLS on loopback and writes its certificate as a
// CA file.
func tlsServer(t *testing.T, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := writeFile(t, filepath.Join(t.TempDir(), "ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	return srv, ca
}

// writ plan shows the live plan of each backend configured in writ.yaml:
// a SCIM provider for suspend_user and a signed webhook for isolate_host,
// both on loopback, and never prints their secrets.
func TestPlanWithSCIMAndWebhookBackends(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const token, hookSecret = "scim-token-for-plan-0c9e", "hook-secret-for-plan-77aa"

	server, err := libscim.NewServer(&libscim.ServerArgs{
		ServiceProviderConfig: &libscim.ServiceProviderConfig{SupportFiltering: true, SupportPatch: true},
		ResourceTypes: []libscim.ResourceType{{ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
			Schema: schema.CoreUserSchema(), Handler: users{
				"u1": {"userName": "alice@example.com", "active": true},
				"u2": {"userName": "bob@example.com", "active": false},
			}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	idp, idpCA := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		server.ServeHTTP(w, r)
	}))

	var mu sync.Mutex
	var verified int
	edr, edrCA := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := hmac.New(sha256.New, []byte(hookSecret))
		m.Write([]byte(r.Header.Get("X-Writ-Timestamp") + "." + string(body)))
		if r.URL.Path != "/status" || r.Header.Get("X-Writ-Signature-256") != "sha256="+hex.EncodeToString(m.Sum(nil)) {
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		verified++
		mu.Unlock()
		var req struct{ Targets []string }
		_ = json.Unmarshal(body, &req)
		var out []map[string]string
		for _, t := range req.Targets {
			out = append(out, map[string]string{"target": t, "state": map[bool]string{true: "applied", false: "not_applied"}[t == "fin-ws-13"]})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"targets": out})
	}))

	tokenFile := writeFile(t, filepath.Join(dir, "secrets", "scim-token"), token+"\n")
	hookFile := writeFile(t, filepath.Join(dir, "secrets", "hook-secret"), hookSecret)
	cfg := writeFile(t, filepath.Join(dir, "writ.yaml"), `apiVersion: writ/v1
kind: ServerConfig
backends:
  - name: idp
    type: scim
    actions: [suspend_user]
    settings:
      url: `+idp.URL+`/v2
      tokenFile: `+tokenFile+`
      caFile: `+idpCA+`
      timeout: 5s
      retries: 0
  - name: edr
    type: webhook
    actions: [isolate_host]
    settings:
      url: `+edr.URL+`/hook
      statusURL: `+edr.URL+`/status
      secretFile: `+hookFile+`
      caFile: `+edrCA+`
`)
	pbs := filepath.Join(dir, "playbooks")
	writeFile(t, filepath.Join(pbs, "suspend.yaml"), playbookYAML("suspend-phished", "suspend_user", "[alice@example.com, bob@example.com, carol@example.com]", "high", "production"))
	writeFile(t, filepath.Join(pbs, "isolate.yaml"), playbookYAML("isolate-ws", "isolate_host", "[fin-ws-12, fin-ws-13]", "high", "production"))

	code, out, errOut := runCLI(t, "--config", cfg, "--data-dir", filepath.Join(dir, "state"), "plan", "--format", "json", pbs)
	if code != exitOK {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errOut)
	}
	got := map[string]string{}
	for _, e := range decodePlan(t, out) {
		if e.Plan == nil || e.PlanDigest == "" {
			t.Fatalf("%s: no plan (%s)", e.Name, e.PlanError)
		}
		var s []string
		for _, tp := range e.Plan.Targets {
			s = append(s, tp.Target+"="+tp.Result)
		}
		got[e.Plan.Backend] = strings.Join(s, " ")
	}
	want := map[string]string{
		"scim:idp":    "alice@example.com=would_suspend bob@example.com=already_suspended carol@example.com=not_found",
		"webhook:edr": "fin-ws-12=would_isolate fin-ws-13=already_isolated",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q; want %q", k, got[k], v)
		}
	}
	if verified != 1 {
		t.Errorf("the receiver verified %d status requests; want 1", verified)
	}
	code, text, errOut := runCLI(t, "--config", cfg, "--data-dir", filepath.Join(dir, "state"), "plan", pbs)
	if code != exitOK || !strings.Contains(text, "plan: apply on scim:idp") || !strings.Contains(text, "fin-ws-12: would_isolate") {
		t.Fatalf("text plan: %d\n%s%s", code, text, errOut)
	}
	for _, s := range []string{token, hookSecret} {
		if strings.Contains(out+errOut+text, s) {
			t.Fatalf("a secret was printed")
		}
	}
}
