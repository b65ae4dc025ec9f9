package engine

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/forge/gitlab/gitlabfake"
	"github.com/writ-sec/writ/internal/server"
)

// With a gitlab section, writ serve builds the GitLab forge beside
// GitHub's, refuses to start without its secrets, and mounts its webhook
// receiver (the token checked) and its readiness check.
func TestSetupGitLab(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := gitlabfake.New(t, "secops/content", 42)
	fake.AddToken("glpat-test", "writ-bot")
	cfg, err := config.Parse("writ.yaml", []byte("apiVersion: writ/v1\nkind: ServerConfig\ngitlab:\n  project: secops/content\n  baseURL: "+
		fake.URL()+"\n  webhookSecretEnv: HOOK_SECRET\n  tokenEnv: GL_TOKEN\n"))
	if err != nil {
		t.Fatal(err)
	}
	rec, src, st := newForgeRig(t, "secops/content")
	log := slog.New(slog.DiscardHandler)
	for _, env := range []map[string]string{{"GL_TOKEN": "glpat-test"}, {"HOOK_SECRET": "s3cret"}} {
		if _, err := newForges(ctx, cfg, rec, src, st, log, func(k string) string { return env[k] }, "test", "secops/content"); err == nil {
			t.Fatalf("started with only %v", env)
		}
	}
	env := map[string]string{"GL_TOKEN": "glpat-test", "HOOK_SECRET": "s3cret"}
	forges, err := newForges(ctx, cfg, rec, src, st, log, func(k string) string { return env[k] }, "test", "secops/content")
	if err != nil || len(forges) != 1 || forges[0].Name() != "gitlab" || forges[0].WebhookPath() != "/webhooks/gitlab" {
		t.Fatalf("setup: %v %v", forges, err)
	}
	srv, err := server.New(server.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	mountForges(srv, forges)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	fake.AddMergeRequest(gitlabfake.MergeRequest{IID: 1, Author: "alice", SourceBranch: "block-c2", TargetBranch: "main", SHA: strings.Repeat("a", 40), BaseSHA: strings.Repeat("b", 40)})
	hook := gitlabfake.Delivery{Event: gitlabfake.EventMergeRequest, Payload: fake.MergeRequestHook(1, "open", "alice")}
	forged := hook
	forged.Token = "guess"
	if a, err := gitlabfake.Deliver(ctx, nil, hs.URL+"/webhooks/gitlab", "s3cret", forged); err != nil || a.Status != http.StatusUnauthorized {
		t.Fatalf("a forged delivery: %d %v", a.Status, err)
	}
	if a, err := gitlabfake.Deliver(ctx, nil, hs.URL+"/webhooks/gitlab", "s3cret", hook); err != nil || a.Status != http.StatusAccepted || !strings.Contains(a.Body, "queued") {
		t.Fatalf("a merge request hook: %d %s %v", a.Status, a.Body, err)
	}
	resp, err := http.Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"gitlab"`) || !strings.Contains(string(body), "webhook deliveries: 1 queued") {
		t.Fatalf("readyz lacks the gitlab check: %s", body)
	}
}
