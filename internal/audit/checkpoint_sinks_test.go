package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/store"
)

// foreignCheckpoint is a checkpoint of the log's origin signed by a key the
// log never had: what a git ref written by someone else holds.
func foreignCheckpoint(t *testing.T, l *Log, size uint64) *Checkpoint {
	t.Helper()
	origin, err := l.Origin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := SignCheckpoint(newKey(t), origin, size, bytes.Repeat([]byte{9}, HashSize))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func gitShow(t *testing.T, repo string) []byte {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "show", DefaultGitRef+":checkpoint").Output()
	if err != nil {
		t.Fatalf("git show: %v", err)
	}
	return out
}

// TestCheckpointSinksIndependentOfAnUnverifiableGitRef: a git ref holding a
// checkpoint signed by another key keeps neither the database nor the
// directory from the checkpoint; the ref is reported, not overwritten.
func TestCheckpointSinksIndependentOfAnUnverifiableGitRef(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	appendN(t, l, 30, 10)
	repo := gitInit(t)
	git := GitSink{Repo: repo}
	foreign := foreignCheckpoint(t, l, 5)
	if err := git.Publish(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	dir := DirSink{Dir: filepath.Join(t.TempDir(), "checkpoints")}
	var observed []SinkHealth
	health := NewSinkMonitor(func(h SinkHealth) { observed = append(observed, h) })
	c, err := NewCheckpointer(CheckpointerOptions{Log: l, Sinks: []Sink{git, dir}, Health: health})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Checkpoint(ctx)
	if cp == nil {
		t.Fatalf("nothing recorded: %v", err)
	}
	var se *SinkError
	if !errors.As(err, &se) || se.Sink != git.Name() || errors.Is(err, ErrNotContained) || !strings.Contains(err.Error(), "not signed by a trusted key") {
		t.Fatalf("error %v; want the git sink's, not a proof of rollback", err)
	}
	if len(cp.Sinks) != 2 || cp.Sinks[0].Sink != git.Name() || cp.Sinks[0].Err == nil || cp.Sinks[1].Sink != dir.Name() || cp.Sinks[1].Err != nil {
		t.Fatalf("results: %+v", cp.Sinks)
	}
	if got := mustRead(t, filepath.Join(dir.Dir, LatestFile)); !bytes.Equal(got, cp.Note) {
		t.Fatalf("the directory did not get the checkpoint:\n%s", got)
	}
	rec, err := st.LatestAuditCheckpoint(ctx)
	if err != nil || rec.Size != 30 || rec.Note != string(cp.Note) {
		t.Fatalf("recorded: %+v %v", rec, err)
	}
	if got := gitShow(t, repo); !bytes.Equal(got, foreign.Note) {
		t.Fatalf("the foreign checkpoint was overwritten:\n%s", got)
	}
	hs := health.Health()
	if len(hs) != 2 || hs[0].OK || hs[0].NotContained || hs[0].LastError == "" || hs[0].FailingSince.IsZero() || !hs[1].OK || hs[1].LastSuccess.IsZero() {
		t.Fatalf("health: %+v", hs)
	}
	if len(observed) != 2 {
		t.Fatalf("observed %+v", observed)
	}
	detail, rerr := health.Readiness()
	if rerr != nil || !strings.Contains(detail, git.Name()+": degraded since") || !strings.Contains(detail, dir.Name()+": ok") {
		t.Fatalf("readiness: %q %v", detail, rerr)
	}

	// A retry records nothing twice; once the ref is cleaned up the sink
	// catches up and is healthy again.
	if again, err := c.Checkpoint(ctx); again == nil || err == nil {
		t.Fatalf("retry: %v", err)
	}
	if rec2, _ := st.LatestAuditCheckpoint(ctx); rec2.ID != rec.ID {
		t.Fatalf("the same tree was recorded again: %d then %d", rec.ID, rec2.ID)
	}
	if out, err := exec.Command("git", "-C", repo, "update-ref", "-d", DefaultGitRef).CombinedOutput(); err != nil {
		t.Fatalf("git update-ref: %v %s", err, out)
	}
	if _, err := c.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got := gitShow(t, repo); !bytes.Equal(got, cp.Note) {
		t.Fatalf("git ref after recovery:\n%s", got)
	}
	if hs := health.Health(); !hs[0].OK || hs[0].LastError != "" {
		t.Fatalf("health after recovery: %+v", hs[0])
	}
}

// TestCheckpointSinksIndependentOfABrokenDirectory: a checkpoint directory
// that is gone (a file stands in its place) keeps neither the database nor
// the git ref from the checkpoint.
func TestCheckpointSinksIndependentOfABrokenDirectory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	appendN(t, l, 12, 4)
	gone := filepath.Join(t.TempDir(), "checkpoints")
	if err := os.WriteFile(gone, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := gitInit(t)
	dir, git := DirSink{Dir: gone}, GitSink{Repo: repo}
	c, err := NewCheckpointer(CheckpointerOptions{Log: l, Sinks: []Sink{dir, git}})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Checkpoint(ctx)
	var se *SinkError
	if cp == nil || !errors.As(err, &se) || se.Sink != dir.Name() || errors.Is(err, ErrNotContained) {
		t.Fatalf("checkpoint %v, error %v; want the directory's error", cp, err)
	}
	if got := gitShow(t, repo); !bytes.Equal(got, cp.Note) {
		t.Fatalf("git ref:\n%s", got)
	}
	if rec, err := st.LatestAuditCheckpoint(ctx); err != nil || rec.Size != 12 {
		t.Fatalf("recorded: %+v %v", rec, err)
	}
	if hs := c.Health().Health(); hs[0].OK || !hs[1].OK {
		t.Fatalf("health: %+v", hs)
	}
}

// TestCheckpointSinkConflictIsAProofOnlyWhenSigned: a directory holding
// another checkpoint of the same size proves a fork when the log's key
// signed it, and is a mere refusal when another key did.
func TestCheckpointSinkConflictIsAProofOnlyWhenSigned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	appendN(t, l, 8, 8)
	origin, err := l.Origin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte{3}, HashSize)
	for _, tc := range []struct {
		name   string
		key    *SigningKey
		proves bool
	}{{"log key", l.Key(), true}, {"foreign key", newKey(t), false}} {
		d := DirSink{Dir: t.TempDir()}
		planted, err := SignCheckpoint(tc.key, origin, 8, other)
		if err != nil {
			t.Fatal(err)
		}
		// checkpoint.8 without latest: a publication cut short.
		if err := os.WriteFile(filepath.Join(d.Dir, "checkpoint.8"), planted.Note, 0o644); err != nil {
			t.Fatal(err)
		}
		c, _ := NewCheckpointer(CheckpointerOptions{Log: l, Sinks: []Sink{d}})
		cp, err := c.Checkpoint(ctx)
		if cp == nil || err == nil || errors.Is(err, ErrNotContained) != tc.proves || errors.Is(err, ErrFork) != tc.proves {
			t.Fatalf("%s: %v %v; proof %v wanted", tc.name, cp, err, tc.proves)
		}
		if got := mustRead(t, filepath.Join(d.Dir, "checkpoint.8")); !bytes.Equal(got, planted.Note) {
			t.Fatalf("%s: overwritten", tc.name)
		}
		if hs := c.Health().Health(); hs[0].NotContained != tc.proves {
			t.Fatalf("%s: health %+v", tc.name, hs[0])
		}
	}
	if _, err := st.LatestAuditCheckpoint(ctx); errors.Is(err, store.ErrNotFound) {
		t.Fatal("not recorded")
	}
}
