package gitsrc_test

import (
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
)

// A remote over HTTPS-style smart HTTP (the real git http-backend behind
// basic auth) is cloned and fetched with a password asked for on every
// fetch, as expiring installation tokens need.
func TestSmartHTTPWithRefreshingCredentials(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	r := gittest.New(t, map[string]string{"playbooks/a.yaml": "a\n"})
	var current atomic.Value
	current.Store("token-1")
	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.Bare), "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, pw, ok := req.BasicAuth(); !ok || pw != current.Load().(string) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, req)
	}))
	defer srv.Close()

	var asked atomic.Int64
	ctx := context.Background()
	s, err := gitsrc.Open(ctx, gitsrc.Options{
		URL: srv.URL + "/" + filepath.Base(r.Bare), CacheDir: t.TempDir(),
		PasswordFunc: func(context.Context) (string, error) {
			asked.Add(1)
			return current.Load().(string), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	head, err := s.Fetch(ctx)
	if err != nil || head != r.Head() {
		t.Fatalf("first fetch: %s %v", head, err)
	}
	// The token rotates; the next fetch asks again and uses the new one.
	current.Store("token-2")
	r.Write("playbooks/b.yaml", "b\n")
	sha := r.Commit("b")
	r.Push()
	head, err = s.Fetch(ctx)
	if err != nil || head != sha {
		t.Fatalf("fetch after rotation: %s %v", head, err)
	}
	if asked.Load() < 3 {
		t.Fatalf("credentials asked %d times; want every clone and fetch", asked.Load())
	}
	bad, err := gitsrc.Open(ctx, gitsrc.Options{URL: srv.URL + "/" + filepath.Base(r.Bare), CacheDir: t.TempDir(), Password: "wrong-token-value"})
	if err == nil {
		t.Fatal("a wrong token cloned")
	} else if strings.Contains(err.Error(), "wrong-token-value") {
		t.Fatalf("the error shows the token: %v", err)
	}
	_ = bad
}
