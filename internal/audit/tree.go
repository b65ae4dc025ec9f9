package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The Merkle tree is RFC 6962's: leaf i is the canonical bytes of the entry
// with seq i, hashed SHA-256(0x00 || bytes); interior nodes are
// SHA-256(0x01 || left || right). transparency-dev/merkle does the hashing,
// the compact ranges and the proofs.
var (
	hasher       = rfc6962.DefaultHasher
	rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
)

// storedLevelStep is the spacing of the tree levels kept in the database:
// nodes at levels 8, 16, 24, ... so a node is derived from at most 256
// stored hashes.
const storedLevelStep = 8

// LeafHash is the RFC 6962 leaf hash of an entry's bytes.
func LeafHash(entry []byte) []byte { return hasher.HashLeaf(entry) }

// EmptyRoot is the root of the empty tree: SHA-256 of nothing.
func EmptyRoot() []byte { return hasher.EmptyRoot() }

// newRange restores a compact range [0, size) from its concatenated hashes.
func newRange(size uint64, packed []byte) (*compact.Range, error) {
	if len(packed)%HashSize != 0 {
		return nil, fmt.Errorf("compact range of %d bytes is not a multiple of %d", len(packed), HashSize)
	}
	hashes := make([][]byte, 0, len(packed)/HashSize)
	for i := 0; i < len(packed); i += HashSize {
		hashes = append(hashes, packed[i:i+HashSize:i+HashSize])
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("compact range of size %d: %w", size, err)
	}
	return r, nil
}

// packRange is the inverse of newRange.
func packRange(r *compact.Range) []byte {
	out := make([]byte, 0, len(r.Hashes())*HashSize)
	for _, h := range r.Hashes() {
		out = append(out, h...)
	}
	return out
}

// rootOf is the root of a compact range starting at 0; the empty tree's
// root for an empty range.
func rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

// nodeSource gives the hash of a perfect subtree's root: level 0 is a leaf.
type nodeSource interface {
	node(ctx context.Context, id compact.NodeID) ([]byte, error)
}

// fetchNodes returns the hashes of ids in order.
func fetchNodes(ctx context.Context, src nodeSource, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := src.node(ctx, id)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// rootAt computes the root of the tree of the given size from stored nodes.
func rootAt(ctx context.Context, src nodeSource, size uint64) ([]byte, error) {
	if size == 0 {
		return EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes, err := fetchNodes(ctx, src, ids)
	if err != nil {
		return nil, err
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

// inclusionProof builds the RFC 6962 inclusion proof of leaf index in the
// tree of the given size.
func inclusionProof(ctx context.Context, src nodeSource, index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	hashes, err := fetchNodes(ctx, src, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// consistencyProof builds the RFC 6962 consistency proof between two tree
// sizes.
func consistencyProof(ctx context.Context, src nodeSource, size1, size2 uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	hashes, err := fetchNodes(ctx, src, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// VerifyInclusion checks an inclusion proof of entry bytes at index in the
// tree of the given size and root.
func VerifyInclusion(entry []byte, index, size uint64, p [][]byte, root []byte) error {
	return proof.VerifyInclusion(hasher, index, size, LeafHash(entry), p, root)
}

// VerifyConsistency checks that the tree (size2, root2) extends the tree
// (size1, root1).
func VerifyConsistency(size1, size2 uint64, p [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(hasher, size1, size2, p, root1, root2)
}

// nodeReader derives node hashes from the database: leaves from the entry
// bytes, levels that are multiples of storedLevelStep from audit_tree_nodes,
// and the levels between by hashing at most 2^storedLevelStep hashes of the
// stored level below. It caches what it computed.
type nodeReader struct {
	leaves func(ctx context.Context, from, to uint64) ([][]byte, error)
	stored func(ctx context.Context, level uint, from, to uint64) ([][]byte, error)
	cache  map[compact.NodeID][]byte
}

const nodeCacheMax = 1 << 16

func (r *nodeReader) node(ctx context.Context, id compact.NodeID) ([]byte, error) {
	if h, ok := r.cache[id]; ok {
		return h, nil
	}
	base := id.Level - id.Level%storedLevelStep
	span := id.Level - base
	from, to := id.Index<<span, (id.Index+1)<<span
	var hashes [][]byte
	if base == 0 {
		entries, err := r.leaves(ctx, from, to)
		if err != nil {
			return nil, err
		}
		hashes = make([][]byte, len(entries))
		for i, e := range entries {
			hashes[i] = LeafHash(e)
		}
	} else {
		var err error
		if hashes, err = r.stored(ctx, base, from, to); err != nil {
			return nil, err
		}
	}
	if uint64(len(hashes)) != to-from {
		return nil, fmt.Errorf("tree node (level %d, index %d): found %d of its %d hashes at level %d: %w",
			id.Level, id.Index, len(hashes), to-from, base, errMissingNodes)
	}
	for len(hashes) > 1 {
		next := make([][]byte, len(hashes)/2)
		for i := range next {
			next[i] = hasher.HashChildren(hashes[2*i], hashes[2*i+1])
		}
		hashes = next
	}
	if r.cache == nil || len(r.cache) >= nodeCacheMax {
		r.cache = make(map[compact.NodeID][]byte)
	}
	r.cache[id] = hashes[0]
	return hashes[0], nil
}

var errMissingNodes = errors.New("the tree is incomplete in the database")

// keepNode reports the nodes the visitor of a compact range append
// should keep: levels that are positive multiples of storedLevelStep.
func keepNode(id compact.NodeID) bool {
	return id.Level > 0 && id.Level%storedLevelStep == 0
}
