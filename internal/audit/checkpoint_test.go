package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"golang.org/x/mod/sumdb/note"

	"github.com/writ-sec/writ/internal/store"
)

func TestCheckpointSignAndParse(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	root := bytes.Repeat([]byte{7}, 32)
	cp, err := SignCheckpoint(key, "writ-audit/test", 42, root)
	if err != nil {
		t.Fatal(err)
	}
	text := string(cp.Note)
	if !strings.HasPrefix(text, "writ-audit/test\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n— writ-audit/test ") {
		t.Fatalf("note:\n%s", text)
	}
	// A stock C2SP signed-note verifier accepts it.
	pk, _ := NewPublicKey(key.Public())
	pub, _ := pk.ed25519()
	v, err := noteVerifier("writ-audit/test", pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(cp.Note, note.VerifierList(v)); err != nil {
		t.Fatalf("x/mod note: %v", err)
	}
	got, err := ParseCheckpoint(cp.Note, trustOnly(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != "writ-audit/test" || got.Size != 42 || !bytes.Equal(got.Root, root) || got.KeyID != key.ID() {
		t.Fatalf("parsed %+v", got)
	}
	if _, err := ParseCheckpoint(cp.Note, trustOnly(t, newKey(t))); err == nil || !strings.Contains(err.Error(), "not signed by a trusted key") {
		t.Fatalf("other key: %v", err)
	}
	forged := bytes.Replace(cp.Note, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := ParseCheckpoint(forged, trustOnly(t, key)); err == nil {
		t.Fatal("an edited checkpoint verified")
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	eck, err := NewSigningKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignCheckpoint(eck, "o", 1, root); err == nil || !strings.Contains(err.Error(), "ed25519") {
		t.Fatalf("ECDSA checkpoint: %v", err)
	}
}

func gitInit(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("git", "init", "-q", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	return dir
}

func TestCheckpointerPublishes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	dir := filepath.Join(t.TempDir(), "checkpoints")
	repo := gitInit(t)
	c, err := NewCheckpointer(CheckpointerOptions{Log: l, Sinks: []Sink{DirSink{Dir: dir}, GitSink{Repo: repo}}})
	if err != nil {
		t.Fatal(err)
	}
	var notes [][]byte
	for _, n := range []int{0, 10, 300} {
		appendN(t, l, n, 100)
		cp, err := c.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		notes = append(notes, cp.Note)
	}
	for i, size := range []string{"0", "10", "310"} {
		b, err := os.ReadFile(filepath.Join(dir, "checkpoint."+size))
		if err != nil || !bytes.Equal(b, notes[i]) {
			t.Fatalf("checkpoint.%s: %v", size, err)
		}
	}
	latest, _ := os.ReadFile(filepath.Join(dir, LatestFile))
	if !bytes.Equal(latest, notes[2]) {
		t.Fatal("latest is not the newest checkpoint")
	}
	// The git ref's history is the checkpoints', and git itself reads it.
	out, err := exec.Command("git", "-C", repo, "show", DefaultGitRef+":checkpoint").Output()
	if err != nil || !bytes.Equal(out, notes[2]) {
		t.Fatalf("git show: %v\n%s", err, out)
	}
	count, err := exec.Command("git", "-C", repo, "rev-list", "--count", DefaultGitRef).Output()
	if err != nil || strings.TrimSpace(string(count)) != "3" {
		t.Fatalf("rev-list: %v %s", err, count)
	}
	if out, err := exec.Command("git", "-C", repo, "fsck", "--no-progress").CombinedOutput(); err != nil {
		t.Fatalf("git fsck: %v %s", err, out)
	}
	// Recorded in the database too, and the database verifies against it.
	rec, err := st.LatestAuditCheckpoint(ctx)
	if err != nil || rec.Size != 310 || rec.Note != string(notes[2]) {
		t.Fatalf("recorded: %+v %v", rec, err)
	}
	rep := verifyDB(t, st, trustOnly(t, l.Key()), notes...)
	if rep.Bad != nil || len(rep.Checkpoints) != 4 {
		t.Fatalf("verify with checkpoints: %v %v", rep.Bad, rep.Checkpoints)
	}
}

// TestCheckpointerRefusesRollback: after the database is rolled back (here:
// a copy of an older state), the checkpointer will not publish over what its
// sinks hold.
func TestCheckpointerRefusesRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tl := newTamperLog(t, 50)
	backupURL := copyDatabase(t, tl)
	dir := t.TempDir()
	repo := gitInit(t)
	sinks := []Sink{DirSink{Dir: dir}, GitSink{Repo: repo}}
	appendN(t, tl.l, 20, 10)
	c, _ := NewCheckpointer(CheckpointerOptions{Log: tl.l, Sinks: sinks})
	if _, err := c.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	restored := openStore(t, backupURL)
	l2, _ := NewLog(LogOptions{Store: restored, Key: tl.l.Key()})
	// A third sink that never saw the log must not receive the rolled-back
	// history either.
	fresh := t.TempDir()
	health := NewSinkMonitor(nil)
	c2, _ := NewCheckpointer(CheckpointerOptions{Log: l2, Sinks: append(sinks, DirSink{Dir: fresh}), Health: health})
	cp, err := c2.Checkpoint(ctx)
	if !errors.Is(err, ErrRollback) || !errors.Is(err, ErrNotContained) || cp != nil {
		t.Fatalf("checkpoint of the rolled-back log: %v %v; want ErrRollback", cp, err)
	}
	var se *SinkError
	if !errors.As(err, &se) || se.Sink != sinks[0].Name() {
		t.Fatalf("error does not name the sink: %v", err)
	}
	// Appending past the old size does not help: the history differs.
	appendN(t, l2, 40, 10)
	if _, err := c2.Checkpoint(ctx); !errors.Is(err, ErrFork) || !errors.Is(err, ErrNotContained) {
		t.Fatalf("checkpoint of the rewritten log: %v; want ErrFork", err)
	}
	if _, err := restored.LatestAuditCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the rewritten log's checkpoint was recorded: %v", err)
	}
	if entries, _ := os.ReadDir(fresh); len(entries) != 0 {
		t.Fatalf("the rewritten log's checkpoint was published to the fresh sink: %v", entries)
	}
	hs := health.Health()
	if len(hs) != 3 || !hs[0].NotContained || !hs[1].NotContained || hs[2].Attempted {
		t.Fatalf("health: %+v", hs)
	}
	if detail, err := health.Readiness(); err == nil || !strings.Contains(err.Error(), sinks[1].Name()) || !strings.Contains(detail, "proves a rollback or fork") {
		t.Fatalf("readiness: %q %v", detail, err)
	}
	if size, _ := noteSize(mustRead(t, filepath.Join(dir, LatestFile))); size != 70 {
		t.Fatalf("latest moved to %d", size)
	}
	r, _ := git.PlainOpen(repo)
	ref, err := r.Reference(plumbing.ReferenceName(DefaultGitRef), true)
	if err != nil {
		t.Fatal(err)
	}
	commit, _ := r.CommitObject(ref.Hash())
	if !strings.HasPrefix(commit.Message, "audit checkpoint 70\n") {
		t.Fatalf("git ref moved: %q", commit.Message)
	}
}

func TestDirSinkRefusesASecondRootForOneSize(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	d := DirSink{Dir: t.TempDir()}
	a, _ := SignCheckpoint(key, "o", 5, bytes.Repeat([]byte{1}, 32))
	b, _ := SignCheckpoint(key, "o", 5, bytes.Repeat([]byte{2}, 32))
	if err := d.Publish(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := d.Publish(context.Background(), a); err != nil {
		t.Fatalf("republishing the same checkpoint: %v", err)
	}
	// The sink does not verify: a conflict is not by itself a proof of a
	// fork (the Checkpointer tells, with the log's keys).
	var ce *ConflictError
	if err := d.Publish(context.Background(), b); !errors.As(err, &ce) || !bytes.Equal(ce.Note, a.Note) || errors.Is(err, ErrNotContained) {
		t.Fatalf("second root: %v; want a ConflictError holding the first", err)
	}
	g := GitSink{Repo: gitInit(t)}
	if err := g.Publish(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := g.Publish(context.Background(), b); !errors.As(err, &ce) || !bytes.Equal(ce.Note, a.Note) {
		t.Fatalf("git, second root: %v; want a ConflictError", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAcknowledgedRollbackRetiresCheckpoints: once the admins acknowledge
// a rollback, the directory's per-size checkpoints of the log that was
// (not only its newest) are kept under rolled-back/hold-ID, and the
// accepted log publishes its own checkpoints of those sizes instead of
// being refused as a fork.
func TestAcknowledgedRollbackRetiresCheckpoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tl := newTamperLog(t, 50)
	backupURL := copyDatabase(t, tl)
	dir := t.TempDir()
	c, _ := NewCheckpointer(CheckpointerOptions{Log: tl.l, Sinks: []Sink{DirSink{Dir: dir}}})
	var old [][]byte
	for range 2 {
		appendN(t, tl.l, 10, 10)
		cp, err := c.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, cp.Note)
	}

	restored := openStore(t, backupURL)
	l2, _ := NewLog(LogOptions{Store: restored, Key: tl.l.Key()})
	watch := NewRollbackWatch(restored, dir)
	rb, err := watch.Check(ctx)
	if err != nil || rb == nil || rb.Expected.Size != 70 || rb.Log.Size != 50 {
		t.Fatalf("check of the restored log: %+v %v", rb, err)
	}
	if err := watch.Acknowledge(rb, rb.Log, 7, []string{"dave", "erin"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i, size := range []string{"60", "70"} {
		if got := mustRead(t, filepath.Join(dir, RetiredDir, "hold-7", "checkpoint."+size)); !bytes.Equal(got, old[i]) {
			t.Fatalf("retired checkpoint.%s is not the old one", size)
		}
	}
	ack := string(mustRead(t, filepath.Join(dir, AckFile)))
	if !strings.Contains(ack, `"retired":["rolled-back/hold-7/checkpoint.60","rolled-back/hold-7/checkpoint.70"]`) {
		t.Fatalf("acknowledgement record: %s", ack)
	}

	// The accepted log grows back to 60, then past 70: both published,
	// nothing proves a fork, and latest follows once it is larger.
	health := NewSinkMonitor(nil)
	c2, _ := NewCheckpointer(CheckpointerOptions{Log: l2, Sinks: []Sink{DirSink{Dir: dir}}, Health: health, Superseded: watch.Superseded})
	appendN(t, l2, 10, 10)
	cp, err := c2.Checkpoint(ctx)
	if err != nil || cp.Size != 60 || bytes.Equal(cp.Note, old[0]) {
		t.Fatalf("checkpoint of the accepted log at 60: %v %v", cp, err)
	}
	if got := mustRead(t, filepath.Join(dir, "checkpoint.60")); !bytes.Equal(got, cp.Note) {
		t.Fatal("checkpoint.60 is not the accepted log's")
	}
	if _, err := health.Readiness(); err != nil {
		t.Fatalf("readiness after the acknowledgement: %v", err)
	}
	if rb, err := watch.Check(ctx); rb != nil || err != nil {
		t.Fatalf("check after the acknowledgement: %+v %v", rb, err)
	}
	appendN(t, l2, 20, 10)
	if cp, err = c2.Checkpoint(ctx); err != nil || cp.Size != 80 {
		t.Fatalf("checkpoint at 80: %v %v", cp, err)
	}
	if got := mustRead(t, filepath.Join(dir, LatestFile)); !bytes.Equal(got, cp.Note) {
		t.Fatal("latest is not the accepted log's newest checkpoint")
	}
}
