package main

// These tests run the reference tlog-witness (transparency-dev/witness's
// omniwitness at witnesstest.Version) on loopback.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/gitsrc/gittest"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/internal/witnesstest"
)

// witnessRound sends the log's latest checkpoint to the witnesses and
// fails the test unless each cosigned it.
func witnessRound(t *testing.T, a *auditCLI, key *audit.SigningKey, ws ...*witnesstest.Witness) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{URL: a.db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := audit.NewLog(audit.LogOptions{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var wts []*audit.Witness
	for _, w := range ws {
		wt, err := audit.NewWitness(w.Name, w.URL, w.VKey)
		if err != nil {
			t.Fatal(err)
		}
		wts = append(wts, wt)
	}
	wr, err := audit.NewWitnesser(audit.WitnesserOptions{Log: l, Witnesses: wts})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range wr.Round(context.Background()) {
		if r.Err != nil || !r.Sent {
			t.Fatalf("witness %s: %+v", r.Witness, r)
		}
	}
}

// TestAuditVerifyWitness: writ audit verify --witness passes with the
// witnesses' cosignatures of the latest checkpoint, offline from an export
// too, and fails without them, for another witness's key, below the
// quorum, and while the latest checkpoint is not cosigned yet.
func TestAuditVerifyWitness(t *testing.T) {
	t.Parallel()
	a := newAuditCLI(t)
	key, _, err := audit.EnsureKey(a.dataDir) // as writ serve does
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		a.ok("audit", "append", "--event", "incident.note", "--subject", fmt.Sprintf("INC-%d", i))
	}
	a.ok("audit", "checkpoint", "--out", filepath.Join(t.TempDir(), "cp"))
	// The witnesses know the log by what writ audit vkey prints.
	vkey := strings.TrimSpace(a.ok("audit", "vkey"))
	origin, _, _ := strings.Cut(vkey, "+")
	log := witnesstest.Log{Origin: origin, VKey: vkey}
	w1 := witnesstest.Start(t, "witness.test/one", log)
	w2 := witnesstest.Start(t, "witness.test/two", log)
	stranger := witnesstest.Start(t, "witness.test/stranger")
	witnessRound(t, a, key, w1)

	out := a.ok("audit", "verify", "--witness", w1.VKey)
	if !strings.Contains(out, "witness witness.test/one: cosigned checkpoint 3 at ") || !okLine.MatchString(lastLine(out)) {
		t.Fatalf("verify --witness:\n%s", out)
	}
	// The plain Ed25519 form of the witness's key verifies it too.
	a.ok("audit", "verify", "--witness", w1.VKeyEd25519)

	keys := filepath.Join(t.TempDir(), "witnesses.vkey")
	if err := os.WriteFile(keys, []byte("# our witnesses\n"+w1.VKey+"\n\n"+w2.VKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fails := func(want string, args ...string) {
		t.Helper()
		code, out, errOut := a.run(append([]string{"audit", "verify"}, args...)...)
		if code != exitFailure || !strings.Contains(out, want) || strings.Contains(out, "OK:") {
			t.Fatalf("verify %s: exit %d, want %q\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
	}
	fails("FAIL: checkpoint 3 is cosigned by 1 of the 2 witnesses given; 2 required", "--witness", "@"+keys)
	out = a.ok("audit", "verify", "--witness", "@"+keys, "--witness-quorum", "1")
	if !strings.Contains(out, "witness witness.test/two: has not cosigned checkpoint 3, nor any recorded") {
		t.Fatalf("quorum 1:\n%s", out)
	}
	fails("FAIL: checkpoint 3 is cosigned by 0 of the 1 witnesses given; 1 required", "--witness", stranger.VKey)

	// Both cosign; an export carries their cosignatures and verifies
	// offline.
	witnessRound(t, a, key, w2)
	a.ok("audit", "verify", "--witness", "@"+keys)
	export := filepath.Join(t.TempDir(), "audit.ndjson")
	a.ok("audit", "export", "--out", export)
	out = a.ok("audit", "verify", "--export", export, "--witness", "@"+keys)
	if !strings.Contains(out, "witness witness.test/two: cosigned checkpoint 3 at ") {
		t.Fatalf("export:\n%s", out)
	}
	fails("FAIL: checkpoint 3 is cosigned by 0 of the 1 witnesses given", "--export", export, "--witness", stranger.VKey)

	// A new checkpoint the witnesses have not cosigned yet fails until
	// they do.
	a.ok("audit", "append", "--event", "incident.note", "--subject", "INC-9")
	a.ok("audit", "checkpoint", "--out", filepath.Join(t.TempDir(), "cp"))
	fails("; the newest it cosigned is of size 3", "--witness", w1.VKey)
	witnessRound(t, a, key, w1)
	a.ok("audit", "verify", "--witness", w1.VKey)

	// Usage errors.
	for _, args := range [][]string{
		{"--witness", "not-a-key"},
		{"--witness", "@" + filepath.Join(t.TempDir(), "missing")},
		{"--witness", w1.VKey, "--witness-quorum", "2"},
		// The same key twice is one witness: it cannot make a quorum of 2.
		{"--witness", w1.VKey, "--witness", w1.VKey, "--witness-quorum", "2"},
		{"--witness-quorum", "1"},
	} {
		if code, out, errOut := a.run(append([]string{"audit", "verify"}, args...)...); code != exitUsage {
			t.Errorf("verify %q: exit %d, want %d\n%s%s", args, code, exitUsage, out, errOut)
		}
	}
}

func lastLine(out string) string {
	out = strings.TrimSuffix(out, "\n")
	return out[strings.LastIndex(out, "\n")+1:] + "\n"
}

// TestServeWitnesses: writ serve sends its checkpoints to the configured
// witness in the background and stores the cosignatures; /readyz shows the
// witness ok, and an unreachable one degraded while the server stays
// ready.
func TestServeWitnesses(t *testing.T) {
	dbURL := dbtest.URL(t)
	st, err := store.Open(context.Background(), store.Options{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	origin, err := st.AuditOrigin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(traversableTempDir(t), "state")
	key, _, err := audit.EnsureKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := audit.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := audit.VerifierKey(origin, pk)
	if err != nil {
		t.Fatal(err)
	}
	w := witnesstest.Start(t, "witness.test/serve", witnesstest.Log{Origin: origin, VKey: vkey})
	cfg := filepath.Join(t.TempDir(), "writ.yaml")
	body := fmt.Sprintf("apiVersion: writ/v1\nkind: ServerConfig\naudit:\n  checkpointInterval: 1s\n  witnesses:\n"+
		"    - {name: ref, url: %q, key: %q}\n    - {name: down, url: \"http://127.0.0.1:9\", key: %q}\n", w.URL, w.VKey, w.VKey)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := gittest.New(t, map[string]string{"README.md": "witnessed\n"})
	base, stop := startServe(t, "--repo", repo.Bare, "--database", dbURL, "--data-dir", dataDir, "--poll-interval", "50ms", "--config", cfg)
	defer stop()

	var detail string
	what := "a cosignature stored and the witness ok in /readyz"
	for t0 := time.Now(); !func() bool {
		code, rep := getJSON(t, base+"/readyz")
		checks, _ := rep["checks"].(map[string]any)
		c, _ := checks["audit witnesses"].(map[string]any)
		detail, _ = c["detail"].(string)
		cs, err := st.LatestAuditCosignatures(context.Background())
		return code == 200 && c["ok"] == true && err == nil && len(cs) == 1 && cs[0].Witness == "ref" &&
			strings.Contains(detail, "ref: ok, cosigned size") && strings.Contains(detail, "down: degraded since")
	}(); time.Sleep(20 * time.Millisecond) {
		if time.Since(t0) > 3*time.Minute {
			t.Fatalf("%s did not happen within 3m; readiness: %s", what, detail)
		}
	}
}
