package playbook

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TargetKind says what an action's targets are.
type TargetKind string

// Target kinds.
const (
	TargetIP       TargetKind = "ip"       // an IP address or CIDR prefix
	TargetIdentity TargetKind = "identity" // a user name, e-mail address or directory id
	TargetHost     TargetKind = "host"     // a host name or EDR host id
	TargetAny      TargetKind = "any"      // free text without control characters (team-defined actions)
)

// Catalog maps action types to their target kind.
type Catalog map[string]TargetKind

// Builtin is the catalog of the actions writ ships.
var Builtin = Catalog{
	"block_ip":     TargetIP,
	"suspend_user": TargetIdentity,
	"isolate_host": TargetHost,
}

// Names lists the catalog's actions, sorted.
func (c Catalog) Names() []string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// With returns a copy of c with more actions.
func (c Catalog) With(more Catalog) Catalog {
	out := make(Catalog, len(c)+len(more))
	for k, v := range c {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// Identities and host names: a letter or digit, then letters, digits and
// a few marks, at most 256 (identities) or 255 (hosts) characters in all.
// As regular expressions, ^[A-Za-z0-9][A-Za-z0-9._%+@-]{0,255}$ and
// ^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$; checked by hand, because Go
// compiles a counted repetition into as many copies, which cost every
// start of the binary several milliseconds.
const (
	identityMarks = "._%+@-"
	hostMarks     = "._:-"
)

func isName(s, marks string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || strings.IndexByte(marks, c) < 0) {
			return false
		}
	}
	return true
}

func isIdentity(s string) bool { return isName(s, identityMarks, 256) }

func isHost(s string) bool { return isName(s, hostMarks, 255) }

// ParseTarget checks one target for a kind and returns its canonical form
// (used to find repeats; e.g. IPv6 addresses are compressed).
func ParseTarget(kind TargetKind, s string) (string, error) {
	if s != strings.TrimSpace(s) {
		return "", fmt.Errorf("%q has leading or trailing spaces", s)
	}
	switch kind {
	case TargetIP:
		return parseIPTarget(s)
	case TargetIdentity:
		if !isIdentity(s) {
			return "", fmt.Errorf("%q is not a user name, e-mail address or id (letters, digits and . _ %% + @ - only)", s)
		}
		return strings.ToLower(s), nil
	case TargetHost:
		if !isHost(s) {
			return "", fmt.Errorf("%q is not a host name or host id (letters, digits and . _ : - only)", s)
		}
		return strings.ToLower(s), nil
	case TargetAny:
		for _, r := range s {
			if r < 0x20 || r == 0x7f {
				return "", fmt.Errorf("%q contains control characters", s)
			}
		}
		return s, nil
	}
	return "", fmt.Errorf("unknown target kind %q", kind)
}

// ParseIPTarget parses an IP target: an address, or a CIDR prefix with no
// host bits set.
func ParseIPTarget(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a valid CIDR prefix", s)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has an IPv6 zone, which cannot be blocked", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write the IPv4 prefix", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; write %s", s, m)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a valid IP address or CIDR prefix", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q has an IPv6 zone, which cannot be blocked", s)
	}
	if a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address; write %s", s, a.Unmap())
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseIPTarget(s string) (string, error) {
	p, err := ParseIPTarget(s)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// Bounds of expiresAfter.
const (
	MinExpiry = time.Minute
	MaxExpiry = 366 * 24 * time.Hour
)

var durationPartRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)`)

// ParseDuration parses Go-style durations extended with days (d) and weeks
// (w), e.g. 72h, 1h30m, 7d, and checks they lie within MinExpiry and
// MaxExpiry.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	units := map[string]float64{
		"ms": float64(time.Millisecond), "s": float64(time.Second), "m": float64(time.Minute),
		"h": float64(time.Hour), "d": float64(24 * time.Hour), "w": float64(7 * 24 * time.Hour),
	}
	var total float64
	rest := s
	for rest != "" {
		m := durationPartRE.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("%q is not a duration such as 30m, 72h or 7d", s)
		}
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration such as 30m, 72h or 7d", s)
		}
		total += n * units[m[2]]
		if total > math.MaxInt64/2 {
			return 0, fmt.Errorf("%q is longer than %s", s, FormatDuration(MaxExpiry))
		}
		rest = rest[len(m[0]):]
	}
	d := time.Duration(total)
	if d < MinExpiry {
		return 0, fmt.Errorf("%q is shorter than %s", s, FormatDuration(MinExpiry))
	}
	if d > MaxExpiry {
		return 0, fmt.Errorf("%q is longer than %s", s, FormatDuration(MaxExpiry))
	}
	return d, nil
}

// FormatDuration writes d in days when it is a whole number of days.
func FormatDuration(d time.Duration) string {
	day := 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
