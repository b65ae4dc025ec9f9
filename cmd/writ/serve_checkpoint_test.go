package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/keys"
)

// writ serve publishes its periodic checkpoints to the data directory
// although the repository's checkpoint ref holds one signed by another
// key; /readyz shows the ref degraded while staying ready. (The metrics,
// fed by the same monitor, need a token: TestMakeCheckpointWithAFailingSink
// in internal/server reads them.)
func TestServeCheckpointSinksIndependent(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "writ.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: writ/v1\nkind: ServerConfig\naudit:\n  checkpointInterval: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newTrustRigWith(t, map[string][]string{"dave": {"admin"}}, "--config", cfg)
	k, _ := keys.Generate(keys.Ed25519)
	other, err := audit.NewSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := audit.SignCheckpoint(other, "writ-audit/elsewhere", 1, bytes.Repeat([]byte{9}, audit.HashSize))
	if err != nil {
		t.Fatal(err)
	}
	git := audit.GitSink{Repo: r.repo.Bare}
	if err := git.Publish(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	dir := audit.DirSink{Dir: filepath.Join(r.dataDir, "audit", "checkpoints")}
	var detail string
	r.waitFor("a checkpoint in the data directory with the git ref degraded", func() bool {
		code, body := getJSON(t, r.base+"/readyz")
		checks, _ := body["checks"].(map[string]any)
		c, _ := checks["audit checkpoint sinks"].(map[string]any)
		detail, _ = c["detail"].(string)
		latest, _ := os.ReadFile(filepath.Join(dir.Dir, audit.LatestFile))
		return code == 200 && len(latest) > 0 && c["ok"] == true && strings.Contains(detail, git.Name()+": degraded since") &&
			strings.Contains(detail, dir.Name()+": ok")
	})
	if got, err := git.Latest(context.Background()); err != nil || !bytes.Equal(got, foreign.Note) {
		t.Fatalf("the foreign checkpoint was overwritten: %v\n%s", err, got)
	}
}
