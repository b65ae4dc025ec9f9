// Package retry computes the pauses between attempts at something that may
// fail for a while (a remote API, a backend, the private PostgreSQL): an
// exponential backoff with jitter, so that many clients failing together
// (replicas, executions of one playbook, a receiver coming back) do not
// retry in lockstep. It is the one place writ's retry loops take their
// pauses from.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff doubles a pause per attempt up to a cap, and takes a random
// point in its upper half ("equal jitter"): the pause before retry n
// (0-based) lies in [d/2, d] with d = min(Initial·2ⁿ, Max). The lower half
// keeps a failing peer from being hammered, the random half spreads
// clients apart.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration // 0: no cap
	// Rand returns a number in [0, 1); nil uses math/rand/v2.
	Rand func() float64
}

// Ceiling is the pause before retry attempt without jitter:
// min(Initial·2^attempt, Max).
func (b Backoff) Ceiling(attempt int) time.Duration {
	d := b.Initial
	if d <= 0 {
		return 0
	}
	for i := 0; i < attempt; i++ {
		if b.Max > 0 && d >= b.Max {
			break
		}
		if d > time.Duration(1<<62) {
			break
		}
		d *= 2
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	return d
}

// Delay is the pause before retry attempt (0-based), jittered into
// [Ceiling/2, Ceiling].
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Ceiling(attempt)
	if d <= 1 {
		return d
	}
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	half := d / 2
	return half + time.Duration(r()*float64(d-half))
}

// Sleep waits Delay(attempt), or until ctx ends; it reports whether the
// full pause passed.
func (b Backoff) Sleep(ctx context.Context, attempt int) bool {
	t := time.NewTimer(b.Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
