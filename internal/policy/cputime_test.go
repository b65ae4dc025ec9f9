//go:build unix

package policy_test

import (
	"runtime/metrics"
	"syscall"
	"testing"
	"time"
)

// cpuUsage is the process's CPU time so far and the part of it the Go
// runtime estimates its garbage collector took.
type cpuUsage struct {
	total, gc time.Duration
}

func readCPU(b *testing.B) cpuUsage {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	var gc time.Duration
	if s[0].Value.Kind() == metrics.KindFloat64 {
		gc = time.Duration(s[0].Value.Float64() * float64(time.Second))
	}
	return cpuUsage{total: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), gc: gc}
}

// reportCPU reports, beside the wall-clock figures (which a busy or
// throttled machine inflates), the CPU time each of n decisions cost,
// summed over the cores they ran on, and the garbage collector's share
// of it.
func reportCPU(b *testing.B, start cpuUsage, n int) {
	b.Helper()
	end := readCPU(b)
	total := end.total - start.total
	if n == 0 || total <= 0 {
		return
	}
	b.ReportMetric(float64(total.Microseconds())/float64(n), "cpu-µs/decision")
	b.ReportMetric(100*float64(end.gc-start.gc)/float64(total), "gc-cpu-%")
}
