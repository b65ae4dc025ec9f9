package server

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter is a token bucket per client address, for the endpoints
// that check passwords and for refused approval envelopes. It keeps at
// most MaxClients buckets; past that, clients share one overflow bucket,
// so a flood from many addresses is limited as a whole instead of growing
// memory.
type RateLimiter struct {
	perMinute int
	burst     int
	max       int
	now       func() time.Time

	mu       sync.Mutex
	clients  map[netip.Addr]*bucket
	overflow *rate.Limiter
	lastGC   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// RateLimitOptions configures a RateLimiter.
type RateLimitOptions struct {
	// PerMinute attempts a minute per client, Burst at once. Defaults 10
	// and 5.
	PerMinute, Burst int
	// MaxClients bounds the buckets kept. Default 10000.
	MaxClients int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// NewRateLimiter makes a limiter.
func NewRateLimiter(o RateLimitOptions) *RateLimiter {
	if o.PerMinute <= 0 {
		o.PerMinute = 10
	}
	if o.Burst <= 0 {
		o.Burst = 5
	}
	if o.MaxClients <= 0 {
		o.MaxClients = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &RateLimiter{perMinute: o.PerMinute, burst: o.Burst, max: o.MaxClients, now: o.Now, clients: map[netip.Addr]*bucket{}}
	l.overflow = rate.NewLimiter(l.every(), o.Burst)
	return l
}

func (l *RateLimiter) every() rate.Limit { return rate.Limit(float64(l.perMinute) / 60) }

// idle is how long an unused bucket is kept: by then it is full again.
const idle = 10 * time.Minute

// Allow takes a token for a client; when there is none it says how long
// to wait.
func (l *RateLimiter) Allow(client netip.Addr) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastGC) > time.Minute {
		for a, b := range l.clients {
			if now.Sub(b.seen) > idle {
				delete(l.clients, a)
			}
		}
		l.lastGC = now
	}
	b, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= l.max {
			return reserve(l.overflow, now)
		}
		b = &bucket{lim: rate.NewLimiter(l.every(), l.burst)}
		l.clients[client] = b
	}
	b.seen = now
	return reserve(b.lim, now)
}

func reserve(lim *rate.Limiter, now time.Time) (bool, time.Duration) {
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// writeRateLimited answers 429 rate_limited with a Retry-After of wait,
// rounded up to the next second.
func writeRateLimited(w http.ResponseWriter, wait time.Duration, format string, args ...any) {
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
	writeProblem(w, http.StatusTooManyRequests, "rate_limited", format, args...)
}

// ClientAddr is the address a request comes from: the peer, or, when the
// peer is one of trusted (a load balancer), the right-most address of
// X-Forwarded-For that is not trusted.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() || !inAny(peer, trusted) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a mangled header: trust nothing in it
		}
		a = a.Unmap()
		if !inAny(a, trusted) {
			return a
		}
	}
	return peer
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
