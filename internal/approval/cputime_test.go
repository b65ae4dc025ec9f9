//go:build unix

package approval

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU runs the benchmark's loop body and reports, beside ns/op (wall
// time, which a busy machine inflates), the process's CPU time per
// operation: what the work costs, summed over the cores it ran on.
func reportCPU(b *testing.B, body func()) {
	b.Helper()
	b.ResetTimer()
	start := cpuTime(b)
	for b.Loop() {
		body()
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N)/float64(time.Millisecond), "cpu-ms/op")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
