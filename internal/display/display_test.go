package display

import "testing"

func TestSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"block 192.0.2.1\n\tfor INC-1", "block 192.0.2.1\n\tfor INC-1"},
		{"ok\x1b[2Jcleared", `ok\u001b[2Jcleared`},
		{"admin\u202e// lanimret", `admin\u202e// lanimret`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"line\u2028sep\u2029para", `line\u2028sep\u2029para`},
		{"bad \xff byte", `bad \ufffd byte`},
		{"naïve 東京", "naïve 東京"},
	} {
		if got := Safe(tc.in); got != tc.want {
			t.Errorf("Safe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"refused:\n\tnot signed  by a key", 0, "refused: not signed by a key"},
		{"abcdef", 3, "abc…"},
		{"abc", 3, "abc"},
		{"ab東京", 4, "ab…"}, // never half a character
		{"  ", 5, ""},
	} {
		if got := Line(tc.in, tc.limit); got != tc.want {
			t.Errorf("Line(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}
