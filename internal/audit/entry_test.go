package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestEncodeIsCanonicalAndDecodes(t *testing.T) {
	t.Parallel()
	e := testEntry(3)
	e.Before = json.RawMessage(` { "b" : 1, "a" : [true, null, "<x>"] } `)
	e.After = json.RawMessage(`{"z":1.50,"a":12345678901234567890}`)
	if err := e.canonicalize(); err != nil {
		t.Fatal(err)
	}
	e.Seq = 17
	e.Time = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"actor":{"id":"user-3","role":"approver"},"after":{"a":12345678901234567890,"z":1.50},` +
		`"before":{"a":[true,null,"<x>"],"b":1},"event":"approval.accepted",` +
		`"payload":{"n":3,"pull_request":42,"reason":"C2 beaconing seen on fin-ws-12"},"seq":17,` +
		`"subject":{"digest":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","kind":"playbook","name":"block-c2-beacon"},` +
		`"success":true,"time":"2026-03-01T11:00:00.123456Z","v":1}`
	if string(b) != want {
		t.Fatalf("encoded\n%s\nwant\n%s", b, want)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := d.Encode()
	if !bytes.Equal(again, b) || d.Seq != 17 || d.Actor != e.Actor || !d.Time.Equal(time.Date(2026, 3, 1, 11, 0, 0, 123456000, time.UTC)) {
		t.Fatalf("round trip: %+v", d)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	e := testEntry(1)
	e.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := e.canonicalize(); err != nil {
		t.Fatal(err)
	}
	good, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	s := string(good)
	cases := []struct {
		name, bytes, want string
	}{
		{"white space", strings.Replace(s, `"seq":0`, `"seq": 0`, 1), "canonical"},
		{"key order", strings.Replace(s, `{"id":"user-1","role":"approver"}`, `{"role":"approver","id":"user-1"}`, 1), "canonical"},
		{"payload key order", strings.Replace(s, `{"n":1,"pull_request":42`, `{"pull_request":42,"n":1`, 1), "canonical"},
		{"unknown field", strings.Replace(s, `"v":1}`, `"v":1,"x":2}`, 1), "canonical"},
		{"no version", strings.Replace(s, `,"v":1}`, `}`, 1), "no format version"},
		{"leading zero", strings.Replace(s, `"seq":0`, `"seq":00`, 1), "canonical"},
		{"upper-case escape", strings.Replace(s, `C2 beaconing`, `C2\u001Fbeaconing`, 1), "canonical"},
		{"escaped newline as \\u", strings.Replace(s, `C2 beaconing`, `C2\u000abeaconing`, 1), "canonical"},
		{"escaped slash", strings.Replace(s, `fin-ws-12`, `fin\/ws-12`, 1), "canonical"},
		{"duplicate key", strings.Replace(s, `{"n":1,`, `{"n":1,"n":1,`, 1), "canonical"},
		{"null payload", strings.Replace(s, `"payload":{"n":1,"pull_request":42,"reason":"C2 beaconing seen on fin-ws-12"}`, `"payload":null`, 1), "canonical"},
		{"empty digest", strings.Replace(s, `"digest":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",`, `"digest":"",`, 1), "canonical"},
		{"future version", strings.Replace(s, `"v":1}`, `"v":2}`, 1), "version 2"},
		{"time precision", strings.Replace(s, `05.000000Z`, `05Z`, 1), "time"},
		{"time zone", strings.Replace(s, `05.000000Z`, `05.000000+01:00`, 1), "time"},
		{"negative seq", strings.Replace(s, `"seq":0`, `"seq":-1`, 1), "canonical"},
		{"trailing data", s + `{}`, "after the object"},
		{"empty actor", strings.Replace(s, `"id":"user-1"`, `"id":""`, 1), "actor id is empty"},
		{"bad event", strings.Replace(s, `"approval.accepted"`, `"Approval"`, 1), "event"},
		{"not json", `not json`, "not a JSON object"},
		{"bad utf-8", strings.Replace(s, "user-1", "user-\xff", 1), "UTF-8"},
		{"null subject", strings.Replace(s, `"subject":{"digest":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","kind":"playbook","name":"block-c2-beacon"}`, `"subject":null`, 1), "canonical"},
		{"escaped html", strings.Replace(s, `C2 beaconing`, `C2 \u003c beaconing`, 1), "canonical"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.bytes == s {
				t.Fatal("case does not change the bytes")
			}
			_, err := Decode([]byte(c.bytes))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Decode = %v; want an error containing %q", err, c.want)
			}
			if _, err := decodeReference([]byte(c.bytes)); err == nil {
				t.Fatalf("the reference decoder accepts it")
			}
		})
	}
}

func TestEntryValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(*Entry)
		want string
	}{
		{"no actor", func(e *Entry) { e.Actor.ID = " " }, "actor id is empty"},
		{"no role", func(e *Entry) { e.Actor.Role = "" }, "actor role is empty"},
		{"no event", func(e *Entry) { e.Event = "" }, "event is empty"},
		{"one-word event", func(e *Entry) { e.Event = "checked" }, "dotted"},
		{"subject without kind", func(e *Entry) { e.Subject = Subject{Name: "x"} }, "subject kind is empty"},
		{"long actor", func(e *Entry) { e.Actor.ID = strings.Repeat("a", 300) }, "at most 256"},
		{"bad payload", func(e *Entry) { e.Payload = json.RawMessage(`{"a":`) }, "payload: invalid JSON"},
		{"two values", func(e *Entry) { e.Payload = json.RawMessage(`{} {}`) }, "payload: invalid JSON: data after"},
		{"bad utf-8 payload", func(e *Entry) { e.Payload = json.RawMessage("\"\xff\"") }, "UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := testEntry(1)
			c.edit(&e)
			err := e.canonicalize()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("canonicalize = %v; want %q", err, c.want)
			}
		})
	}
	e := testEntry(1)
	e.Payload = json.RawMessage(" null ")
	if err := e.canonicalize(); err != nil || e.Payload != nil {
		t.Fatalf("null payload: %v %q", err, e.Payload)
	}
}

func TestReservedEvents(t *testing.T) {
	t.Parallel()
	e := testEntry(1)
	e.Event = EventKeyRotated
	if _, err := prepare([]Entry{e}); !errors.Is(err, ErrReservedEvent) {
		t.Fatalf("prepare = %v; want ErrReservedEvent", err)
	}
}

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		`{"b":{"d":1,"c":[3,2]},"a":"x"}`: `{"a":"x","b":{"c":[3,2],"d":1}}`,
		`{"a":1,"a":2}`:                   `{"a":2}`,
		`1e400`:                           `1e400`,
		`"\u00e9<&>"`:                     `"é<&>"`,
		`[ ]`:                             `[]`,
		`{"é":1,"z":2,"Z":3}`:             `{"Z":3,"z":2,"é":1}`,
	}
	for in, want := range cases {
		got, err := CanonicalJSON([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("CanonicalJSON(%s) = %s, %v; want %s", in, got, err, want)
		}
		again, _ := CanonicalJSON(got)
		if !bytes.Equal(again, got) {
			t.Errorf("not idempotent: %s -> %s", got, again)
		}
	}
}

// FuzzDecode: Decode must never panic, must accept exactly what the
// reference decoder (encoding/json plus re-encoding) accepts, and whatever
// it accepts must be exactly what Encode writes for it.
func FuzzDecode(f *testing.F) {
	e := testEntry(5)
	_ = e.canonicalize()
	e.Time = time.Unix(1700000000, 0)
	b, _ := e.Encode()
	f.Add(b)
	e.Before = json.RawMessage(`{"a":[1,-2.5e+3,"\u2028\n\u0001é"],"b":{}}`)
	e.Subject = Subject{Kind: "user"}
	b, _ = e.Encode()
	f.Add(b)
	f.Add([]byte(`{"actor":{"id":"a","role":"b"},"event":"a.b","seq":0,"success":false,"time":"2026-01-01T00:00:00.000000Z","v":1}`))
	// time.Parse takes a comma before the fraction; canonical form does not.
	f.Add([]byte(`{"actor":{"id":"a","role":"b"},"event":"a.b","seq":0,"success":false,"time":"2026-01-01T00:00:00,000000Z","v":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Decode(b)
		ref, refErr := decodeReference(b)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("Decode: %v; reference: %v\n%q", err, refErr, b)
		}
		if err != nil {
			return
		}
		again, err := d.Encode()
		if err != nil {
			t.Fatalf("accepted entry does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted non-canonical bytes\n%s\nre-encoded\n%s", b, again)
		}
		if refAgain, _ := ref.Encode(); !bytes.Equal(refAgain, again) {
			t.Fatalf("Decode and the reference disagree:\n%s\n%s", again, refAgain)
		}
	})
}

// FuzzEncodeDecode: every entry the log can write decodes to itself.
func FuzzEncodeDecode(f *testing.F) {
	f.Add("alice", "approver", "pr.checked", "playbook", "block-c2", "", true, `{"x":[1,"<&>"]}`, uint64(7), int64(1700000000123456789))
	f.Add("a\u2028b", "r", "x.y", "", "", "", false, `"\u0000"`, uint64(0), int64(0))
	f.Fuzz(func(t *testing.T, actor, role, event, kind, name, digest string, ok bool, payload string, seq uint64, nanos int64) {
		e := Entry{
			Actor: Actor{ID: actor, Role: role}, Event: Event(event), Success: ok,
			Subject: Subject{Kind: kind, Name: name, Digest: digest},
			Payload: json.RawMessage(payload),
		}
		if e.canonicalize() != nil {
			return
		}
		e.Seq, e.Time = seq, time.Unix(0, nanos).UTC().Truncate(time.Microsecond)
		b, err := e.Encode()
		if err != nil {
			return
		}
		if ref, err := encodeReference(&e); err != nil || !bytes.Equal(ref, b) {
			t.Fatalf("Encode and encoding/json differ:\n%s\n%s (%v)", b, ref, err)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode of Encode's output: %v\n%s", err, b)
		}
		again, _ := d.Encode()
		if !bytes.Equal(again, b) || d.Seq != seq || d.Actor != e.Actor || d.Event != e.Event || d.Subject != e.Subject || !d.Time.Equal(e.Time) {
			t.Fatalf("round trip changed the entry:\n%s\n%s", b, again)
		}
	})
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[1,2,{"y":null,"x":"é"}]}`, `1.0`, `"\ud800"`, `[]`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := CanonicalJSON(b)
		// The fast check agrees with the slow path it short-cuts.
		if ref, refErr := canonicalReference(b); (refErr == nil) != (err == nil) || !bytes.Equal(ref, c) {
			t.Fatalf("CanonicalJSON(%q) = %q, %v; reference %q, %v", b, c, err, ref, refErr)
		}
		if isCanonical(b) != (err == nil && c != nil && bytes.Equal(c, b)) {
			t.Fatalf("isCanonical(%q) = %v; canonical form %q", b, isCanonical(b), c)
		}
		if err != nil || c == nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("canonical form is not JSON: %s", c)
		}
		again, err := CanonicalJSON(c)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("not idempotent: %s -> %s (%v)", c, again, err)
		}
	})
}

func TestValidEvent(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$`)
	for _, s := range []string{"pr.checked", "a.b.c", "x_1.y-2", "incident.note", "", "a", "a.", ".a", "a..b", "A.b", "a.1b", "1a.b", "a.b_", "a.-b", "é.b", "a.b c", "audit.key_rotated"} {
		if got, want := validEvent(s), re.MatchString(s); got != want {
			t.Errorf("validEvent(%q) = %v; want %v", s, got, want)
		}
	}
}

// TestParserTime: the decoder's time reader accepts what time.Parse with
// TimeLayout accepts and Format writes back the same (Parse alone also
// takes a comma before the fraction), and reads the same instant.
func TestParserTime(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"2026-01-02T03:04:05.000000Z", "2024-02-29T00:00:00.000000Z", "2026-02-29T00:00:00.000000Z",
		"2026-04-31T00:00:00.000000Z", "2026-12-31T23:59:59.999999Z", "0000-01-01T00:00:00.000000Z",
		"9999-12-31T23:59:59.999999Z", "2026-1-02T03:04:05.000000Z", "2026-01-02T24:00:00.000000Z",
		"2026-01-02T23:60:00.000000Z", "2026-01-02T23:59:60.000000Z", "2026-01-02T03:04:05.000000z",
		"2026-01-02T03:04:05.00000Z", "2026-01-02T03:04:05.0000000Z", "2026-13-02T03:04:05.000000Z",
		"2026-00-02T03:04:05.000000Z", "2026-01-00T03:04:05.000000Z", "+026-01-02T03:04:05.000000Z",
		"2026-01-02 03:04:05.000000Z", "2026-01-02T03:04:05,000000Z", "2026-01-02T03:04:05.00000aZ",
		"2100-02-29T00:00:00.000000Z", "2000-02-29T00:00:00.000000Z", "2026-06-31T00:00:00.000000Z",
	} {
		want, werr := time.Parse(TimeLayout, s)
		if werr == nil && want.Format(TimeLayout) != s {
			werr = errors.New("not canonical")
		}
		p := &parser{b: []byte(`"` + s + `"`)}
		got, err := p.time()
		if (err == nil) != (werr == nil) || (err == nil && !got.Equal(want)) {
			t.Errorf("%s: parser %v, %v; time.Parse %v, %v", s, got, err, want, werr)
		}
	}
}
