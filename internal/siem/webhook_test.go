package siem

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/writ-sec/writ/internal/notify"
	"github.com/writ-sec/writ/internal/store"
)

const secret = "siem-s3cret-value"

// siemReceiver is what a SIEM's webhook intake does: check the signature,
// continue its chain from the batch's first seq and previous hash,
// recompute every hash from the bytes, keep every copy.
type siemReceiver struct {
	t        testing.TB
	mu       sync.Mutex
	got      []WebhookEntry // every copy, in arrival order
	batches  []WebhookBatch
	next     int64  // next seq expected
	last     string // hash of next-1
	breaks   []string
	failures atomic.Int64 // answer 500 this many more times
	refused  atomic.Int64 // requests answered 500
	badSigs  atomic.Int64
}

func (rc *siemReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, _ := strconv.ParseInt(r.Header.Get("X-Writ-Timestamp"), 10, 64)
	if !hmac.Equal([]byte(r.Header.Get("X-Writ-Signature-256")), []byte(notify.Sign(secret, ts, body))) {
		rc.badSigs.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.failures.Load() > 0 {
		rc.failures.Add(-1)
		rc.refused.Add(1)
		http.Error(w, "index unavailable", http.StatusInternalServerError)
		return
	}
	var b WebhookBatch
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.Header.Get("X-Writ-First-Seq") != strconv.FormatInt(b.FirstSeq, 10) || len(b.Entries) == 0 ||
		b.Entries[0].Seq != b.FirstSeq || b.Entries[len(b.Entries)-1].Seq != b.LastSeq || b.PrevHash != b.Entries[0].PrevHash {
		http.Error(w, "inconsistent batch", http.StatusBadRequest)
		return
	}
	rc.batches = append(rc.batches, b)
	if b.FirstSeq < rc.next {
		// Sent again: from here the chain is checked anew.
		rc.next = b.FirstSeq
	}
	if b.FirstSeq != rc.next || (b.FirstSeq > 0 && b.PrevHash != rc.last) {
		rc.breaks = append(rc.breaks, fmt.Sprintf("batch from %d: expected seq %d after hash %.12s", b.FirstSeq, rc.next, rc.last))
	}
	for _, e := range b.Entries {
		prev, _ := hex.DecodeString(e.PrevHash)
		sum := sha256.Sum256(append(prev, e.Bytes...))
		if hex.EncodeToString(sum[:]) != e.Hash || (e.Entry != nil && !bytes.Equal(e.Entry, e.Bytes)) {
			rc.breaks = append(rc.breaks, fmt.Sprintf("entry %d: the hash is not SHA-256(prev || bytes)", e.Seq))
		}
		if e.Seq != rc.next || (e.Seq > 0 && e.PrevHash != rc.last) {
			rc.breaks = append(rc.breaks, fmt.Sprintf("entry %d does not continue %d/%.12s", e.Seq, rc.next, rc.last))
		}
		rc.got = append(rc.got, e)
		rc.next, rc.last = e.Seq+1, e.Hash
	}
}

func (rc *siemReceiver) state() (got []WebhookEntry, batches []WebhookBatch, breaks []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]WebhookEntry(nil), rc.got...), append([]WebhookBatch(nil), rc.batches...), append([]string(nil), rc.breaks...)
}

// webhookServer is an HTTPS receiver and the file of its CA.
func webhookServer(t testing.TB, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writePEM(t, ca, "CERTIFICATE", srv.Certificate().Raw)
	return srv, ca
}

func newWebhook(t testing.TB, name, url, ca string) *Webhook {
	t.Helper()
	w, err := NewWebhook(WebhookOptions{Name: name, URL: url, Secret: secret, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Batches arrive signed, in order, each continuing the chain of the one
// before; a receiver answering 500 holds the cursor where it is; a
// forwarder started again resumes from the cursor.
func TestWebhookBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc := &siemReceiver{t: t}
	srv, ca := webhookServer(t, rc)
	st, l := setup(t)
	appendEntries(t, l, 0, 120, 40)

	rc.failures.Store(1 << 30) // the SIEM is down
	f, err := New(Options{Store: st, Destination: newWebhook(t, "soc-hook", srv.URL+"/intake?token=abc", ca), Batch: 50,
		PollInterval: 10e6, RetryBase: 10e6, RetryMax: 50e6})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	eventually(t, "three refused requests", func() bool { return rc.refused.Load() >= 3 })
	if c, err := st.SIEMCursor(ctx, "soc-hook"); err != nil || c.Next != 0 || f.Status().Acked != 0 {
		t.Fatalf("cursor moved while the receiver answered 500: %+v %v", c, err)
	}
	if s := f.Status(); !strings.Contains(s.LastError, "HTTP 500") || strings.Contains(s.LastError, "token=abc") {
		t.Fatalf("last error %q", s.LastError)
	}
	rc.failures.Store(0) // back up
	eventually(t, "120 entries acknowledged", func() bool { return f.Status().Acked == 120 })
	got, batches, breaks := rc.state()
	if len(breaks) != 0 || rc.badSigs.Load() != 0 {
		t.Fatalf("breaks %v, %d bad signatures", breaks, rc.badSigs.Load())
	}
	if len(got) != 120 || len(batches) != 3 || batches[0].FirstSeq != 0 || batches[0].PrevHash != strings.Repeat("0", 64) ||
		batches[1].FirstSeq != 50 || batches[0].Destination != "soc-hook" {
		t.Fatalf("%d entries in %d batches: %+v", len(got), len(batches), batches)
	}
	stored, err := st.AuditEntries(ctx, 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		s := stored[i]
		if e.Seq != s.Seq || !bytes.Equal(e.Bytes, s.Entry) || !bytes.Equal(e.Entry, s.Entry) || e.KeyID != s.KeyID ||
			!bytes.Equal(e.Signature, s.Signature) || e.Event != s.Event {
			t.Fatalf("entry %d: %+v, stored %+v", i, e, s)
		}
	}

	// Restart: resumes at 120, nothing sent twice.
	stop()
	appendEntries(t, l, 120, 30, 30)
	f2, err := New(Options{Store: st, Destination: newWebhook(t, "soc-hook", srv.URL+"/intake", ca), PollInterval: 10e6})
	if err != nil {
		t.Fatal(err)
	}
	run(t, f2)
	eventually(t, "150 entries acknowledged", func() bool { return f2.Status().Acked == 150 })
	got, batches, breaks = rc.state()
	if len(got) != 150 || len(breaks) != 0 || batches[len(batches)-1].FirstSeq != 120 {
		t.Fatalf("after a restart: %d entries, breaks %v", len(got), breaks)
	}
}

// A log rewritten under the cursor (entries changed and chained again by
// someone with the database's keys to the kingdom) is sent again from its
// start: the SIEM receives the seqs it has with other hashes.
func TestRewrittenLogIsSentAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc := &siemReceiver{t: t}
	srv, ca := webhookServer(t, rc)
	st, l := setup(t)
	appendEntries(t, l, 0, 60, 60)
	f := newForwarder(t, st, newWebhook(t, "soc", srv.URL, ca))
	run(t, f)
	eventually(t, "60 entries", func() bool { return f.Status().Acked == 60 })

	rewrite(t, st, 55, func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"reason":"`), []byte(`"reason":"rewritten: `), 1)
	})
	eventually(t, "the rewritten log sent again", func() bool {
		got, _, _ := rc.state()
		return f.Status().Rewinds == 1 && len(got) == 120 && f.Status().Acked == 60
	})
	got, _, _ := rc.state()
	for i := range 60 {
		first, again := got[i], got[60+i]
		if first.Seq != again.Seq || (first.Hash == again.Hash) != (i < 55) {
			t.Fatalf("seq %d: first %.12s, again %.12s", first.Seq, first.Hash, again.Hash)
		}
	}
	if c, err := st.SIEMCursor(ctx, "soc"); err != nil || c.Next != 60 {
		t.Fatalf("cursor %+v %v", c, err)
	}
}

// rewrite changes the entries from seq on with change and chains them
// again, as a database superuser could (triggers off).
func rewrite(t testing.TB, st *store.Store, from int64, change func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	conn := ownerConn(t, st)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, `RESET session_replication_role`) //nolint:errcheck
	var prev []byte
	if err := conn.QueryRow(ctx, `SELECT hash FROM audit_entries WHERE seq = $1`, from-1).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT seq, entry FROM audit_entries WHERE seq >= $1 ORDER BY seq`, from)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		seq   int64
		entry []byte
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.seq, &x.entry)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		b := change(r.entry)
		sum := sha256.Sum256(append(append([]byte(nil), prev...), b...))
		if _, err := conn.Exec(ctx, `UPDATE audit_entries SET entry = $2, prev_hash = $3, hash = $4 WHERE seq = $1`, r.seq, b, prev, sum[:]); err != nil {
			t.Fatal(err)
		}
		prev = sum[:]
	}
}

func TestWebhookOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []WebhookOptions{
		{Name: "a", URL: "http://siem.example.com/x", Secret: "s"},
		{Name: "a", URL: "https://siem.example.com/x"},
		{Name: "", URL: "https://siem.example.com/x", Secret: "s"},
		{Name: "a", URL: "https://siem.example.com/x", Secret: "s", CAFile: "/nonexistent/ca.pem"},
	} {
		if _, err := NewWebhook(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// Two forwarders of one destination at once (a deposed leader that has
// not noticed yet, and the new one) lose nothing: the cursor moves only
// from where each saw it.
func TestTwoForwardersOneCursor(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[int64]int{}
	srv, ca := webhookServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b WebhookBatch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range b.Entries {
			seen[e.Seq]++
		}
	}))
	st, l := setup(t)
	var fs []*Forwarder
	for range 2 {
		f, err := New(Options{Store: st, Destination: newWebhook(t, "soc", srv.URL, ca), Batch: 7, PollInterval: 1e6, RetryBase: 1e6})
		if err != nil {
			t.Fatal(err)
		}
		run(t, f)
		fs = append(fs, f)
	}
	appendEntries(t, l, 0, 400, 20)
	eventually(t, "400 entries acknowledged", func() bool {
		c, err := st.SIEMCursor(context.Background(), "soc")
		return err == nil && c.Next == 400
	})
	mu.Lock()
	defer mu.Unlock()
	for s := range int64(400) {
		if seen[s] == 0 {
			t.Fatalf("seq %d never sent", s)
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("%d entries sent twice or more by the two forwarders", dups)
}

// A break inside the log (an entry whose prev_hash is not the hash before
// it), here at a batch's first entry, is forwarded once as it is: the log
// did not change under the cursor, so nothing is sent again.
func TestBrokenChainForwardedOnce(t *testing.T) {
	t.Parallel()
	rc := &siemReceiver{t: t}
	srv, ca := webhookServer(t, rc)
	st, l := setup(t)
	appendEntries(t, l, 0, 30, 30)
	conn := ownerConn(t, st)
	for _, q := range []string{`SET session_replication_role = replica`,
		`UPDATE audit_entries SET prev_hash = '\x` + strings.Repeat("11", 32) + `' WHERE seq = 10`, `RESET session_replication_role`} {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	f, err := New(Options{Store: st, Destination: newWebhook(t, "soc", srv.URL, ca), Batch: 10, PollInterval: 1e6, CheckInterval: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	eventually(t, "30 entries acknowledged", func() bool { return f.Status().Acked == 30 })
	got, _, breaks := rc.state()
	if len(got) != 30 || f.Status().Rewinds != 0 || len(breaks) != 3 || !strings.Contains(breaks[0], "batch from 10") {
		t.Fatalf("%d entries, %d rewinds, breaks %v", len(got), f.Status().Rewinds, breaks)
	}
}
