package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// wire is the canonical JSON form as encoding/json writes it: fields in
// byte order of their names.
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

// encodeReference is Encode written with encoding/json: the oracle for the
// hand-written encoder.
func encodeReference(e *Entry) ([]byte, error) {
	w := wire{
		Actor:   e.Actor,
		After:   e.After,
		Before:  e.Before,
		Event:   string(e.Event),
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
	return marshalNoEscape(w)
}

// decodeReference parses canonical entry bytes strictly: a known format version,
// no unknown or missing fields, a well-formed time, and bytes identical to
// what Encode writes for the decoded entry. It is built on encoding/json
// and re-encoding: slow, and obviously right, the oracle for Decode.
func decodeReference(b []byte) (Entry, error) {
	if len(b) > MaxEntrySize {
		return Entry{}, fmt.Errorf("entry is %d bytes (at most %d)", len(b), MaxEntrySize)
	}
	if !utf8.Valid(b) {
		return Entry{}, errors.New("entry is not valid UTF-8")
	}
	var w struct {
		wire
		V *int `json:"v"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Entry{}, fmt.Errorf("entry is not valid: %w", err)
	}
	if dec.More() {
		return Entry{}, errors.New("entry is not valid: data after the object")
	}
	if w.V == nil {
		return Entry{}, errors.New("entry has no format version")
	}
	if *w.V != FormatVersion {
		return Entry{}, fmt.Errorf("entry format version %d is not supported (this writ reads %d)", *w.V, FormatVersion)
	}
	t, err := time.Parse(TimeLayout, w.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("entry time %q is not %s", w.Time, TimeLayout)
	}
	e := Entry{
		Seq:     w.Seq,
		Time:    t,
		Actor:   w.Actor,
		Event:   Event(w.Event),
		Success: w.Success,
		Before:  w.Before,
		After:   w.After,
		Payload: w.Payload,
	}
	if w.Subject != nil {
		e.Subject = *w.Subject
		if e.Subject == (Subject{}) {
			return Entry{}, fmt.Errorf("%w: empty subject object", ErrNotCanonical)
		}
	}
	if err := e.validate(); err != nil {
		return Entry{}, err
	}
	for _, raw := range []json.RawMessage{e.Before, e.After, e.Payload} {
		if raw == nil {
			continue
		}
		c, err := CanonicalJSON(raw)
		if err != nil {
			return Entry{}, err
		}
		if !bytes.Equal(c, raw) {
			return Entry{}, ErrNotCanonical
		}
	}
	again, err := encodeReference(&e)
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(again, b) {
		return Entry{}, ErrNotCanonical
	}
	return e, nil
}

// canonicalReference is CanonicalJSON without the fast path.
func canonicalReference(raw []byte) (json.RawMessage, error) {
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
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the value")
	}
	if v == nil {
		return nil, nil
	}
	return marshalNoEscape(v)
}
