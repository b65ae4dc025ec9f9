package audit

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/store"
)

// rotatedLog is a log signed by k1, rotated to k2, then to k3, with
// entries under each key.
// The database's URL is returned for an attacker.
func rotatedLog(t *testing.T) (l1 *Log, u string, k1, k2, k3 *SigningKey) {
	t.Helper()
	ctx := context.Background()
	u = dbtest.URL(t)
	st, err := store.Open(ctx, store.Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	k1, k2, k3 = newKey(t), newKey(t), newKey(t)
	if l1, err = NewLog(LogOptions{Store: st, Key: k1}); err != nil {
		t.Fatal(err)
	}
	appendN(t, l1, 5, 5)
	if _, err := l1.RotateKey(ctx, Actor{ID: "alice", Role: "admin"}, k2); err != nil {
		t.Fatal(err)
	}
	l2, err := NewLog(LogOptions{Store: st, Key: k2})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l2, 5, 5)
	if _, err := l2.RotateKey(ctx, Actor{ID: "alice", Role: "admin"}, k3); err != nil {
		t.Fatal(err)
	}
	l3, err := NewLog(LogOptions{Store: st, Key: k3})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l3, 5, 5)
	return l1, u, k1, k2, k3
}

func ids(ks *KeySet) map[string]bool {
	out := map[string]bool{}
	for _, k := range ks.Keys() {
		out[k.ID] = true
	}
	return out
}

// TestTrustPredecessors: given only the key signing now (a server after
// writ audit rotate-key), the keys before it are trusted through the
// rotations' proofs, and the whole log verifies.
func TestTrustPredecessors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _, k1, k2, k3 := rotatedLog(t)
	st := l.Store()
	now := trustOnly(t, k3)
	if rep := verifyDB(t, st, now); rep.Bad == nil || rep.Bad.Seq != 0 {
		t.Fatalf("trusting only the newest key, without following rotations back: %+v", rep.Bad)
	}
	back, err := TrustPredecessors(ctx, st, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(back); len(got) != 3 || !got[k1.ID()] || !got[k2.ID()] || !got[k3.ID()] {
		t.Fatalf("trusted back from the newest key: %v", got)
	}
	if rep := verifyDB(t, st, back); rep.Bad != nil || rep.Entries != 17 {
		t.Fatalf("verify with the keys followed back: %d entries, %v", rep.Entries, rep.Bad)
	}
	// Back only: from the middle key, the newest is not added (Verify
	// follows forward in order).
	mid, err := TrustPredecessors(ctx, st, trustOnly(t, k2))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(mid); len(got) != 2 || !got[k1.ID()] || got[k3.ID()] {
		t.Fatalf("trusted back from the middle key: %v", got)
	}
	// Both ways, for checkpoint signatures.
	all, err := TrustRotations(ctx, st, trustOnly(t, k2))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(all); len(got) != 3 {
		t.Fatalf("trusted both ways from the middle key: %v", got)
	}
	// A foreign key follows nothing.
	foreign, err := TrustRotations(ctx, st, trustOnly(t, newKey(t)))
	if err != nil || foreign.Len() != 1 {
		t.Fatalf("foreign key: %v %v", ids(foreign), err)
	}
	if _, err := TrustPredecessors(ctx, st, NewKeySet()); !errors.Is(err, ErrNoTrustedKeys) {
		t.Fatalf("no keys: %v", err)
	}
}

// TestTrustPredecessorsNeedsTheProof: a rotation entry whose proof of
// possession is not the trusted key's introduces no predecessor, so a
// forger cannot make the newest key vouch for a key of their own.
func TestTrustPredecessorsNeedsTheProof(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, u, k1, _, k3 := rotatedLog(t)
	a := newAttacker(t, u)
	// Break the proof of the first rotation (seq 5) by changing a byte of
	// the proof in its payload.
	b := a.entry(5)
	i := bytes.Index(b, []byte(`"proof":"`))
	if i < 0 {
		t.Fatalf("no proof in %s", b)
	}
	j := i + len(`"proof":"`)
	if b[j] == 'A' {
		b[j] = 'B'
	} else {
		b[j] = 'A'
	}
	a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 5, b)
	back, err := TrustPredecessors(ctx, l.Store(), trustOnly(t, k3))
	if err != nil {
		t.Fatal(err)
	}
	if ids(back)[k1.ID()] {
		t.Fatal("a rotation with a broken proof made its old key trusted")
	}
}
