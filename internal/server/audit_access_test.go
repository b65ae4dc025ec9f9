package server

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/audit"
)

// Every export and verification through the API leaves one entry saying
// who did it, with what filters and how it went — failures too.
func TestAuditAccessRecorded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	admin := h.tokens["admin"]
	type access struct {
		Via      string          `json:"via"`
		Filter   map[string]any  `json:"filter"`
		Proofs   bool            `json:"proofs"`
		Entries  uint64          `json:"entries"`
		Error    string          `json:"error"`
		OK       *bool           `json:"ok"`
		BadSeq   *int64          `json:"bad_seq"`
		Given    int             `json:"checkpoints_given"`
		Checkpts json.RawMessage `json:"checkpoints"`
	}
	last := func(event audit.Event, want int) (audit.Entry, access) {
		t.Helper()
		es := h.auditEntries(event)
		if len(es) != want {
			t.Fatalf("%d %s entries; want %d", len(es), event, want)
		}
		e := es[len(es)-1]
		var a access
		if err := json.Unmarshal(e.Payload, &a); err != nil {
			t.Fatal(err)
		}
		if e.Actor.ID != "u-admin" || e.Subject.Kind != audit.SubjectAuditLog {
			t.Fatalf("%s entry by %+v on %+v; want u-admin on the audit log", event, e.Actor, e.Subject)
		}
		return e, a
	}

	// A filtered export with proofs, before any checkpoint: refused (409),
	// and recorded as failed.
	if resp, body := h.do("GET", "/api/v1/audit/export?event=user.created&proofs=true", admin, nil); resp.StatusCode != 409 {
		t.Fatalf("filtered export without a checkpoint: %d %s", resp.StatusCode, body)
	}
	e, a := last(audit.EventAuditExport, 1)
	if e.Success || a.Error == "" || a.Via != "api" || a.Filter["event"] != "user.created" || !a.Proofs {
		t.Fatalf("failed export recorded as %s", e.Payload)
	}
	// A bad request is not an export: nothing recorded.
	if resp, _ := h.do("GET", "/api/v1/audit/export?since=yesterday", admin, nil); resp.StatusCode != 400 {
		t.Fatalf("bad since: %d", resp.StatusCode)
	}
	resp, body := h.do("POST", "/api/v1/audit/checkpoints", admin, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("checkpoint %d %s", resp.StatusCode, body)
	}
	cp := decode[CheckpointView](t, body)
	resp, body = h.do("GET", "/api/v1/audit/export?actor=writ", admin, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("export %d %s", resp.StatusCode, body)
	}
	lines := strings.Count(string(body), `{"type":"entry",`) // the selected entries, not the left-out ones
	e, a = last(audit.EventAuditExport, 2)
	if !e.Success || a.Error != "" || a.Filter["actor"] != "writ" || a.Entries == 0 || int(a.Entries) != lines {
		t.Fatalf("export of %d entries recorded as %s", lines, e.Payload)
	}

	resp, body = h.do("POST", "/api/v1/audit/verify", admin, map[string]any{"checkpoints": []string{cp.Note}})
	if resp.StatusCode != 200 || !decode[VerifyReport](t, body).OK {
		t.Fatalf("verify %d %s", resp.StatusCode, body)
	}
	e, a = last(audit.EventAuditVerify, 1)
	if !e.Success || a.OK == nil || !*a.OK || a.Given != 1 || a.Entries == 0 || string(a.Checkpts) == "[]" {
		t.Fatalf("verification recorded as %s", e.Payload)
	}
	forged := strings.Replace(cp.Note, "\n"+strconv.FormatInt(cp.Size, 10)+"\n", "\n"+strconv.FormatInt(cp.Size+5000, 10)+"\n", 1)
	resp, body = h.do("POST", "/api/v1/audit/verify", admin, map[string]any{"checkpoints": []string{forged}})
	if resp.StatusCode != 200 || decode[VerifyReport](t, body).OK {
		t.Fatalf("verify with a checkpoint the log does not contain: %d %s", resp.StatusCode, body)
	}
	e, a = last(audit.EventAuditVerify, 2)
	if e.Success || a.OK == nil || *a.OK {
		t.Fatalf("failed verification recorded as %s", e.Payload)
	}
	// Not recorded: a request refused before verifying.
	if resp, _ := h.do("POST", "/api/v1/audit/verify", admin, map[string]any{"checkpoints": []string{"not a checkpoint"}}); resp.StatusCode != 400 {
		t.Fatalf("bogus checkpoint: %d", resp.StatusCode)
	}
	last(audit.EventAuditVerify, 2)
	last(audit.EventAuditExport, 2)
}
