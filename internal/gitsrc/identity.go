package gitsrc

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// identityRE is the shape of a repository identity: OWNER/NAME, as forges
// name repositories and as signed statements name the repository they are
// about.
var identityRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$`) })

// ValidIdentity reports whether id has the shape OWNER/NAME.
func ValidIdentity(id string) bool {
	return identityRE().MatchString(id) && !strings.Contains(id, "..")
}

// Identity derives a repository's identity (OWNER/NAME) from its URL or
// local path: the last two elements of the path, without a ".git" suffix
// (https://git.example.com/secops/content.git and
// git@git.example.com:secops/content.git are "secops/content"; the local
// path /srv/git/secops/content is "secops/content"; a repository at the
// root of a file system, or one element deep, is "local/NAME"). A local
// path is made absolute first, so a server following "." and a signer in
// the same directory derive the same identity.
//
// Signed statements name the identity of the repository they are about,
// and count nowhere else; configure repository.name when this derivation
// does not name your repository uniquely.
func Identity(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("gitsrc: no repository URL or path to derive an identity from")
	}
	var p string
	switch {
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("gitsrc: repository URL %s: %w", RedactURL(raw), err)
		}
		p = u.Path
	case scpLike(raw):
		p = raw[strings.Index(raw, ":")+1:]
	default:
		abs, err := filepath.Abs(raw)
		if err != nil {
			return "", fmt.Errorf("gitsrc: repository path %s: %w", raw, err)
		}
		p = filepath.ToSlash(abs)
	}
	var parts []string
	for _, e := range strings.Split(p, "/") {
		if e != "" && e != "." {
			parts = append(parts, e)
		}
	}
	if n := len(parts); n > 0 {
		last := strings.TrimSuffix(parts[n-1], ".git")
		if last == "" {
			// a bare repository's own directory, e.g. /srv/content/.git
			parts = parts[:n-1]
		} else {
			parts[n-1] = last
		}
	}
	var id string
	switch len(parts) {
	case 0:
		return "", fmt.Errorf("gitsrc: %s names no repository to derive an identity from", RedactURL(raw))
	case 1:
		id = "local/" + parts[0]
	default:
		id = parts[len(parts)-2] + "/" + parts[len(parts)-1]
	}
	if !ValidIdentity(id) {
		return "", fmt.Errorf("gitsrc: the identity %q derived from %s is not OWNER/NAME (letters, digits, . _ -); configure repository.name", id, RedactURL(raw))
	}
	return id, nil
}

// IdentityOf derives the identity of the repository writ reads at raw: for
// a local repository, from its remote named origin when it has one (a
// checkout names the repository it was cloned from), else from the path;
// for a URL, from the URL. writ serve and writ approve both derive it this
// way, so that a signer in a checkout names what the server follows.
func IdentityOf(raw string) (string, error) {
	if !strings.Contains(raw, "://") && !scpLike(raw) {
		if co, err := OpenCheckout(raw); err == nil {
			if origin := co.Origin(); origin != "" {
				if id, err := Identity(origin); err == nil {
					return id, nil
				}
			}
		}
	}
	return Identity(raw)
}
