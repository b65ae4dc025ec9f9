package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

type boundedSummary struct {
	Individual int            `json:"audited_individually"`
	Counted    int            `json:"counted"`
	ByReason   map[string]int `json:"by_reason"`
	ByRemote   map[string]int `json:"by_remote"`
	Reasons    int            `json:"reasons"`
	Remotes    int            `json:"remotes"`
}

// A window writes Burst events one by one and counts the rest into one
// summary, with the busiest keys of each dimension; the next window starts
// afresh, and a window that ends while events come in is summed up before
// the next event is written.
func TestBoundedWindows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	// The clock moves only when the test says (Bounded reads it on this
	// goroutine only).
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	b, err := NewBounded(BoundedOptions{Log: l, Store: st, Burst: 3, Top: 5, Now: func() time.Time { return now },
		Summary: Entry{Actor: Actor{ID: "anonymous", Role: "none"}, Event: "test.refused_summary", Subject: Subject{Kind: "api", Name: "*"}}})
	if err != nil {
		t.Fatal(err)
	}
	event := func(i int) (Entry, map[string]string) {
		reason := "malformed"
		if i%4 == 0 {
			reason = "unknown_key"
		}
		remote := fmt.Sprintf("192.0.2.%d", i%8)
		return Entry{Actor: Actor{ID: "anonymous", Role: "none"}, Event: "test.refused", Subject: Subject{Kind: "api", Name: "x"},
			Payload: MustJSON(map[string]any{"n": i, "reason": reason})}, map[string]string{"reason": reason, "remote": remote}
	}
	written := 0
	for i := range 40 {
		e, by := event(i)
		if b.Record(ctx, e, by) {
			written++
		}
	}
	if written != 3 || countEvent(t, st, "test.refused") != 3 || countEvent(t, st, "test.refused_summary") != 0 {
		t.Fatalf("written %d, stored %d, summaries %d; want 3 written one by one, no summary before the window ends",
			written, countEvent(t, st, "test.refused"), countEvent(t, st, "test.refused_summary"))
	}
	b.Flush(ctx)
	sums := summaries(t, st, "test.refused_summary")
	if len(sums) != 1 {
		t.Fatalf("%d summaries; want 1", len(sums))
	}
	// Events 3..39: 9 of them have i%4 == 0 (4, 8, ..., 36).
	s := sums[0]
	if s.Individual != 3 || s.Counted != 37 || s.ByReason["unknown_key"] != 9 || s.ByReason["malformed"] != 28 || s.Reasons != 2 ||
		s.Remotes != 8 || len(s.ByRemote) != 5 {
		t.Fatalf("summary %+v", s)
	}
	// An empty window writes nothing; the next window has its own burst.
	b.Flush(ctx)
	for i := range 4 {
		e, by := event(i)
		b.Record(ctx, e, by)
	}
	if n := countEvent(t, st, "test.refused"); n != 6 {
		t.Fatalf("%d written one by one after the flush; want 6", n)
	}
	// The window runs out between two events: the first event after it
	// writes the summary of the window before, and is written itself.
	now = now.Add(time.Minute)
	e, by := event(100)
	if !b.Record(ctx, e, by) {
		t.Fatal("the first event of a new window was counted")
	}
	sums = summaries(t, st, "test.refused_summary")
	if len(sums) != 2 || sums[1].Counted != 1 || sums[1].Individual != 3 {
		t.Fatalf("summaries %+v; want a second one counting the one event over the burst", sums)
	}
	if n := countEvent(t, st, "test.refused"); n != 7 {
		t.Fatalf("%d written one by one; want 7", n)
	}
}

func TestBoundedOptions(t *testing.T) {
	t.Parallel()
	l, st := newLog(t)
	summary := Entry{Event: "test.summary"}
	for name, o := range map[string]BoundedOptions{
		"no log":           {Store: st, Summary: summary},
		"no store":         {Log: l, Summary: summary},
		"no summary":       {Log: l, Store: st},
		"negative burst":   {Log: l, Store: st, Summary: summary, Burst: -1},
		"window too short": {Log: l, Store: st, Summary: summary, Window: time.Millisecond},
	} {
		if _, err := NewBounded(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// countEvent counts the stored entries of an event.
func countEvent(t *testing.T, st *store.Store, event string) int {
	t.Helper()
	es, err := st.AuditEntries(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Event == event {
			n++
		}
	}
	return n
}

// summaries decodes the stored summaries of an event, oldest first.
func summaries(t *testing.T, st *store.Store, event string) []boundedSummary {
	t.Helper()
	es, err := st.AuditEntries(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []boundedSummary
	for _, e := range es {
		if e.Event != event {
			continue
		}
		d, err := Decode(e.Entry)
		if err != nil {
			t.Fatal(err)
		}
		var s boundedSummary
		if err := json.Unmarshal(d.Payload, &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}
