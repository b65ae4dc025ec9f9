package gitsrc

import (
	"os"
	"path/filepath"
	"testing"
)

func TestIdentity(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	here := filepath.Base(filepath.Dir(wd)) + "/" + filepath.Base(wd)
	for raw, want := range map[string]string{
		"https://github.com/acme/secops":                       "acme/secops",
		"https://writ-bot:tok@git.example.com/acme/secops.git": "acme/secops",
		"https://git.example.com/group/sub/secops.git/":        "sub/secops",
		"ssh://git@git.example.com:2222/acme/secops.git":       "acme/secops",
		"git@github.com:acme/secops.git":                       "acme/secops",
		"file:///srv/git/acme/secops.git":                      "acme/secops",
		"/srv/git/acme/secops":                                 "acme/secops",
		"/srv/git/acme/secops/.git":                            "acme/secops",
		"/secops":                                              "local/secops",
		".":                                                    here,
	} {
		got, err := Identity(raw)
		if err != nil || got != want {
			t.Errorf("Identity(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{"", "/", "https://example.com/", "/srv/git/acme/se cops", "/srv/git/ac:me/x"} {
		if got, err := Identity(raw); err == nil {
			t.Errorf("Identity(%q) = %q; want an error", raw, got)
		}
	}
}
