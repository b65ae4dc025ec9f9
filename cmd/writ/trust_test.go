package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

// trustRig is a content repository with two admins whose keys are files,
// served by writ serve on a database the test reads too.
type trustRig struct {
	t       testing.TB
	repo    *gittest.Repo
	dbURL   string
	st      *store.Store
	dataDir string
	keyDir  string
	people  map[string][]string // id -> roles
	// sshLines are the OpenSSH public key lines of people who sign with
	// SSH keys (id -> line).
	sshLines map[string]string
	// emails are people's email addresses in the approvers file (id ->
	// address).
	emails map[string]string
	base   string // the server's URL
}

func newTrustRig(t *testing.T) *trustRig {
	t.Helper()
	return newTrustRigWith(t, map[string][]string{"alice": {"analyst"}, "dave": {"admin"}, "erin": {"admin"}})
}

// newTrustRigWith is newTrustRig with these people (id -> roles).
func newTrustRigWith(t testing.TB, people map[string][]string, serveArgs ...string) *trustRig {
	t.Helper()
	return newTrustRigSSH(t, people, nil, serveArgs...)
}

// newTrustRigSSH is newTrustRigWith where the people in sshLines have
// that OpenSSH public key line in the approvers file instead of a PEM key.
func newTrustRigSSH(t testing.TB, people map[string][]string, sshLines map[string]string, serveArgs ...string) *trustRig {
	t.Helper()
	return newTrustRigEmails(t, people, sshLines, nil, serveArgs...)
}

// newTrustRigEmails is newTrustRigSSH where the people in emails have that
// email address in the approvers file.
func newTrustRigEmails(t testing.TB, people map[string][]string, sshLines, emails map[string]string, serveArgs ...string) *trustRig {
	t.Helper()
	r := &trustRig{t: t, keyDir: t.TempDir(), dataDir: filepath.Join(traversableTempDir(t), "state"), people: people, sshLines: sshLines, emails: emails}
	files := map[string]string{".writ/approvers.yaml": r.approvers(nil)}
	seed, err := policies.Files(true)
	for p, c := range seed {
		files[p] = c
	}
	if err != nil {
		t.Fatal(err)
	}
	r.repo = gittest.New(t, files)
	r.dbURL = dbtest.URL(t)
	r.st, err = store.Open(context.Background(), store.Options{URL: r.dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.st.Close)
	base, stop := startServe(t, append([]string{"--repo", r.repo.Bare, "--database", r.dbURL, "--data-dir", r.dataDir, "--poll-interval", "50ms"}, serveArgs...)...)
	t.Cleanup(func() { stop() })
	r.base = base
	r.waitFor("the first pass", func() bool { _, err := r.st.RepoState(context.Background()); return err == nil })
	return r
}

// approvers writes the approvers file of the rig's people and extra ones,
// making key files for those who have none.
func (r *trustRig) approvers(extra map[string][]string) string {
	r.t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: writ/v1\nkind: Approvers\npeople:\n")
	ids := slices.Sorted(maps.Keys(r.people))
	for _, id := range slices.Sorted(maps.Keys(extra)) {
		if r.people[id] == nil {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		roles := r.people[id]
		if roles == nil {
			roles = extra[id]
		}
		if line := r.sshLines[id]; line != "" {
			fmt.Fprintf(&b, "  - id: %s\n    roles: [%s]\n    keys:\n      - %q\n", id, strings.Join(roles, ", "), line)
			continue
		}
		keyFile := filepath.Join(r.keyDir, id+".key")
		pubPEM, err := os.ReadFile(filepath.Join(r.keyDir, id+".pub"))
		if os.IsNotExist(err) {
			k, gerr := keys.Generate(keys.Ed25519)
			if gerr != nil {
				r.t.Fatal(gerr)
			}
			priv, _ := keys.MarshalPrivate(k, nil)
			pubPEM, _ = keys.MarshalPublic(k.Public())
			if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
				r.t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(r.keyDir, id+".pub"), pubPEM, 0o644); err != nil {
				r.t.Fatal(err)
			}
		} else if err != nil {
			r.t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - id: %s\n", id)
		if e := r.emails[id]; e != "" {
			fmt.Fprintf(&b, "    email: %s\n", e)
		}
		fmt.Fprintf(&b, "    roles: [%s]\n    keys:\n      - |\n", strings.Join(roles, ", "))
		for _, l := range strings.Split(strings.TrimSpace(string(pubPEM)), "\n") {
			b.WriteString("        " + l + "\n")
		}
	}
	return b.String()
}

func (r *trustRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	r.waitForSaying(what, cond, nil)
}

// waitForSaying is waitFor, with say's words in the failure.
func (r *trustRig) waitForSaying(what string, cond func() bool, say func() string) {
	r.t.Helper()
	for t0 := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Since(t0) > 3*time.Minute {
			msg := ""
			if say != nil {
				msg = ": " + say()
			}
			r.t.Fatalf("%s did not happen within 3m%s", what, msg)
		}
	}
}

func (r *trustRig) state() *store.RepoState {
	r.t.Helper()
	st, err := r.st.RepoState(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// token makes an account and an API token with a role, through the CLI.
func (r *trustRig) token(user, role string) string {
	r.t.Helper()
	db := []string{"--database", r.dbURL, "--data-dir", r.dataDir}
	if code, _, errOut := runCLI(r.t, append(db, "user", "add", user, "--role", role, "--no-password")...); code != exitOK {
		r.t.Fatalf("user add: %s", errOut)
	}
	code, out, errOut := runCLI(r.t, append(db, "token", "create", "--user", user, "--name", "test", "--role", role)...)
	if code != exitOK {
		r.t.Fatalf("token create: %s", errOut)
	}
	return strings.TrimSpace(out)
}

// One admin with a password cannot adopt a change to the approvers file:
// acknowledging its hold through the API dismisses it. Two admins sign
// the transition with writ approve --trust-change (one naming the trusted
// commit, one asking the server for it), and it is adopted. The server's
// repository identity, derived from its local path, is the one writ
// approve derives from the checkout.
func TestTrustChangeDismissedThenSigned(t *testing.T) {
	r := newTrustRig(t)
	admin, viewer := r.token("root", "admin"), r.token("watcher", "viewer")
	trusted := r.state().AdoptedSHA

	req, _ := http.NewRequest(http.MethodGet, r.base+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+viewer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var status struct{ Repository string }
	_ = json.NewDecoder(resp.Body).Decode(&status)
	resp.Body.Close()
	if want, _ := gitsrc.Identity(r.repo.Bare); status.Repository != want || want == "" {
		t.Fatalf("repository identity %q; want %q", status.Repository, want)
	}

	// An admin adds zed as an approver, without signatures.
	r.repo.Write(".writ/approvers.yaml", r.approvers(map[string][]string{"zed": {"approver"}}))
	head := r.repo.Commit("add zed")
	r.repo.Push()
	var holds []*store.Hold
	r.waitFor("the hold", func() bool {
		holds, _ = r.st.OpenHolds(context.Background())
		return len(holds) == 1 && r.state().ProcessedSHA == head
	})
	req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v1/holds/%d/acknowledge", r.base, holds[0].ID), nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("acknowledge: %s", resp.Status)
	}
	h, err := r.st.HoldByID(context.Background(), holds[0].ID)
	if err != nil || h.ResolvedAs != store.HoldDismissed {
		t.Fatalf("the hold after the acknowledgement: %+v %v", h, err)
	}
	// Passes go on (a later commit is processed): nothing is adopted, and
	// the change is not held again.
	r.repo.Write("NOTES.md", "an unrelated commit\n")
	later := r.repo.Commit("notes")
	r.repo.Push()
	r.waitFor("the next commit", func() bool { return r.state().ProcessedSHA == later })
	if st := r.state(); st.AdoptedSHA != trusted {
		t.Fatalf("adopted %s after one admin's acknowledgement", st.AdoptedSHA)
	}
	if open, _ := r.st.OpenHolds(context.Background()); len(open) != 0 {
		t.Fatalf("the dismissed change was held again: %s at %.12s (%s)", open[0].Kind, open[0].CommitSHA, open[0].Detail)
	}

	// The admins sign the transition.
	key := func(id string) string { return filepath.Join(r.keyDir, id+".key") }
	code, _, errOut := runCLI(t, "approve", "--key", key("dave"), "--approver", "dave", "--trust-change", "--repo-root", r.repo.Work,
		"--trusted-commit", trusted, "--server", r.base)
	if code != exitOK || !strings.Contains(errOut, "from trusted commit "+trusted[:12]) {
		t.Fatalf("dave: %d %s", code, errOut)
	}
	if st := r.state(); st.AdoptedSHA != trusted {
		t.Fatal("adopted with one admin's signature")
	}
	code, _, errOut = runCLIEnv(t, map[string]string{"WRIT_TOKEN": viewer}, "approve", "--key", key("erin"), "--approver", "erin",
		"--trust-change", "--repo-root", r.repo.Work, "--server", r.base)
	if code != exitOK {
		t.Fatalf("erin: %d %s", code, errOut)
	}
	r.waitFor("the adoption", func() bool { return r.state().AdoptedSHA == later })

	// Nothing that decides changed: nothing to sign.
	code, _, errOut = runCLI(t, "approve", "--key", key("dave"), "--approver", "dave", "--trust-change", "--repo-root", r.repo.Work,
		"--trusted-commit", later)
	if code != exitFailure || !strings.Contains(errOut, "nothing that decides changed") {
		t.Fatalf("no change: %d %s", code, errOut)
	}
}
