package retry

import (
	"context"
	"testing"
	"time"
)

func TestCeilingDoublesUpToMax(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		if got := b.Ceiling(i); got != w {
			t.Errorf("Ceiling(%d) = %s, want %s", i, got, w)
		}
	}
	if got := b.Ceiling(10_000); got != time.Second {
		t.Errorf("Ceiling(10000) = %s, want the cap", got)
	}
	if got := (Backoff{Initial: time.Hour}).Ceiling(200); got <= 0 {
		t.Errorf("uncapped Ceiling(200) overflowed to %s", got)
	}
	if got := (Backoff{}).Delay(3); got != 0 {
		t.Errorf("zero backoff Delay = %s", got)
	}
}

func TestDelayJittersInUpperHalf(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999999} {
		b := Backoff{Initial: time.Second, Max: 8 * time.Second, Rand: func() float64 { return r }}
		for attempt := range 6 {
			c := b.Ceiling(attempt)
			d := b.Delay(attempt)
			if d < c/2 || d > c {
				t.Fatalf("Delay(%d) with rand %v = %s, outside [%s, %s]", attempt, r, d, c/2, c)
			}
		}
	}
	// With the real source, delays of one attempt differ.
	b := Backoff{Initial: time.Second, Max: time.Minute}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[b.Delay(3)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 delays took only %d values: no jitter", len(seen))
	}
}

func TestSleepStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if (Backoff{Initial: time.Hour}).Sleep(ctx, 0) {
		t.Fatal("Sleep reported a full pause on a cancelled context")
	}
	if !(Backoff{Initial: time.Microsecond}).Sleep(context.Background(), 0) {
		t.Fatal("Sleep of a microsecond did not complete")
	}
}
