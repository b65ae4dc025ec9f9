package github

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	gh "github.com/google/go-github/v88/github"

	"github.com/writ-sec/writ/internal/forge/github/githubfake"
)

// A check run concluding action_required links a page with the details,
// as GitHub asks: the configured detailsURL; else the console's queue of
// what waits for signatures; else the pull request's checks on GitHub. A
// success without detailsURL links nothing. (The fake refuses
// action_required without details_url, so the old writ failed here.)
func TestActionRequiredHasDetailsURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, detailsURL, origin string
		want                     func(e *env, pr int) string
	}{
		{"configured", "https://writ.example.com/", "https://console.example.com", func(*env, int) string { return "https://writ.example.com/" }},
		{"console", "", "https://console.example.com/", func(*env, int) string { return "https://console.example.com/pending" }},
		{"neither", "", "", func(e *env, pr int) string {
			return strings.TrimSuffix(e.gh.URL(), "/") + "/" + testOwner + "/" + testName + "/pull/" + strconv.Itoa(pr) + "/checks"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{tune: func(o *Options) { o.DetailsURL, o.ConsoleOrigin = tc.detailsURL, tc.origin }})
			waiting := e.openPR(21, "alice-gh", "", map[string]string{
				pbPath("block-c2"): playbookYAML("block-c2", "INC-21", "203.0.113.21", "critical", "production"),
			})
			allowed := e.openPR(22, "alice-gh", "", map[string]string{"docs/notes.md": "nothing writ judges\n"})
			e.process()
			run := e.check(waiting.head)
			if run.Conclusion != ConclusionActionRequired || run.DetailsURL != tc.want(e, 21) {
				t.Errorf("action_required: %s, details_url %q, want %q", run.Conclusion, run.DetailsURL, tc.want(e, 21))
			}
			run = e.check(allowed.head)
			want := ""
			if tc.detailsURL != "" {
				want = tc.detailsURL
			}
			if run.Conclusion != ConclusionSuccess || run.DetailsURL != want {
				t.Errorf("success: %s, details_url %q, want %q", run.Conclusion, run.DetailsURL, want)
			}
		})
	}
}

// The fake refuses a check run concluding action_required without
// details_url, created or updated.
func TestFakeRequiresDetailsURLForActionRequired(t *testing.T) {
	t.Parallel()
	f := githubfake.New(t, testOwner, testName)
	f.AddToken(testToken, botLogin)
	client, err := NewClient(ClientOptions{BaseURL: f.URL(), Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	head := strings.Repeat("b", 40)
	out := &gh.CheckRunOutput{Title: gh.Ptr("t"), Summary: gh.Ptr("s")}
	_, _, err = client.Checks.CreateCheckRun(ctx, testOwner, testName, gh.CreateCheckRunOptions{Name: "writ", HeadSHA: head,
		Conclusion: gh.Ptr("action_required"), Output: out})
	if e, ok := err.(*gh.ErrorResponse); !ok || e.Response.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("create without details_url: %v", err)
	}
	run, _, err := client.Checks.CreateCheckRun(ctx, testOwner, testName, gh.CreateCheckRunOptions{Name: "writ", HeadSHA: head,
		Status: gh.Ptr("in_progress"), Output: out})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = client.Checks.UpdateCheckRun(ctx, testOwner, testName, run.GetID(), gh.UpdateCheckRunOptions{Name: "writ",
		Conclusion: gh.Ptr("action_required"), Output: out})
	if e, ok := err.(*gh.ErrorResponse); !ok || e.Response.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("update without details_url: %v", err)
	}
	if _, _, err := client.Checks.UpdateCheckRun(ctx, testOwner, testName, run.GetID(), gh.UpdateCheckRunOptions{Name: "writ",
		Conclusion: gh.Ptr("action_required"), DetailsURL: gh.Ptr("https://writ.example.com/pending"), Output: out}); err != nil {
		t.Fatalf("with details_url: %v", err)
	}
}

// The fallback details page is on GitHub's web host: github.com for
// api.github.com, the Enterprise Server's host without /api/v3/.
func TestWebURL(t *testing.T) {
	t.Parallel()
	for base, want := range map[string]string{
		"":                                  "https://github.com/acme/secops/pull/7/checks",
		"https://ghe.example.com/":          "https://ghe.example.com/acme/secops/pull/7/checks",
		"https://ghe.example.com/api/v3/":   "https://ghe.example.com/acme/secops/pull/7/checks",
		"https://example.com/github/api/v3": "https://example.com/github/acme/secops/pull/7/checks",
	} {
		client, err := NewClient(ClientOptions{BaseURL: base, Token: "t"})
		if err != nil {
			t.Fatal(err)
		}
		s := &Service{opts: Options{Client: client}, owner: "acme", name: "secops"}
		if got := s.detailsURL(prInfo{Number: 7}, ConclusionActionRequired); got != want {
			t.Errorf("%q: %s, want %s", base, got, want)
		}
	}
}
