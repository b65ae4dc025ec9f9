package store_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// A SIEM cursor starts at the log's start, moves only from where its
// mover saw it, and keeps the hash of the entry before it.
func TestSIEMCursor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	c, err := st.SIEMCursor(ctx, "soc")
	if err != nil || c.Next != 0 || c.LastHash != nil || c.Destination != "soc" {
		t.Fatalf("new cursor %+v %v", c, err)
	}
	again, err := st.SIEMCursor(ctx, "soc")
	if err != nil || !again.Same(c) {
		t.Fatalf("read again %+v %v", again, err)
	}
	h := bytes.Repeat([]byte{7}, 32)
	to := store.SIEMCursor{Destination: "soc", Next: 10, LastHash: h}
	if ok, err := st.MoveSIEMCursor(ctx, c, to); err != nil || !ok {
		t.Fatalf("move: %v %v", ok, err)
	}
	// A second mover that saw the old position moves nothing.
	if ok, err := st.MoveSIEMCursor(ctx, c, store.SIEMCursor{Destination: "soc", Next: 5, LastHash: h}); err != nil || ok {
		t.Fatalf("stale move: %v %v", ok, err)
	}
	got, err := st.SIEMCursor(ctx, "soc")
	if err != nil || !got.Same(to) {
		t.Fatalf("cursor %+v %v", got, err)
	}
	// Back to the start (a rewritten log), and per destination.
	if ok, err := st.MoveSIEMCursor(ctx, to, store.SIEMCursor{Destination: "soc"}); err != nil || !ok {
		t.Fatalf("rewind: %v %v", ok, err)
	}
	if other, err := st.SIEMCursor(ctx, "other"); err != nil || other.Next != 0 {
		t.Fatalf("other %+v %v", other, err)
	}
	// A position past 0 without the hash before it is refused.
	if _, err := st.MoveSIEMCursor(ctx, store.SIEMCursor{Destination: "soc"}, store.SIEMCursor{Destination: "soc", Next: 3}); err == nil {
		t.Fatal("a cursor without its hash was stored")
	}
	if _, err := st.SIEMCursor(ctx, "Not A Name"); err == nil {
		t.Fatal("a bad destination name was stored")
	}
}
