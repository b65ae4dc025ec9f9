package audit

// These tests run the reference tlog-witness (transparency-dev/witness's
// omniwitness at witnesstest.Version) on loopback.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/internal/witnesstest"
)

// witnessedLog is a log with n entries and what a witness needs to know
// of it.
type witnessedLog struct {
	l      *Log
	st     *store.Store
	url    string
	origin string
	vkey   string
}

func newWitnessedLog(t *testing.T, key *SigningKey, n int) *witnessedLog {
	t.Helper()
	u := dbtest.URL(t)
	st := openStore(t, u)
	l, err := NewLog(LogOptions{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		appendN(t, l, n, n)
	}
	return witnessedLogOf(t, l, st, u)
}

func witnessedLogOf(t *testing.T, l *Log, st *store.Store, u string) *witnessedLog {
	t.Helper()
	origin, err := l.Origin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pk, err := NewPublicKey(l.Key().Public())
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := VerifierKey(origin, pk)
	if err != nil {
		t.Fatal(err)
	}
	return &witnessedLog{l: l, st: st, url: u, origin: origin, vkey: vkey}
}

func (wl *witnessedLog) checkpoint(t *testing.T, recorded func(*Checkpoint)) *Checkpoint {
	t.Helper()
	c, err := NewCheckpointer(CheckpointerOptions{Log: wl.l, Recorded: recorded})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func newWitness(t *testing.T, name, url, vkey string) *Witness {
	t.Helper()
	w, err := NewWitness(name, url, vkey)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newWitnesser(t *testing.T, l *Log, ws ...*Witness) *Witnesser {
	t.Helper()
	wr, err := NewWitnesser(WitnesserOptions{Log: l, Witnesses: ws, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return wr
}

func round1(t *testing.T, wr *Witnesser) WitnessResult {
	t.Helper()
	rs := wr.Round(context.Background())
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	return rs[0]
}

// events returns the payloads of the log's entries of event ev.
func events(t *testing.T, st *store.Store, ev Event) []map[string]any {
	t.Helper()
	es, err := st.AuditEntriesFiltered(context.Background(), store.AuditFilter{Event: string(ev)}, -1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, e := range es {
		d, err := Decode(e.Entry)
		if err != nil {
			t.Fatal(err)
		}
		var p map[string]any
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestWitnessCosignsCheckpoints(t *testing.T) {
	ctx := context.Background()
	wl := newWitnessedLog(t, newKey(t), 10)
	ref := witnesstest.Start(t, "witness.test/a", witnesstest.Log{Origin: wl.origin, VKey: wl.vkey})
	w := newWitness(t, "a", ref.URL, ref.VKey)
	wr := newWitnesser(t, wl.l, w)

	cp1 := wl.checkpoint(t, nil)
	r := round1(t, wr)
	if r.Err != nil || !r.Sent || len(r.Cosignatures) != 1 {
		t.Fatalf("first checkpoint: %+v", r)
	}
	c := r.Cosignatures[0]
	if c.Size != cp1.Size || !bytes.Equal(c.Root, cp1.Root) || !strings.HasPrefix(c.Line, "— witness.test/a ") || time.Since(c.Time) > time.Hour {
		t.Fatalf("cosignature %+v", c)
	}
	stored, err := wl.st.AuditCosignatures(ctx, int64(cp1.Size), cp1.Root)
	if err != nil || len(stored) != 1 || stored[0].Signature != c.Line || stored[0].Witness != "a" || stored[0].WitnessKey != ref.VKey {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	// The note with the cosignature opens with the log's key and with the
	// witness's, each ignoring the other's line.
	cosigned := WithCosignatures(cp1.Note, c.Line)
	wv, err := ParseWitnessKey(ref.VKey)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := note.Open(cosigned, note.VerifierList(wv)); err != nil || len(n.Sigs) != 1 {
		t.Fatalf("witness key on the cosigned note: %v", err)
	}
	if _, err := ParseCheckpoint(cosigned, trustOnly(t, wl.l.Key())); err != nil {
		t.Fatalf("log key on the cosigned note: %v", err)
	}

	// Nothing new: nothing sent.
	if r := round1(t, wr); r.Sent || r.Err != nil {
		t.Fatalf("second round on the same checkpoint: %+v", r)
	}

	// The log grows: the next checkpoint goes with a consistency proof
	// from the size the witness cosigned.
	appendN(t, wl.l, 7, 7)
	cp2 := wl.checkpoint(t, nil)
	if r := round1(t, wr); r.Err != nil || !r.Sent || len(r.Cosignatures) != 1 || r.Cosignatures[0].Size != cp2.Size {
		t.Fatalf("second checkpoint: %+v", r)
	}
	h := wr.Health().Health()[0]
	if !h.OK || h.CosignedSize != cp2.Size || h.Refusal != "" {
		t.Fatalf("health %+v", h)
	}
	detail, err := wr.Health().Readiness()
	if err != nil || !strings.Contains(detail, "a: ok, cosigned size") {
		t.Fatalf("readiness %q, %v", detail, err)
	}
	// One event: the witness's first cosignature; later ones are rows.
	evs := events(t, wl.st, EventWitnessCosigned)
	if len(evs) != 1 || evs[0]["witness"] != "a" || evs[0]["size"] != float64(cp1.Size) || evs[0]["key"] != ref.VKey {
		t.Fatalf("cosigned events %v", evs)
	}

	// A restarted writ resumes from the database: the witness is sent a
	// proof from the size it cosigned (no 409 round trip needed), and the
	// same checkpoint is not sent again.
	wr2 := newWitnesser(t, wl.l, newWitness(t, "a", ref.URL, ref.VKey))
	if r := round1(t, wr2); r.Sent || r.Err != nil {
		t.Fatalf("restart on a cosigned checkpoint: %+v", r)
	}
	appendN(t, wl.l, 3, 3)
	cp3 := wl.checkpoint(t, nil)
	if r := round1(t, wr2); r.Err != nil || !r.Sent || r.Cosignatures[0].Size != cp3.Size {
		t.Fatalf("after restart: %+v", r)
	}

	// The export's checkpoint carries the cosignatures of its tree, and
	// the witness check finds them in it alone.
	var buf bytes.Buffer
	if _, err := Export(ctx, wl.st, &buf, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyExport(ctx, &buf, VerifyOptions{Trusted: trustOnly(t, wl.l.Key())})
	if err != nil || rep.Bad != nil {
		t.Fatalf("verify export: %v %v", err, rep.Bad)
	}
	checks, _, err := CheckWitnessCosignatures(ctx, nil, rep.Checkpoint, []string{ref.VKey, ref.VKeyEd25519})
	if err != nil || len(checks) != 2 || !checks[0].Cosigned || !checks[1].Cosigned || checks[0].Name != "witness.test/a" {
		t.Fatalf("export's checkpoint: %+v, %v", checks, err)
	}
	other := witnesstest.Start(t, "witness.test/other")
	checks, _, err = CheckWitnessCosignatures(ctx, wl.st, rep.Checkpoint, []string{other.VKey})
	if err != nil || checks[0].Cosigned || checks[0].NewestKnown {
		t.Fatalf("another witness's key: %+v, %v", checks, err)
	}
}

// A witness that knows more than the database (a writ whose cosignature
// rows are elsewhere, or a key given in another form) answers 409 with its
// size, and writ retries with a proof from there.
func TestWitnessConflictGivesSize(t *testing.T) {
	wl := newWitnessedLog(t, newKey(t), 12)
	ref := witnesstest.Start(t, "witness.test/b", witnesstest.Log{Origin: wl.origin, VKey: wl.vkey})
	wl.checkpoint(t, nil)
	if r := round1(t, newWitnesser(t, wl.l, newWitness(t, "b", ref.URL, ref.VKey))); r.Err != nil {
		t.Fatal(r.Err)
	}
	appendN(t, wl.l, 5, 5)
	cp := wl.checkpoint(t, nil)
	// The same witness under its plain Ed25519 key: no recorded row has
	// that key, so writ starts from 0.
	r := round1(t, newWitnesser(t, wl.l, newWitness(t, "b2", ref.URL, ref.VKeyEd25519)))
	if r.Err != nil || !r.Sent || r.Cosignatures[0].Size != cp.Size {
		t.Fatalf("after a 409: %+v", r)
	}
}

// A forked log — another database with the same origin and key, whose
// tree differs — is refused by the witness, and writ says so: health,
// readiness detail (never an error), ERROR log, and audit events.
func TestWitnessRefusesForkedLog(t *testing.T) {
	ctx := context.Background()
	key := newKey(t)
	a := newWitnessedLog(t, key, 10)
	ref := witnesstest.Start(t, "witness.test/c", witnesstest.Log{Origin: a.origin, VKey: a.vkey})
	a.checkpoint(t, nil)
	if r := round1(t, newWitnesser(t, a.l, newWitness(t, "c", ref.URL, ref.VKey))); r.Err != nil {
		t.Fatal(r.Err)
	}

	// The fork: a second database made to carry the first one's origin.
	b := newWitnessedLog(t, key, 0)
	newAttacker(t, b.url).exec(`UPDATE audit_log SET origin = $1`, a.origin)
	b.l.origin = "" // forget the cached origin
	b = witnessedLogOf(t, b.l, b.st, b.url)
	if b.origin != a.origin {
		t.Fatal("fork has another origin")
	}
	wr := newWitnesser(t, b.l, newWitness(t, "c", ref.URL, ref.VKey))

	// Smaller than what the witness cosigned: rolled back.
	appendN(t, b.l, 4, 4)
	small := b.checkpoint(t, nil)
	r := round1(t, wr)
	var we *WitnessError
	if !errors.As(r.Err, &we) || we.Refusal != RefusedRollback || we.KnownSize != 10 {
		t.Fatalf("smaller fork: %+v", r)
	}
	h := wr.Health().Health()[0]
	if h.OK || h.Refusal != RefusedRollback {
		t.Fatalf("health %+v", h)
	}
	if detail, err := wr.Health().Readiness(); err != nil || !strings.Contains(detail, "c: REFUSES (rolled_back)") {
		t.Fatalf("readiness %q, %v", detail, err)
	}

	// The same size as what the witness cosigned, another root.
	head, err := b.l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, b.l, int(10-head.Size), 10)
	same := b.checkpoint(t, nil)
	if same.Size != 10 {
		t.Fatalf("fork at size %d", same.Size)
	}
	r = round1(t, wr)
	if !errors.As(r.Err, &we) || we.Refusal != RefusedInconsistent || we.Status != http.StatusUnprocessableEntity {
		t.Fatalf("fork of the same size: %+v", r)
	}

	// Larger: the proof from the witness's size does not verify.
	appendN(t, b.l, 5, 5)
	b.checkpoint(t, nil)
	r = round1(t, wr)
	if !errors.As(r.Err, &we) || we.Refusal != RefusedInconsistent {
		t.Fatalf("larger fork: %+v", r)
	}

	// An event per change of refusal, not per refusal.
	evs := events(t, b.st, EventWitnessRefused)
	if len(evs) != 2 || evs[0]["reason"] != RefusedRollback || evs[0]["witness_size"] != float64(10) || evs[0]["size"] != float64(small.Size) ||
		evs[1]["reason"] != RefusedInconsistent || evs[1]["status"] != float64(422) {
		t.Fatalf("refused events %v", evs)
	}
	// Nothing of the fork was stored as cosigned.
	if cs, err := b.st.LatestAuditCosignatures(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("fork's cosignatures %v, %v", cs, err)
	}
	// The genuine log is still cosigned.
	appendN(t, a.l, 2, 2)
	a.checkpoint(t, nil)
	if r := round1(t, newWitnesser(t, a.l, newWitness(t, "c", ref.URL, ref.VKey))); r.Err != nil {
		t.Fatal(r.Err)
	}
}

// A witness that does not know the log (404) refuses it; one that knows
// another key for it fails; one that is unreachable is degraded, not
// refusing.
func TestWitnessRefusesUnknownLogOrKey(t *testing.T) {
	wl := newWitnessedLog(t, newKey(t), 3)
	wl.checkpoint(t, nil)
	stranger := witnesstest.Start(t, "witness.test/stranger")
	otherPub, err := NewPublicKey(newKey(t).Public())
	if err != nil {
		t.Fatal(err)
	}
	otherVKey, err := VerifierKey(wl.origin, otherPub)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := witnesstest.Start(t, "witness.test/wrong", witnesstest.Log{Origin: wl.origin, VKey: otherVKey})
	closed := closedURL(t)
	down := newWitness(t, "down", closed, stranger.VKey)
	wr := newWitnesser(t, wl.l, newWitness(t, "stranger", stranger.URL, stranger.VKey), newWitness(t, "wrong", wrongKey.URL, wrongKey.VKey), down)
	rs := wr.Round(context.Background())
	var we *WitnessError
	if !errors.As(rs[0].Err, &we) || we.Refusal != RefusedUnknownLog || we.Status != 404 {
		t.Errorf("unknown log: %+v", rs[0])
	}
	// tlog-witness says 403; the reference witness at witnesstest.Version
	// answers 500 (its signature error is not the one it maps to 403), so
	// writ sees a failing witness, retried, not a refusal.
	if !errors.As(rs[1].Err, &we) || (we.Refusal != RefusedSignature || we.Status != 403) && (we.Refusal != "" || we.Status != 500) {
		t.Errorf("wrong key: %+v", rs[1])
	}
	if !errors.As(rs[2].Err, &we) || we.Refusal != "" || we.Status != 0 {
		t.Errorf("unreachable: %+v", rs[2])
	}
	detail, err := wr.Health().Readiness()
	if err != nil || !strings.Contains(detail, "down: degraded since") || !strings.Contains(detail, "stranger: REFUSES (unknown_log)") {
		t.Errorf("readiness %q, %v", detail, err)
	}
	if evs := events(t, wl.st, EventWitnessRefused); len(evs) != 1 || evs[0]["witness"] != "stranger" {
		t.Errorf("refused events %v (an unreachable witness refuses nothing)", evs)
	}
}

// closedURL is an http URL on loopback where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The port stays bound for the whole test (closing it would let another
	// test's server take it and answer): every connection is accepted and
	// closed at once, so each request fails at the transport.
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return "http://" + l.Addr().String()
}

// Run sends each recorded checkpoint in the background, woken by the
// checkpointer; a failing witness is retried with backoff without holding
// up the others.
func TestWitnesserRunsInBackground(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wl := newWitnessedLog(t, newKey(t), 5)
	ref := witnesstest.Start(t, "witness.test/d", witnesstest.Log{Origin: wl.origin, VKey: wl.vkey})
	// The unreachable witness has a key of its own, as every witness does:
	// with d's key, the cosignatures d stored would read as its own, and
	// it could find every checkpoint cosigned before it ever sent one
	// (CI run 36).
	_, downVKey, err := note.GenerateKey(rand.Reader, "witness.test/down")
	if err != nil {
		t.Fatal(err)
	}
	wr, err := NewWitnesser(WitnesserOptions{Log: wl.l, Poll: time.Hour, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Witnesses: []*Witness{newWitness(t, "d", ref.URL, ref.VKey), newWitness(t, "down", closedURL(t), downVKey)}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- wr.Run(ctx) }()
	for i := range 3 {
		appendN(t, wl.l, 2, 2)
		cp := wl.checkpoint(t, wr.Notify)
		waitFor(t, fmt.Sprintf("the cosignature of checkpoint %d", i), func() bool {
			cs, err := wl.st.AuditCosignatures(ctx, int64(cp.Size), cp.Root)
			return err == nil && len(cs) == 1
		})
	}
	waitFor(t, "the unreachable witness to fail", func() bool {
		for _, h := range wr.Health().Health() {
			if h.Witness == "down" && h.Attempted && !h.OK && h.Refusal == "" {
				return true
			}
		}
		return false
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds (a generous bound, not a timing
// assertion: the test only fails when it never holds).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewWitnessRefusesBadConfig(t *testing.T) {
	_, ref, err := note.GenerateKey(rand.Reader, "witness.test/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewWitness("x", "https://w.example/prefix", ref); err != nil {
		t.Fatalf("a good witness refused: %v", err)
	}
	for _, tc := range []struct{ name, url, key string }{
		{"", "https://w.example", ref},
		{"x", "ftp://w.example", ref},
		{"x", "https://user:pw@w.example", ref},
		{"x", "https://w.example?q=1", ref},
		{"x", "https://w.example", "not a key"},
		{"x", "https://w.example", "witness.test/x+00000000+AQ=="},
	} {
		if _, err := NewWitness(tc.name, tc.url, tc.key); err == nil {
			t.Errorf("NewWitness(%q, %q, %q) accepted", tc.name, tc.url, tc.key)
		}
	}
}
