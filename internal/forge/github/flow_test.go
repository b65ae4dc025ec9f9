package github

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/approval"
)

// Merge commits, squashes and rebases all execute the approved playbook:
// approvals bind to content digests, not to commits.
func TestMergeMethods(t *testing.T) {
	t.Parallel()
	for i, method := range []string{"merge", "squash", "rebase"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			target := fmt.Sprintf("198.51.100.%d", 10+i)
			path := pbPath("block-" + method)
			content := playbookYAML("block-"+method, "INC-9", target, "high", "production")
			p := e.openPR(9, "alice-gh", "", map[string]string{path: content})
			e.process()
			ev := e.evaluation(p)
			pe := e.playbookEval(ev, path)
			subject := []approval.Subject{{Path: path, Digest: pe.Digest}}
			// The proposal in the description, edited in by its author.
			e.gh.SetBody(9, "Blocking.\n\n"+FormatEnvelope("", e.sign("alice", approval.Propose, subject, ev.PolicyDigest, "", 9)))
			e.deliverPR(p, "edited")
			e.review(p, "bob-gh", "APPROVED", FormatEnvelope("", e.sign("bob", approval.Approve, subject, ev.PolicyDigest, pe.PlanDigest, 9)))
			e.process()
			if run := e.check(p.head); run.Conclusion != ConclusionSuccess {
				t.Fatalf("before the merge: %s\n%s", run.Conclusion, run.Summary)
			}
			var merged string
			e.repo.Checkout("main")
			switch method {
			case "merge":
				merged = e.repo.Merge(p.branch)
				e.repo.Push()
			case "squash":
				merged = e.squashMerge(p)
			case "rebase":
				e.repo.Checkout(p.branch)
				e.repo.Git("rebase", "--quiet", "main")
				e.repo.Checkout("main")
				e.repo.Git("merge", "--quiet", "--ff-only", p.branch)
				merged = e.repo.Head()
				e.repo.Push()
			}
			e.gh.Merge(9, merged)
			e.deliverPush(merged)
			e.process()
			e.pass()
			if got := e.blocked("production"); !slices.Equal(got, []string{target}) {
				t.Fatalf("blocked after a %s: %v", method, got)
			}
		})
	}
}

// A change to policies/ is judged by the policies in force; the check
// shows what the new ones would decide, marked not in force, and asks the
// admins for reviews.
func TestPolicyChangeShowsNotInForce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.openPR(11, "alice-gh", "", map[string]string{
		pbPath("block-staging"): playbookYAML("block-staging", "INC-11", "203.0.113.11", "low", "staging"),
		"policies/staging.rego": "package writ.checks.staging_lockdown\n\nimport rego.v1\n\ndeny contains \"staging is locked down\" if input.playbook.spec.environment == \"staging\"\n",
	})
	e.process()
	run := e.check(p.head)
	if run.Conclusion != ConclusionActionRequired {
		t.Fatalf("conclusion %s: %s\n%s", run.Conclusion, run.Title, run.Summary)
	}
	for _, want := range []string{"Change to policies/ or .writ/", "not in force", "policy/approver change needs admin approvals", "`policies/`"} {
		if !strings.Contains(run.Summary+run.Title, want) {
			t.Errorf("check lacks %q:\n%s\n%s", want, run.Title, run.Summary)
		}
	}
	requested := e.gh.Pull(11).RequestedReviewers
	for _, admin := range []string{"dave-gh", "erin-gh"} {
		if !slices.Contains(requested, admin) {
			t.Errorf("admin %s not asked for a review: %v", admin, requested)
		}
	}
}

// Re-running the check from GitHub's UI re-judges the pull request.
func TestCheckRerequested(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.openPR(12, "alice-gh", "", map[string]string{pbPath("x"): playbookYAML("x", "INC-12", "203.0.113.12", "low", "staging")})
	e.process()
	first := e.check(p.head)
	m := e.fixture("check_run.rerequested.json")
	cr := m["check_run"].(map[string]any)
	cr["name"] = DefaultCheckName
	cr["head_sha"] = p.head
	pr := cr["pull_requests"].([]any)[0].(map[string]any)
	pr["number"] = 12
	e.deliver("check_run", m)
	// The base moved meanwhile: the check changes.
	e.repo.Checkout("main")
	e.repo.Write(pbPath("x"), playbookYAML("x", "INC-12", "203.0.113.99", "low", "staging"))
	e.repo.Commit("someone else took the name")
	e.repo.Push()
	e.pass()
	e.process()
	runs := e.gh.CheckRuns(p.head)
	if len(runs) == 0 || runs[len(runs)-1].Summary == first.Summary {
		t.Fatalf("the rerequested check was not re-judged: %d runs", len(runs))
	}
	d, _ := e.st.DeliveryCounts(e.ctx, "github")
	if d["done"] != 2 {
		t.Fatalf("deliveries: %v", d)
	}
}

// writ authenticates as a GitHub App installation (JWT, then installation
// token) on an Enterprise Server base URL.
func TestAppAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e.gh.AddApp(42, 4242, &key.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	client, err := NewClient(ClientOptions{BaseURL: e.gh.URL(), AppID: 42, InstallationID: 4242, PrivateKey: pemKey})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(client.BaseURL(), "/api/v3/") {
		t.Fatalf("base URL %s; want the Enterprise Server API path", client.BaseURL())
	}
	e.openPR(13, "alice-gh", "", map[string]string{pbPath("y"): playbookYAML("y", "INC-13", "203.0.113.13", "low", "staging")})
	pr, _, err := client.PullRequests.Get(e.ctx, testOwner, testName, 13)
	if err != nil || pr.GetNumber() != 13 {
		t.Fatalf("get as the app: %v", err)
	}
	var minted bool
	for _, r := range e.gh.Requests() {
		if r.Path == "/app/installations/4242/access_tokens" && r.Status == 201 {
			minted = true
		}
	}
	if !minted {
		t.Fatal("no installation token was minted")
	}
	// A wrong key gets nothing.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	bad, _ := NewClient(ClientOptions{BaseURL: e.gh.URL(), AppID: 42, InstallationID: 4242,
		PrivateKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)})})
	if _, _, err := bad.PullRequests.Get(e.ctx, testOwner, testName, 13); err == nil {
		t.Fatal("a client with another app key was let in")
	}
}

func TestClientOptionsValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		o    ClientOptions
		ok   bool
	}{
		{"token", ClientOptions{Token: "t"}, true},
		{"app", ClientOptions{AppID: 1, InstallationID: 2, PrivateKey: []byte("k")}, true},
		{"none", ClientOptions{}, false},
		{"both", ClientOptions{Token: "t", AppID: 1, InstallationID: 2, PrivateKey: []byte("k")}, false},
		{"app without key", ClientOptions{AppID: 1, InstallationID: 2}, false},
		{"bad URL", ClientOptions{Token: "t", BaseURL: "ftp://x"}, false},
		{"URL with credentials", ClientOptions{Token: "t", BaseURL: "https://u:p@ghe.example.com/"}, false},
	}
	for _, c := range cases {
		if err := c.o.validate(); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	v := ClientOptions{Token: "secret-token"}.LogValue().String()
	if strings.Contains(v, "secret-token") {
		t.Fatalf("LogValue shows the token: %s", v)
	}
}
