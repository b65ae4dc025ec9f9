package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// writ drift shows the server's latest report (or asks for a check with
// --check) and exits 1 when there is drift.
func TestDriftCommand(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"checked_at":"2026-03-01T12:00:00Z","in_sync":false,"counts":{"missing":1,"unexpected":0,"changed":0},
"groups":[{"environment":"production","action":"block_ip","backend":"nftables:edge","mode":"heal","status":"drift",
"counts":{"missing":1,"unexpected":0,"changed":0},"findings":[{"target":"198.51.100.7","kind":"missing","playbook":"block-c2","detail":"not contained"}],
"findings_total":1,"heals":[{"incident":3,"execution":42,"playbook":"block-c2","targets":1,"state":"waiting"}]}]}`))
	}))
	t.Cleanup(srv.Close)
	code, out, errOut := runCLIInput(t, nil, "", "drift", "--server", srv.URL)
	if code != exitFailure || !strings.Contains(out, "production block_ip on nftables:edge (heal): drift, 1 missing") ||
		!strings.Contains(out, "198.51.100.7") || !strings.Contains(out, "writ approve op-42") {
		t.Fatalf("writ drift: %d\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := runCLIInput(t, nil, "", "drift", "--check", "--server", srv.URL); code != exitFailure {
		t.Fatalf("writ drift --check: %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(asked, ",") != "GET /api/v1/drift,POST /api/v1/drift/check" {
		t.Fatalf("asked %v", asked)
	}
}
