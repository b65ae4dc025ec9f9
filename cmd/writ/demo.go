package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/auth"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/policies"
)

func init() { register(newDemoCmd) }

type demoParams struct {
	dir  string
	keep bool
}

func newDemoCmd(env *cliEnv, g *globals) *cobra.Command {
	p := demoParams{}
	cmd := &cobra.Command{
		Use:   "demo [--dir DIR] [--keep]",
		Short: "Walk through the whole flow on a fresh temporary repository",
		Long: `Demo runs the offline flow end to end, printing each step: it makes a
content repository (a bare "server" repository and an analyst's clone, with
the real git CLI) holding the default policies and an approvers file with
fresh keys, starts writ serve on it with a private PostgreSQL, has the
analyst commit a critical block_ip playbook on a branch and run writ plan,
the analyst sign the proposal and two approvers sign approvals with writ
approve --server, merges the branch, and waits for writ to execute it: the
blocklist file then holds the address, and writ audit verify checks the
audit log. Nothing outside the demo directory is touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runDemo(cmd.Context(), p, env); err != nil {
				return exitWith(exitFailure, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&p.dir, "dir", "", "directory for the demo (default: a new temporary directory)")
	cmd.Flags().BoolVar(&p.keep, "keep", false, "keep the demo directory afterwards")
	return cmd
}

type demo struct {
	ctx     context.Context
	out     io.Writer
	self    string // this binary
	dir     string
	bare    string
	work    string
	state   string
	server  string
	session string // the first admin's session, for the API
	step    int
	envVars []string
	// keepPassword: the files are kept, so the admin password the demo
	// chose is written to DIR/admin-password (0600) for later use.
	keepPassword bool
}

func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n==> %d. %s\n", d.step, fmt.Sprintf(format, args...))
}

// run executes a program (git or writ itself) with fixed arguments, no
// shell, printing the command and its output indented.
func (d *demo) run(dir string, name string, args ...string) (string, error) {
	shown := name
	if name == d.self {
		shown = "writ"
	}
	fmt.Fprintf(d.out, "    $ %s %s\n", shown, strings.Join(args, " "))
	ctx, cancel := context.WithTimeout(d.ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = d.envVars
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l != "" {
			fmt.Fprintf(d.out, "      %s\n", l)
		}
	}
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w", shown, strings.Join(args, " "), err)
	}
	return string(out), nil
}

func (d *demo) git(args ...string) error {
	_, err := d.run(d.work, "git", args...)
	return err
}

func runDemo(ctx context.Context, p demoParams, env *cliEnv) (err error) {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, tool := range []string{"git"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the demo needs %s on PATH", tool)
		}
	}
	dir := p.dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("demo directory: %w", err)
		}
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "writ-demo-"); err != nil {
			return err
		}
		if !p.keep {
			defer os.RemoveAll(dir)
		}
	}
	// PostgreSQL may run as another user (as root): let it through.
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	d := &demo{ctx: ctx, out: env.stdout, self: self, dir: dir,
		bare: filepath.Join(dir, "content.git"), work: filepath.Join(dir, "analyst"), state: filepath.Join(dir, "state"), keepPassword: p.keep || p.dir != ""}
	d.envVars = append(os.Environ(),
		"GIT_AUTHOR_NAME=Alice Analyst", "GIT_AUTHOR_EMAIL=alice@example.com",
		"GIT_COMMITTER_NAME=Alice Analyst", "GIT_COMMITTER_EMAIL=alice@example.com",
		"GIT_CONFIG_NOSYSTEM=1", "WRIT_DATA_DIR="+d.state, "WRIT_CONFIG=", "DATABASE_URL=")
	fmt.Fprintf(d.out, "writ demo in %s\n", dir)

	d.say("Make the content repository: a bare server repository and the analyst's clone")
	if _, err := d.run(dir, "git", "init", "--quiet", "--bare", "--initial-branch=main", d.bare); err != nil {
		return err
	}
	if _, err := d.run(dir, "git", "clone", "--quiet", d.bare, d.work); err != nil {
		return err
	}
	if err := d.git("checkout", "--quiet", "-B", "main"); err != nil {
		return err
	}

	d.say("Make keys for the team: alice (analyst), bob and carol (approvers), dave (admin)")
	people := []struct{ id, role string }{{"alice", "analyst"}, {"bob", "approver"}, {"carol", "approver"}, {"dave", "admin"}}
	var approvers strings.Builder
	approvers.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	keyDir := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return err
	}
	for _, who := range people {
		if _, err := d.run(dir, self, "keygen", "--out", filepath.Join(keyDir, who.id)); err != nil {
			return err
		}
		pub, err := os.ReadFile(filepath.Join(keyDir, who.id+".pub"))
		if err != nil {
			return err
		}
		if _, err := keys.ParsePublic(pub); err != nil {
			return err
		}
		fmt.Fprintf(&approvers, "  - id: %s\n    roles: [%s]\n    keys:\n      - |\n", who.id, who.role)
		for _, l := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
			fmt.Fprintf(&approvers, "        %s\n", l)
		}
	}

	d.say("Commit the default policies and .writ/approvers.yaml (the trust root) to main")
	if err := writeDemoFile(d.work, ".writ/approvers.yaml", approvers.String()); err != nil {
		return err
	}
	if err := copyDefaultPolicies(filepath.Join(d.work, "policies")); err != nil {
		return err
	}
	if err := d.git("add", "--all"); err != nil {
		return err
	}
	if err := d.git("commit", "--quiet", "-m", "Add policies and approvers"); err != nil {
		return err
	}
	if err := d.git("push", "--quiet", "origin", "main"); err != nil {
		return err
	}

	d.say("Start writ serve on the repository, with a private PostgreSQL")
	stop, err := d.startServer()
	if err != nil {
		return err
	}
	defer func() {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}()

	name := "block-c2-beacon"
	rel := "playbooks/network/" + name + ".yaml"
	d.say("Analyst: write a playbook on a branch")
	if err := d.git("checkout", "--quiet", "-b", "block-c2"); err != nil {
		return err
	}
	pb := `apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-c2-beacon
  ticket: INC-4211
spec:
  action: block_ip
  targets: [203.0.113.7]
  justification: C2 beaconing seen by EDR on host fin-ws-12
  severity: critical
  environment: production
  threatType: c2
  expiresAfter: 72h
`
	if err := writeDemoFile(d.work, rel, pb); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    %s:\n", rel)
	for _, l := range strings.Split(strings.TrimRight(pb, "\n"), "\n") {
		fmt.Fprintf(d.out, "      %s\n", l)
	}
	if err := d.git("add", rel); err != nil {
		return err
	}
	if err := d.git("commit", "--quiet", "-m", "Block the C2 of INC-4211"); err != nil {
		return err
	}
	if err := d.git("push", "--quiet", "origin", "block-c2"); err != nil {
		return err
	}

	d.say("Analyst: dry-run it (writ plan): the policies want two approvals for critical production changes")
	if _, err := d.run(d.work, self, "plan", rel); err != nil && !strings.Contains(err.Error(), "exit status") {
		return err
	}

	d.say("Analyst signs the proposal; two approvers sign approvals; all sent to the server")
	steps := [][]string{
		{"approve", "--key", filepath.Join(keyDir, "alice.key"), "--approver", "alice", "--propose", "--server", d.server, rel},
		{"approve", "--key", filepath.Join(keyDir, "bob.key"), "--approver", "bob", "--server", d.server, rel},
		{"approve", "--key", filepath.Join(keyDir, "carol.key"), "--approver", "carol", "--server", d.server, rel},
	}
	for _, s := range steps {
		if _, err := d.run(d.work, self, s...); err != nil {
			return err
		}
	}

	d.say("Merge the branch into main and push (what the forge's merge button does)")
	if err := d.git("checkout", "--quiet", "main"); err != nil {
		return err
	}
	if err := d.git("merge", "--quiet", "--no-ff", "-m", "Merge block-c2", "block-c2"); err != nil {
		return err
	}
	if err := d.git("push", "--quiet", "origin", "main"); err != nil {
		return err
	}

	d.say("writ sees the merge (nudged through POST /api/v1/reconcile) and executes the playbook")
	status, err := d.waitFor(name, "completed", 60*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    status: %s\n", status)

	d.say("The blocklist file now holds the address")
	bl := filepath.Join(d.state, "blocklist", "production.txt")
	b, err := os.ReadFile(bl)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    %s:\n", bl)
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		fmt.Fprintf(d.out, "      %s\n", l)
	}
	if !strings.Contains(string(b), "203.0.113.7") {
		return errors.New("the blocklist does not hold 203.0.113.7")
	}

	d.say("Stop the server and verify the audit log offline")
	if err := stop(); err != nil {
		return err
	}
	stop = func() error { return nil }
	if _, err := d.run(d.dir, self, auditVerifyArgs(d.state)...); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\ndone: the playbook was proposed, approved, merged, executed once and audited.\n")
	if p.keep || p.dir != "" {
		fmt.Fprintf(d.out, "the demo's files are in %s\n", dir)
	}
	return nil
}

// auditVerifyArgs verifies the demo's audit log with the key writ made.
func auditVerifyArgs(state string) []string {
	return []string{"audit", "verify", "--data-dir", state, "--keys", filepath.Join(state, "audit", "audit.pub")}
}

func writeDemoFile(root, rel, content string) error {
	full := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, []byte(content), 0o644)
}

// copyDefaultPolicies writes the embedded default policies (with their
// tests) into dir.
func copyDefaultPolicies(dir string) error {
	return fs.WalkDir(policies.FS, ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, p)
		if err != nil {
			return err
		}
		return writeDemoFile(dir, p, string(b))
	})
}

// startServer runs writ serve as a child process and waits until it is
// ready; the returned function stops it with SIGTERM.
func (d *demo) startServer() (func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	d.server = "http://" + addr
	logPath := filepath.Join(d.dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--repo", d.bare, "--listen", addr, "--poll-interval", "2s"}
	fmt.Fprintf(d.out, "    $ writ %s   (log: %s)\n", strings.Join(args, " "), logPath)
	cmd := exec.Command(d.self, args...)
	cmd.Env = d.envVars
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	stop := func() error {
		select {
		case err := <-exited:
			return fmt.Errorf("writ serve exited early: %v (see %s)", err, logPath)
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("writ serve: %v (see %s)", err, logPath)
			}
			return nil
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("writ serve did not stop (see %s)", logPath)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(d.server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintf(d.out, "      ready on %s\n", d.server)
				if err := d.login(logPath); err != nil {
					_ = stop()
					return nil, err
				}
				return stop, nil
			}
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("writ serve exited: %v; its log:\n%s", err, tail(logPath, 15))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, fmt.Errorf("writ serve not ready; its log:\n%s", tail(logPath, 15))
		}
	}
}

// login signs in as the first admin writ serve made (its one-time
// password is in the server's output, printed once), and changes the
// password as the first login must: the demo then calls the API with that
// session.
func (d *demo) login(logPath string) error {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return err
	}
	m := firstAdminPasswordRE.FindSubmatch(b)
	if m == nil {
		return fmt.Errorf("writ serve printed no first admin password; its log:\n%s", tail(logPath, 15))
	}
	fmt.Fprintf(d.out, "      writ made the first admin account and printed its one-time password; log in and change it\n")
	var lr struct {
		Token string `json:"token"`
	}
	if err := d.api("POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": string(m[1])}, &lr); err != nil {
		return fmt.Errorf("log in: %w", err)
	}
	d.session = lr.Token
	next, err := auth.RandomPassword()
	if err != nil {
		return err
	}
	if err := d.api("POST", "/api/v1/auth/password", map[string]string{"current_password": string(m[1]), "new_password": next}, nil); err != nil {
		return fmt.Errorf("change the one-time password: %w", err)
	}
	if d.keepPassword {
		path := filepath.Join(d.dir, "admin-password")
		if err := os.WriteFile(path, []byte(next+"\n"), 0o600); err != nil {
			return fmt.Errorf("keep the admin password: %w", err)
		}
		fmt.Fprintf(d.out, "      the new admin password is in %s (mode 0600): the demo's files are kept\n", path)
	}
	return nil
}

var firstAdminPasswordRE = regexp.MustCompile(`administrator "admin".*\n.*\n\n\s+(\S+)\n`)

// api calls the API with the demo's session.
func (d *demo) api(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(d.ctx, method, d.server+path, rd)
	if err != nil {
		return err
	}
	if d.session != "" {
		req.Header.Set("Authorization", "Bearer "+d.session)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// waitFor nudges the server and polls a playbook until it has status want.
func (d *demo) waitFor(name, want string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		_ = d.api("POST", "/api/v1/reconcile", nil, nil)
		var body struct {
			Status       string `json:"status"`
			StatusReason string `json:"status_reason"`
		}
		if err := d.api("GET", "/api/v1/playbooks/"+name, nil, &body); err == nil {
			if body.Status != "" && body.Status+body.StatusReason != last {
				last = body.Status + body.StatusReason
				fmt.Fprintf(d.out, "      %s: %s %s\n", name, body.Status, body.StatusReason)
			}
			if body.Status == want {
				return body.Status, nil
			}
			if body.Status == "failed" || body.Status == "denied" || body.Status == "rejected" {
				return body.Status, fmt.Errorf("%s ended %s: %s", name, body.Status, body.StatusReason)
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not reach %s within %s (last: %s)", name, want, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
