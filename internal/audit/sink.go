package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage"
)

// Sink is a place outside the database where checkpoints are published.
type Sink interface {
	// Name describes the sink in messages.
	Name() string
	// Latest returns the newest checkpoint note published, nil when none.
	Latest(ctx context.Context) ([]byte, error)
	// Publish stores a checkpoint.
	Publish(ctx context.Context, cp *Checkpoint) error
}

// DirSink keeps checkpoints in a directory: checkpoint.<size> for each
// (never replaced), and latest, a copy of the largest. Files are written
// atomically (temporary file, fsync, rename).
type DirSink struct {
	Dir string
}

// LatestFile is the name of DirSink's copy of the newest checkpoint.
const LatestFile = "latest"

// Name describes the sink.
func (d DirSink) Name() string { return "directory " + d.Dir }

// Latest returns the content of latest.
func (d DirSink) Latest(context.Context) ([]byte, error) {
	return readCheckpointFile(filepath.Join(d.Dir, LatestFile))
}

func readCheckpointFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxCheckpointSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxCheckpointSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxCheckpointSize)
	}
	return b, nil
}

// Publish writes checkpoint.<size> and, unless latest holds a larger
// checkpoint, latest. A different checkpoint of the same size already in
// the directory is refused with a *ConflictError.
func (d DirSink) Publish(_ context.Context, cp *Checkpoint) error {
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(d.Dir, "checkpoint."+strconv.FormatUint(cp.Size, 10))
	created, err := createExclusive(path, cp.Note, 0o644)
	if err != nil {
		return err
	}
	if !created {
		old, err := readCheckpointFile(path)
		if err != nil {
			return err
		}
		if !sameTree(old, cp) {
			return &ConflictError{Where: path, Size: cp.Size, Note: old}
		}
	}
	latest, err := d.Latest(context.Background())
	if err != nil {
		return err
	}
	if latest != nil {
		if size, err := noteSize(latest); err == nil && size > cp.Size {
			return nil
		}
	}
	return writeFileAtomic(filepath.Join(d.Dir, LatestFile), cp.Note, 0o644)
}

// noteSize reads the size line of a checkpoint note without verifying it.
func noteSize(b []byte) (uint64, error) {
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 3 {
		return 0, errors.New("not a checkpoint")
	}
	return strconv.ParseUint(lines[1], 10, 64)
}

// sameTree reports whether a checkpoint note has cp's body (the
// signatures may differ, e.g. after a key rotation).
func sameTree(note []byte, cp *Checkpoint) bool {
	body, _, _ := bytes.Cut(cp.Note, []byte("\n\n"))
	other, _, _ := bytes.Cut(note, []byte("\n\n"))
	return bytes.Equal(body, other)
}

// FileSink writes each checkpoint over one file, atomically.
type FileSink struct {
	Path string
}

// Name describes the sink.
func (f FileSink) Name() string { return "file " + f.Path }

// Latest returns the file's content.
func (f FileSink) Latest(context.Context) ([]byte, error) { return readCheckpointFile(f.Path) }

// Publish replaces the file.
func (f FileSink) Publish(_ context.Context, cp *Checkpoint) error {
	return writeFileAtomic(f.Path, cp.Note, 0o644)
}

// DefaultGitRef is where GitSink commits checkpoints.
const DefaultGitRef = "refs/writ/checkpoints"

// gitCheckpointFile is the file holding the checkpoint in each commit.
const gitCheckpointFile = "checkpoint"

// GitSink commits each checkpoint to a ref of a git repository (the content
// repository): the commit's tree holds one file, "checkpoint", and its
// parent is the previous checkpoint, so the ref's history is the history of
// checkpoints. No working tree or branch is touched.
type GitSink struct {
	// Repo is the repository's path (a working tree or a bare repository).
	Repo string
	// Ref is the ref to commit to. Default DefaultGitRef.
	Ref string
	// Author names the commits. Default "writ <writ@localhost>".
	Author object.Signature
}

// Name describes the sink.
func (g GitSink) Name() string { return "git " + g.Repo + " " + g.ref().String() }

func (g GitSink) ref() plumbing.ReferenceName {
	if g.Ref == "" {
		return DefaultGitRef
	}
	return plumbing.ReferenceName(g.Ref)
}

func (g GitSink) open() (*git.Repository, error) {
	// A linked worktree's refs live in the main repository's .git.
	r, err := git.PlainOpenWithOptions(g.Repo, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("open git repository %s: %w", g.Repo, err)
	}
	return r, nil
}

// latest returns the ref (nil when absent) and its checkpoint.
func (g GitSink) latest(r *git.Repository) (*plumbing.Reference, []byte, error) {
	ref, err := r.Reference(g.ref(), true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	c, err := r.CommitObject(ref.Hash())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", g.ref(), err)
	}
	f, err := c.File(gitCheckpointFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", g.ref(), err)
	}
	if f.Size > MaxCheckpointSize {
		return nil, nil, fmt.Errorf("%s: checkpoint of %d bytes", g.ref(), f.Size)
	}
	s, err := f.Contents()
	if err != nil {
		return nil, nil, err
	}
	return ref, []byte(s), nil
}

// Latest returns the checkpoint at the ref.
func (g GitSink) Latest(context.Context) ([]byte, error) {
	r, err := g.open()
	if err != nil {
		return nil, err
	}
	_, b, err := g.latest(r)
	return b, err
}

// Publish commits the checkpoint on the ref, unless the ref holds a larger
// one or the same tree already; another checkpoint of the same size is
// refused with a *ConflictError. A concurrent update of the ref is retried.
func (g GitSink) Publish(ctx context.Context, cp *Checkpoint) error {
	r, err := g.open()
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		old, prev, err := g.latest(r)
		if err != nil {
			return err
		}
		if prev != nil {
			size, err := noteSize(prev)
			switch {
			case err != nil:
				return fmt.Errorf("%s: %w", g.ref(), err)
			case size > cp.Size, size == cp.Size && sameTree(prev, cp):
				return nil
			case size == cp.Size:
				return &ConflictError{Where: g.ref().String(), Size: size, Note: prev}
			}
		}
		commit, err := g.commit(r, old, cp)
		if err != nil {
			return err
		}
		err = r.Storer.CheckAndSetReference(plumbing.NewHashReference(g.ref(), commit), old)
		if errors.Is(err, storage.ErrReferenceHasChanged) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("update %s: %w", g.ref(), err)
		}
		return nil
	}
}

func (g GitSink) commit(r *git.Repository, parent *plumbing.Reference, cp *Checkpoint) (plumbing.Hash, error) {
	blob := r.Storer.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, err := blob.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(cp.Note); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	blobHash, err := r.Storer.SetEncodedObject(blob)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write checkpoint blob: %w", err)
	}
	tree := &object.Tree{Entries: []object.TreeEntry{{Name: gitCheckpointFile, Mode: filemode.Regular, Hash: blobHash}}}
	treeObj := r.Storer.NewEncodedObject()
	if err := tree.Encode(treeObj); err != nil {
		return plumbing.ZeroHash, err
	}
	treeHash, err := r.Storer.SetEncodedObject(treeObj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write checkpoint tree: %w", err)
	}
	author := g.Author
	if author.Name == "" {
		author = object.Signature{Name: "writ", Email: "writ@localhost"}
	}
	author.When = time.Now()
	c := &object.Commit{
		Author:    author,
		Committer: author,
		Message:   fmt.Sprintf("audit checkpoint %d\n\n%s", cp.Size, cp.Note),
		TreeHash:  treeHash,
	}
	if parent != nil {
		c.ParentHashes = []plumbing.Hash{parent.Hash()}
	}
	commitObj := r.Storer.NewEncodedObject()
	if err := c.Encode(commitObj); err != nil {
		return plumbing.ZeroHash, err
	}
	h, err := r.Storer.SetEncodedObject(commitObj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write checkpoint commit: %w", err)
	}
	return h, nil
}
