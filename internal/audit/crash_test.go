package audit

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/dbtest"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/store"
)

// Environment of the crash test's child process.
const (
	crashChildEnv = "WRIT_AUDIT_CRASH_CHILD"
	crashURLEnv   = "WRIT_AUDIT_CRASH_URL"
	crashKeyEnv   = "WRIT_AUDIT_CRASH_KEY"
)

// crashChild appends through a group-commit Appender from several
// goroutines and prints "ack SEQ HASH" for every acknowledged entry, until
// it is killed. TestMain runs it in the re-executed test binary.
func crashChild() int {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URL: os.Getenv(crashURLEnv)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	key, err := LoadSigningKey(os.Getenv(crashKeyEnv), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	l, err := NewLog(LogOptions{Store: st, Key: key})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	a, err := NewAppender(AppenderOptions{Log: l, MaxBatch: 300, MaxDelay: 3 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go a.Run(ctx)
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				rec, err := a.Append(ctx, testEntry(w*1000000+i))
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					continue
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d %x\n", rec.Seq, rec.Hash)
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return 0
}

// TestCrashKeepsAcknowledged kills a process appending in batches with
// SIGKILL, again and again; after each restart the chain verifies, and
// every entry the process acknowledged before dying is in the log, with
// the hash it was acknowledged with.
func TestCrashKeepsAcknowledged(t *testing.T) {
	t.Parallel()
	if !dbtest.Started() || dbtest.Cluster() == nil && os.Getenv("DATABASE_URL") == "" {
		t.Fatal("no database server")
	}
	ctx := context.Background()
	dbURL := dbtest.URL(t)
	st, err := store.Open(ctx, store.Options{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := newKey(t)
	keyPath := filepath.Join(t.TempDir(), "audit.key")
	pemBytes, err := keys.MarshalPrivate(key.priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	trusted := trustOnly(t, key)

	acked := map[uint64]string{}
	rounds := 6
	if testing.Short() {
		rounds = 3
	}
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashURLEnv+"="+dbURL, crashKeyEnv+"="+keyPath)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a different point each round, once acks flow: the
		// appender is then always in the middle of some batch.
		killAfter := 2000 + round*1700
		if raceEnabled {
			killAfter = 300 + round*170
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ack" {
				continue
			}
			seq, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", sc.Text())
			}
			if prev, ok := acked[seq]; ok && prev != f[2] {
				t.Fatalf("seq %d acknowledged twice with different hashes", seq)
			}
			acked[seq] = f[2]
			if n++; n == killAfter {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v before it was killed; stderr:\n%s", round, err, stderr.String())
		}
		rep := verifyDB(t, st, trusted)
		if rep.Bad != nil {
			t.Fatalf("round %d: after the kill: %v", round, rep.Bad)
		}
		t.Logf("round %d: killed after %d acks; log has %d entries", round, n, rep.Entries)
	}
	rep := verifyDB(t, st, trusted)
	if rep.Bad != nil {
		t.Fatal(rep.Bad)
	}
	for seq := range acked {
		if seq >= rep.Entries {
			t.Fatalf("acknowledged seq %d is beyond the log's %d entries", seq, rep.Entries)
		}
	}
	// Every acknowledged entry is stored with the hash it was
	// acknowledged with.
	rows, err := st.AuditEntries(ctx, 0, int(rep.Entries))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if h, ok := acked[uint64(r.Seq)]; ok && h != hex.EncodeToString(r.Hash) {
			t.Fatalf("seq %d: acknowledged hash %s, stored %x", r.Seq, h, r.Hash)
		}
	}
	t.Logf("%d acknowledged entries all present in %d", len(acked), rep.Entries)
}
