package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// planCorpus writes n generated playbooks under dir/playbooks: a mix the
// default policies allow, ask approval for (production, private targets,
// critical severity, high-risk actions) and deny (reserved and
// allowlisted addresses), like the corpus bench/plan-vs-conftest.sh
// generates.
func planCorpus(tb testing.TB, dir string, n int) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "playbooks"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		a, b := i/250%250, i%250
		action, targets, severity, env := "block_ip", fmt.Sprintf("[203.0.%d.%d, 198.51.100.%d/32]", a, b, b%200), "high", "production"
		switch i % 10 {
		case 1:
			env, severity = "staging", "low"
		case 2:
			targets = fmt.Sprintf("[10.%d.%d.1]", a, b)
		case 3:
			severity = "critical"
		case 4:
			action, targets = "suspend_user", fmt.Sprintf("[user%d@example.com]", i)
		case 5:
			action, targets = "isolate_host", fmt.Sprintf("[ws-%d.corp.example.com]", i)
		case 6:
			targets = "[127.0.0.1]"
		case 7:
			targets = "[8.8.8.8]"
		}
		name := fmt.Sprintf("pb-%05d", i)
		p := filepath.Join(dir, "playbooks", name+".yaml")
		if err := os.WriteFile(p, []byte(playbookYAML(name, action, targets, severity, env)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// planOnce runs writ plan on dir with jobs workers and returns its output.
func planOnce(tb testing.TB, dir, format string, jobs int) ([]byte, int) {
	tb.Helper()
	var out, errOut bytes.Buffer
	g := &globals{dataDir: filepath.Join(dir, "data")}
	code := runPlan(context.Background(), g, planParams{format: format, paths: []string{dir}, jobs: jobs}, &out, &errOut)
	if code != exitOK && code != exitFailure || errOut.Len() > 0 {
		tb.Fatalf("plan: %d\n%s", code, errOut.String())
	}
	return out.Bytes(), code
}

// The parallel plan decides and prints exactly what the serial one does,
// in the same order, on the whole generated corpus.
func TestPlanParallelMatchesSerial(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	planCorpus(t, dir, 1000)
	for _, format := range []string{"json", "text"} {
		serial, code1 := planOnce(t, dir, format, 1)
		parallel, code2 := planOnce(t, dir, format, max(4, runtime.GOMAXPROCS(0)))
		if code1 != code2 || !bytes.Equal(serial, parallel) {
			t.Fatalf("%s: serial (%d, %d bytes) and parallel (%d, %d bytes) plans differ", format, code1, len(serial), code2, len(parallel))
		}
		if format == "json" {
			// Byte for byte what json.Encoder with a two-space indent writes.
			var entries []planEntry
			if err := json.Unmarshal(serial, &entries); err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetIndent("", "  ")
			if err := enc.Encode(entries); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(want.Bytes(), serial) {
				t.Fatalf("the JSON differs from json.Encoder's (%d and %d bytes)", want.Len(), len(serial))
			}
		}
		if format == "json" && (bytes.Count(serial, []byte(`"decision": "deny"`)) != 200 || bytes.Count(serial, []byte(`"decision": "allow"`)) != 100) {
			t.Fatalf("the corpus was not decided as generated: %d denied, %d allowed", bytes.Count(serial, []byte(`"decision": "deny"`)),
				bytes.Count(serial, []byte(`"decision": "allow"`)))
		}
	}
}

// BenchmarkPlan1000 is writ plan --format json on 1,000 generated
// playbooks, start-up (policy compile) included.
func BenchmarkPlan1000(b *testing.B) {
	dir := b.TempDir()
	planCorpus(b, dir, 1000)
	b.ResetTimer()
	for b.Loop() {
		out, _ := planOnce(b, dir, "json", 0)
		_, _ = io.Discard.Write(out)
	}
}
