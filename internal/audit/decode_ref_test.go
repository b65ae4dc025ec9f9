package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

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
		Event:   w.Event,
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
	again, err := e.Encode()
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(again, b) {
		return Entry{}, ErrNotCanonical
	}
	return e, nil
}
