package audit

import (
	"crypto/sha256"
)

// HashSize is the size of every hash in the log (SHA-256).
const HashSize = sha256.Size

// Hash is a SHA-256 digest.
type Hash [HashSize]byte

// GenesisHash is the prev_hash of the first entry: 32 zero bytes.
var GenesisHash Hash

// ChainHash links an entry to its predecessor:
// SHA-256(prev_hash || entry bytes). The entry bytes are the stored
// canonical bytes, so nothing about a database session can change it.
func ChainHash(prev Hash, entry []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(entry)
	var out Hash
	h.Sum(out[:0])
	return out
}

// entrySigContext separates entry signatures from anything else the same
// key signs (checkpoints are signed notes, approvals DSSE envelopes).
const entrySigContext = "writ-audit-entry-v1\n"

// SignedMessage is what an entry's signature covers: a context string and
// the entry's chain hash. Signing the chain hash, not the bytes alone, makes
// each signature vouch for the whole history before the entry.
func SignedMessage(hash Hash) []byte {
	m := make([]byte, 0, len(entrySigContext)+HashSize)
	m = append(m, entrySigContext...)
	return append(m, hash[:]...)
}

func hashFrom(b []byte) (Hash, bool) {
	var h Hash
	if len(b) != HashSize {
		return h, false
	}
	copy(h[:], b)
	return h, true
}
