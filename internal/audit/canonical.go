package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file reads entry bytes: a strict single-pass parser that accepts
// exactly the bytes Encode writes (the canonical form) and nothing else, so
// verification needs neither a generic JSON decoder nor a re-encoding to
// compare. FuzzDecode holds it to that: anything it accepts re-encodes to
// the same bytes, and it agrees with the reference decoder built on
// encoding/json in decode_ref_test.go.

// maxDepth matches encoding/json's nesting limit, so CanonicalJSON and the
// parser accept the same values.
const maxDepth = 10000

type parser struct {
	b     []byte
	i     int
	depth int
}

func (p *parser) fail(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrNotCanonical, p.i, fmt.Sprintf(format, args...))
}

// lit consumes s if the input continues with it.
func (p *parser) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

func (p *parser) expect(s string) error {
	if !p.lit(s) {
		return p.fail("want %s", s)
	}
	return nil
}

const lowerHex = "0123456789abcdef"

// str reads a string in the form encoding/json writes without HTML
// escaping, and returns its value.
func (p *parser) str() (string, error) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", p.fail("want a string")
	}
	p.i++
	start := p.i
	var buf []byte // only when there are escapes
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			var s string
			if buf == nil {
				s = string(p.b[start:p.i])
			} else {
				s = string(append(buf, p.b[start:p.i]...))
			}
			p.i++
			return s, nil
		case c == '\\':
			buf = append(buf, p.b[start:p.i]...)
			if p.i+1 >= len(p.b) {
				return "", p.fail("unterminated escape")
			}
			e := p.b[p.i+1]
			switch e {
			case '"', '\\':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				if p.i+6 > len(p.b) {
					return "", p.fail("short \\u escape")
				}
				h := string(p.b[p.i+2 : p.i+6])
				switch {
				case h == "2028":
					buf = utf8.AppendRune(buf, '\u2028')
				case h == "2029":
					buf = utf8.AppendRune(buf, '\u2029')
				case h[0] == '0' && h[1] == '0' && (h[2] == '0' || h[2] == '1') && bytes.IndexByte([]byte(lowerHex), h[3]) >= 0:
					v := byte(h[2]-'0')<<4 | byte(bytes.IndexByte([]byte(lowerHex), h[3]))
					switch v {
					case '\b', '\f', '\n', '\r', '\t':
						return "", p.fail("control character escaped as \\u%s", h)
					}
					buf = append(buf, v)
				default:
					return "", p.fail("escape \\u%s", h)
				}
				p.i += 4
			default:
				return "", p.fail("escape \\%c", e)
			}
			p.i += 2
			start = p.i
		case c < 0x20:
			return "", p.fail("raw control character in a string")
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				return "", p.fail("invalid UTF-8")
			}
			if r == '\u2028' || r == '\u2029' {
				return "", p.fail("unescaped U+%04X", r)
			}
			p.i += size
		}
	}
	return "", p.fail("unterminated string")
}

// number reads a JSON number; any valid literal is canonical (numbers are
// kept as written).
func (p *parser) number() error {
	start := p.i
	p.lit("-")
	switch {
	case p.lit("0"):
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return p.fail("want a value")
	}
	if p.lit(".") {
		if p.digits() == 0 {
			return p.fail("want digits after the decimal point")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if !p.lit("+") {
			p.lit("-")
		}
		if p.digits() == 0 {
			return p.fail("want exponent digits")
		}
	}
	if p.i == start {
		return p.fail("want a value")
	}
	return nil
}

func (p *parser) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// value reads any canonical JSON value.
func (p *parser) value() error {
	if p.i >= len(p.b) {
		return p.fail("want a value")
	}
	switch p.b[p.i] {
	case '{':
		return p.object()
	case '[':
		return p.array()
	case '"':
		_, err := p.str()
		return err
	case 't':
		return p.expect("true")
	case 'f':
		return p.expect("false")
	case 'n':
		return p.expect("null")
	}
	return p.number()
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.fail("nested deeper than %d", maxDepth)
	}
	return nil
}

// object reads an object whose keys are unique and in byte order.
func (p *parser) object() error {
	if err := p.enter(); err != nil {
		return err
	}
	p.i++ // {
	if p.lit("}") {
		p.depth--
		return nil
	}
	prev, first := "", true
	for {
		k, err := p.str()
		if err != nil {
			return err
		}
		if !first && k <= prev {
			return p.fail("object key %q is not after %q", k, prev)
		}
		prev, first = k, false
		if err := p.expect(":"); err != nil {
			return err
		}
		if err := p.value(); err != nil {
			return err
		}
		if p.lit("}") {
			p.depth--
			return nil
		}
		if err := p.expect(","); err != nil {
			return err
		}
	}
}

func (p *parser) array() error {
	if err := p.enter(); err != nil {
		return err
	}
	p.i++ // [
	if p.lit("]") {
		p.depth--
		return nil
	}
	for {
		if err := p.value(); err != nil {
			return err
		}
		if p.lit("]") {
			p.depth--
			return nil
		}
		if err := p.expect(","); err != nil {
			return err
		}
	}
}

// raw reads a value that is a field of the entry (before, after, payload):
// canonical and not null.
func (p *parser) raw() (json.RawMessage, error) {
	start := p.i
	if p.lit("null") {
		p.i = start
		return nil, p.fail("null field (left out in canonical form)")
	}
	if err := p.value(); err != nil {
		return nil, err
	}
	return json.RawMessage(p.b[start:p.i:p.i]), nil
}

// field consumes key (a field's name with its punctuation, like
// `,"after":`) if the input continues with it.
func (p *parser) field(key string) bool { return p.lit(key) }

func (p *parser) need(key string) error {
	if !p.lit(key) {
		return p.fail("want %s", key)
	}
	return nil
}

// Decode parses entry bytes strictly: the current format version, every
// field in canonical order and form, a well-formed time and valid field
// values. It accepts exactly the bytes Encode writes. The JSON fields of
// the result (Before, After, Payload) alias b.
func Decode(b []byte) (Entry, error) {
	if len(b) > MaxEntrySize {
		return Entry{}, fmt.Errorf("entry is %d bytes (at most %d)", len(b), MaxEntrySize)
	}
	if !utf8.Valid(b) {
		return Entry{}, errors.New("entry is not valid UTF-8")
	}
	p := &parser{b: b}
	var e Entry
	var err error
	if !p.lit("{") {
		return Entry{}, p.fail("not a JSON object")
	}
	if err := p.need(`"actor":`); err != nil {
		return Entry{}, err
	}
	if err := p.expect(`{"id":`); err != nil {
		return Entry{}, err
	}
	if e.Actor.ID, err = p.str(); err != nil {
		return Entry{}, err
	}
	if err := p.expect(`,"role":`); err != nil {
		return Entry{}, err
	}
	if e.Actor.Role, err = p.str(); err != nil {
		return Entry{}, err
	}
	if err := p.expect("}"); err != nil {
		return Entry{}, err
	}
	if p.field(`,"after":`) {
		if e.After, err = p.raw(); err != nil {
			return Entry{}, err
		}
	}
	if p.field(`,"before":`) {
		if e.Before, err = p.raw(); err != nil {
			return Entry{}, err
		}
	}
	if err := p.need(`,"event":`); err != nil {
		return Entry{}, err
	}
	ev, err := p.str()
	if err != nil {
		return Entry{}, err
	}
	e.Event = Event(ev)
	if p.field(`,"payload":`) {
		if e.Payload, err = p.raw(); err != nil {
			return Entry{}, err
		}
	}
	if err := p.need(`,"seq":`); err != nil {
		return Entry{}, err
	}
	if e.Seq, err = p.uint(); err != nil {
		return Entry{}, err
	}
	if p.field(`,"subject":`) {
		if err := p.subject(&e.Subject); err != nil {
			return Entry{}, err
		}
	}
	if err := p.need(`,"success":`); err != nil {
		return Entry{}, err
	}
	switch {
	case p.lit("true"):
		e.Success = true
	case p.lit("false"):
	default:
		return Entry{}, p.fail("success is not true or false")
	}
	if err := p.need(`,"time":`); err != nil {
		return Entry{}, err
	}
	if e.Time, err = p.time(); err != nil {
		return Entry{}, err
	}
	if !p.field(`,"v":`) {
		return Entry{}, errors.New("entry has no format version (or fields out of order)")
	}
	v, err := p.uint()
	if err != nil {
		return Entry{}, err
	}
	if v != FormatVersion {
		return Entry{}, fmt.Errorf("entry format version %d is not supported (this writ reads %d)", v, FormatVersion)
	}
	if err := p.expect("}"); err != nil {
		return Entry{}, err
	}
	if p.i != len(b) {
		return Entry{}, p.fail("data after the object")
	}
	if err := e.validate(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// uint reads a canonical unsigned integer (no sign, no leading zero).
func (p *parser) uint() (uint64, error) {
	start := p.i
	if p.lit("0") {
		return 0, nil
	}
	if p.digits() == 0 || p.b[start] == '0' {
		p.i = start
		return 0, p.fail("want an unsigned integer")
	}
	v, err := strconv.ParseUint(string(p.b[start:p.i]), 10, 64)
	if err != nil {
		return 0, p.fail("integer out of range")
	}
	return v, nil
}

// subject reads {"digest":...,"kind":...,"name":...} with the empty
// optional fields left out.
func (p *parser) subject(s *Subject) error {
	var err error
	if err := p.expect("{"); err != nil {
		return err
	}
	if p.field(`"digest":`) {
		if s.Digest, err = p.str(); err != nil {
			return err
		}
		if s.Digest == "" {
			return p.fail("empty digest (left out in canonical form)")
		}
		if err := p.need(`,"kind":`); err != nil {
			return err
		}
	} else if err := p.need(`"kind":`); err != nil {
		return err
	}
	if s.Kind, err = p.str(); err != nil {
		return err
	}
	if p.field(`,"name":`) {
		if s.Name, err = p.str(); err != nil {
			return err
		}
		if s.Name == "" {
			return p.fail("empty name (left out in canonical form)")
		}
	}
	if *s == (Subject{}) {
		return p.fail("empty subject (left out in canonical form)")
	}
	return p.expect("}")
}

// time reads a quoted time in TimeLayout: fixed widths, UTC, exactly six
// fractional digits, every field in range. It is what time.Parse with
// TimeLayout accepts (FuzzDecode compares), without allocating.
func (p *parser) time() (time.Time, error) {
	const n = len(TimeLayout) + 2 // with the quotes
	if len(p.b)-p.i < n || p.b[p.i] != '"' || p.b[p.i+n-1] != '"' {
		return time.Time{}, p.fail("want a time in %s", TimeLayout)
	}
	b := p.b[p.i+1 : p.i+n-1]
	num := func(from, to int) int {
		v := 0
		for _, c := range b[from:to] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 7), num(8, 10)
	hour, minute, sec, micro := num(11, 13), num(14, 16), num(17, 19), num(20, 26)
	if b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != '.' || b[26] != 'Z' ||
		year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
		sec < 0 || sec > 59 || micro < 0 {
		return time.Time{}, fmt.Errorf("entry time %q is not %s", b, TimeLayout)
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, micro*1000, time.UTC)
	if t.Day() != day { // February 30th and the like
		return time.Time{}, fmt.Errorf("entry time %q is not a date", b)
	}
	p.i += n
	return t, nil
}
