package github

import (
	"errors"
	"strings"
	"testing"
)

func TestExtractEnvelopes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		want []string
		err  string
	}{
		{"none", "LGTM", nil, ""},
		{"one", "Approved.\n\n```writ\n{\"a\":1}\n```\n", []string{`{"a":1}`}, ""},
		{"crlf and indentation", "x\r\n   ```writ  \r\n {\"a\":1} \r\n```\r\n", []string{`{"a":1}`}, ""},
		{"two", "```writ\nA\n```\ntext\n```writ\nB\n````\n", []string{"A", "B"}, ""},
		{"other languages are not read", "```json\n{\"a\":1}\n```\n```writ-ish\nX\n```", nil, ""},
		{"four spaces is code, not a fence", "    ```writ\nX\n```", nil, ""},
		{"unterminated", "```writ\n{\"a\":1}\n", nil, "not closed"},
		{"empty block", "```writ\n```", []string{""}, ""},
		{"too many", strings.Repeat("```writ\nX\n```\n", MaxEnvelopesPerBody+1), nil, "more than"},
	}
	for _, c := range cases {
		got, err := ExtractEnvelopes(c.body)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v; want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: %d blocks %q; want %q", c.name, len(got), got, c.want)
			continue
		}
		for i := range got {
			if string(got[i]) != c.want[i] {
				t.Errorf("%s: block %d = %q; want %q", c.name, i, got[i], c.want[i])
			}
		}
	}
	if _, err := ExtractEnvelopes(strings.Repeat("```writ\nX\n```\n", MaxEnvelopesPerBody+1)); !errors.Is(err, ErrTooManyEnvelopes) {
		t.Fatalf("too many: %v", err)
	}
	// What writ posts, writ reads back.
	got, err := ExtractEnvelopes(FormatEnvelope("Approved by bob.", []byte("{\"payloadType\":\"x\"}\n")))
	if err != nil || len(got) != 1 || string(got[0]) != `{"payloadType":"x"}` {
		t.Fatalf("round trip: %q %v", got, err)
	}
}

// Review bodies are untrusted: extraction never panics, and every block
// it returns is a part of the body.
func FuzzExtractEnvelopes(f *testing.F) {
	f.Add("```writ\n{}\n```")
	f.Add("a\r\n```writ\r\nb\r\n```")
	f.Add("```writ\n```writ\n```\n```")
	f.Add(strings.Repeat("```writ\nX\n```\n", 12))
	f.Fuzz(func(t *testing.T, body string) {
		blocks, err := ExtractEnvelopes(body)
		if len(blocks) > MaxEnvelopesPerBody {
			t.Fatalf("%d blocks", len(blocks))
		}
		norm := strings.ReplaceAll(body, "\r\n", "\n")
		for _, b := range blocks {
			if !strings.Contains(norm, string(b)) {
				t.Fatalf("block %q is not in the body", b)
			}
		}
		_ = err
	})
}

// Webhook payload metadata is read from untrusted bytes before anything is
// stored.
func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"action":"opened","repository":{"full_name":"a/b"}}`))
	f.Add([]byte(`{"action":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := decodeMeta(payload)
		if err == nil && len(m.Action) > 64 {
			t.Fatalf("action of %d bytes accepted", len(m.Action))
		}
	})
}
