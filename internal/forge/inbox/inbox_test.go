package inbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m)) }

func delivery(id, body string) store.Delivery {
	sum := sha256.Sum256([]byte(body))
	return store.Delivery{DeliveryID: id, Event: "merge_request", Payload: []byte(`{}`), BodySHA256: hex.EncodeToString(sum[:])}
}

// TestInbox: a delivery is stored for the inbox's forge and wakes the
// processor; a redelivery and a replay are not stored again; a failure is
// retried after a delay, a permanent one and the last attempt fail for
// good; each outcome is recorded and counted.
func TestInbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	now := time.Now()
	in, err := New(Options{Forge: "gitlab", Store: st, MaxAttempts: 2, RetryBase: time.Minute, RetryMax: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Forge: "Git Lab", Store: st}); err == nil {
		t.Fatal("a forge name with a space was accepted")
	}
	ids := map[string]int64{}
	for _, d := range []string{"ok", "flaky", "broken"} {
		id, created, err := in.Put(ctx, delivery(d, "body of "+d))
		if err != nil || !created {
			t.Fatalf("put %s: %v %v", d, created, err)
		}
		ids[d] = id
	}
	select {
	case <-in.Woken():
	default:
		t.Fatal("Put did not wake the processor")
	}
	if id, created, err := in.Put(ctx, delivery("ok", "body of ok")); err != nil || created || id != ids["ok"] {
		t.Fatalf("redelivery: %d %v %v", id, created, err)
	}
	if _, _, err := in.Put(ctx, delivery("new-id", "body of ok")); !errors.Is(err, store.ErrDeliveryReplayed) {
		t.Fatalf("replay: %v", err)
	}
	if d, err := st.DeliveryByGUID(ctx, "gitlab", "ok"); err != nil || d.Forge != "gitlab" {
		t.Fatalf("stored for its forge: %+v %v", d, err)
	}

	var seen []string
	handle := func(_ context.Context, d *store.Delivery) (string, error) {
		seen = append(seen, fmt.Sprintf("%s#%d", d.DeliveryID, d.Attempts))
		switch d.DeliveryID {
		case "flaky":
			return "", errors.New("the API answered 502")
		case "broken":
			return "", fmt.Errorf("%w: decode payload", ErrPermanent)
		}
		return "processed", nil
	}
	n, err := in.ProcessPending(ctx, handle)
	if err != nil || n != 1 || strings.Join(seen, " ") != "ok#1 flaky#1 broken#1" {
		t.Fatalf("first round: %d %v %v", n, err, seen)
	}
	if d, _ := st.DeliveryByGUID(ctx, "gitlab", "broken"); d.State != store.DeliveryFailed || !strings.Contains(d.LastError, "decode payload") {
		t.Fatalf("a permanent failure: %+v", d)
	}
	if d, _ := st.DeliveryByGUID(ctx, "gitlab", "flaky"); d.State != store.DeliveryQueued || d.LastError != "the API answered 502" {
		t.Fatalf("a failure to retry: %+v", d)
	}
	// Not due before its delay; then its last attempt fails for good.
	seen = nil
	if n, err := in.ProcessPending(ctx, handle); err != nil || n != 0 || len(seen) != 0 {
		t.Fatalf("before the retry delay: %d %v %v", n, err, seen)
	}
	now = now.Add(2 * time.Minute)
	if _, err := in.ProcessPending(ctx, handle); err != nil || strings.Join(seen, " ") != "flaky#2" {
		t.Fatalf("the retry: %v %v", err, seen)
	}
	if d, _ := st.DeliveryByGUID(ctx, "gitlab", "flaky"); d.State != store.DeliveryFailed {
		t.Fatalf("after the last attempt: %+v", d)
	}
	detail, err := in.Readiness(ctx)
	if err != nil || detail != "webhook deliveries: 0 queued, 1 done, 2 failed" {
		t.Fatalf("readiness: %q %v", detail, err)
	}
}
