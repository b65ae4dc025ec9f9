package playbook

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// isIdentity and isHost accept exactly what the regular expressions they
// stand for accept.
func TestNamesMatchTheirRegularExpressions(t *testing.T) {
	identityRE := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._%+@-]{0,255}$`)
	hostRE := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$`)
	check := func(s string) {
		if got, want := isIdentity(s), identityRE.MatchString(s); got != want {
			t.Fatalf("isIdentity(%q) = %v, the expression says %v", s, got, want)
		}
		if got, want := isHost(s), hostRE.MatchString(s); got != want {
			t.Fatalf("isHost(%q) = %v, the expression says %v", s, got, want)
		}
	}
	for _, s := range []string{"", "a", "-a", ".a", "a-", "alice@example.com", "ws-1.corp.example.com", "fe80::1",
		"a b", "é", "a\n", strings.Repeat("a", 255), strings.Repeat("a", 256), strings.Repeat("a", 257), "a%b", "a:b", "_a", "a_b"} {
		check(s)
	}
	const alphabet = "aZ09._%+@-:/ é\x00"
	r := rand.New(rand.NewPCG(3, 4))
	for range 50000 {
		n := r.IntN(8)
		if r.IntN(50) == 0 {
			n = 250 + r.IntN(10)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		check(string(b))
	}
}
