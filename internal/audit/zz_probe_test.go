package audit

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestZZProbe(t *testing.T) {
	ctx := context.Background()
	l, _ := newLog(t)
	appendN(t, l, 50000, 1000)
	st := l.Store()
	for _, chunk := range []int{1000, 4096, 50000} {
		start := time.Now()
		var next int64
		n := 0
		for {
			rows, err := st.Pool().Query(ctx, `SELECT seq, at, actor_id, event, entry, prev_hash, hash, key_id, signature FROM audit_entries WHERE seq >= $1 ORDER BY seq LIMIT $2`, pgx.QueryResultFormats{1}, next, chunk)
			if err != nil {
				t.Fatal(err)
			}
			k := 0
			tot := 0
			for rows.Next() {
				rv := rows.RawValues()
				tot += len(rv[4])
				k++
			}
			rows.Close()
			if k == 0 {
				break
			}
			n += k
			next += int64(k)
		}
		t.Logf("raw chunk %d: read %d in %v (%.0f/s)", chunk, n, time.Since(start), float64(n)/time.Since(start).Seconds())
	}
	for _, q := range []string{
		`SELECT seq, at, actor_id, event, entry, prev_hash, hash, key_id, signature FROM audit_entries ORDER BY seq`,
		`SELECT seq, at, actor_id, event, entry, prev_hash, hash, key_id, signature FROM audit_entries WHERE seq >= 0 AND seq < 10000000 ORDER BY seq`,
		`SELECT entry FROM audit_entries ORDER BY seq`,
		`SELECT seq, entry, prev_hash, hash, key_id, signature FROM audit_entries ORDER BY seq`,
	} {
		for range 2 {
			start := time.Now()
			rows, _ := st.Pool().Query(ctx, q, pgx.QueryResultFormats{1})
			n := 0
			for rows.Next() {
				_ = rows.RawValues()
				n++
			}
			rows.Close()
			t.Logf("%d rows in %v: %.60s", n, time.Since(start), q)
		}
		var plan string
		st.Pool().QueryRow(ctx, "EXPLAIN "+q).Scan(&plan)
		t.Log(plan)
	}
	start := time.Now()
	var tot int64
	rows, _ := st.Pool().Query(ctx, `SELECT entry FROM audit_entries ORDER BY seq`, pgx.QueryResultFormats{1})
	for rows.Next() {
		tot += int64(len(rows.RawValues()[0]))
	}
	rows.Close()
	t.Logf("entry only: %v", time.Since(start))
}
