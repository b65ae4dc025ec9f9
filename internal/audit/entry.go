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
// (log.go, appender.go), bounded auditing of events anyone can cause
// (bounded.go), verification (verify.go) and export (export.go).
// docs/audit.md says why it is built this way.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
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

// reservedPrefix is the event namespace only this package writes.
const reservedPrefix = "audit."

// Subject kinds.
const (
	SubjectPlaybook    = "playbook"
	SubjectApproval    = "approval"
	SubjectExecution   = "execution"
	SubjectConfig      = "config"
	SubjectUser        = "user"
	SubjectKey         = "key"
	SubjectAuditLog    = "audit_log"
	SubjectEnvironment = "environment"
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
	Event   Event
	Subject Subject // zero: no subject
	Success bool
	Before  json.RawMessage
	After   json.RawMessage
	Payload json.RawMessage
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
	if isCanonical(raw) {
		// Already canonical (what JSON and MustJSON return): keep it.
		return bytes.Clone(raw), nil
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
	text("event", string(e.Event), maxEventLen, true)
	check(e.Event == "" || validEvent(string(e.Event)), "event %q is not dotted lower-case words (like pr.checked)", e.Event)
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
	if e.Event.reserved() {
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
// canonicalizes them before encoding); Encode refuses them otherwise. It
// writes by hand exactly what encoding/json writes for the entry's fields
// in key order (encodeReference in the tests, which the fuzz tests hold it
// to): the log encodes every entry it appends.
func (e *Entry) Encode() ([]byte, error) {
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"after", e.After}, {"before", e.Before}, {"payload", e.Payload}} {
		if f.raw != nil && !isCanonical(f.raw) {
			return nil, fmt.Errorf("audit: encode entry %d: %s is not canonical JSON", e.Seq, f.name)
		}
	}
	n := 160 + len(e.Actor.ID) + len(e.Actor.Role) + len(e.Event) + len(e.After) + len(e.Before) + len(e.Payload) +
		len(e.Subject.Digest) + len(e.Subject.Kind) + len(e.Subject.Name)
	b := make([]byte, 0, n)
	b = append(b, `{"actor":{"id":`...)
	b = appendString(b, e.Actor.ID)
	b = append(b, `,"role":`...)
	b = appendString(b, e.Actor.Role)
	b = append(b, '}')
	if len(e.After) > 0 {
		b = append(append(b, `,"after":`...), e.After...)
	}
	if len(e.Before) > 0 {
		b = append(append(b, `,"before":`...), e.Before...)
	}
	b = append(b, `,"event":`...)
	b = appendString(b, string(e.Event))
	if len(e.Payload) > 0 {
		b = append(append(b, `,"payload":`...), e.Payload...)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	if e.Subject != (Subject{}) {
		b = append(b, `,"subject":{`...)
		if e.Subject.Digest != "" {
			b = append(b, `"digest":`...)
			b = appendString(b, e.Subject.Digest)
			b = append(b, ',')
		}
		b = append(b, `"kind":`...)
		b = appendString(b, e.Subject.Kind)
		if e.Subject.Name != "" {
			b = append(b, `,"name":`...)
			b = appendString(b, e.Subject.Name)
		}
		b = append(b, '}')
	}
	b = append(b, `,"success":`...)
	b = strconv.AppendBool(b, e.Success)
	b = append(b, `,"time":"`...)
	b = e.Time.UTC().AppendFormat(b, TimeLayout)
	b = append(b, `","v":`...)
	b = strconv.AppendInt(b, FormatVersion, 10)
	b = append(b, '}')
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("audit: entry %d is %d bytes encoded (at most %d)", e.Seq, len(b), MaxEntrySize)
	}
	return b, nil
}

// appendString writes s as encoding/json does without HTML escaping.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', lowerHex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// isCanonical reports whether raw is one JSON value, not null, in
// canonical form.
func isCanonical(raw []byte) bool {
	if !utf8.Valid(raw) || string(raw) == "null" {
		return false
	}
	p := &parser{b: raw}
	return p.value() == nil && p.i == len(raw)
}

// ErrNotCanonical is wrapped by Decode when the bytes are a valid entry in
// another byte form than the one Encode writes.
var ErrNotCanonical = errors.New("entry bytes are not in canonical form")

func jsonDecoder(b []byte) *json.Decoder { return json.NewDecoder(bytes.NewReader(b)) }

// MarshalJSON writes the entry in its canonical form, for logs and exports.
func (e Entry) MarshalJSON() ([]byte, error) { return e.Encode() }
