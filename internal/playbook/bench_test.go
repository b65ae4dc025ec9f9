package playbook

import (
	"fmt"
	"testing"
	"testing/fstest"
)

// corpus makes n valid playbook files of the three built-in actions.
func corpus(n int) fstest.MapFS {
	fsys := fstest.MapFS{}
	for i := range n {
		var src string
		switch i % 3 {
		case 0:
			src = fmt.Sprintf(`apiVersion: writ/v1
kind: Playbook
metadata:
  name: block-%d
  ticket: INC-%d
spec:
  action: block_ip
  targets: [203.0.%d.%d, 198.51.%d.0/24, '2001:db8:%x::/48']
  justification: C2 beaconing seen by EDR
  severity: high
  environment: production
  threatType: c2
  expiresAfter: 72h
`, i, i, (i/256)%256, i%256, i%256, i)
		case 1:
			src = fmt.Sprintf(`apiVersion: writ/v1
kind: Playbook
metadata:
  name: suspend-%d
spec:
  action: suspend_user
  targets: [user%d@example.com]
  justification: Token replay after phishing
  severity: medium
  environment: staging
`, i, i)
		default:
			src = fmt.Sprintf(`apiVersion: writ/v1
kind: Playbook
metadata:
  name: isolate-%d
  labels: {team: finance}
spec:
  action: isolate_host
  targets: [ws-%d]
  justification: Beacon source
  severity: critical
  environment: production
`, i, i)
		}
		fsys[fmt.Sprintf("playbooks/team%d/pb-%d.yaml", i%20, i)] = &fstest.MapFile{Data: []byte(src)}
	}
	return fsys
}

// BenchmarkValidate10000 reads, parses, schema-checks, semantically checks
// and name-checks 10,000 playbooks per iteration (target: under 2 s).
func BenchmarkValidate10000(b *testing.B) {
	fsys := corpus(10000)
	b.ResetTimer()
	for b.Loop() {
		pbs, problems, err := LoadFS(fsys, Dir, Options{})
		if err != nil || len(problems) > 0 || len(pbs) != 10000 {
			b.Fatalf("%d playbooks, problems %v, err %v", len(pbs), problems, err)
		}
	}
}

func BenchmarkParseOne(b *testing.B) {
	f := corpus(1)
	data := f["playbooks/team0/pb-0.yaml"].Data
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, ps := Parse("p.yaml", data, Options{}); ps != nil {
			b.Fatal(ps)
		}
	}
}
