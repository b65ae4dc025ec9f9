package notify

import (
	"slices"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/audit"
)

// Drift notifies by default, and the message says what drifted and what
// to do next: sign the heal where approvals are required.
func TestDriftMessages(t *testing.T) {
	driftText := func(e audit.Entry) string {
		d := Describe(e, "", func(s string) string { return s })
		return d.Summary + ". " + d.Next
	}
	for _, e := range []audit.Event{audit.EventDriftDetected, audit.EventDriftResolved} {
		if !slices.Contains(DefaultEvents, string(e)) {
			t.Errorf("%s is not notified by default", e)
		}
	}
	detected := driftText(audit.Entry{Event: audit.EventDriftDetected, Payload: audit.MustJSON(map[string]any{
		"environment": "production", "action": "block_ip", "backend": "nftables:edge", "mode": "heal",
		"missing": []string{"198.51.100.7"}, "unexpected": []string{"192.0.2.50"}, "changed": []string{},
		"counts": map[string]int{"missing": 1, "unexpected": 1},
		"heal":   []map[string]any{{"incident": 3, "execution": 42, "playbook": "block-c2"}},
	})})
	for _, want := range []string{"Drift on block_ip in production (nftables:edge)", "1 missing (198.51.100.7)", "1 unexpected (192.0.2.50)", "`writ approve op-42` (block-c2, incident 3)"} {
		if !strings.Contains(detected, want) {
			t.Errorf("drift.detected message lacks %q: %s", want, detected)
		}
	}
	report := driftText(audit.Entry{Event: audit.EventDriftDetected, Payload: audit.MustJSON(map[string]any{
		"environment": "staging", "action": "block_ip", "backend": "blocklist:staging", "mode": "report",
		"missing": []string{"203.0.113.10"}, "counts": map[string]int{"missing": 1},
	})})
	if !strings.Contains(report, "changes nothing (drift: report)") {
		t.Errorf("report-mode message: %s", report)
	}
	resolved := driftText(audit.Entry{Event: audit.EventDriftResolved, Payload: audit.MustJSON(map[string]any{
		"environment": "production", "action": "block_ip", "backend": "nftables:edge", "since": "2026-03-01T11:55:00Z"})})
	if !strings.Contains(resolved, "matches the playbooks in force again (drifted since 2026-03-01T11:55:00Z)") {
		t.Errorf("drift.resolved message: %s", resolved)
	}
}
