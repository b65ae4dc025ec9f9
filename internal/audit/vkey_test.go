package audit

import (
	"crypto/sha256"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// A checkpoint the package signs opens with VerifierKey's line, and only
// with the signing key's.
func TestVerifierKey(t *testing.T) {
	const origin = "writ-audit/test"
	key, other := newKey(t), newKey(t)
	root := sha256.Sum256([]byte("root"))
	cp, err := SignCheckpoint(key, origin, 7, root[:])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		k     *SigningKey
		opens bool
	}{{key, true}, {other, false}} {
		pk, err := NewPublicKey(tc.k.Public())
		if err != nil {
			t.Fatal(err)
		}
		vkey, err := VerifierKey(origin, pk)
		if err != nil {
			t.Fatal(err)
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatalf("%q: %v", vkey, err)
		}
		if v.Name() != origin {
			t.Fatalf("key name %q, want the origin %q", v.Name(), origin)
		}
		_, err = note.Open(cp.Note, note.VerifierList(v))
		if (err == nil) != tc.opens {
			t.Fatalf("%s: open: %v, want opens=%v", tc.k, err, tc.opens)
		}
	}
}
