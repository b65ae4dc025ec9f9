package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// The session writ login keeps: one server and its bearer token, in
// session.json of writ's directory in the user's configuration directory
// (os.UserConfigDir: $XDG_CONFIG_HOME, else ~/.config). The directory is
// 0700 and the file 0600; a file others may read or write, one that is not
// a regular file and one of another user are refused, never used.

// sessionVersion is the format of session.json.
const sessionVersion = 1

// Login methods a session was made with.
const (
	methodPassword = "password" // a session of a local account
	methodSSO      = "sso"      // an ID token of the SSO provider
)

// session is what session.json holds. Token and RefreshToken are secrets:
// never printed or logged.
type session struct {
	Version int `json:"version"`
	// Server is the URL logged in to, as given; its token goes only to
	// its origin (scheme, host and port).
	Server string `json:"server"`
	Method string `json:"method"`
	// User and Roles are who the server said the session is (whoami).
	User  string   `json:"user"`
	Roles []string `json:"roles"`
	// Token is the bearer credential: a writ session (writ_s_…) or, for
	// SSO, the provider's ID token. ExpiresAt is when it stops working.
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`

	// SSO only: the provider, the client and scopes the token was got
	// with, the ID token's subject, and the refresh token that renews it.
	Issuer       string   `json:"issuer,omitempty"`
	ClientID     string   `json:"client_id,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	Subject      string   `json:"subject,omitempty"`
	RefreshToken string   `json:"refresh_token,omitempty"`
}

// errNoSession: nobody logged in (no session file, or no configuration
// directory to hold one).
var errNoSession = errors.New("not logged in")

// maxSessionFile bounds what is read of session.json.
const maxSessionFile = 64 << 10

// userConfigDir is os.UserConfigDir read through env: $XDG_CONFIG_HOME
// (absolute), else $HOME/.config; on macOS $HOME/Library/Application
// Support.
func userConfigDir(env *cliEnv) (string, error) {
	switch runtime.GOOS {
	case "darwin", "ios":
		if h := env.getenv("HOME"); h != "" {
			return filepath.Join(h, "Library", "Application Support"), nil
		}
		return "", errors.New("$HOME is not defined")
	case "linux", "freebsd", "openbsd", "netbsd", "dragonfly", "solaris", "illumos", "aix":
		if d := env.getenv("XDG_CONFIG_HOME"); d != "" {
			if !filepath.IsAbs(d) {
				return "", errors.New("path in $XDG_CONFIG_HOME is relative")
			}
			return d, nil
		}
		if h := env.getenv("HOME"); h != "" {
			return filepath.Join(h, ".config"), nil
		}
		return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME are defined")
	}
	return os.UserConfigDir()
}

// sessionPath is where the session is kept.
func sessionPath(env *cliEnv) (string, error) {
	dir, err := userConfigDir(env)
	if err != nil {
		return "", fmt.Errorf("no configuration directory for the session: %w", err)
	}
	return filepath.Join(dir, "writ", "session.json"), nil
}

// unsafeSessionError is a session file refused for what it is or who may
// read it; Fix says what to do.
type unsafeSessionError struct {
	Path, Problem, Fix string
}

func (e *unsafeSessionError) Error() string {
	return fmt.Sprintf("refusing the session file %s: %s; %s", e.Path, e.Problem, e.Fix)
}

// loadSession reads the session. errNoSession when there is none; an
// *unsafeSessionError for a file that is not a regular file of this user
// that only this user may read and write.
func loadSession(env *cliEnv) (*session, error) {
	path, err := sessionPath(env)
	if err != nil {
		return nil, errNoSession
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("session file: %w", err)
	}
	if err := checkSessionFile(path, fi); err != nil {
		return nil, err
	}
	// O_NOFOLLOW and O_NONBLOCK: whatever replaced the file since Lstat,
	// a link is not followed and a FIFO does not block; the open file is
	// checked again.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("session file: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("session file: %w", err)
	}
	if err := checkSessionFile(path, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSessionFile+1))
	if err != nil {
		return nil, fmt.Errorf("read the session file %s: %w", path, err)
	}
	damaged := func(why string) error {
		return &unsafeSessionError{Path: path, Problem: why, Fix: "run writ logout, then writ login"}
	}
	if len(data) > maxSessionFile {
		return nil, damaged("it is larger than 64 KiB")
	}
	var s session
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, damaged("it is not a session: " + err.Error())
	}
	switch {
	case s.Version != sessionVersion:
		return nil, damaged(fmt.Sprintf("it has format version %d, this writ reads %d", s.Version, sessionVersion))
	case s.Method != methodPassword && s.Method != methodSSO:
		return nil, damaged(fmt.Sprintf("unknown login method %q", s.Method))
	case s.Token == "":
		return nil, damaged("it holds no token")
	case s.Method == methodSSO && (s.Issuer == "" || s.ClientID == ""):
		return nil, damaged("an SSO session without its provider")
	}
	if _, err := serverOrigin(s.Server); err != nil {
		return nil, damaged(err.Error())
	}
	return &s, nil
}

// checkSessionFile refuses anything but a regular file of this user that
// nobody else may read or write.
func checkSessionFile(path string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return &unsafeSessionError{Path: path, Problem: "it is a symbolic link, not a regular file", Fix: "remove it (writ logout), then writ login"}
	case !fi.Mode().IsRegular():
		return &unsafeSessionError{Path: path, Problem: fmt.Sprintf("it is not a regular file (%s)", fi.Mode().Type()), Fix: "remove it, then writ login"}
	case fi.Mode().Perm()&0o077 != 0:
		return &unsafeSessionError{Path: path, Problem: fmt.Sprintf("others may read or write it (mode %04o)", fi.Mode().Perm()),
			Fix: fmt.Sprintf("fix it with chmod 600 %s (and if someone may have read it, writ logout and log in again)", path)}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return &unsafeSessionError{Path: path, Problem: fmt.Sprintf("it belongs to another user (uid %d)", st.Uid), Fix: "remove it, then writ login"}
	}
	return nil
}

// saveSession writes the session atomically (a temporary file in the same
// directory, renamed over the old one): 0600 in a 0700 directory.
func saveSession(env *cliEnv, s *session) error {
	path, err := sessionPath(env)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make the session directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("session directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("session directory %s is not a directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("session directory: %w", err)
		}
	}
	s.Version = sessionVersion
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the session: %w", err)
	}
	f, err := os.CreateTemp(dir, ".session-*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("write the session: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("write the session: %w", err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("write the session: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write the session: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the session: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write the session: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename, durably
		d.Close()
	}
	return nil
}

// removeSession deletes the session file (not what a link points to); it
// reports whether there was one.
func removeSession(env *cliEnv) (bool, error) {
	path, err := sessionPath(env)
	if err != nil {
		return false, nil
	}
	err = os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove the session: %w", err)
	}
	return true, nil
}

// serverOrigin is a server URL's origin: scheme, host and port, the
// default port of the scheme filled in, lower case.
func serverOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", redactServerURL(raw))
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port, nil
}

// sameOrigin reports whether two server URLs have the same origin: a
// session's token is sent to its own origin only.
func sameOrigin(a, b string) bool {
	oa, err := serverOrigin(a)
	if err != nil {
		return false
	}
	ob, err := serverOrigin(b)
	return err == nil && oa == ob
}
