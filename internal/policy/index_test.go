package policy_test

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"testing/fstest"

	"go.yaml.in/yaml/v3"

	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/policies"
)

// policySet loads the default policies with some files replaced (by name;
// nil content removes the file) and data.writ.config changed by edit.
func policySet(t testing.TB, replace map[string][]byte, edit func(config map[string]any)) *policy.Set {
	t.Helper()
	fsys := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || policy.IsTestFile(p) {
			return err
		}
		data, err := fs.ReadFile(policies.FS, p)
		fsys["policies/"+p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range replace {
		fsys["policies/"+name] = &fstest.MapFile{Data: data}
	}
	if edit != nil {
		var doc map[string]any
		if err := yaml.Unmarshal(fsys["policies/data.yaml"].Data, &doc); err != nil {
			t.Fatal(err)
		}
		edit(doc["writ"].(map[string]any)["config"].(map[string]any))
		out, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		fsys["policies/data.yaml"] = &fstest.MapFile{Data: out}
	}
	set, err := policy.LoadFS(fsys, "policies", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// unindexed is the default policy set as it was before the target index:
// policies/ip.rego and policies/target_scope.rego of then, which go
// through every target (testdata/unindexed).
func unindexed(t testing.TB, edit func(map[string]any)) *policy.Set {
	t.Helper()
	replace := map[string][]byte{}
	for _, name := range []string{"ip.rego", "target_scope.rego"} {
		data, err := os.ReadFile("testdata/unindexed/" + name)
		if err != nil {
			t.Fatal(err)
		}
		replace[name] = data
	}
	return policySet(t, replace, edit)
}

// targetCorpus makes n random lists of 1 to 40 distinct targets drawn
// from the ranges the default checks care about (reserved, private,
// documentation, allow-listed) and elsewhere, as addresses and as
// prefixes of every interesting length, IPv4 and IPv6.
func targetCorpus(n int) [][]string {
	r := rand.New(rand.NewPCG(20, 26))
	v4 := []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.168.0.0/16", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"255.255.255.255/32", "8.8.8.8/32", "8.8.4.4/32", "1.1.1.1/32", "1.0.0.1/32", "9.9.9.9/32", "8.0.0.0/7", "0.0.0.0/0"}
	v6 := []string{"::/128", "::1/128", "fe80::/10", "ff00::/8", "fc00::/7", "2001:db8::/32", "2001:4860:4860::8888/128",
		"2606:4700:4700::1111/128", "2a00::/12", "::/0"}
	v4Bits := []int{0, 1, 4, 6, 7, 8, 10, 12, 15, 16, 17, 20, 24, 28, 31, 32}
	v6Bits := []int{0, 7, 8, 10, 16, 32, 47, 48, 64, 127, 128}
	random := func(pools []string) netip.Addr {
		p := netip.MustParsePrefix(pools[r.IntN(len(pools))])
		b := p.Addr().AsSlice()
		for i := range b {
			b[i] ^= byte(r.UintN(256))
		}
		a, _ := netip.AddrFromSlice(b)
		// Keep the pool's network bits: a random address inside it.
		out := a.AsSlice()
		base := p.Addr().AsSlice()
		for i := range out {
			bits := max(0, min(8, p.Bits()-8*i))
			mask := byte(0xff << (8 - bits))
			out[i] = base[i]&mask | out[i]&^mask
		}
		addr, _ := netip.AddrFromSlice(out)
		return addr
	}
	lists := make([][]string, n)
	for i := range lists {
		seen := map[string]bool{}
		for range 1 + r.IntN(40) {
			var a netip.Addr
			bitsOf := v4Bits
			if r.IntN(3) == 0 {
				a, bitsOf = random(v6), v6Bits
			} else {
				a = random(v4)
			}
			t := a.String()
			if r.IntN(2) == 0 {
				t = netip.PrefixFrom(a, bitsOf[r.IntN(len(bitsOf))]).Masked().String()
			}
			if !seen[t] {
				seen[t] = true
				lists[i] = append(lists[i], t)
			}
		}
	}
	return lists
}

// The default policies decide on writ's index of the targets exactly as
// the policies of before decided target by target: on a corpus of
// playbooks, every reason (one per target and range) is the same.
func TestTargetIndexDecidesAsTargets(t *testing.T) {
	t.Parallel()
	settings := map[string]func(map[string]any){
		"defaults": nil,
		"stricter": func(c map[string]any) {
			c["reserved_addresses"] = map[string]any{"include_documentation_ranges": true}
			c["allowlisted_networks"] = map[string]any{"10.0.0.0/8": "office", "2001:db8:4::/48": "partner", "8.8.0.0/16": "resolvers",
				"192.0.2.77/32": "monitoring"}
			c["target_scope"] = map[string]any{"min_prefix_length": map[string]any{"ipv4": 20, "ipv6": 56}, "max_targets": map[string]any{"default": 30}}
		},
	}
	corpus := targetCorpus(400)
	for name, edit := range settings {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			now, before := policySet(t, nil, edit), unindexed(t, edit)
			policy.IndexEvery(now) // the corpus's lists are short: index them all the same
			differ, reasons := 0, 0
			for i, targets := range corpus {
				op := []string{"apply", "revert"}[i%2]
				envName := []string{"staging", "production"}[(i/2)%2]
				env, _ := policy.DefaultEnvironments().Lookup(envName)
				list := make([]any, len(targets))
				for j, tg := range targets {
					list[j] = tg
				}
				in := policy.Input{Operation: op, Environment: env, Change: policy.Change{Type: map[string]string{"apply": "create", "revert": "delete"}[op]},
					Playbook: map[string]any{"path": "playbooks/case.yaml", "metadata": map[string]any{"name": "case", "labels": map[string]any{}},
						"spec": map[string]any{"action": "block_ip", "targets": list, "severity": "high", "environment": envName,
							"justification": "corpus", "execution": "auto", "params": map[string]any{}}}}
				got, want := now.Decide(context.Background(), in), before.Decide(context.Background(), in)
				got.PolicyDigest, want.PolicyDigest = "", ""
				reasons += len(want.Reasons)
				if !reflect.DeepEqual(got, want) {
					differ++
					if differ <= 3 {
						t.Errorf("%s of %v:\n got  %+v\n want %+v", op, targets, got, want)
					}
				}
				for _, r := range want.Reasons {
					if r.Rule == policy.RuleRuntime || r.Rule == policy.RuleTimeout {
						t.Fatalf("the reference failed: %v", r)
					}
				}
			}
			if differ > 0 {
				t.Errorf("%d of %d decisions differ", differ, len(corpus))
			}
			if reasons < len(corpus) {
				t.Errorf("only %d reasons over %d decisions: the corpus misses the checks", reasons, len(corpus))
			}
		})
	}
}

// bulkInput is a block_ip apply in staging of n targets from a feed:
// addresses and /24 prefixes spread over the IPv4 space (some in private,
// reserved and allow-listed ranges), a few /12 prefixes (too broad) and
// IPv6 addresses.
func bulkInput(n int) policy.Input {
	list := make([]any, n)
	for i := range list {
		switch {
		case i%400 == 0:
			list[i] = fmt.Sprintf("%d.%d.0.0/12", 1+i%223, (i/223)%16*16)
		case i%4 == 0:
			list[i] = fmt.Sprintf("%d.%d.%d.0/24", 1+i%223, (i/223)%256, (i/7)%256)
		case i%4 == 1:
			list[i] = fmt.Sprintf("2a0%x:%x:%x::%x", i%10, i%65536, i/65536, i%7+1)
		default:
			list[i] = fmt.Sprintf("%d.%d.%d.%d", 1+i%223, (i/223)%256, (i/3)%256, 1+i%254)
		}
	}
	env, _ := policy.DefaultEnvironments().Lookup("staging")
	return policy.Input{Environment: env, Change: policy.Change{Type: "create"},
		Playbook: map[string]any{"path": "playbooks/feed.yaml", "metadata": map[string]any{"name": "feed", "labels": map[string]any{}},
			"spec": map[string]any{"action": "block_ip", "targets": list, "targetsFile": "indicators/feed.txt", "severity": "high",
				"environment": "staging", "justification": "feed", "execution": "auto", "params": map[string]any{}}}}
}

// A decision on 100,000 targets of which thousands are refused lists the
// first reasons of each check and counts the rest.
func TestBulkDecisionIsBounded(t *testing.T) {
	t.Parallel()
	d := loadDefaults(t).Decide(context.Background(), bulkInput(100_000))
	if d.Outcome != policy.Deny {
		t.Fatalf("%+v", d)
	}
	per := map[string]int{}
	for _, r := range d.Reasons {
		if r.Rule == policy.RuleTimeout || r.Rule == policy.RuleRuntime {
			t.Fatalf("the policies failed: %v", r)
		}
		per[r.Rule]++
	}
	for _, rule := range []string{"reserved_addresses", "private_targets", "target_scope"} {
		if per[rule] != policy.MaxReasonsPerRule+1 {
			t.Errorf("%s gave %d reasons, want %d and a count", rule, per[rule], policy.MaxReasonsPerRule+1)
		}
	}
	last := ""
	for _, r := range d.Reasons {
		if r.Rule == "reserved_addresses" {
			last = r.Message
		}
	}
	var more int
	if _, err := fmt.Sscanf(last, "… and %d more reasons of this rule (writ lists the first 20)", &more); err != nil || more < 100 {
		t.Errorf("last reserved_addresses reason %q", last)
	}
}

// BenchmarkDecideBulk is one decision of the default policies on 100,000
// targets (a playbook with a targets file), as writ makes it: the input
// with its target index.
func BenchmarkDecideBulk(b *testing.B) {
	writGC(b)
	set := loadDefaults(b)
	in := bulkInput(100_000)
	ctx := context.Background()
	for b.Loop() {
		if d := set.Decide(ctx, in); d.Outcome != policy.Deny || d.Reasons[0].Rule != "allowlisted_networks" {
			b.Fatalf("%+v", d.Reasons[:3])
		}
	}
}

// BenchmarkDecideBulkUnindexed is the same decision by the policies of
// before the index, which go through every target: what the index saves.
func BenchmarkDecideBulkUnindexed(b *testing.B) {
	writGC(b)
	set := unindexed(b, nil)
	ctx := context.Background()
	in := bulkInput(100_000)
	for b.Loop() {
		set.Decide(ctx, in)
	}
}
