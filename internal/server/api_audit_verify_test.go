package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
)

func newAuditKey(t *testing.T) *audit.SigningKey {
	t.Helper()
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := audit.NewSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// verifyWith asks POST /api/v1/audit/verify of an API trusting the key
// signing now, as writ serve builds it.
func verifyWith(t *testing.T, api *API) VerifyReport {
	t.Helper()
	rec := httptest.NewRecorder()
	api.auditVerify(rec, httptest.NewRequest(http.MethodPost, "/api/v1/audit/verify", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("verify: %d %s", rec.Code, rec.Body)
	}
	var out VerifyReport
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAPIVerifyAfterKeyRotation: after writ audit rotate-key, the restarted
// server trusts the new key only; its verification follows the rotation
// back to the old key (whose entries the log starts with) and passes, as
// the CLI does.
func TestAPIVerifyAfterKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	old, next := newAuditKey(t), newAuditKey(t)
	l, err := audit.NewLog(audit.LogOptions{Store: st, Key: old})
	if err != nil {
		t.Fatal(err)
	}
	e := audit.Entry{Actor: audit.Actor{ID: "alice", Role: "admin"}, Event: "incident.note", Subject: audit.Subject{Kind: "incident", Name: "INC-1"}, Success: true}
	if _, err := l.Append(ctx, st, e, e); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RotateKey(ctx, audit.Actor{ID: "alice", Role: "admin"}, next); err != nil {
		t.Fatal(err)
	}
	// The restarted server signs with the new key.
	l2, err := audit.NewLog(audit.LogOptions{Store: st, Key: next})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Append(ctx, st, e); err != nil {
		t.Fatal(err)
	}
	pub, err := audit.NewPublicKey(next.Public())
	if err != nil {
		t.Fatal(err)
	}
	api, err := NewAPIWith(APIOptions{Store: st, TrustedKeys: audit.NewKeySet(pub)})
	if err != nil {
		t.Fatal(err)
	}
	rep := verifyWith(t, api)
	if !rep.OK || rep.Entries != 4 || len(rep.TrustedKeys) != 2 {
		t.Fatalf("verify after rotation: %+v %+v", rep, rep.Bad)
	}

	// A key that is not the log's still verifies nothing.
	stranger, err := audit.NewPublicKey(newAuditKey(t).Public())
	if err != nil {
		t.Fatal(err)
	}
	api, err = NewAPIWith(APIOptions{Store: st, TrustedKeys: audit.NewKeySet(stranger)})
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyWith(t, api); rep.OK || rep.Bad == nil || rep.Bad.Seq != 0 {
		t.Fatalf("a stranger's key: %+v", rep)
	}
}
