package console

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/auth"
)

// post sends a form (or, with json set, a JSON body) as a role's session,
// with headers; it does not follow redirects.
func (e *pagesEnv) post(role, path string, form url.Values, headers map[string]string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, e.http.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		req.Header.Set(k, v)
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
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Every page carries the strict headers; an anonymous page load goes to
// the sign-in form and back; a request that changes something needs the
// session's CSRF token and must not come from another site.
func TestConsoleGuards(t *testing.T) {
	e := newPagesEnv(t, envOptions{})

	resp, _ := e.get("", "/playbooks?status=failed")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Fplaybooks%3Fstatus%3Dfailed" {
		t.Fatalf("anonymous page load: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := e.get("viewer", "/playbooks")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("viewer: %d %s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "same-origin",
	} {
		if got := resp.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") || strings.Contains(body, "style=") {
		t.Errorf("a page has inline script or style, which the CSP forbids:\n%s", body)
	}
	csrf := csrfToken(e.sessions["viewer"])
	if !strings.Contains(body, `data-csrf="`+csrf+`"`) || !strings.Contains(body, `name="csrf" value="`+csrf+`"`) {
		t.Fatalf("the page does not carry the session's CSRF token")
	}

	// Without the token, with another session's token, from another site:
	// refused, and the session lives on.
	for name, c := range map[string]struct {
		form    url.Values
		headers map[string]string
		want    string
	}{
		"no token":         {url.Values{}, nil, "CSRF token missing or wrong"},
		"another's token":  {url.Values{"csrf": {csrfToken(e.sessions["admin"])}}, nil, "CSRF token missing or wrong"},
		"other origin":     {url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}, "another site"},
		"cross-site fetch": {url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, "another site"},
	} {
		resp, body := e.post("viewer", "/logout", c.form, c.headers)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d\n%s", name, resp.StatusCode, body)
		}
	}
	e.mustGet("viewer", "/playbooks", http.StatusOK)

	// With it: signed out, and the session is revoked.
	resp, _ = e.post("viewer", "/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": e.http.URL})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("sign out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = e.get("viewer", "/playbooks")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("a revoked session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if ck := resp.Header.Get("Set-Cookie"); !strings.Contains(ck, sessionCookie+"=;") {
		t.Fatalf("a revoked session's cookie is not cleared: %q", ck)
	}
	// A POST with a dead session is a page saying so, not a redirect.
	resp, body = e.post("viewer", "/logout", url.Values{"csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Sign in again") {
		t.Fatalf("a POST with a revoked session: %d\n%s", resp.StatusCode, body)
	}

	// An API token is not a console session.
	_, tok, err := e.auth.CreateToken(e.ctx, audit.SystemActor, auth.NewToken{Username: "u-admin", Name: "ci", Roles: auth.Roles(auth.Admin)})
	if err != nil {
		t.Fatal(err)
	}
	e.sessions["token"] = tok
	if resp, _ := e.get("token", "/audit"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("an API token as a cookie: %d", resp.StatusCode)
	}

	// Roles are the API's: a viewer cannot read the audit log, nor ask
	// for a statement to sign.
	res, err := e.auth.Login(e.ctx, "u-viewer", "a long enough password for viewer", "")
	if err != nil {
		t.Fatal(err)
	}
	e.sessions["viewer"] = res.Token
	contains(t, "a viewer's /audit", e.mustGet("viewer", "/audit", http.StatusForbidden), "this needs one of the roles")
	resp, body = e.post("admin", "/pending/op-1/statement", url.Values{}, map[string]string{"X-CSRF-Token": csrfToken(e.sessions["admin"]),
		"Content-Type": "application/json", "Accept": "application/json"})
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Fatalf("a statement with no reconciler: %d %s", resp.StatusCode, body)
	}
}

// The sign-in form: its own CSRF token (cookie and field alike), the same
// answer for every refused password, a session cookie that scripts cannot
// read and other sites do not send, and a one-time password that must be
// changed before anything else.
func TestConsoleSignIn(t *testing.T) {
	e := newPagesEnv(t, envOptions{})
	if _, pw, err := e.auth.CreateUser(e.ctx, audit.SystemActor, auth.NewUser{Username: "fresh", Roles: auth.Roles(auth.Approver)}); err != nil {
		t.Fatal(err)
	} else {
		e.sessions["fresh-password"] = pw
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	loginForm := func() (string, *http.Cookie) {
		resp, err := client.Get(e.http.URL + "/login?next=/playbooks")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == loginCookie {
				ck = c
			}
		}
		if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || !strings.Contains(string(body), `value="`+ck.Value+`"`) {
			t.Fatalf("the sign-in form's token: %+v", ck)
		}
		return ck.Value, ck
	}
	submit := func(form url.Values, ck *http.Cookie) *http.Response {
		req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.http.URL+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if ck != nil {
			req.AddCookie(ck)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	tok, ck := loginForm()
	good := url.Values{"csrf": {tok}, "username": {"u-viewer"}, "password": {"a long enough password for viewer"}, "next": {"/playbooks"}}
	if resp := submit(good, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a sign-in without the form's cookie: %d", resp.StatusCode)
	}
	bad := url.Values{"csrf": {tok}, "username": {"u-viewer"}, "password": {"wrong"}}
	if resp := submit(bad, ck); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %d", resp.StatusCode)
	}
	nul := url.Values{"csrf": {tok}, "username": {"u-\x00viewer"}, "password": {"x"}}
	if resp := submit(nul, ck); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a NUL in the username: %d", resp.StatusCode)
	}
	resp := submit(good, ck)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/playbooks" {
		t.Fatalf("sign in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || !strings.HasPrefix(session.Value, auth.SessionPrefix) {
		t.Fatalf("the session cookie: %+v", session)
	}
	// next never leaves the site.
	tok, ck = loginForm()
	good["csrf"], good["next"] = []string{tok}, []string{"//evil.example/x"}
	if resp := submit(good, ck); resp.Header.Get("Location") != "/" {
		t.Fatalf("an off-site next: %s", resp.Header.Get("Location"))
	}

	// A one-time password: only the password page until it is changed.
	tok, ck = loginForm()
	resp = submit(url.Values{"csrf": {tok}, "username": {"fresh"}, "password": {e.sessions["fresh-password"]}}, ck)
	if resp.Header.Get("Location") != "/password" {
		t.Fatalf("a one-time password went to %s", resp.Header.Get("Location"))
	}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			e.sessions["fresh"] = c.Value
		}
	}
	if resp, _ := e.get("fresh", "/playbooks"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/password" {
		t.Fatalf("before the change: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	csrf := csrfToken(e.sessions["fresh"])
	r, body := e.post("fresh", "/password", url.Values{"csrf": {csrf}, "current": {e.sessions["fresh-password"]}, "new": {"x"}, "again": {"y"}}, nil)
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, "differ") {
		t.Fatalf("a mistyped new password: %d\n%s", r.StatusCode, body)
	}
	r, _ = e.post("fresh", "/password", url.Values{"csrf": {csrf}, "current": {e.sessions["fresh-password"]},
		"new": {"a passphrase of my own"}, "again": {"a passphrase of my own"}}, nil)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("the change: %d", r.StatusCode)
	}
	e.mustGet("fresh", "/playbooks", http.StatusOK)
}

// Bad input on the containment page is a 400 naming the field, and what
// is searched for is shown escaped.
func TestContainmentBadInput(t *testing.T) {
	e := newPagesEnv(t, envOptions{})
	for q, want := range map[string]string{
		"?q=10.0.0.0/99":                      "10.0.0.0/99",
		"?q=" + url.QueryEscape("a\x00b"):     "q holds a control character",
		"?q=" + strings.Repeat("a", 300):      "q is longer than 256 bytes",
		"?expires=soon":                       `expires &#34;soon&#34;`,
		"?env=" + url.QueryEscape("\xff\xfe"): "env is not valid UTF-8",
	} {
		body := e.mustGet("viewer", "/"+q, http.StatusBadRequest)
		contains(t, q, body, want)
		lacks(t, q, body, "<b>x</b>")
	}
	body := e.mustGet("viewer", "/?q="+url.QueryEscape("<b>mallory</b>"), http.StatusOK)
	contains(t, "a name search", body, "0 targets contained", "&lt;b&gt;mallory&lt;/b&gt;")
}

// After sign-in the console only ever sends the browser to a path on its
// own site: nothing a browser would read as another host (two slashes, a
// backslash, which it takes for a slash, or a tab or line break, which it
// drops: "/\t/evil.example" is "//evil.example" to it).
func TestLocalPathStaysOnTheSite(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/pending/op-7":            "/pending/op-7",
		"/?q=203.0.113.7":          "/?q=203.0.113.7",
		"/playbooks/a%2Fb":         "/playbooks/a%2Fb",
		"/%09/evil.example":        "/%09/evil.example", // encoded: a path here
		"":                         "/",
		"pending":                  "/",
		"https://evil.example/x":   "/",
		"//evil.example/x":         "/",
		"/\\evil.example/x":        "/",
		"/\t/evil.example/x":       "/",
		"/\n/evil.example/x":       "/",
		"/\r/evil.example/x":       "/",
		"/\x00x":                   "/",
		"/\x7f/evil.example":       "/",
		"/a\\b":                    "/",
		"/ok/\t/evil.example":      "/",
		"/x?next=//evil.example/y": "/x?next=//evil.example/y", // a query of our own path
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// A sign-in link whose next= a browser would read as another host (a tab
// it drops, leaving "//evil.example") brings the user back to the console,
// not to the attacker's copy of it.
func TestSignInNeverRedirectsOffTheSite(t *testing.T) {
	e := newPagesEnv(t, envOptions{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(e.http.URL + "/login?next=/%09/evil.example/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == loginCookie {
			ck = c
		}
	}
	if strings.Contains(string(body), "evil.example") {
		t.Fatalf("the sign-in form keeps a next= that leaves the site: %s", body)
	}
	form := url.Values{"csrf": {ck.Value}, "username": {"u-viewer"}, "password": {"a long enough password for viewer"}, "next": {"/\t/evil.example/x"}}
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.http.URL+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(ck)
	resp, err = http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	t.Logf("status %d Location %q", resp.StatusCode, loc)
	// What a browser does with it (WHATWG: remove all ASCII tab or newline).
	stripped := strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(loc)
	u, _ := url.Parse(e.http.URL + "/login")
	target, err := u.Parse(stripped)
	if err != nil {
		t.Fatal(err)
	}
	if target.Host == "evil.example" {
		t.Fatalf("OPEN REDIRECT: after sign-in the browser goes to %s", target)
	}
}
