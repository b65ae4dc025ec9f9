package retention

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestRetentionKeepsWhatMatters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	k, _ := keys.Generate(keys.Ed25519)
	sk, _ := audit.NewSigningKey(k)
	log, err := audit.NewLog(audit.LogOptions{Store: st, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	version := func(name, status string, active bool) *store.PlaybookVersion {
		v, _, err := st.EnsurePlaybookVersion(ctx, store.PlaybookVersion{Name: name, Path: "playbooks/" + name + ".yaml",
			Digest: digest(name), Content: []byte(name), Action: "block_ip", Environment: "staging", Severity: "low"})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetPlaybookStatus(ctx, v.ID, status, "", ""); err != nil {
			t.Fatal(err)
		}
		if active {
			if err := st.SetActive(ctx, store.ActivePlaybook{Path: v.Path, Name: v.Name, VersionID: v.ID, SinceCommit: strings.Repeat("c", 40)}); err != nil {
				t.Fatal(err)
			}
		}
		return v
	}
	old := version("old-denied", store.StatusDenied, false)
	inForce := version("in-force", store.StatusCompleted, true)
	approval := func(name string) {
		now := time.Now()
		if _, _, err := st.InsertApproval(ctx, store.Approval{Envelope: []byte(name), EnvelopeSHA256: digest("env-" + name), StatementSHA256: digest("statement-" + name),
			Decision: "approve", Approver: "bob", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Source: "api",
			Subjects: []store.ApprovalSubject{{Digest: digest(name), Name: "playbooks/" + name + ".yaml"}}}); err != nil {
			t.Fatal(err)
		}
	}
	approval("stray")    // names a digest nothing ever used
	approval("in-force") // names a version whose apply completed
	if _, _, err := st.CreateExecution(ctx, store.Execution{VersionID: inForce.ID, Name: inForce.Name, Digest: inForce.Digest,
		Operation: "apply", Trigger: "merge", ChangeType: "create", State: store.ExecWaiting}); err != nil {
		t.Fatal(err)
	}

	// Nothing is old yet.
	j, _ := New(Options{Store: st, Audit: log})
	if r, err := j.RunOnce(ctx); err != nil || r != (Result{}) {
		t.Fatalf("fresh run: %+v %v", r, err)
	}
	// A hundred days later.
	j, _ = New(Options{Store: st, Audit: log, Now: func() time.Time { return time.Now().Add(100 * 24 * time.Hour) }})
	r, err := j.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.PlaybooksArchived != 1 || r.ApprovalsWithdrawn != 1 {
		t.Fatalf("run: %+v", r)
	}
	if v, _ := st.PlaybookVersionByID(ctx, old.ID); v.ArchivedAt == nil {
		t.Fatal("the old denied version was not archived")
	}
	if v, _ := st.PlaybookVersionByID(ctx, inForce.ID); v.ArchivedAt != nil {
		t.Fatal("a version in force was archived")
	}
	if got, _ := st.ApprovalsForDigest(ctx, digest("in-force")); len(got) != 1 {
		t.Fatal("an approval an operation used was withdrawn")
	}
	if got, _ := st.ApprovalsForDigest(ctx, digest("stray")); len(got) != 0 {
		t.Fatal("a stray approval was kept")
	}
	head, err := st.AuditHead(ctx)
	if err != nil || head.Size != 1 {
		t.Fatalf("audit head %+v %v; want one retention.run entry", head, err)
	}
}
