package scim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
)

// An account a playbook suspended is re-enabled in the identity provider
// (a PATCH of active back to true, served by the SCIM server library):
// the drift check finds it missing; an account deleted there is changed
// (not_found); the others are in force.
func TestDriftWhenActiveFlipsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	alice := p.dir.add("alice@example.com", true, nil)
	p.dir.add("carol", true, nil)
	dave := p.dir.add("dave", true, nil)
	b := backend(t, p, nil)
	req := request(action.Apply, "alice@example.com", "carol", "dave")
	if _, err := b.Apply(ctx, req); err != nil {
		t.Fatal(err)
	}
	if fs, err := action.CheckDrift(ctx, b, []action.Request{req}, nil); err != nil || len(fs) != 0 {
		t.Fatalf("drift before any change: %+v %v", fs, err)
	}

	// Someone re-enables alice at the provider.
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(p.caFile)
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("CA: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	patch, _ := http.NewRequestWithContext(ctx, http.MethodPatch, p.baseURL()+"/Users/"+alice, bytes.NewReader([]byte(
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":true}]}`)))
	patch.Header.Set("Authorization", "Bearer "+testToken)
	patch.Header.Set("Content-Type", "application/scim+json")
	resp, err := client.Do(patch)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if active, _ := p.dir.active(alice); resp.StatusCode >= 300 || !active {
		t.Fatalf("re-enabling alice: %s, active %v", resp.Status, active)
	}
	p.dir.remove(dave)

	fs, err := action.CheckDrift(ctx, b, []action.Request{req}, nil)
	if err != nil || len(fs) != 2 {
		t.Fatalf("drift: %+v %v", fs, err)
	}
	if fs[0].Kind != action.DriftChanged || fs[0].Target != "dave" || !strings.Contains(fs[0].Detail, "not_found") ||
		fs[1].Kind != action.DriftMissing || fs[1].Target != "alice@example.com" || fs[1].Playbook != "suspend-phished" || !strings.Contains(fs[1].Detail, "would_suspend") {
		t.Fatalf("findings: %+v", fs)
	}
}
