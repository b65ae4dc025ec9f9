// Package audit is writ's tamper-evident audit log: entries stored in
// PostgreSQL as canonical bytes, chained by SHA-256 and signed one by one,
// and at the same time leaves of an RFC 6962 Merkle tree whose signed
// checkpoints are published outside the database. Verification re-derives
// all of it from the stored bytes and a trusted key set, online against the
// database or offline from an export.
//
// One file per concern: entry encoding (this file), the hash chain
// (chain.go), the Merkle tree and proofs (tree.go), keys (keys.go),
// checkpoints and their sinks (checkpoint.go, sink.go), appending
// (log.go, appender.go), verification (verify.go) and export (export.go).
// docs/audit.md says why it is built this way.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// FormatVersion is the "v" field of every entry this package writes.
const FormatVersion = 1

// TimeLayout is how an entry's time is written inside its bytes: UTC,
// RFC 3339 with exactly six fractional digits.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Size limits of an entry.
const (
	MaxEntrySize   = 1 << 20 // the whole canonical entry; the database enforces it too
	maxIDLen       = 256
	maxRoleLen     = 64
	maxEventLen    = 128
	maxSubjectPart = 1024
)

// Events the engine records. External events (writ audit append) may use
// any name outside the reserved "audit." namespace.
const (
	EventPRChecked         = "pr.checked"
	EventApprovalAccepted  = "approval.accepted"
	EventApprovalRejected  = "approval.rejected"
	EventMergeSeen         = "merge.seen"
	EventExecutionStarted  = "execution.started"
	EventExecutionFinished = "execution.finished"
	EventExecutionReverted = "execution.reverted"
	EventConfigChanged     = "config.changed"
	EventAuthLogin         = "auth.login"
	EventAuthLogout        = "auth.logout"
	EventExternal          = "external.note"
	// EventKeyRotated is written only by Log.RotateKey.
	EventKeyRotated = "audit.key_rotated"
)

// reservedPrefix is the event namespace only this package writes.
const reservedPrefix = "audit."

// Subject kinds.
const (
	SubjectPlaybook  = "playbook"
	SubjectApproval  = "approval"
	SubjectExecution = "execution"
	SubjectConfig    = "config"
	SubjectUser      = "user"
	SubjectKey       = "key"
)

// SystemActor is the actor of entries writ records on its own behalf.
var SystemActor = Actor{ID: "writ", Role: "system"}

// Actor is who did it: a user id (or "writ" for the engine itself) and the
// role under which they acted.
type Actor struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

// Subject is what it was done to, e.g. {Kind: "playbook", Name:
// "block-c2-beacon", Digest: "<sha256 hex>"}.
type Subject struct {
	Digest string `json:"digest,omitempty"`
	Kind   string `json:"kind"`
	Name   string `json:"name,omitempty"`
}

// Entry is one audit event. Seq and Time are assigned by the log when the
// entry is appended (values set by the caller are replaced). Before, After
// and Payload are JSON; the log stores them in canonical form.
type Entry struct {
	Seq     uint64
	Time    time.Time
	Actor   Actor
	Event   string
	Subject Subject // zero: no subject
	Success bool
	Before  json.RawMessage
	After   json.RawMessage
	Payload json.RawMessage
}

// wire is the canonical JSON form. Its fields are in byte order of their
// names, as canonical form demands; Encode relies on it.
type wire struct {
	Actor   Actor           `json:"actor"`
	After   json.RawMessage `json:"after,omitempty"`
	Before  json.RawMessage `json:"before,omitempty"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Seq     uint64          `json:"seq"`
	Subject *Subject        `json:"subject,omitempty"`
	Success bool            `json:"success"`
	Time    string          `json:"time"`
	V       int             `json:"v"`
}

// validEvent reports whether s is dotted words of lower-case letters,
// digits, '_' and '-', each starting with a letter, at least two of them
// (^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$, without a regexp: verification
// checks every entry).
func validEvent(s string) bool {
	words, start := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if start {
				return false
			}
			words++
			start = true
		case c >= 'a' && c <= 'z':
			start = false
		case (c >= '0' && c <= '9') || c == '_' || c == '-':
			if start {
				return false
			}
		default:
			return false
		}
	}
	return !start && words >= 1
}

// JSON encodes v in canonical form, for Before, After and Payload.
func JSON(v any) (json.RawMessage, error) {
	b, err := marshalNoEscape(v)
	if err != nil {
		return nil, fmt.Errorf("audit: encode JSON: %w", err)
	}
	return CanonicalJSON(b)
}

// MustJSON is JSON for values that always encode (maps and structs of plain
// types); it panics otherwise.
func MustJSON(v any) json.RawMessage {
	b, err := JSON(v)
	if err != nil {
		panic(err)
	}
	return b
}

// CanonicalJSON rewrites one JSON value in writ's canonical form: no
// insignificant white space, object keys sorted by their UTF-8 bytes (and
// unique: a repeated key keeps its last value), strings escaped as Go's
// encoding/json escapes them without HTML escaping, and numbers kept as
// their literal text. JSON null, and empty input, give nil (the field is
// left out).
func CanonicalJSON(raw []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	if !utf8.Valid(raw) {
		return nil, errors.New("JSON is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the value")
	}
	if v == nil {
		return nil, nil
	}
	return marshalNoEscape(v)
}

func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// validate checks what the caller filled in.
func (e *Entry) validate() error {
	var problems []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	text := func(field, s string, max int, required bool) {
		switch {
		case required && strings.TrimSpace(s) == "":
			problems = append(problems, field+" is empty")
		case len(s) > max:
			problems = append(problems, fmt.Sprintf("%s is %d bytes (at most %d)", field, len(s), max))
		case !utf8.ValidString(s):
			problems = append(problems, field+" is not valid UTF-8")
		}
	}
	text("actor id", e.Actor.ID, maxIDLen, true)
	text("actor role", e.Actor.Role, maxRoleLen, true)
	text("event", e.Event, maxEventLen, true)
	check(e.Event == "" || validEvent(e.Event), "event %q is not dotted lower-case words (like pr.checked)", e.Event)
	if e.Subject != (Subject{}) {
		text("subject kind", e.Subject.Kind, maxSubjectPart, true)
		text("subject name", e.Subject.Name, maxSubjectPart, false)
		text("subject digest", e.Subject.Digest, maxSubjectPart, false)
	}
	if len(problems) > 0 {
		return fmt.Errorf("audit: invalid entry: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Validate reports what Append would refuse in the entry.
func (e Entry) Validate() error {
	if strings.HasPrefix(e.Event, reservedPrefix) {
		return fmt.Errorf("%w: %q", ErrReservedEvent, e.Event)
	}
	return e.canonicalize()
}

// canonicalize validates the entry and rewrites its JSON fields in
// canonical form.
func (e *Entry) canonicalize() error {
	if err := e.validate(); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *json.RawMessage
	}{{"before", &e.Before}, {"after", &e.After}, {"payload", &e.Payload}} {
		c, err := CanonicalJSON(*f.v)
		if err != nil {
			return fmt.Errorf("audit: invalid entry: %s: %w", f.name, err)
		}
		*f.v = c
	}
	return nil
}

// Encode returns the canonical bytes of the entry, which every hash and
// signature covers. The JSON fields must be canonical already (the log
// canonicalizes them before encoding).
func (e *Entry) Encode() ([]byte, error) {
	w := wire{
		Actor:   e.Actor,
		After:   e.After,
		Before:  e.Before,
		Event:   e.Event,
		Payload: e.Payload,
		Seq:     e.Seq,
		Success: e.Success,
		Time:    e.Time.UTC().Format(TimeLayout),
		V:       FormatVersion,
	}
	if e.Subject != (Subject{}) {
		s := e.Subject
		w.Subject = &s
	}
	b, err := marshalNoEscape(w)
	if err != nil {
		return nil, fmt.Errorf("audit: encode entry %d: %w", e.Seq, err)
	}
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("audit: entry %d is %d bytes encoded (at most %d)", e.Seq, len(b), MaxEntrySize)
	}
	return b, nil
}

// ErrNotCanonical is wrapped by Decode when the bytes are a valid entry in
// another byte form than the one Encode writes.
var ErrNotCanonical = errors.New("entry bytes are not in canonical form")

func jsonDecoder(b []byte) *json.Decoder { return json.NewDecoder(bytes.NewReader(b)) }

// MarshalJSON writes the entry in its canonical form, for logs and exports.
func (e Entry) MarshalJSON() ([]byte, error) { return e.Encode() }
