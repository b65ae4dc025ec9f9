package audit

import (
	"context"
	"fmt"

	"github.com/writ-sec/writ/internal/store"
)

// Trust that follows the key rotations recorded in a log, for a verifier
// that was given the key signing now (a server after writ audit rotate-key)
// rather than the first key of the log.
//
// A rotation entry carries the new key's proof of possession: its
// signature over (origin, old key id, new key id). A trusted new key thus
// vouches for the key it replaced, whatever the database says, and that
// key becomes trusted for the entries before the rotation (the in-order
// pass of Verify retires it at the rotation as usual). The other way,
// a rotation signed by a trusted old key introduces the new key; Verify
// does that itself, in order, so only checkpoint signatures need it here.

// TrustPredecessors returns trusted plus every key that a rotation
// recorded in the log in st hands over to a trusted key, followed back
// through any number of rotations. Each rotation counts only when the new
// key's proof of possession verifies for this log's origin, and the old
// key is the one the proof names (its id is the hash of the public key).
// A rotation entry hidden from the event column (or a recorded key
// removed) only leaves its old key untrusted, so tampering here fails
// verification, never passes it.
func TrustPredecessors(ctx context.Context, st *store.Store, trusted *KeySet) (*KeySet, error) {
	return followRotations(ctx, st, trusted, false)
}

// TrustRotations returns trusted plus the keys reached from it through the
// rotations recorded in the log in st, in both directions: back as
// TrustPredecessors, and forward through rotation entries whose bytes hash
// to their stored hash and that a trusted old key signed. It is the set a
// checkpoint signed by any of the log's legitimate keys verifies with
// (CheckCheckpoint); the entries themselves are verified in order by
// Verify, which follows rotations forward as it reaches them.
func TrustRotations(ctx context.Context, st *store.Store, trusted *KeySet) (*KeySet, error) {
	return followRotations(ctx, st, trusted, true)
}

// rotationLink is one rotation read from the log.
type rotationLink struct {
	seq      uint64
	old, new string
	oldKey   *PublicKey // the recorded public key with the old id; nil if none
	newKey   *PublicKey
	oldSigOK bool // the entry verifies with oldKey (hash and signature)
}

func followRotations(ctx context.Context, st *store.Store, trusted *KeySet, forward bool) (*KeySet, error) {
	if trusted == nil || trusted.Len() == 0 {
		return nil, ErrNoTrustedKeys
	}
	out := trusted.clone()
	err := st.AuditSnapshot(ctx, func(st *store.Store) error {
		origin, err := st.AuditOrigin(ctx)
		if err != nil {
			return err
		}
		recorded := map[string]*PublicKey{}
		rows, err := st.AuditKeys(ctx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if k, err := ParsePublicKey([]byte(r.PublicKey)); err == nil && k.ID == r.ID {
				recorded[k.ID] = k
			}
		}
		var links []rotationLink
		for after := int64(-1); ; {
			page, err := st.AuditEntriesFiltered(ctx, store.AuditFilter{Event: string(EventKeyRotated)}, after, 1000)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			for i := range page {
				if l, ok := readRotation(&page[i], origin, recorded); ok {
					links = append(links, l)
				}
			}
			after = page[len(page)-1].Seq
		}
		// Fixed point: each pass may trust a key the next one needs.
		for changed := true; changed; {
			changed = false
			for _, l := range links {
				_, oldTrusted := out.Get(l.old)
				_, newTrusted := out.Get(l.new)
				switch {
				case newTrusted && !oldTrusted && l.oldKey != nil:
					out.Add(l.oldKey)
					changed = true
				case forward && oldTrusted && !newTrusted && l.oldSigOK:
					out.Add(l.newKey)
					changed = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: follow key rotations: %w", err)
	}
	return out, nil
}

// readRotation reads one rotation entry; ok is false when its payload or
// the new key's proof does not verify (the entry is then not a link).
func readRotation(e *store.AuditEntry, origin string, recorded map[string]*PublicKey) (rotationLink, bool) {
	ent, err := Decode(e.Entry)
	if err != nil || ent.Event != EventKeyRotated || ent.Seq != uint64(e.Seq) {
		return rotationLink{}, false
	}
	next, err := parseRotation(ent.Payload, origin, e.KeyID)
	if err != nil {
		return rotationLink{}, false
	}
	l := rotationLink{seq: uint64(e.Seq), old: e.KeyID, new: next.ID, newKey: next, oldKey: recorded[e.KeyID]}
	if l.oldKey != nil {
		prev, okPrev := hashFrom(e.PrevHash)
		stored, okHash := hashFrom(e.Hash)
		if okPrev && okHash && ChainHash(prev, e.Entry) == stored {
			l.oldSigOK = l.oldKey.verify(SignedMessage(stored), e.Signature) == nil
		}
	}
	return l, true
}
