// Package netnstest makes network namespaces for tests: the nftables
// backend's own tests and the reconciler's end-to-end test run nft and
// traffic inside namespaces of their own. It needs root (CAP_NET_ADMIN) and
// the ip and nft binaries.
package netnstest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NeedRoot skips when the tests cannot make network namespaces: that needs
// CAP_NET_ADMIN (CI runs as root). A missing `ip` or `nft` binary is a
// failure, not a skip.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (CAP_NET_ADMIN); CI runs these as root")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required (apt-get install iproute2 nftables): %v", bin, err)
		}
	}
}

func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// New makes a named network namespace, removed when the test ends.
func New(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "writt" + hex.EncodeToString(b[:])
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// Enter runs fn on an OS thread inside the namespace; sockets made there
// belong to it.
func Enter(t testing.TB, name string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	var failure string
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			failure = err.Error()
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			failure = err.Error()
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			failure = err.Error()
			runtime.UnlockOSThread()
			return
		}
		fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime then retires it.
			failure = "restore namespace: " + err.Error()
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	if failure != "" {
		t.Fatal(failure)
	}
}

// Pair joins two new namespaces with a veth pair: fw has 198.18.0.1, peer
// has 198.18.0.2 and 198.18.0.3 (and 2001:db8:18::1 / ::2, ::3). The
// addresses exist only inside the test's own namespaces.
func Pair(t testing.TB) (fw, peer string) {
	t.Helper()
	fw, peer = New(t), New(t)
	a, b := fw[:10]+"a", peer[:10]+"b"
	Run(t, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
	Run(t, "ip", "link", "set", a, "netns", fw)
	Run(t, "ip", "link", "set", b, "netns", peer)
	Run(t, "ip", "-n", fw, "addr", "add", "198.18.0.1/24", "dev", a)
	Run(t, "ip", "-n", peer, "addr", "add", "198.18.0.2/24", "dev", b)
	Run(t, "ip", "-n", peer, "addr", "add", "198.18.0.3/24", "dev", b)
	Run(t, "ip", "-n", fw, "addr", "add", "2001:db8:18::1/64", "dev", a, "nodad")
	Run(t, "ip", "-n", peer, "addr", "add", "2001:db8:18::2/64", "dev", b, "nodad")
	Run(t, "ip", "-n", peer, "addr", "add", "2001:db8:18::3/64", "dev", b, "nodad")
	Run(t, "ip", "-n", fw, "link", "set", a, "up")
	Run(t, "ip", "-n", peer, "link", "set", b, "up")
	return fw, peer
}

// Listen starts a TCP listener in ns that accepts and closes connections.
func Listen(t testing.TB, ns, addr string) string {
	t.Helper()
	var ln net.Listener
	Enter(t, ns, func() {
		var err error
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// Reaches reports whether a TCP connection from src (in ns) to dst gets
// through within the timeout.
func Reaches(t testing.TB, ns, src, dst string) bool {
	t.Helper()
	ok := false
	Enter(t, ns, func() {
		d := net.Dialer{Timeout: 700 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", dst)
		if err == nil {
			ok = true
			c.Close()
		}
	})
	return ok
}

// Generation reads the nftables ruleset generation of a namespace
// (NFT_MSG_GETGEN): the kernel bumps it once per committed transaction,
// so the difference across a change is how many transactions it took.
func Generation(t testing.TB, name string) uint32 {
	t.Helper()
	f, err := os.Open(filepath.Join("/run/netns", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil || len(msgs) != 1 || len(msgs[0].Data) < 4 {
		t.Fatalf("nftables generation in %s: %d messages, %v", name, len(msgs), err)
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32()
		}
	}
	t.Fatalf("nftables generation in %s: no NFTA_GEN_ID (%v)", name, ad.Err())
	return 0
}
