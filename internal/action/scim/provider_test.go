package scim

import (
	"crypto/subtle"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	libscim "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
)

// directory is the users store of a SCIM service provider built with
// elimity-com/scim, an independent SCIM 2.0 server library: it parses and
// validates filters and PatchOps, and answers with its own ListResponses
// and errors.
type directory struct {
	mu    sync.Mutex
	users map[string]libscim.ResourceAttributes // by id
	next  int
	// noContent makes PATCH answer 204 instead of the resource.
	noContent bool
	// onPatch, when set, runs before a PATCH is applied (under mu); a
	// status other than 0 is answered instead.
	onPatch func(d *directory, id string) int
}

func (d *directory) add(userName string, active bool, attrs map[string]any) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	id := fmt.Sprintf("2819c223-7f76-453a-919d-%012d", d.next)
	a := libscim.ResourceAttributes{"userName": userName, "active": active}
	for k, v := range attrs {
		a[k] = v
	}
	d.users[id] = a
	return id
}

func (d *directory) active(id string) (bool, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.users[id]
	if !ok {
		return false, false
	}
	v, _ := u["active"].(bool)
	return v, true
}

func (d *directory) remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.users, id)
}

func (d *directory) resource(id string, a libscim.ResourceAttributes) libscim.Resource {
	cp := libscim.ResourceAttributes{}
	for k, v := range a {
		cp[k] = v
	}
	var ext optional.String
	if e, ok := a["externalId"].(string); ok {
		ext = optional.NewString(e)
		delete(cp, "externalId")
	}
	return libscim.Resource{ID: id, ExternalID: ext, Attributes: cp}
}

func (d *directory) Create(*http.Request, libscim.ResourceAttributes) (libscim.Resource, error) {
	return libscim.Resource{}, scimerrors.ScimError{Status: http.StatusNotImplemented}
}

func (d *directory) Get(_ *http.Request, id string) (libscim.Resource, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.users[id]
	if !ok {
		return libscim.Resource{}, scimerrors.ScimErrorResourceNotFound(id)
	}
	return d.resource(id, a), nil
}

func (d *directory) GetAll(_ *http.Request, p libscim.ListRequestParams) (libscim.Page, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var all []libscim.Resource
	for id, a := range d.users {
		withID := map[string]any{"id": id}
		for k, v := range a {
			withID[k] = v
		}
		if p.FilterValidator != nil && p.FilterValidator.PassesFilter(withID) != nil {
			continue
		}
		all = append(all, d.resource(id, a))
	}
	page := libscim.Page{TotalResults: len(all), Resources: []libscim.Resource{}}
	for i, r := range all {
		if i >= p.StartIndex-1 && len(page.Resources) < p.Count {
			page.Resources = append(page.Resources, r)
		}
	}
	return page, nil
}

func (d *directory) Replace(*http.Request, string, libscim.ResourceAttributes) (libscim.Resource, error) {
	return libscim.Resource{}, scimerrors.ScimError{Status: http.StatusNotImplemented}
}

func (d *directory) Delete(_ *http.Request, id string) error {
	d.remove(id)
	return nil
}

func (d *directory) Patch(_ *http.Request, id string, ops []libscim.PatchOperation) (libscim.Resource, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.onPatch != nil {
		if status := d.onPatch(d, id); status != 0 {
			return libscim.Resource{}, scimerrors.ScimError{Status: status, Detail: "injected by the test"}
		}
	}
	a, ok := d.users[id]
	if !ok {
		return libscim.Resource{}, scimerrors.ScimErrorResourceNotFound(id)
	}
	for _, op := range ops {
		if op.Op != libscim.PatchOperationReplace || op.Path == nil || op.Path.AttributePath.AttributeName != "active" {
			return libscim.Resource{}, scimerrors.ScimErrorInvalidPath
		}
		v, ok := op.Value.(bool)
		if !ok {
			return libscim.Resource{}, scimerrors.ScimErrorInvalidValue
		}
		a["active"] = v
	}
	if d.noContent {
		return libscim.Resource{}, nil
	}
	return d.resource(id, a), nil
}

// fault is an answer the provider gives instead of the real one.
type fault struct {
	method, path string // "" matches any
	status       int
	header       map[string]string
	body         string
	times        int  // how many requests it answers; -1 forever
	hang         bool // answer only when the test ends
}

// provider is a SCIM service provider on loopback over TLS, with a token
// endpoint and fault injection around the library's handler.
type provider struct {
	t      *testing.T
	dir    *directory
	srv    *httptest.Server
	caFile string

	mu       sync.Mutex
	faults   []*fault
	requests []string // "METHOD PATH?QUERY"
	// tokens the provider accepts as bearer credentials.
	tokens map[string]bool
	// client credentials the token endpoint accepts, and tokens it issued.
	clientID, clientSecret string
	issued                 int
	// release ends hanging answers (closed before the server stops).
	release chan struct{}
}

const testToken = "scim-bearer-s3cr3t-4a1f"

func newProvider(t *testing.T) *provider {
	t.Helper()
	p := &provider{t: t, dir: &directory{users: map[string]libscim.ResourceAttributes{}}, tokens: map[string]bool{testToken: true}}
	server, err := libscim.NewServer(&libscim.ServerArgs{
		ServiceProviderConfig: &libscim.ServiceProviderConfig{SupportFiltering: true, SupportPatch: true, MaxResults: 50},
		ResourceTypes: []libscim.ResourceType{{
			ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
			Schema: schema.CoreUserSchema(), Handler: p.dir,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", p.token)
	mux.Handle("/scim/v2/", http.StripPrefix("/scim", p.wrap(server)))
	p.srv = httptest.NewUnstartedServer(mux)
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	p.release = make(chan struct{})
	t.Cleanup(func() { close(p.release) }) // runs before Close
	p.caFile = filepath.Join(t.TempDir(), "ca.pem")
	der := p.srv.Certificate().Raw
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *provider) baseURL() string { return p.srv.URL + "/scim/v2" }

func (p *provider) inject(f fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &f)
}

func (p *provider) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// count is how many requests had the method (and path prefix).
func (p *provider) count(method, prefix string) int {
	n := 0
	for _, r := range p.log() {
		m, rest, _ := strings.Cut(r, " ")
		if m == method && strings.HasPrefix(rest, prefix) {
			n++
		}
	}
	return n
}

func (p *provider) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests = append(p.requests, r.Method+" "+r.URL.RequestURI())
		var hit *fault
		for _, f := range p.faults {
			if f.times != 0 && (f.method == "" || f.method == r.Method) && strings.HasPrefix(r.URL.Path, f.path) {
				hit = f
				if f.times > 0 {
					f.times--
				}
				break
			}
		}
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		authorized := p.tokens[token]
		p.mu.Unlock()
		if hit != nil {
			if hit.hang {
				<-p.release // answers only when the test ends
				return
			}
			for k, v := range hit.header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(hit.status)
			_, _ = w.Write([]byte(hit.body))
			return
		}
		if !authorized {
			w.Header().Set("Content-Type", "application/scim+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"401","detail":"bad token"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// token is an OAuth 2.0 token endpoint for the client-credentials grant.
func (p *provider) token(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, "POST /oauth/token")
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	w.Header().Set("Content-Type", "application/json")
	if r.PostFormValue("grant_type") != "client_credentials" || id != p.clientID ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(p.clientSecret)) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		// A careless endpoint echoing what it got.
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s"}`, secret)
		return
	}
	p.issued++
	tok := fmt.Sprintf("issued-token-%d", p.issued)
	p.tokens[tok] = true
	fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, tok)
}

// revokeIssued makes the provider refuse every token it issued.
func (p *provider) revokeIssued() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for tok := range p.tokens {
		if strings.HasPrefix(tok, "issued-") {
			delete(p.tokens, tok)
		}
	}
}
