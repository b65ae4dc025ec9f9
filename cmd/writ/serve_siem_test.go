package main

import (
	"crypto/hmac"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/writ-sec/writ/internal/notify"
	"github.com/writ-sec/writ/internal/siem"
)

// writ serve streams its audit log to the SIEM webhook of audit.siem as it
// is written, signed and continuous; /readyz says how far it is.
func TestServeStreamsToSIEM(t *testing.T) {
	var mu sync.Mutex
	var got []siem.WebhookEntry
	var problems []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get("X-Writ-Timestamp"), 10, 64)
		mu.Lock()
		defer mu.Unlock()
		if !hmac.Equal([]byte(r.Header.Get("X-Writ-Signature-256")), []byte(notify.Sign("siem-secret", ts, body))) {
			problems = append(problems, "bad signature")
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var b siem.WebhookBatch
		if err := json.Unmarshal(body, &b); err != nil {
			problems = append(problems, err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range b.Entries {
			if n := int64(len(got)); e.Seq != n || (n > 0 && e.PrevHash != got[n-1].Hash) {
				problems = append(problems, fmt.Sprintf("entry %d after %d entries", e.Seq, n))
			}
			got = append(got, e)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca, secret, cfg := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "secret"), filepath.Join(dir, "writ.yaml")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("siem-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("apiVersion: writ/v1\nkind: ServerConfig\naudit:\n  siem:\n    - name: soc\n      webhook: {url: %q, secretFile: %q, caFile: %q}\n",
		srv.URL+"/intake", secret, ca)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newTrustRigWith(t, map[string][]string{"dave": {"admin"}}, "--config", cfg)
	var detail string
	r.waitFor("the log's entries at the SIEM and /readyz saying so", func() bool {
		code, body := getJSON(t, r.base+"/readyz")
		checks, _ := body["checks"].(map[string]any)
		c, _ := checks["audit siem"].(map[string]any)
		detail, _ = c["detail"].(string)
		mu.Lock()
		n := len(got)
		mu.Unlock()
		return code == 200 && c["ok"] == true && n > 0 && strings.Contains(detail, fmt.Sprintf("soc: acknowledged below seq %d, 0 behind", n))
	})
	mu.Lock()
	defer mu.Unlock()
	if len(problems) != 0 {
		t.Fatalf("the receiver found: %v", problems)
	}
	t.Logf("readyz: %s; %d entries, the first %s", detail, len(got), got[0].Event)
}
