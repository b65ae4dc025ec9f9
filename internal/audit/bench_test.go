package audit

import (
	"context"
	"testing"
)

// BenchmarkAppendOne: one entry per Append on the pool (its own
// transaction), on the test cluster (fsync off).
func BenchmarkAppendOne(b *testing.B) {
	l, _ := newLog(b)
	ctx := context.Background()
	e := testEntry(1)
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(ctx, l.Store(), e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendOneParallel: as BenchmarkAppendOne from GOMAXPROCS*4
// goroutines contending for the append lock.
func BenchmarkAppendOneParallel(b *testing.B) {
	l, _ := newLog(b)
	ctx := context.Background()
	e := testEntry(1)
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, l.Store(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchLog is a log of n entries, appended in batches of 1000.
func benchLog(b *testing.B, n int) (*Log, *KeySet) {
	b.Helper()
	l, _ := newLog(b)
	appendN(b, l, n, 1000)
	return l, trustOnly(b, l.Key())
}

func benchVerify(b *testing.B, skipSigs bool) {
	const n = 50000
	l, trusted := benchLog(b, n)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		rep, err := VerifyDatabase(ctx, l.Store(), VerifyOptions{Trusted: trusted, SkipSignatures: skipSigs})
		if err != nil || rep.Bad != nil || rep.Entries != n {
			b.Fatalf("%v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkVerifyDatabase: hashes, chain, canonical decoding and tree,
// reading from PostgreSQL.
func BenchmarkVerifyDatabase(b *testing.B) { benchVerify(b, true) }

// BenchmarkVerifyDatabaseSignatures: as above, and every signature.
func BenchmarkVerifyDatabaseSignatures(b *testing.B) { benchVerify(b, false) }
