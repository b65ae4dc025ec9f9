package webhook_test

import (
	"context"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/webhook/webhooktest"
)

// The receiver's status endpoint is the webhook backend's live state: a
// host released behind writ's back (un-isolated in the EDR) is missing,
// one the receiver no longer knows is changed; checking changes nothing.
func TestDriftThroughTheStatusEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := webhooktest.New(t)
	b := r.Backend("webhook:edr")
	req := action.Request{Playbook: "isolate-fin-ws", Digest: strings.Repeat("c", 64), Action: "isolate_host", Environment: "production",
		Operation: action.Apply, Targets: []string{"fin-ws-12", "fin-ws-13", "fin-ws-14"}, Params: map[string]any{"mode": "full"},
		IdempotencyKey: "writ:isolate-fin-ws:cccc:apply"}
	if _, err := b.Apply(ctx, req); err != nil {
		t.Fatal(err)
	}
	if fs, err := action.CheckDrift(ctx, b, []action.Request{req}, nil); err != nil || len(fs) != 0 {
		t.Fatalf("drift before any change: %+v %v", fs, err)
	}
	r.Release("fin-ws-12")
	r.Forget("fin-ws-14")
	fs, err := action.CheckDrift(ctx, b, []action.Request{req}, nil)
	if err != nil || len(fs) != 2 {
		t.Fatalf("drift: %+v %v", fs, err)
	}
	if fs[0].Kind != action.DriftChanged || fs[0].Target != "fin-ws-14" || !strings.Contains(fs[0].Detail, "not_found") ||
		fs[1].Kind != action.DriftMissing || fs[1].Target != "fin-ws-12" || fs[1].Playbook != "isolate-fin-ws" || !strings.Contains(fs[1].Detail, "would_isolate") {
		t.Fatalf("findings: %+v", fs)
	}
	// Checking sends no apply: the receiver got the one apply only.
	if sent := r.Sent(); len(sent) != 1 {
		t.Fatalf("requests sent: %+v", sent)
	}
}
