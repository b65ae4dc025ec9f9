package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// A witness (C2SP tlog-witness, https://c2sp.org/tlog-witness) is a third
// party that cosigns a log's checkpoints after checking that each one
// extends the last it cosigned (an RFC 6962 consistency proof). It never
// cosigns two checkpoints of the same log that do not extend one another,
// so a checkpoint it cosigned is evidence the operator of writ's database
// cannot take back: a rewritten, rolled-back or forked log no longer
// contains it, and the witness refuses to cosign the fork.
//
// writ speaks the protocol's one request, add-checkpoint:
//
//	POST <prefix>/add-checkpoint
//
//	old <size the witness last cosigned>
//	<consistency proof from that size, one base64 hash a line>
//	<blank line>
//	<the checkpoint note>
//
// 200 answers with the witness's cosignature lines (C2SP tlog-cosignature,
// cosignature/v1: a timestamped ed25519 or ML-DSA-44 signature over the
// checkpoint body); 409 with the size the witness knows (text/x.tlog.size),
// for a retry with a proof from there; 403 when no key it trusts for the
// origin signed the checkpoint; 404 when it does not know the origin; 422
// when the proof does not verify or the roots of one size differ (the log
// forked); 400 for a malformed request.

// MaxWitnessResponse bounds an answer read from a witness.
const MaxWitnessResponse = 64 << 10

// Refusal reasons of a witness (WitnessError.Refusal).
const (
	// RefusedUnknownLog: the witness does not know the log's origin (404).
	RefusedUnknownLog = "unknown_log"
	// RefusedSignature: no key the witness trusts for the origin signed
	// the checkpoint (403): it was given another key for the log.
	RefusedSignature = "untrusted_signature"
	// RefusedInconsistent: the checkpoint does not extend the one the
	// witness cosigned last (422): the log forked, or was rewritten.
	RefusedInconsistent = "inconsistent"
	// RefusedRollback: the witness cosigned a larger tree than the log
	// has: the log was rolled back or truncated.
	RefusedRollback = "rolled_back"
	// RefusedBadRequest: the witness could not read the request (400).
	RefusedBadRequest = "bad_request"
)

// WitnessError is a witness's failure to cosign a checkpoint: a refusal
// (Refusal set: the witness answered that it will not cosign, and asking
// again will not change that until the log or the witness's configuration
// does), a conflict (Status 409: it knows another size, KnownSize), or a
// transient failure (unreachable, overloaded, an answer that is not a
// cosignature by its key).
type WitnessError struct {
	Witness string
	// Status is the HTTP status of the answer; 0 when there was none.
	Status int
	// Refusal is one of the Refused constants; empty when not refused.
	Refusal string
	// KnownSize is, for a conflict or a rollback, the size of the tree
	// the witness cosigned last.
	KnownSize uint64
	Err       error
}

func (e *WitnessError) Error() string {
	var b strings.Builder
	b.WriteString("witness " + e.Witness)
	if e.Refusal != "" {
		b.WriteString(" refuses the checkpoint (" + e.Refusal + ")")
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *WitnessError) Unwrap() error { return e.Err }

// Witness is one witness writ sends its checkpoints to.
type Witness struct {
	name     string
	prefix   *url.URL
	key      string
	verifier note.Verifier
}

// NewWitness returns the witness at the submission prefix rawURL (http or
// https; add-checkpoint is below it) whose cosignatures verify with vkey.
func NewWitness(name, rawURL, vkey string) (*Witness, error) {
	if name == "" {
		return nil, errors.New("audit: a witness needs a name")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("audit: witness %s: url %q is not an http(s) URL without credentials, query or fragment", name, rawURL)
	}
	v, err := ParseWitnessKey(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: witness %s: %w", name, err)
	}
	return &Witness{name: name, prefix: u, key: vkey, verifier: v}, nil
}

// ParseWitnessKey reads a witness's verifier key in C2SP signed-note
// vkey form, "<name>+<key hash>+<base64 key>": an Ed25519 key (type 0x01,
// taken as the witness's cosignature/v1 key), an Ed25519 cosignature/v1
// key (0x04) or an ML-DSA-44 one (0x06). transparency-dev/formats makes
// the verifier: it knows the cosignature/v1 message (the timestamp line
// before the checkpoint body), which x/mod's note does not.
func ParseWitnessKey(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("witness key %q: %w", vkey, err)
	}
	return v, nil
}

// Name is the witness's configured name.
func (w *Witness) Name() string { return w.name }

// Key is the witness's verifier key, as configured.
func (w *Witness) Key() string { return w.key }

// URL is the witness's submission prefix.
func (w *Witness) URL() string { return w.prefix.String() }

// Cosignature is a witness's cosignature of a checkpoint, verified with
// its key.
type Cosignature struct {
	Witness string // the configured name
	Key     string // the verifier key that verified it
	Size    uint64
	Root    []byte
	// Line is the signature line, "— <key name> <base64>\n", to append
	// to the checkpoint note.
	Line string
	// Time is the time the cosignature carries.
	Time time.Time
}

// AddCheckpoint asks the witness to cosign cp, which extends the tree of
// size oldSize that the witness cosigned last (0: none) by proof. It
// returns the cosignatures by the witness's key, or a *WitnessError.
func (w *Witness) AddCheckpoint(ctx context.Context, client *http.Client, oldSize uint64, proof [][]byte, cp *Checkpoint) ([]Cosignature, error) {
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", oldSize)
	for _, h := range proof {
		body.WriteString(base64.StdEncoding.EncodeToString(h))
		body.WriteByte('\n')
	}
	body.WriteByte('\n')
	body.Write(cp.Note)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.prefix.JoinPath("add-checkpoint").String(), &body)
	if err != nil {
		return nil, &WitnessError{Witness: w.name, Err: err}
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := client.Do(req)
	if err != nil {
		return nil, &WitnessError{Witness: w.name, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxWitnessResponse+1))
	if err != nil {
		return nil, &WitnessError{Witness: w.name, Status: resp.StatusCode, Err: fmt.Errorf("read answer: %w", err)}
	}
	if len(b) > MaxWitnessResponse {
		return nil, &WitnessError{Witness: w.name, Status: resp.StatusCode, Err: fmt.Errorf("answer larger than %d bytes", MaxWitnessResponse)}
	}
	fail := func(refusal, format string, args ...any) error {
		return &WitnessError{Witness: w.name, Status: resp.StatusCode, Refusal: refusal, Err: fmt.Errorf(format, args...)}
	}
	switch resp.StatusCode {
	case http.StatusOK:
		cs, err := w.cosignatures(cp, b)
		if err != nil {
			return nil, &WitnessError{Witness: w.name, Status: resp.StatusCode, Err: err}
		}
		return cs, nil
	case http.StatusConflict:
		size, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fail("", "409 without a tree size (%q)", truncate(b))
		}
		return nil, &WitnessError{Witness: w.name, Status: resp.StatusCode, KnownSize: size,
			Err: fmt.Errorf("it last cosigned a tree of size %d, not %d", size, oldSize)}
	case http.StatusNotFound:
		return nil, fail(RefusedUnknownLog, "404: it does not know log %q (configure the log's origin and writ audit vkey at the witness)", cp.Origin)
	case http.StatusForbidden:
		return nil, fail(RefusedSignature, "403: the checkpoint is not signed by a key it trusts for %q (give it writ audit vkey)", cp.Origin)
	case http.StatusUnprocessableEntity:
		return nil, fail(RefusedInconsistent, "422: the checkpoint of size %d does not extend the tree of size %d it cosigned: the log forked or was rewritten", cp.Size, oldSize)
	case http.StatusBadRequest:
		return nil, fail(RefusedBadRequest, "400: it could not read the request (%q)", truncate(b))
	}
	return nil, fail("", "HTTP %d (%q)", resp.StatusCode, truncate(b))
}

// cosignatures reads a witness's answer: signature lines over cp's body,
// of which those by the witness's key count (a witness may sign with
// several keys; lines by others are ignored). None is an error.
func (w *Witness) cosignatures(cp *Checkpoint, answer []byte) ([]Cosignature, error) {
	text, err := noteText(cp.Note)
	if err != nil {
		return nil, err
	}
	n, err := note.Open(append(append(append([]byte(nil), text...), '\n'), answer...), note.VerifierList(w.verifier))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return nil, fmt.Errorf("its answer holds no cosignature by its key %s", w.key)
		}
		return nil, fmt.Errorf("its answer is not cosignature lines: %w", err)
	}
	out := make([]Cosignature, 0, len(n.Sigs))
	for _, s := range n.Sigs {
		t, err := fnote.CoSigV1Timestamp(s)
		if err != nil {
			return nil, fmt.Errorf("cosignature timestamp: %w", err)
		}
		out = append(out, Cosignature{Witness: w.name, Key: w.key, Size: cp.Size, Root: bytes.Clone(cp.Root),
			Line: signatureLine(s), Time: t.UTC()})
	}
	return out, nil
}

// signatureLine is a note signature line.
func signatureLine(s note.Signature) string { return "— " + s.Name + " " + s.Base64 + "\n" }

// noteText is a signed note's text: up to and including the newline before
// the blank line that opens the signatures.
func noteText(msg []byte) ([]byte, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil, errors.New("checkpoint is not a signed note")
	}
	return msg[:i+1], nil
}

// checkpointBody is the body of the checkpoint of (size, root) of origin:
// the note text every signature of it covers.
func checkpointBody(origin string, size uint64, root []byte) []byte {
	return tlog.Checkpoint{Origin: origin, Size: size, Hash: root}.Marshal()
}

// VerifyCosignature checks a signature line over the checkpoint of (size,
// root) of origin with a witness's verifier.
func VerifyCosignature(v note.Verifier, origin string, size uint64, root []byte, line string) bool {
	msg := append(append(checkpointBody(origin, size, root), '\n'), line...)
	n, err := note.Open(msg, note.VerifierList(v))
	return err == nil && len(n.Sigs) > 0
}

// WithCosignatures is a checkpoint note with signature lines appended
// (lines already in it are not repeated): the note a verifier holding the
// log's key and the witnesses' keys checks offline. note.Open ignores the
// lines of keys it is not given, so the log's key alone still opens it.
func WithCosignatures(cpNote []byte, lines ...string) []byte {
	out := bytes.Clone(cpNote)
	for _, l := range lines {
		if !strings.HasSuffix(l, "\n") {
			l += "\n"
		}
		if !bytes.Contains(out, []byte(l)) {
			out = append(out, l...)
		}
	}
	return out
}

func truncate(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
