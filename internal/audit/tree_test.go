package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/transparency-dev/merkle/compact"
)

type rfcVectors struct {
	Source     string   `json:"source"`
	EmptyRoot  string   `json:"empty_root"`
	Leaves     []string `json:"leaves"`
	LeafHashes []string `json:"leaf_hashes"`
	Roots      []string `json:"roots"`
	Inclusion  []struct {
		Index, Size uint64
		Proof       []string
	} `json:"inclusion_proofs"`
	Consistency []struct {
		Size1 uint64 `json:"size1"`
		Size2 uint64 `json:"size2"`
		Proof []string
	} `json:"consistency_proofs"`
}

func loadVectors(t *testing.T) rfcVectors {
	t.Helper()
	b, err := os.ReadFile("../../testdata/audit/rfc6962.json")
	if err != nil {
		t.Fatal(err)
	}
	var v rfcVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Leaves) != 8 || len(v.Roots) != 8 {
		t.Fatalf("vectors: %d leaves, %d roots", len(v.Leaves), len(v.Roots))
	}
	return v
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unhexAll(t testing.TB, ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = unhex(t, s)
	}
	return out
}

// memTree is an in-memory tree built the way the log builds its own: a
// compact range whose visitor keeps the stored levels.
type memTree struct {
	leaves [][]byte
	stored map[compact.NodeID][]byte
	r      *compact.Range
}

func newMemTree() *memTree {
	return &memTree{stored: map[compact.NodeID][]byte{}, r: rangeFactory.NewEmptyRange(0)}
}

func (m *memTree) add(t testing.TB, leaf []byte) {
	m.leaves = append(m.leaves, leaf)
	if err := m.r.Append(LeafHash(leaf), func(id compact.NodeID, h []byte) {
		if keepNode(id) {
			m.stored[id] = h
		}
	}); err != nil {
		t.Fatal(err)
	}
}

func (m *memTree) reader() *nodeReader {
	return &nodeReader{
		leaves: func(_ context.Context, from, to uint64) ([][]byte, error) {
			return m.leaves[from:min(to, uint64(len(m.leaves)))], nil
		},
		stored: func(_ context.Context, level uint, from, to uint64) ([][]byte, error) {
			var out [][]byte
			for i := from; i < to; i++ {
				h, ok := m.stored[compact.NewNodeID(level, i)]
				if !ok {
					break
				}
				out = append(out, h)
			}
			return out, nil
		},
	}
}

// mth is RFC 6962 section 2.1's Merkle Tree Hash, written from the RFC as
// an oracle independent of the library.
func mth(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		h := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return h[:]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	h := sha256.Sum256(append(append([]byte{1}, mth(leaves[:k])...), mth(leaves[k:])...))
	return h[:]
}

func TestRFC6962Vectors(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	ctx := context.Background()
	if got := hex.EncodeToString(EmptyRoot()); got != v.EmptyRoot {
		t.Fatalf("empty root %s; want %s", got, v.EmptyRoot)
	}
	m := newMemTree()
	if root, _ := rootOf(m.r); hex.EncodeToString(root) != v.EmptyRoot {
		t.Fatalf("root of an empty range %x", root)
	}
	for i, l := range unhexAll(t, v.Leaves) {
		if got := hex.EncodeToString(LeafHash(l)); got != v.LeafHashes[i] {
			t.Errorf("leaf %d hash %s; want %s", i, got, v.LeafHashes[i])
		}
		m.add(t, l)
		root, err := rootOf(m.r)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(root); got != v.Roots[i] {
			t.Errorf("root of %d leaves %s; want %s", i+1, got, v.Roots[i])
		}
		if got := hex.EncodeToString(mth(m.leaves)); got != v.Roots[i] {
			t.Errorf("oracle root of %d leaves %s; want %s", i+1, got, v.Roots[i])
		}
		fromNodes, err := rootAt(ctx, m.reader(), uint64(i+1))
		if err != nil || !bytes.Equal(fromNodes, root) {
			t.Errorf("rootAt(%d) = %x, %v; want %x", i+1, fromNodes, err, root)
		}
	}
	roots := unhexAll(t, v.Roots)
	for _, c := range v.Inclusion {
		t.Run(fmt.Sprintf("inclusion/%d/%d", c.Index, c.Size), func(t *testing.T) {
			want := unhexAll(t, c.Proof)
			got, err := inclusionProof(ctx, m.reader(), c.Index, c.Size)
			if err != nil {
				t.Fatal(err)
			}
			if !equalProofs(got, want) {
				t.Fatalf("proof %x; want %x", got, want)
			}
			leaf := unhex(t, v.Leaves[c.Index])
			if err := VerifyInclusion(leaf, c.Index, c.Size, want, roots[c.Size-1]); err != nil {
				t.Fatalf("published proof does not verify: %v", err)
			}
			if err := VerifyInclusion(append(leaf, 'x'), c.Index, c.Size, want, roots[c.Size-1]); err == nil {
				t.Fatal("proof verified for other leaf bytes")
			}
			if len(want) > 0 {
				bad := append([][]byte(nil), want...)
				bad[0] = bytes.Repeat([]byte{1}, 32)
				if err := VerifyInclusion(leaf, c.Index, c.Size, bad, roots[c.Size-1]); err == nil {
					t.Fatal("corrupted proof verified")
				}
			}
		})
	}
	for _, c := range v.Consistency {
		t.Run(fmt.Sprintf("consistency/%d/%d", c.Size1, c.Size2), func(t *testing.T) {
			want := unhexAll(t, c.Proof)
			got, err := consistencyProof(ctx, m.reader(), c.Size1, c.Size2)
			if err != nil {
				t.Fatal(err)
			}
			if !equalProofs(got, want) {
				t.Fatalf("proof %x; want %x", got, want)
			}
			if err := VerifyConsistency(c.Size1, c.Size2, want, roots[c.Size1-1], roots[c.Size2-1]); err != nil {
				t.Fatalf("published proof does not verify: %v", err)
			}
			if c.Size1 != c.Size2 {
				if err := VerifyConsistency(c.Size1, c.Size2, want, roots[c.Size2-1], roots[c.Size2-1]); err == nil {
					t.Fatal("proof verified against the wrong old root")
				}
			}
		})
	}
}

// TestVerifierHashes: the verifier hashes without allocating, by hand; it
// must agree with the library's leaf hash and ChainHash.
func TestVerifierHashes(t *testing.T) {
	t.Parallel()
	v, _ := newVerifier(VerifyOptions{SkipSignatures: true, Trusted: NewKeySet()})
	var scratch []byte
	for _, entry := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("entry"), 300)} {
		prev := sha256.Sum256(entry)
		h := ChainHash(prev, entry)
		r := Record{Entry: entry, PrevHash: prev[:], Hash: h[:]}
		var c checked
		scratch = v.check(&r, &c, scratch)
		if !bytes.Equal(c.leaf, LeafHash(entry)) || !c.hashOK {
			t.Fatalf("leaf %x, library %x; chain ok %v", c.leaf, LeafHash(entry), c.hashOK)
		}
	}
}

func equalProofs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestStoredLevelsProofs checks proofs in trees large enough to use the
// stored levels, against the RFC oracle.
func TestStoredLevelsProofs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMemTree()
	for range 70000 {
		leaf := make([]byte, 8)
		rand.Read(leaf)
		m.add(t, leaf)
	}
	if len(m.stored) != 70000/256+70000/65536 {
		t.Fatalf("%d stored nodes; want %d", len(m.stored), 70000/256+70000/65536)
	}
	for _, size := range []uint64{1, 255, 256, 257, 1000, 65535, 65536, 65537, 70000} {
		root := mth(m.leaves[:size])
		got, err := rootAt(ctx, m.reader(), size)
		if err != nil || !bytes.Equal(got, root) {
			t.Fatalf("rootAt(%d) = %x, %v; want %x", size, got, err, root)
		}
		for _, idx := range []uint64{0, size / 3, size - 1} {
			p, err := inclusionProof(ctx, m.reader(), idx, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(m.leaves[idx], idx, size, p, root); err != nil {
				t.Fatalf("inclusion %d in %d: %v", idx, size, err)
			}
		}
		for _, old := range []uint64{1, size / 2, size} {
			if old == 0 {
				continue
			}
			p, err := consistencyProof(ctx, m.reader(), old, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(old, size, p, mth(m.leaves[:old]), root); err != nil {
				t.Fatalf("consistency %d..%d: %v", old, size, err)
			}
		}
	}
}
