package wakepattern

import (
	"bytes"
	"errors"
	"fmt"
	"golang.org/x/net/bpf"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func bpfSkipIfEPERM(t *testing.T, what string, err error) {
	t.Helper()
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		t.Skipf("%s: %v: needs CAP_NET_ADMIN and CAP_NET_RAW (and CAP_SYS_ADMIN for the namespace)", what, err)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func bpfHtons(v uint16) uint16 { return v<<8 | v>>8 }

// TestIntegrationBPFAttach attaches a compiled program to an AF_PACKET
// socket on one end of a veth pair in a fresh network namespace, sends a
// frame that matches and one that does not from the other end, and checks
// that only the matching one is received.
func TestIntegrationBPFAttach(t *testing.T) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current netns: %v", err)
	}
	name := fmt.Sprintf("snic-bpf-%d", os.Getpid())
	ns, err := netns.NewNamed(name) // switches this thread into it
	if err != nil {
		_ = netns.Set(orig)
		orig.Close()
		runtime.UnlockOSThread()
		bpfSkipIfEPERM(t, "new netns", err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	// Leave the namespace before the test returns; the sockets stay in
	// it. A thread that cannot go back stays locked and dies with the
	// goroutine.
	back := func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("return to netns: %v", err)
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	}

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		back()
		t.Fatalf("netlink handle: %v", err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bpf0"}, PeerName: "bpf1"}
	if err := h.LinkAdd(veth); err != nil {
		back()
		bpfSkipIfEPERM(t, "add veth", err)
	}
	updates, done := make(chan netlink.LinkUpdate, 64), make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{Namespace: &ns, ListExisting: true}); err != nil {
		back()
		t.Fatalf("subscribe to links: %v", err)
	}
	var ifindex [2]int
	for i, n := range []string{"bpf0", "bpf1"} {
		l, err := h.LinkByName(n)
		if err == nil {
			ifindex[i] = l.Attrs().Index
			addr := &netlink.Addr{IPNet: netipPrefixToIPNet(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 77, byte(i + 1)}), 24))}
			err = errors.Join(h.AddrAdd(l, addr), h.LinkSetUp(l))
		}
		if err != nil {
			back()
			t.Fatalf("configure %s: %v", n, err)
		}
	}

	// A veth drops what it is given before both ends have carrier.
	running := map[int]bool{}
	timeout := time.After(5 * time.Second)
	for !running[ifindex[0]] || !running[ifindex[1]] {
		select {
		case u := <-updates:
			running[int(u.Index)] = u.Flags&unix.IFF_RUNNING != 0
		case <-timeout:
			back()
			t.Fatal("veth pair not running after 5s")
		}
	}

	local := netip.MustParseAddrPort("198.18.77.2:40000")
	remote := netip.MustParseAddrPort("198.18.77.1:443")
	ps := []Pattern{{ID: 1, Kind: KindTCPConn, Conn: TCPConn{Local: local, Remote: remote}}}
	raw, err := CompileBPFRaw(ps, BPFOptions{KernelStripsVLAN: true})
	if err != nil {
		back()
		t.Fatal(err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}

	// Receiver: created with protocol 0 so nothing is queued before the
	// filter is attached, then bound to ETH_P_ALL on bpf1.
	rx, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		back()
		bpfSkipIfEPERM(t, "AF_PACKET socket", err)
	}
	defer unix.Close(rx)
	tx, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	back() // both sockets now exist in the namespace
	if err != nil {
		bpfSkipIfEPERM(t, "AF_PACKET socket", err)
	}
	defer unix.Close(tx)
	// The kernel's checker accepts every shape of program the compiler
	// makes: ARP/NS accepts, both families, every pattern kind.
	for _, c := range bpfScratchCases() {
		raw, err := CompileBPFRaw(c.patterns, c.opt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := bpfAttach(rx, raw); err != nil {
			t.Errorf("%s: the kernel refuses the program (%d instructions): %v", c.name, len(raw), err)
		}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(rx, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		t.Fatalf("SO_ATTACH_FILTER: %v", err)
	}
	if err := unix.Bind(rx, &unix.SockaddrLinklayer{Protocol: bpfHtons(unix.ETH_P_ALL), Ifindex: ifindex[1]}); err != nil {
		t.Fatalf("bind rx: %v", err)
	}

	match := bpfTCPFrame(t, bpfSpec{src: remote, dst: local, ts: true, payload: 3})
	miss := bpfTCPFrame(t, bpfSpec{src: netip.AddrPortFrom(remote.Addr(), 444), dst: local, ts: true, payload: 3})
	to := &unix.SockaddrLinklayer{Ifindex: ifindex[0], Halen: 6}
	copy(to.Addr[:], bpfHostMAC)
	for _, fr := range [][]byte{miss, match} {
		if err := unix.Sendto(tx, fr, 0, to); err != nil {
			t.Fatalf("send: %v", err)
		}
	}

	// Receive until the matching frame arrives; veth keeps order, so a
	// leaked non-matching frame would come first.
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 2048)
	for got := 0; ; got++ {
		left := time.Until(deadline)
		if left <= 0 || got > 100 {
			t.Fatal("matching frame not received")
		}
		fds := []unix.PollFd{{Fd: int32(rx), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		if n == 0 {
			continue
		}
		n, _, err = unix.Recvfrom(rx, buf, unix.MSG_DONTWAIT)
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		fr := buf[:n]
		if bytes.Equal(fr, miss) {
			t.Fatal("the kernel delivered the frame the filter should drop")
		}
		if bytes.Equal(fr, match) {
			return
		}
		t.Errorf("unexpected frame passed the filter: %x", fr)
	}
}

func netipPrefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// bpfAttach attaches raw to fd with SO_ATTACH_FILTER.
func bpfAttach(fd int, raw []bpf.RawInstruction) error {
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
}
