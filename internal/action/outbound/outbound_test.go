package outbound

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"7": 7 * time.Second, " 0 ": 0, "Sun, 01 Mar 2026 12:00:30 GMT": 30 * time.Second,
		"Sun, 01 Mar 2026 11:00:00 GMT": 0,
	} {
		if got, ok := RetryAfter(in, now); !ok || got != want {
			t.Errorf("RetryAfter(%q) = %s %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "-1", "soon", "1.5"} {
		if _, ok := RetryAfter(in, now); ok {
			t.Errorf("RetryAfter(%q) parsed", in)
		}
	}
}

func TestReadBody(t *testing.T) {
	t.Parallel()
	if b, err := ReadBody(strings.NewReader("12345"), 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the limit: %q %v", b, err)
	}
	if _, err := ReadBody(strings.NewReader("123456"), 5); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("past the limit: %v", err)
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	if got := Clean(" a\nb\x7fc\t"); got != "a b c" {
		t.Fatalf("Clean = %q", got)
	}
	if got := Clean(strings.Repeat("x", 300)); len(got) != 200+len("…") {
		t.Fatalf("Clean kept %d bytes", len(got))
	}
}
