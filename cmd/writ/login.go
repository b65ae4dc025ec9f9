package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/writ-sec/writ/internal/server"
)

func init() {
	register(newLoginCmd)
	register(newLogoutCmd)
	register(newWhoamiCmd)
}

type loginParams struct {
	server string
	user   string
	sso    bool
}

func newLoginCmd(env *cliEnv, _ *globals) *cobra.Command {
	p := loginParams{}
	cmd := &cobra.Command{
		Use:   "login [--server URL] [--user NAME | --sso]",
		Short: "Log in to a writ server: commands that talk to it use the session",
		Long: `Login opens a session with a writ server and keeps it in writ/session.json
of your configuration directory ($XDG_CONFIG_HOME, else ~/.config), a file
only you may read. Commands that talk to a server (writ approve) use it:
the server is --server, else WRIT_SERVER, else the one you logged in to;
the bearer token is WRIT_TOKEN when set, else the session's, which is sent
to the server it was made with (same scheme, host and port) and nowhere
else.

With a local account, the username is --user (else asked on the terminal)
and the password is asked on the terminal, or taken from WRIT_PASSWORD for
scripts (never a flag). An account with a one-time password must change
it first: the new one is asked on the terminal (or WRIT_NEW_PASSWORD).

With --sso, or when the server offers only SSO, you log in at the SSO
provider the server names (GET /api/v1/auth/methods) with the OAuth 2.0
device authorization grant: writ shows a web address and a code to enter
there, and waits until you have approved. The provider's ID token is
verified (its signature, issuer, audience and expiry) and kept with its
refresh token; commands renew it when it expires.

One session at a time: logging in again replaces it (ending the old one on
its server). writ logout ends it.`,
		Example: `  writ login --server https://writ.example.com
  writ login --server https://writ.example.com --user alice
  writ login --server https://writ.example.com --sso
  WRIT_PASSWORD=… writ login --server https://writ.example.com --user ops`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLogin(cmd.Context(), env, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.server, "server", "", "the writ server's URL (default: WRIT_SERVER, else the server you logged in to)")
	f.StringVar(&p.user, "user", "", "your username, for a password login (default: asked on the terminal)")
	f.BoolVar(&p.sso, "sso", false, "log in with the SSO provider the server names (device authorization grant)")
	return cmd
}

func newLogoutCmd(env *cliEnv, _ *globals) *cobra.Command {
	var srv string
	cmd := &cobra.Command{
		Use:   "logout [--server URL]",
		Short: "End the session writ login opened and forget it",
		Long: `Logout ends the session of writ login: a password session is ended on its
server (POST /api/v1/auth/logout), an SSO one is forgotten (your login at
the provider stays), and the session file is removed. With --server, only
a session with that server is ended. Logging out when not logged in does
nothing and succeeds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLogout(cmd.Context(), env, srv)
		},
	}
	cmd.Flags().StringVar(&srv, "server", "", "end the session only if it is with this server (default: whichever server it is with)")
	return cmd
}

func newWhoamiCmd(env *cliEnv, _ *globals) *cobra.Command {
	var srv string
	cmd := &cobra.Command{
		Use:   "whoami [--server URL]",
		Short: "Say who a writ server takes you for: name, roles, how you logged in",
		Long: `Whoami asks the server (GET /api/v1/auth/whoami) who the credential every
command sends is: WRIT_TOKEN when set, else the session of writ login (an
SSO session is renewed first when it has expired).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWhoami(cmd.Context(), env, srv)
		},
	}
	cmd.Flags().StringVar(&srv, "server", "", "the writ server's URL (default: WRIT_SERVER, else the server you logged in to)")
	return cmd
}

func runWhoami(ctx context.Context, env *cliEnv, flag string) error {
	srv, err := resolveServer(env, flag)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if srv == "" {
		return usageError("which server? pass --server URL, set WRIT_SERVER, or writ login")
	}
	resp, body, shown, err := callServer(ctx, env, srv, http.MethodGet, nil, "api", "v1", "auth", "whoami")
	if err != nil {
		return exitWith(exitFailure, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return exitWith(exitFailure, fmt.Errorf("%s does not know you (%s): run writ login", redactServerURL(srv), serverMessage(body)))
	default:
		return exitWith(exitFailure, fmt.Errorf("%s answered %s: %s", shown, resp.Status, serverMessage(body)))
	}
	var w whoamiAnswer
	if err := json.Unmarshal(body, &w); err != nil || w.Name == "" {
		return exitWith(exitFailure, fmt.Errorf("%s: not a whoami answer", shown))
	}
	roles := "no roles"
	if len(w.Roles) > 0 {
		roles = "roles: " + flattenText(strings.Join(w.Roles, ", "), 300)
	}
	how := flattenText(w.Method, 20)
	if !w.ExpiresAt.IsZero() {
		how += ", until " + w.ExpiresAt.Local().Format(time.RFC3339)
	}
	if w.MustChangePassword {
		how += ", must change the password"
	}
	fmt.Fprintf(env.stdout, "%s on %s (%s; %s)\n", flattenText(w.Name, 200), redactServerURL(srv), roles, how)
	return nil
}

// whoamiAnswer is GET /api/v1/auth/whoami.
type whoamiAnswer struct {
	Name               string    `json:"name"`
	Roles              []string  `json:"roles"`
	Method             string    `json:"method"`
	MustChangePassword bool      `json:"must_change_password"`
	ExpiresAt          time.Time `json:"expires_at"`
}

func runLogin(ctx context.Context, env *cliEnv, p loginParams) error {
	if p.sso && p.user != "" {
		return usageError("--user is for a password login; --sso logs in at the SSO provider")
	}
	old, oldErr := loadSession(env)
	srv := p.server
	if srv == "" {
		srv = env.getenv("WRIT_SERVER")
	}
	if srv == "" && oldErr == nil {
		srv = old.Server
	}
	if srv == "" {
		return usageError("which server? pass --server URL (or set WRIT_SERVER)")
	}
	if _, err := serverOrigin(srv); err != nil {
		return usageError("--server %v", err)
	}
	if u, _ := url.Parse(srv); u.User != nil {
		return usageError("--server %s: give the URL without a user name or password", redactServerURL(srv))
	}
	methods, err := loginMethods(ctx, env, srv)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	useSSO := p.sso
	switch {
	case p.sso && methods.OIDC == nil:
		return exitWith(exitFailure, fmt.Errorf("%s offers no SSO login (auth.oidc is not configured there)", redactServerURL(srv)))
	case !p.sso && !methods.Password && methods.OIDC != nil:
		if p.user != "" {
			return usageError("%s offers only SSO login: drop --user", redactServerURL(srv))
		}
		fmt.Fprintf(env.stderr, "writ: %s offers SSO login only\n", redactServerURL(srv))
		useSSO = true
	case !methods.Password && methods.OIDC == nil:
		return exitWith(exitFailure, fmt.Errorf("%s offers no way to log in (no accounts, no SSO)", redactServerURL(srv)))
	}

	var s *session
	if useSSO {
		s, err = ssoLogin(ctx, env, srv, methods.OIDC)
	} else {
		s, err = passwordLogin(ctx, env, srv, p.user)
	}
	if err != nil {
		return exitWith(exitFailure, err)
	}
	who, err := whoami(ctx, env, srv, s.Token)
	if err != nil {
		if s.Method == methodPassword {
			_ = endSession(ctx, env, s) // best effort: the error said is the first
		}
		return exitWith(exitFailure, err)
	}
	s.User, s.Roles = who.Name, who.Roles
	if s.Roles == nil {
		s.Roles = []string{}
	}
	if s.Method == methodPassword && !who.ExpiresAt.IsZero() {
		s.ExpiresAt = who.ExpiresAt
	}
	if err := saveSession(env, s); err != nil {
		if s.Method == methodPassword {
			_ = endSession(ctx, env, s) // best effort: the error said is the first
		}
		return exitWith(exitFailure, err)
	}
	// The session replaced is ended on its server, when it can be.
	var unsafe *unsafeSessionError
	switch {
	case oldErr == nil && old.Method == methodPassword && old.Token != s.Token && time.Now().Before(old.ExpiresAt):
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = endSession(ectx, env, old) // at worst, it lasts until it expires
		cancel()
	case errors.As(oldErr, &unsafe):
		fmt.Fprintf(env.stderr, "writ: the previous session file was refused (%s) and is replaced\n", unsafe.Problem)
	}
	roles := "no roles: an administrator must grant you some"
	if len(s.Roles) > 0 {
		roles = "roles: " + flattenText(strings.Join(s.Roles, ", "), 300)
	}
	until := "until " + s.ExpiresAt.Local().Format(time.RFC3339)
	if s.Method == methodSSO && s.RefreshToken != "" {
		until += ", renewed as needed"
	}
	fmt.Fprintf(env.stdout, "logged in to %s as %s (%s; %s)\n", redactServerURL(srv), flattenText(s.User, 200), roles, until)
	if env.getenv("WRIT_TOKEN") != "" {
		fmt.Fprintln(env.stderr, "writ: note: WRIT_TOKEN is set; commands send it instead of this session until you unset it")
	}
	return nil
}

// loginMethods asks a server how to log in. A server that does not say
// (before GET /api/v1/auth/methods) takes passwords.
func loginMethods(ctx context.Context, env *cliEnv, srv string) (*server.LoginMethods, error) {
	resp, body, shown, err := doServer(ctx, env, srv, serverCall{method: http.MethodGet, path: []string{"api", "v1", "auth", "methods"}, anonymous: true})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return &server.LoginMethods{Password: true}, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s", shown, resp.Status, serverMessage(body))
	}
	var m server.LoginMethods
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%s: not a writ server's answer: %w", shown, err)
	}
	return &m, nil
}

// loginAnswer is what POST /api/v1/auth/login answers.
type loginAnswer struct {
	Token     string       `json:"token"`
	ExpiresAt time.Time    `json:"expires_at"`
	Principal whoamiAnswer `json:"principal"`
}

// passwordLogin opens a session with a username and password, changing a
// one-time password first.
func passwordLogin(ctx context.Context, env *cliEnv, srv, user string) (*session, error) {
	if user == "" {
		var err error
		if user, err = askLine(env, "Username: "); err != nil {
			return nil, fmt.Errorf("%w (or pass --user)", err)
		}
		if user == "" {
			return nil, errors.New("no username given")
		}
	}
	if insecureURL(srv) {
		fmt.Fprintf(env.stderr, "writ: warning: %s is not https: your password travels unencrypted\n", redactServerURL(srv))
	}
	password, err := askSecret(env, "WRIT_PASSWORD", fmt.Sprintf("Password for %s: ", flattenText(user, 100)), false)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(map[string]string{"username": user, "password": password})
	if err != nil {
		return nil, err
	}
	resp, answer, shown, err := doServer(ctx, env, srv, serverCall{method: http.MethodPost, path: []string{"api", "v1", "auth", "login"},
		body: body, contentType: "application/json", anonymous: true})
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("login refused: %s", serverMessage(answer))
	case http.StatusTooManyRequests:
		return nil, fmt.Errorf("too many login attempts from here: try again in %s seconds", flattenText(resp.Header.Get("Retry-After"), 20))
	default:
		return nil, fmt.Errorf("%s answered %s: %s", shown, resp.Status, serverMessage(answer))
	}
	var la loginAnswer
	if err := json.Unmarshal(answer, &la); err != nil || la.Token == "" {
		return nil, fmt.Errorf("%s: not a writ session", shown)
	}
	s := &session{Server: srv, Method: methodPassword, Token: la.Token, ExpiresAt: la.ExpiresAt}
	if la.Principal.MustChangePassword {
		if err := changeOneTimePassword(ctx, env, s, user, password); err != nil {
			_ = endSession(ctx, env, s) // best effort: the error said is the first
			return nil, err
		}
	}
	return s, nil
}

// changeOneTimePassword replaces an account's one-time password through
// the session its login opened (POST /api/v1/auth/password).
func changeOneTimePassword(ctx context.Context, env *cliEnv, s *session, user, current string) error {
	fmt.Fprintf(env.stderr, "writ: %s has a one-time password, which must be changed before anything else\n", flattenText(user, 100))
	next, err := askSecret(env, "WRIT_NEW_PASSWORD", "New password (at least 12 characters): ", true)
	if err != nil {
		return fmt.Errorf("%s must change the one-time password first: %w", flattenText(user, 100), err)
	}
	body, err := json.Marshal(map[string]string{"current_password": current, "new_password": next})
	if err != nil {
		return err
	}
	resp, answer, shown, err := doServer(ctx, env, s.Server, serverCall{method: http.MethodPost, path: []string{"api", "v1", "auth", "password"},
		body: body, contentType: "application/json", bearer: s.Token})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("change the one-time password: %s answered %s: %s", shown, resp.Status, serverMessage(answer))
	}
	fmt.Fprintln(env.stderr, "writ: password changed")
	return nil
}

// whoami asks the server who a token is.
func whoami(ctx context.Context, env *cliEnv, srv, token string) (*whoamiAnswer, error) {
	resp, body, shown, err := doServer(ctx, env, srv, serverCall{method: http.MethodGet, path: []string{"api", "v1", "auth", "whoami"}, bearer: token})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s refused the new credential: %s: %s", shown, resp.Status, serverMessage(body))
	}
	var w whoamiAnswer
	if err := json.Unmarshal(body, &w); err != nil || w.Name == "" {
		return nil, fmt.Errorf("%s: not a whoami answer", shown)
	}
	return &w, nil
}

// endSession ends a password session on its server; it reports what
// went wrong, if anything (an expired or revoked session has ended).
func endSession(ctx context.Context, env *cliEnv, s *session) error {
	resp, body, shown, err := doServer(ctx, env, s.Server, serverCall{method: http.MethodPost, path: []string{"api", "v1", "auth", "logout"}, bearer: s.Token})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("%s answered %s: %s", shown, resp.Status, serverMessage(body))
	}
	return nil
}

func runLogout(ctx context.Context, env *cliEnv, srv string) error {
	if srv != "" {
		if _, err := serverOrigin(srv); err != nil {
			return usageError("--server %v", err)
		}
	}
	s, err := loadSession(env)
	var unsafe *unsafeSessionError
	switch {
	case errors.Is(err, errNoSession):
		fmt.Fprintln(env.stderr, "writ: not logged in; nothing to do")
		return nil
	case errors.As(err, &unsafe):
		// Not used, not even to end it: who knows who wrote it.
		if _, rerr := removeSession(env); rerr != nil {
			return exitWith(exitFailure, fmt.Errorf("%v; and removing it failed: %w", err, rerr))
		}
		fmt.Fprintf(env.stderr, "writ: removed %s without using it (%s); if the session in it may have been read, have it revoked on its server (writ user revoke-sessions USER)\n",
			unsafe.Path, unsafe.Problem)
		return nil
	case err != nil:
		return exitWith(exitFailure, err)
	}
	if srv != "" && !sameOrigin(srv, s.Server) {
		fmt.Fprintf(env.stderr, "writ: no session with %s (you are logged in to %s); nothing done\n", redactServerURL(srv), redactServerURL(s.Server))
		return nil
	}
	var endErr error
	if s.Method == methodPassword && time.Now().Before(s.ExpiresAt) {
		endErr = endSession(ctx, env, s)
	}
	if _, err := removeSession(env); err != nil {
		return exitWith(exitFailure, err)
	}
	who := flattenText(s.User, 200)
	switch {
	case endErr != nil:
		return exitWith(exitFailure, fmt.Errorf("forgot the session of %s with %s, but could not end it there (%v): it stays valid until %s unless an administrator revokes it",
			who, redactServerURL(s.Server), endErr, s.ExpiresAt.Local().Format(time.RFC3339)))
	case s.Method == methodSSO:
		fmt.Fprintf(env.stdout, "logged out of %s (%s): the SSO token is forgotten; your login at the provider stays\n", redactServerURL(s.Server), who)
	default:
		fmt.Fprintf(env.stdout, "logged out of %s (%s)\n", redactServerURL(s.Server), who)
	}
	return nil
}

// insecureURL: http to anything but the loopback.
func insecureURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return false
	}
	ip := net.ParseIP(h)
	return ip == nil || !ip.IsLoopback()
}

// terminalOf is stdin when it is a terminal.
func terminalOf(env *cliEnv) (*os.File, bool) {
	f, ok := env.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// askLine asks for a line on the terminal.
func askLine(env *cliEnv, prompt string) (string, error) {
	f, ok := terminalOf(env)
	if !ok {
		return "", errors.New("no terminal to ask on")
	}
	fmt.Fprint(env.stderr, prompt)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("read from the terminal: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// askSecret takes a secret from the environment variable, else asks on
// the terminal without echo (twice when confirm). It is never printed.
func askSecret(env *cliEnv, envName, prompt string, confirm bool) (string, error) {
	if v := env.getenv(envName); v != "" {
		return v, nil
	}
	f, ok := terminalOf(env)
	if !ok {
		return "", fmt.Errorf("a password is needed: set %s or run on a terminal", envName)
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(env.stderr, prompt)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.stderr)
		return pw, err
	}
	pw, err := ask(prompt)
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	if len(pw) == 0 {
		return "", errors.New("empty password")
	}
	if confirm {
		again, err := ask("Repeat it: ")
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return "", errors.New("the passwords do not match")
		}
	}
	return string(pw), nil
}
