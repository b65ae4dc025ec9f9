package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/writ-sec/writ/internal/store"
)

// maxExportCosignatures bounds the cosignature lines an export's
// checkpoint carries (a note holds at most 100 signatures).
const maxExportCosignatures = 64

// WitnessCheck is whether one witness cosigned a checkpoint.
type WitnessCheck struct {
	// Key is the witness's verifier key, as given; Name its name.
	Key, Name string
	// Cosigned: a signature line of the key over the checkpoint's body
	// verifies. Time is the time that cosignature carries (the newest,
	// when there are several).
	Cosigned bool
	Time     time.Time
	// NewestSize is, when the database was searched and the key did not
	// cosign the checkpoint, the size of the largest tree the key
	// cosigned according to the database; NewestKnown is false when it
	// cosigned none.
	NewestSize  uint64
	NewestKnown bool
}

// CheckWitnessCosignatures tells, for each witness key, whether it
// cosigned the checkpoint cpNote: by a signature line in the note itself,
// or by a cosignature recorded in st (nil: only the note is looked at, as
// for an export). Only lines that verify with the key count; nothing here
// checks the log's own signature of the checkpoint or that the log
// contains it (Verify does, given the checkpoint). It also returns the
// note with every line that verified appended, for an offline verifier.
func CheckWitnessCosignatures(ctx context.Context, st *store.Store, cpNote []byte, keys []string) ([]WitnessCheck, []byte, error) {
	text, err := noteText(cpNote)
	if err != nil {
		return nil, nil, err
	}
	var cp tlog.Checkpoint
	if _, err := cp.Unmarshal(text); err != nil {
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	lines := noteSignatureLines(cpNote)
	var newest []store.AuditCosignature
	if st != nil {
		recorded, err := st.AuditCosignatures(ctx, int64(cp.Size), cp.Hash)
		if err != nil {
			return nil, nil, err
		}
		for _, c := range recorded {
			lines = append(lines, c.Signature)
		}
		if newest, err = st.LatestAuditCosignatures(ctx); err != nil {
			return nil, nil, err
		}
	}
	out := make([]WitnessCheck, len(keys))
	merged := bytes.Clone(cpNote)
	for i, k := range keys {
		v, err := ParseWitnessKey(k)
		if err != nil {
			return nil, nil, err
		}
		c := WitnessCheck{Key: k, Name: v.Name()}
		for _, l := range lines {
			n, err := note.Open(append(append(bytes.Clone(text), '\n'), l...), note.VerifierList(v))
			if err != nil || len(n.Sigs) == 0 {
				continue
			}
			t, err := fnote.CoSigV1Timestamp(n.Sigs[0])
			if err != nil {
				continue
			}
			c.Cosigned = true
			if t.After(c.Time) {
				c.Time = t.UTC()
			}
			merged = WithCosignatures(merged, l)
		}
		if !c.Cosigned {
			for _, r := range newest {
				if VerifyCosignature(v, cp.Origin, uint64(r.Size), r.Root, r.Signature) && (!c.NewestKnown || uint64(r.Size) > c.NewestSize) {
					c.NewestSize, c.NewestKnown = uint64(r.Size), true
				}
			}
		}
		out[i] = c
	}
	return out, merged, nil
}

// noteSignatureLines are the signature lines of a signed note.
func noteSignatureLines(msg []byte) []string {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil
	}
	var out []string
	for l := range strings.SplitSeq(string(msg[i+2:]), "\n") {
		if l != "" {
			out = append(out, l+"\n")
		}
	}
	return out
}

// cosignedNote is the checkpoint note of rec with the cosignatures
// recorded for its tree (at most maxExportCosignatures of them).
func cosignedNote(ctx context.Context, st *store.Store, rec store.AuditCheckpoint) (string, error) {
	cs, err := st.AuditCosignatures(ctx, rec.Size, rec.Root)
	if err != nil {
		return "", err
	}
	lines := make([]string, 0, min(len(cs), maxExportCosignatures))
	for _, c := range cs {
		if len(lines) == maxExportCosignatures {
			break
		}
		lines = append(lines, c.Signature)
	}
	return string(WithCosignatures([]byte(rec.Note), lines...)), nil
}

// ErrWitnessQuorum: fewer witnesses cosigned the checkpoint than required.
var ErrWitnessQuorum = errors.New("the checkpoint is not cosigned by enough of the witnesses given")
