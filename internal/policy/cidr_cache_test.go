package policy

import (
	"strings"
	"testing"
)

// The parsed-CIDR cache keeps only short strings that parse: a string
// that is neither an address nor a prefix (a justification, a whole
// playbook) is never kept.
func TestParsedCIDRCacheKeepsOnlyAddresses(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	for _, s := range []string{long, "not an address", "10.0.0.0/33", "0000:0000:0000:0000:0000:ffff:255.255.255.255/128" + strings.Repeat(" ", 20)} {
		if _, ok := parseCIDRCached(s); ok {
			t.Fatalf("%.40q parsed", s)
		}
		if _, kept := parsedCIDRs.Load(s); kept {
			t.Errorf("%.40q is kept", s)
		}
	}
	for _, s := range []string{"192.0.2.77", "0000:0000:0000:0000:0000:ffff:255.255.255.255/128"} {
		if _, ok := parseCIDRCached(s); !ok {
			t.Fatalf("%q did not parse", s)
		}
		if _, kept := parsedCIDRs.Load(s); !kept && parsedCIDRsLen.Load() < maxParsedCIDRs {
			t.Errorf("%q is not kept", s)
		}
	}
}
