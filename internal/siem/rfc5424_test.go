package siem

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/writ-sec/writ/internal/store"
)

func TestMessageFormat(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.FixedZone("CET", 3600))
	h := header{hostname: "writ-1", appName: "writ", procID: "-", msgID: "audit"}
	got := string(appendMessage(nil, 110, at, h, SDID, []sdParam{{"seq", "7"}, {"q", `a"b\c]d[e`}, {"u", "ünï"}}, []byte(`{"a":1}`)))
	want := `<110>1 2026-03-04T04:06:07.890000Z writ-1 writ - audit [writ@32473 seq="7" q="a\"b\\c\]d[e" u="ünï"] {"a":1}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := string(appendMessage(nil, 0, time.Time{}, header{"-", "-", "-", "-"}, "x@1", nil, nil)); got != `<0>1 - - - - - [x@1]` {
		t.Fatalf("nil values: %s", got)
	}
	if got := string(appendFrame(nil, []byte("<1>1 - - - - - -"))); got != "16 <1>1 - - - - - -" {
		t.Fatalf("frame %q", got)
	}
	if SDID != "writ@"+strconv.Itoa(PEN) || !validSDName("writ@32473") || validSDName("a b") || validSDName(`a"`) {
		t.Fatal("SD-ID")
	}
}

func TestHeaderField(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                       "-",
		"host.example.com":       "host.example.com",
		"has space":              "has_space",
		"tab\there":              "tab_here",
		"é":                      "__", // two bytes outside PRINTUSASCII
		strings.Repeat("a", 300): strings.Repeat("a", maxHostname),
	} {
		if got := headerField(in, maxHostname); got != want || !validHeaderField(got, maxHostname) {
			t.Errorf("headerField(%q) = %q, want %q", in, got, want)
		}
	}
}

// The top-level success is read from the bytes, whatever the payload
// holds.
func TestEntrySuccess(t *testing.T) {
	t.Parallel()
	for i := range 14 {
		e := testEntry(i)
		e.Seq = uint64(i)
		e.Time = time.Now()
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if entrySuccess(b) != e.Success {
			t.Fatalf("entry %d: success %v read as %v: %s", i, e.Success, !e.Success, b)
		}
	}
}

// parseSD reads one SD-ELEMENT at the start of s as RFC 5424 §6.3 defines
// it and returns its id, params and the rest of s.
func parseSD(t *testing.T, s string) (id string, params []sdParam, rest string) {
	t.Helper()
	if !strings.HasPrefix(s, "[") {
		t.Fatalf("no SD-ELEMENT: %q", s)
	}
	s = s[1:]
	name := func() string {
		i := strings.IndexAny(s, `= ]"`)
		if i <= 0 {
			t.Fatalf("no SD-NAME at %q", s)
		}
		n := s[:i]
		if !validSDName(n) {
			t.Fatalf("bad SD-NAME %q", n)
		}
		s = s[i:]
		return n
	}
	id = name()
	for strings.HasPrefix(s, " ") {
		s = s[1:]
		p := sdParam{name: name()}
		if !strings.HasPrefix(s, `="`) {
			t.Fatalf("no =\" after %s: %q", p.name, s)
		}
		s = s[2:]
		var v strings.Builder
		for {
			if s == "" {
				t.Fatal("unterminated PARAM-VALUE")
			}
			c := s[0]
			if c == '\\' && len(s) > 1 && strings.ContainsRune(`"\]`, rune(s[1])) {
				v.WriteByte(s[1])
				s = s[2:]
				continue
			}
			if c == '"' {
				s = s[1:]
				break
			}
			if c == ']' {
				t.Fatalf("unescaped ] in PARAM-VALUE")
			}
			v.WriteByte(c)
			s = s[1:]
		}
		p.value = v.String()
		params = append(params, p)
	}
	if !strings.HasPrefix(s, "]") {
		t.Fatalf("SD-ELEMENT not closed: %q", s)
	}
	return id, params, s[1:]
}

// Any parameter value survives formatting and parsing, and the element
// ends where it should.
func FuzzParamValue(f *testing.F) {
	for _, s := range []string{"", `"`, `\`, `]`, `\]`, `a"]\b`, "ünï", `\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if !utf8.ValidString(v) {
			return
		}
		msg := string(appendMessage(nil, 13*8+6, time.Unix(0, 0), header{"h", "a", "-", "m"}, SDID, []sdParam{{"v", v}, {"w", "x"}}, []byte("MSG")))
		sd := msg[strings.Index(msg, "["):]
		id, params, rest := parseSD(t, sd)
		if id != SDID || len(params) != 2 || params[0].value != v || params[1] != (sdParam{"w", "x"}) || rest != " MSG" {
			t.Fatalf("%q: %q %+v %q", v, id, params, rest)
		}
	})
}

// An entry's message: the structured data a SIEM checks, the entry's
// bytes as MSG.
func TestEntryMessage(t *testing.T) {
	t.Parallel()
	e := store.AuditEntry{Seq: 42, At: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Event: "execution.failed",
		Entry: []byte(`{"event":"execution.failed","success":false}`), PrevHash: make([]byte, 32), Hash: []byte(strings.Repeat("\xab", 32)),
		KeyID: "k1", Signature: []byte{1, 2, 3}}
	msg := string(appendEntryMessage(nil, header{"h", "writ", "-", "audit"}, e))
	head, sd, _ := strings.Cut(msg, " [")
	if head != "<109>1 2026-01-02T03:04:05.000006Z h writ - audit" {
		t.Fatalf("header %q", head)
	}
	id, params, rest := parseSD(t, "["+sd)
	want := []sdParam{{"seq", "42"}, {"hash", strings.Repeat("ab", 32)}, {"prev", strings.Repeat("00", 32)},
		{"event", "execution.failed"}, {"key", "k1"}, {"sig", "AQID"}}
	if id != SDID || len(params) != len(want) || rest != " "+string(e.Entry) {
		t.Fatalf("%q %+v %q", id, params, rest)
	}
	for i := range want {
		if params[i] != want[i] {
			t.Fatalf("param %d: %+v, want %+v", i, params[i], want[i])
		}
	}
}
