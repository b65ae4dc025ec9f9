package console

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

// A download from /audit/export leaves an audit.export entry naming who,
// with the filters and the outcome; a refused export is recorded as failed.
func TestConsoleExportRecorded(t *testing.T) {
	t.Parallel()
	e := newPagesEnv(t, envOptions{recordAccess: true})
	e.appendEntries()
	exports := func() []audit.Entry {
		t.Helper()
		rows, err := e.st.AuditEntriesFiltered(e.ctx, store.AuditFilter{Event: string(audit.EventAuditExport)}, -1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var out []audit.Entry
		for _, r := range rows {
			d, err := audit.Decode(r.Entry)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}
	var p struct {
		Via     string            `json:"via"`
		Filter  map[string]string `json:"filter"`
		Entries int               `json:"entries"`
		Error   string            `json:"error"`
	}

	_, body := e.get("admin", "/audit/export")
	lines := strings.Count(body, "\n")
	es := exports()
	if len(es) != 1 {
		t.Fatalf("%d audit.export entries after one export; want 1", len(es))
	}
	if err := json.Unmarshal(es[0].Payload, &p); err != nil {
		t.Fatal(err)
	}
	if es[0].Actor.ID != "u-admin" || !es[0].Success || p.Via != "console" || p.Entries != lines-2 || p.Filter != nil {
		t.Fatalf("export of %d lines recorded as %+v %s", lines, es[0].Actor, es[0].Payload)
	}

	e.mustGet("admin", "/audit/export?actor=bob", 409) // filtered, no checkpoint yet
	es = exports()
	if len(es) != 2 {
		t.Fatalf("%d audit.export entries; want 2", len(es))
	}
	p.Filter, p.Error = nil, ""
	if err := json.Unmarshal(es[1].Payload, &p); err != nil {
		t.Fatal(err)
	}
	if es[1].Success || p.Error == "" || p.Filter["actor"] != "bob" {
		t.Fatalf("refused export recorded as %s", es[1].Payload)
	}
	e.mustGet("viewer", "/audit/export", 403) // not an export
	if n := len(exports()); n != 2 {
		t.Fatalf("%d audit.export entries after a forbidden request; want 2", n)
	}
}
