package audit

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// logRows are every stored entry, decoded.
func logRows(t *testing.T, st *store.Store) []Entry {
	t.Helper()
	rows, err := st.AuditEntries(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Entry, len(rows))
	for i, r := range rows {
		if out[i], err = Decode(r.Entry); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func externalEntry(note string) Entry {
	return Entry{Actor: Actor{ID: "alice", Role: "admin"}, Event: "incident.note", Subject: Subject{Kind: "external", Name: "INC-4211"},
		Success: true, Payload: MustJSON(map[string]string{"note": note})}
}

// TestAppendIdempotent: a retry with the key answers the first append's
// receipt and records nothing; the key with another entry is refused; a
// new key appends.
func TestAppendIdempotent(t *testing.T) {
	l, st := newLog(t)
	ctx := context.Background()
	appendN(t, l, 3, 3)

	first, replayed, err := l.AppendIdempotent(ctx, st, "inc-4211-1", externalEntry("blocked by hand"))
	if err != nil || replayed {
		t.Fatalf("first append: replayed %v, %v", replayed, err)
	}
	if first.Seq != 3 {
		t.Fatalf("first append at seq %d; want 3", first.Seq)
	}
	// The retry: same entry (its payload spelled differently, canonically the same).
	again := externalEntry("blocked by hand")
	again.Payload = json.RawMessage(`{ "note" : "blocked by hand" }`)
	rec, replayed, err := l.AppendIdempotent(ctx, st, "inc-4211-1", again)
	if err != nil || !replayed {
		t.Fatalf("retry: replayed %v, %v", replayed, err)
	}
	if rec != first {
		t.Fatalf("retry answered %+v; want the first receipt %+v", rec, first)
	}
	if n := len(logRows(t, st)); n != 4 {
		t.Fatalf("the log has %d entries after a retry; want 4 (no duplicate)", n)
	}

	for name, e := range map[string]Entry{
		"payload": externalEntry("blocked twice"),
		"actor":   func() Entry { e := externalEntry("blocked by hand"); e.Actor.ID = "mallory"; return e }(),
		"success": func() Entry { e := externalEntry("blocked by hand"); e.Success = false; return e }(),
		"event":   func() Entry { e := externalEntry("blocked by hand"); e.Event = "incident.other"; return e }(),
	} {
		_, _, err := l.AppendIdempotent(ctx, st, "inc-4211-1", e)
		if !errors.Is(err, ErrIdempotencyConflict) {
			t.Fatalf("same key, other %s: %v; want ErrIdempotencyConflict", name, err)
		}
		if !strings.Contains(err.Error(), "seq 3") || !strings.Contains(err.Error(), name) {
			t.Errorf("same key, other %s: %q does not name seq 3 and what differs", name, err)
		}
	}
	second, replayed, err := l.AppendIdempotent(ctx, st, "inc-4211-2", externalEntry("blocked twice"))
	if err != nil || replayed || second.Seq != 4 {
		t.Fatalf("new key: %+v, replayed %v, %v; want seq 4", second, replayed, err)
	}
	for _, bad := range []string{"", "with space", strings.Repeat("k", MaxIdempotencyKey+1), "é"} {
		if _, _, err := l.AppendIdempotent(ctx, st, bad, externalEntry("x")); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
	if _, _, err := l.AppendIdempotent(ctx, st, "k", Entry{Actor: SystemActor, Event: EventAuditExport, Subject: Subject{Kind: "x"}}); !errors.Is(err, ErrReservedEvent) {
		t.Errorf("reserved event with a key: %v", err)
	}
	if n := len(logRows(t, st)); n != 5 {
		t.Fatalf("the log has %d entries; want 5", n)
	}
	if rep := verifyDB(t, st, trustOnly(t, l.Key())); rep.Bad != nil {
		t.Fatal(rep.Bad)
	}
}

// TestAppendIdempotentConcurrent: retries racing with the first append
// still record one entry, and all get its receipt.
func TestAppendIdempotentConcurrent(t *testing.T) {
	l, st := newLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 8
	recs := make([]Receipt, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			recs[i], _, errs[i] = l.AppendIdempotent(ctx, st, "same-key", externalEntry("once"))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
		if recs[i] != recs[0] {
			t.Fatalf("append %d answered %+v, append 0 %+v", i, recs[i], recs[0])
		}
	}
	if got := len(logRows(t, st)); got != 1 {
		t.Fatalf("%d entries for one key; want 1", got)
	}
}

// TestRecordAccess: exports and verifications are recorded in the log's
// own namespace, failures too, and the log still verifies.
func TestRecordAccess(t *testing.T) {
	l, st := newLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	appendN(t, l, 5, 5)
	bob := Actor{ID: "bob", Role: "auditor"}
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := l.RecordExport(ctx, bob, "api", ExportOptions{Since: since, Actor: "alice", Proofs: true},
		ExportSummary{Entries: 2, Omitted: 3, Size: 5, Complete: true, Disagree: []uint64{4}}, nil); err != nil {
		t.Fatal(err)
	}
	rep := verifyDB(t, st, trustOnly(t, l.Key()))
	if _, err := l.RecordVerify(ctx, bob, 1, rep, nil); err != nil {
		t.Fatal(err)
	}
	// A client gone before the record is written (a cancelled request):
	// still recorded.
	cancel()
	if _, err := l.RecordExport(ctx, bob, "console", ExportOptions{}, ExportSummary{}, errors.New("no checkpoint")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordVerify(ctx, bob, 0, &Report{Entries: 9, Bad: &Finding{Seq: 4, Reason: "altered"}}, nil); err != nil {
		t.Fatal(err)
	}
	es := logRows(t, st)[5:]
	if len(es) != 4 {
		t.Fatalf("%d access entries; want 4", len(es))
	}
	type want struct {
		event   Event
		success bool
		payload string
	}
	for i, w := range []want{
		{EventAuditExport, true, `{"columns_disagree":[4],"complete":true,"entries":2,"filter":{"actor":"alice","since":"2026-01-02T03:04:05Z"},"format":"ndjson","omitted":3,"proofs":true,"size":5,"via":"api"}`},
		{EventAuditVerify, true, `{"checkpoints":[],"checkpoints_given":1,"entries":6,"ok":true,"signatures":6,"size":6}`},
		{EventAuditExport, false, `{"complete":false,"entries":0,"error":"no checkpoint","format":"ndjson","proofs":false,"size":0,"via":"console"}`},
		{EventAuditVerify, false, `{"bad_reason":"altered","bad_seq":4,"checkpoints":[],"checkpoints_given":0,"entries":9,"ok":false,"signatures":0,"size":0}`},
	} {
		e := es[i]
		if e.Event != w.event || e.Success != w.success || e.Actor != bob || string(e.Payload) != w.payload || e.Subject.Kind != SubjectAuditLog {
			t.Errorf("entry %d = %s %v %v %s %s;\nwant %s %v %s", i, e.Event, e.Success, e.Actor, e.Subject.Kind, e.Payload, w.event, w.success, w.payload)
		}
	}
	if rep := verifyDB(t, st, trustOnly(t, l.Key())); rep.Bad != nil || rep.Entries != 9 {
		t.Fatalf("after the access records: %+v", rep)
	}
}
