//go:build linux

package host

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// repairLab is a private network namespace with lo up, for one test.
type repairLab struct {
	t  testing.TB
	ns netns.NsHandle
}

// repairSkipIfPerm skips the test when err is a permission error: the only
// reason a privileged test may skip.
func repairSkipIfPerm(t testing.TB, err error, what string) {
	t.Helper()
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("%s: %v (needs CAP_NET_ADMIN and CAP_SYS_ADMIN; run as root)", what, err)
	}
}

// newRepairLab creates the namespace on a locked OS thread and returns that
// thread to the original namespace; the namespace goes away in t.Cleanup
// once its sockets are closed.
func newRepairLab(t testing.TB) *repairLab {
	t.Helper()
	l := &repairLab{t: t}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		repairSkipIfPerm(t, err, "create network namespace")
		t.Fatalf("create netns: %v", err)
	}
	l.ns = ns
	lerr := func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}()
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the new namespace: let it die with the
		// goroutine rather than return it to the pool.
		ns.Close()
		t.Fatalf("restore netns: %v", err)
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close() })
	if lerr != nil {
		t.Fatalf("lo up: %v", lerr)
	}
	return l
}

// do runs fn with the calling goroutine's thread in the lab namespace:
// sockets created by fn live there.
func (l *repairLab) do(fn func() error) {
	l.t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		l.t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(l.ns); err != nil {
		runtime.UnlockOSThread()
		l.t.Fatalf("enter netns: %v", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		l.t.Fatalf("restore netns: %v", err) // thread stays locked and dies
	}
	runtime.UnlockOSThread()
	if ferr != nil {
		l.t.Fatal(ferr)
	}
}

// repairPair is one connection inside the lab: client dialled, server accepted.
type repairPair struct {
	client, server *net.TCPConn
}

func (l *repairLab) connect(network string) repairPair {
	l.t.Helper()
	host := "127.0.0.1"
	if network == "tcp6" {
		host = "::1"
	}
	var ln *net.TCPListener
	var client *net.TCPConn
	l.do(func() error {
		var err error
		ln, err = net.ListenTCP(network, &net.TCPAddr{IP: net.ParseIP(host)})
		if err != nil {
			return err
		}
		client, err = net.DialTCP(network, nil, ln.Addr().(*net.TCPAddr))
		return err
	})
	defer ln.Close()
	server, err := ln.AcceptTCP()
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return repairPair{client: client, server: server}
}

// wireSegment is one TCP segment seen on lo.
type wireSegment struct {
	src, dst     netip.AddrPort
	seq, ack     uint32
	syn, fin     bool
	rst, ackFlag bool
	window       uint16
	payload      []byte
	mss          uint16
	wscale       int // -1 when absent
	tsval, tsecr uint32
	hasTS        bool
	ttl, tos     uint8 // IPv4 TTL and TOS, or IPv6 hop limit and traffic class
}

// wireCapture records the TCP segments crossing lo in the lab, each once (the
// outgoing copy is ignored).
type wireCapture struct {
	t      testing.TB
	f      *os.File
	done   chan struct{}
	mu     sync.Mutex
	segs   []wireSegment
	notify chan struct{} // closed and replaced on every new segment
}

func repairHtons(v uint16) uint16 { return v<<8 | v>>8 }

func (l *repairLab) capture() *wireCapture {
	l.t.Helper()
	var fd int
	l.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(repairHtons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return err
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: repairHtons(unix.ETH_P_ALL), Ifindex: lo.Index})
	})
	c := &wireCapture{t: l.t, f: os.NewFile(uintptr(fd), "packet"), done: make(chan struct{}), notify: make(chan struct{})}
	go c.run()
	l.t.Cleanup(func() {
		c.f.Close()
		<-c.done
	})
	return c
}

func (c *wireCapture) run() {
	defer close(c.done)
	buf := make([]byte, 1<<17)
	for {
		n, err := c.f.Read(buf)
		if err != nil {
			return
		}
		s, ok := repairParseSegment(buf[:n])
		if !ok {
			continue
		}
		c.mu.Lock()
		c.segs = append(c.segs, s)
		close(c.notify)
		c.notify = make(chan struct{})
		c.mu.Unlock()
	}
}

func repairParseSegment(frame []byte) (wireSegment, bool) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	tl, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		return wireSegment{}, false
	}
	var src, dst netip.Addr
	var ttl, tos uint8
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		ttl, tos = ip.TTL, ip.TOS
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		ttl, tos = ip.HopLimit, ip.TrafficClass
	default:
		return wireSegment{}, false
	}
	s := wireSegment{
		src: netip.AddrPortFrom(src, uint16(tl.SrcPort)), dst: netip.AddrPortFrom(dst, uint16(tl.DstPort)),
		seq: tl.Seq, ack: tl.Ack, syn: tl.SYN, fin: tl.FIN, rst: tl.RST, ackFlag: tl.ACK,
		window: tl.Window, payload: append([]byte(nil), tl.Payload...), wscale: -1,
		ttl: ttl, tos: tos,
	}
	for _, o := range tl.Options {
		switch o.OptionType {
		case layers.TCPOptionKindMSS:
			if len(o.OptionData) == 2 {
				s.mss = uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1])
			}
		case layers.TCPOptionKindWindowScale:
			if len(o.OptionData) == 1 {
				s.wscale = int(o.OptionData[0])
			}
		case layers.TCPOptionKindTimestamps:
			if len(o.OptionData) == 8 {
				d := o.OptionData
				s.tsval = uint32(d[0])<<24 | uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3])
				s.tsecr = uint32(d[4])<<24 | uint32(d[5])<<16 | uint32(d[6])<<8 | uint32(d[7])
				s.hasTS = true
			}
		}
	}
	return s, true
}

// mark returns the index of the next segment to be captured.
func (c *wireCapture) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.segs)
}

// waitFor returns the first segment at index >= from that matches, waiting
// until the deadline; ok is false when none came.
func (c *wireCapture) waitFor(from int, d time.Duration, match func(wireSegment) bool) (wireSegment, int, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for i := from; ; {
		c.mu.Lock()
		for ; i < len(c.segs); i++ {
			if match(c.segs[i]) {
				s := c.segs[i]
				c.mu.Unlock()
				return s, i, true
			}
		}
		ch := c.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return wireSegment{}, i, false
		}
	}
}

// since returns a copy of the segments captured at index >= from.
func (c *wireCapture) since(from int) []wireSegment {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wireSegment(nil), c.segs[from:]...)
}

func repairAddrPort(a net.Addr) netip.AddrPort { return repairUnmap(a) }

// repairWaitReadable blocks until conn has unread bytes (at least n), without
// reading them, using the poller.
func repairWaitReadable(t testing.TB, conn *net.TCPConn, n int) {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	var ioctlErr error
	err = raw.Read(func(fd uintptr) bool {
		var q int
		q, ioctlErr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		return ioctlErr != nil || q >= n
	})
	if err != nil || ioctlErr != nil {
		t.Fatalf("wait readable: %v %v", err, ioctlErr)
	}
}

// repairInRepair reports whether the socket is in repair mode: TCP_REPAIR_WINDOW
// is readable only there (EPERM elsewhere).
func repairInRepair(t testing.TB, conn *net.TCPConn) bool {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var gerr error
	raw.Control(func(fd uintptr) {
		var w [sizeofRepairWindow / 4]uint32
		_, gerr = repairGetsockopt(int(fd), unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, unsafe.Pointer(&w[0]), sizeofRepairWindow)
	})
	switch {
	case errors.Is(gerr, unix.EPERM):
		return false
	case gerr == nil:
		return true
	}
	t.Fatalf("getsockopt TCP_REPAIR_WINDOW: %v", gerr)
	return false
}

func repairSockoptInt(t testing.TB, conn *net.TCPConn, level, opt int) int {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) })
	if gerr != nil {
		t.Fatalf("getsockopt %d/%d: %v", level, opt, gerr)
	}
	return v
}

func repairWrite(t testing.TB, c *net.TCPConn, p []byte) {
	t.Helper()
	if _, err := c.Write(p); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func repairRead(t testing.TB, c *net.TCPConn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func repairMustFreeze(t testing.TB, c *net.TCPConn) (*Frozen, TCPState) {
	t.Helper()
	f, st, err := Freeze(c)
	repairSkipIfPerm(t, err, "TCP_REPAIR")
	if err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	return f, st
}

// repairFreezeWhenAcked freezes c, retrying while the only reason it is not idle
// is a pure ACK still in flight on lo (the peer's delayed ACK that the
// peer's own Freeze has just flushed).
func repairFreezeWhenAcked(t testing.TB, c *net.TCPConn) (*Frozen, TCPState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		f, st, err := Freeze(c)
		repairSkipIfPerm(t, err, "TCP_REPAIR")
		var ni *NotIdleError
		if err == nil {
			return f, st
		}
		if !errors.As(err, &ni) || ni.Queues.Unsent != 0 || ni.Queues.Unread != 0 || time.Now().After(deadline) {
			t.Fatalf("Freeze: %v", err)
		}
		<-tick.C
	}
}

// repairExchange sends req from client to server and resp back, so that both
// ends end up idle except for the client's ACK of resp.
func repairExchange(t testing.TB, p repairPair, req, resp []byte) {
	t.Helper()
	repairWrite(t, p.client, req)
	if got := repairRead(t, p.server, len(req)); !bytes.Equal(got, req) {
		t.Fatalf("server read %q, want %q", got, req)
	}
	repairWrite(t, p.server, resp)
	if got := repairRead(t, p.client, len(resp)); !bytes.Equal(got, resp) {
		t.Fatalf("client read %q, want %q", got, resp)
	}
}

func repairPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func repairNoRST(t testing.TB, c *wireCapture, from int) {
	t.Helper()
	for _, s := range c.since(from) {
		if s.rst {
			t.Errorf("RST on the wire: %v -> %v seq %d", s.src, s.dst, s.seq)
		}
	}
}

// TestIntegrationIncomingWhileFrozen pins down what the kernel does with a
// segment that reaches a socket in repair mode: repair mode filters no
// input, so the data is queued (RCV.NXT advances) and ACKed at once, and
// the app cannot read it (EPERM) or write (EINVAL) until the thaw. Nothing
// is lost. The model relies on the NIC keeping every frame from a frozen
// socket.
func TestIntegrationIncomingWhileFrozen(t *testing.T) {
	l := newRepairLab(t)
	c := l.capture()
	p := l.connect("tcp4")
	repairExchange(t, p, []byte("ping"), []byte("pong"))
	f, st := repairMustFreeze(t, p.client)

	m := c.mark()
	msg := []byte("while frozen")
	repairWrite(t, p.server, msg)
	client := repairAddrPort(p.client.LocalAddr())
	ack, _, ok := c.waitFor(m, 10*time.Second, func(s wireSegment) bool {
		return s.src == client && s.ack == st.RcvNxt+uint32(len(msg))
	})
	if !ok {
		t.Fatal("the frozen socket did not answer the data segment")
	}
	if ack.ack != st.RcvNxt+uint32(len(msg)) || len(ack.payload) != 0 || ack.seq != st.SndNxt {
		t.Errorf("frozen socket sent seq %d ack %d len %d, want a pure ACK seq %d ack %d",
			ack.seq, ack.ack, len(ack.payload), st.SndNxt, st.RcvNxt+uint32(len(msg)))
	}
	var ni *NotIdleError
	if err := Idle(p.client); !errors.As(err, &ni) || ni.Queues.Unread != len(msg) {
		t.Errorf("Idle while frozen = %v, want %d bytes unread", err, len(msg))
	}
	p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.client.Read(make([]byte, 64)); !errors.Is(err, os.ErrPermission) {
		t.Errorf("Read while frozen = %v, want EPERM", err)
	}
	if _, err := p.client.Write([]byte("x")); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Write while frozen = %v, want EINVAL", err)
	}

	if err := f.Thaw(nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := repairRead(t, p.client, len(msg)); !bytes.Equal(got, msg) {
		t.Errorf("read after thaw %q, want %q", got, msg)
	}
	repairExchange(t, p, []byte("after"), []byte("thaw"))
	repairNoRST(t, c, 0)
}

// repairCmpAddrPort compares netip.AddrPort values, whose fields are unexported.
var repairCmpAddrPort = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

func repairSetIPOpts(t testing.TB, c *net.TCPConn, v6 bool, ttl, tos int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) {
		if v6 {
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl); serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos)
			}
			return
		}
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, tos)
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
}

// TestIntegrationFreezeMatchesWire checks the snapshot against the segments
// captured on lo: sequence numbers from the ISNs and the bytes moved,
// options from the handshake, windows and TSval from the last segments.
func TestIntegrationFreezeMatchesWire(t *testing.T) {
	tests := []struct {
		name     string
		network  string
		ttl, tos int // 0: leave the kernel's defaults
		wantTTL  uint8
		wantTOS  uint8
		req      int
		resp     int
	}{
		{name: "ipv4 defaults", network: "tcp4", wantTTL: 64, req: 1000, resp: 3000},
		{name: "ipv4 ttl and tos set", network: "tcp4", ttl: 17, tos: 0x28, wantTTL: 17, wantTOS: 0x28, req: 1, resp: 100000},
		{name: "ipv6 defaults", network: "tcp6", wantTTL: 64, req: 5000, resp: 20},
		{name: "ipv6 hop limit and tclass set", network: "tcp6", ttl: 9, tos: 0xb8, wantTTL: 9, wantTOS: 0xb8, req: 70000, resp: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newRepairLab(t)
			c := l.capture()
			p := l.connect(tt.network)
			client, server := repairAddrPort(p.client.LocalAddr()), repairAddrPort(p.server.LocalAddr())
			syn, _, ok := c.waitFor(0, 10*time.Second, func(s wireSegment) bool { return s.src == client && s.syn })
			if !ok {
				t.Fatal("no SYN captured")
			}
			synAck, _, ok := c.waitFor(0, 10*time.Second, func(s wireSegment) bool { return s.src == server && s.syn })
			if !ok {
				t.Fatal("no SYN-ACK captured")
			}
			if tt.ttl != 0 {
				repairSetIPOpts(t, p.client, tt.network == "tcp6", tt.ttl, tt.tos)
			}
			repairExchange(t, p, repairPattern(tt.req, 1), repairPattern(tt.resp, 2))

			f, got := repairMustFreeze(t, p.client)
			want := TCPState{
				Local:         client,
				Remote:        server,
				SndNxt:        syn.seq + 1 + uint32(tt.req),
				RcvNxt:        synAck.seq + 1 + uint32(tt.resp),
				MSS:           uint32(synAck.mss),
				WindowScaling: true,
				SACK:          true,
				Timestamps:    true,
				SndWScale:     uint8(synAck.wscale),
				RcvWScale:     uint8(syn.wscale),
				TTL:           tt.wantTTL,
				TOS:           tt.wantTOS,
			}
			// Checked below against the last segments each way.
			rest := got
			got.SndMSS, got.Window, got.TSVal = 0, Window{}, 0
			if diff := cmp.Diff(want, got, repairCmpAddrPort); diff != "" {
				t.Errorf("Freeze state mismatch (-want +got):\n%s", diff)
			}

			// A thaw with nothing sent puts nothing on the wire
			// (TCP_REPAIR_OFF_NO_WP): the first segment after it is the
			// client's next data, SEQ = SND.NXT; every segment captured
			// before it was sent before the thaw (lo keeps the order).
			if err := f.Thaw(nil, nil); err != nil {
				t.Fatal(err)
			}
			repairExchange(t, p, repairPattern(10, 3), repairPattern(10, 4))
			_, dataAt, ok := c.waitFor(0, 10*time.Second, func(s wireSegment) bool {
				return s.src == client && s.seq == want.SndNxt && len(s.payload) > 0
			})
			if !ok {
				t.Fatalf("no data segment (seq %d) after thaw", want.SndNxt)
			}
			var lastC, lastS wireSegment
			for _, s := range c.since(0)[:dataAt] {
				if s.src == client && s.seq == want.SndNxt-1 && len(s.payload) == 0 && int32(s.tsval-rest.TSVal) > 5 {
					t.Errorf("a window probe (seq %d, tsval %d) after a thaw with nothing sent", s.seq, s.tsval)
				}
				switch s.src {
				case client:
					lastC = s
				case server:
					lastS = s
				}
			}
			if edge, want := rest.Window.RcvWup+rest.Window.RcvWnd, lastC.ack+uint32(lastC.window)<<rest.RcvWScale; edge != want {
				t.Errorf("receive window right edge %d, last advertised %d (ack %d + %d<<%d)", edge, want, lastC.ack, lastC.window, rest.RcvWScale)
			}
			if lastC.ack != rest.RcvNxt || lastC.seq != rest.SndNxt {
				t.Errorf("last segment before freeze: seq %d ack %d, want seq %d ack %d (all acknowledged)", lastC.seq, lastC.ack, rest.SndNxt, rest.RcvNxt)
			}
			if want := uint32(lastS.window) << rest.SndWScale; rest.Window.SndWnd != want {
				t.Errorf("SndWnd %d, last window from the peer %d<<%d = %d", rest.Window.SndWnd, lastS.window, rest.SndWScale, want)
			}
			if rest.Window.MaxWindow < rest.Window.SndWnd {
				t.Errorf("MaxWindow %d < SndWnd %d", rest.Window.MaxWindow, rest.Window.SndWnd)
			}
			// Same clock: the snapshot's TSval is within a few ms of the
			// last one sent (it may trail it by a tick).
			if d := int32(rest.TSVal - lastC.tsval); !lastC.hasTS || d < -5 || d > 60000 {
				t.Errorf("TSVal %d, last TSval on the wire %d (has %v): not the same clock", rest.TSVal, lastC.tsval, lastC.hasTS)
			}
			t.Logf("TSVal - last TSval = %d ms", int32(rest.TSVal-lastC.tsval))
			if lastC.ttl != rest.TTL || lastC.tos != rest.TOS {
				t.Errorf("TTL %d TOS %#x, on the wire %d %#x", rest.TTL, rest.TOS, lastC.ttl, lastC.tos)
			}
			if rest.SndMSS == 0 || rest.SndMSS > rest.MSS {
				t.Errorf("SndMSS %d, MSS %d", rest.SndMSS, rest.MSS)
			}
			repairNoRST(t, c, 0)
		})
	}
}

// TestIntegrationFreezeNotIdle checks that Freeze refuses a socket with
// something queued, says what, and leaves the socket as it was.
func TestIntegrationFreezeNotIdle(t *testing.T) {
	tests := []struct {
		name string
		// fill makes the client not idle and returns a check of the
		// counts and a function that drains the connection again.
		fill func(t *testing.T, p repairPair) (check func(Queues) bool, drain func())
		want error
	}{
		{
			name: "unread",
			fill: func(t *testing.T, p repairPair) (func(Queues) bool, func()) {
				msg := []byte("unread!")
				repairWrite(t, p.server, msg)
				repairWaitReadable(t, p.client, len(msg))
				return func(q Queues) bool { return q == Queues{Unread: len(msg)} },
					func() { repairRead(t, p.client, len(msg)) }
			},
			want: ErrNotIdle,
		},
		{
			name: "unsent behind a closed window",
			fill: func(t *testing.T, p repairPair) (func(Queues) bool, func()) {
				// The server reads nothing: its receive buffer fills,
				// its window closes, the client's send queue fills.
				buf := repairPattern(1<<20, 5)
				total := 0
				p.client.SetWriteDeadline(time.Now().Add(2 * time.Second))
				for i := 0; i < 64; i++ {
					n, err := p.client.Write(buf)
					total += n
					if err != nil {
						if !errors.Is(err, os.ErrDeadlineExceeded) {
							t.Fatal(err)
						}
						break
					}
				}
				p.client.SetWriteDeadline(time.Time{})
				return func(q Queues) bool { return q.Unsent > 0 && q.Unread == 0 },
					func() { repairRead(t, p.server, total) }
			},
			want: ErrNotIdle,
		},
		{
			name: "peer closed",
			fill: func(t *testing.T, p repairPair) (func(Queues) bool, func()) {
				p.server.CloseWrite()
				p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
				if n, err := p.client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Fatalf("read = %d, %v, want EOF", n, err)
				}
				return nil, nil
			},
			want: ErrNotEstablished,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newRepairLab(t)
			c := l.capture()
			p := l.connect("tcp4")
			repairExchange(t, p, []byte("hi"), []byte("there"))
			check, drain := tt.fill(t, p)

			f, st, err := Freeze(p.client)
			repairSkipIfPerm(t, err, "TCP_REPAIR")
			if !errors.Is(err, tt.want) || f != nil || st != (TCPState{}) {
				t.Fatalf("Freeze = %v, %+v, %v; want %v", f, st, err, tt.want)
			}
			if check != nil {
				var ni *NotIdleError
				if !errors.As(err, &ni) || !check(ni.Queues) {
					t.Errorf("Freeze error %v: wrong counts", err)
				}
				if ierr := Idle(p.client); !errors.As(ierr, &ni) || !check(ni.Queues) {
					t.Errorf("Idle = %v: wrong counts", ierr)
				}
			}
			if repairInRepair(t, p.client) {
				t.Error("socket left in repair mode")
			}
			if ka := repairSockoptInt(t, p.client, unix.SOL_SOCKET, unix.SO_KEEPALIVE); ka != 1 {
				t.Errorf("SO_KEEPALIVE = %d after a refused Freeze, want 1 (Go's default)", ka)
			}
			if drain == nil {
				return
			}
			drain()
			repairExchange(t, p, []byte("still"), []byte("usable"))
			repairNoRST(t, c, 0)
		})
	}
}

// TestIntegrationFrozenSilent checks that a frozen socket sends nothing,
// not even the keep-alives it sent every second before, and that Thaw
// brings them back.
func TestIntegrationFrozenSilent(t *testing.T) {
	l := newRepairLab(t)
	c := l.capture()
	p := l.connect("tcp4")
	client, server := repairAddrPort(p.client.LocalAddr()), repairAddrPort(p.server.LocalAddr())
	if err := p.client.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 9}); err != nil {
		t.Fatal(err)
	}
	req, resp := repairPattern(10, 1), repairPattern(20, 2)
	repairExchange(t, p, req, resp)
	syn, _, ok1 := c.waitFor(0, 10*time.Second, func(s wireSegment) bool { return s.src == client && s.syn })
	synAck, _, ok2 := c.waitFor(0, 10*time.Second, func(s wireSegment) bool { return s.src == server && s.syn })
	if !ok1 || !ok2 {
		t.Fatal("handshake not captured")
	}
	snd, rcv := syn.seq+1+uint32(len(req)), synAck.seq+1+uint32(len(resp))
	// A keep-alive (or the window probe, which looks the same): SEQ =
	// SND.NXT-1, ACK = RCV.NXT, no payload. Nothing else the client sent
	// matches, whatever the capture's lag.
	keepAlive := func(s wireSegment) bool {
		return s.src == client && !s.syn && len(s.payload) == 0 && s.seq == snd-1 && s.ack == rcv
	}

	// Control: the capture sees the keep-alives of the live socket.
	if _, _, ok := c.waitFor(0, 10*time.Second, keepAlive); !ok {
		t.Fatal("no keep-alive within 10 s from a socket with a 1 s keep-alive")
	}

	f, st := repairMustFreeze(t, p.client)
	if st.SndNxt != snd || st.RcvNxt != rcv {
		t.Fatalf("snapshot snd %d rcv %d, wire %d %d", st.SndNxt, st.RcvNxt, snd, rcv)
	}
	// Sent after the freeze = a TSval past the snapshot's clock (the
	// last segment before it may be one tick ahead, a keep-alive comes
	// ~1000 ticks later). Watch three keep-alive intervals: a live
	// socket sends two or three probes in them.
	afterFreeze := func(s wireSegment) bool { return s.src == client && s.hasTS && int32(s.tsval-st.TSVal) > 5 }
	if s, _, ok := c.waitFor(0, 3500*time.Millisecond, afterFreeze); ok {
		t.Fatalf("frozen socket sent seq %d ack %d len %d rst %v tsval %d (frozen at %d)", s.seq, s.ack, len(s.payload), s.rst, s.tsval, st.TSVal)
	}
	if ka := repairSockoptInt(t, p.client, unix.SOL_SOCKET, unix.SO_KEEPALIVE); ka != 0 {
		t.Errorf("SO_KEEPALIVE = %d while frozen", ka)
	}

	if err := f.Thaw(nil, nil); err != nil {
		t.Fatal(err)
	}
	if ka := repairSockoptInt(t, p.client, unix.SOL_SOCKET, unix.SO_KEEPALIVE); ka != 1 {
		t.Errorf("SO_KEEPALIVE = %d after thaw, want 1", ka)
	}
	// Keep-alives again (the thaw itself sent nothing: no window probe
	// with nothing sent by a NIC).
	probe := func(s wireSegment) bool { return keepAlive(s) && afterFreeze(s) }
	if _, _, ok := c.waitFor(0, 10*time.Second, probe); !ok {
		t.Fatal("no keep-alive after thaw")
	}
	repairExchange(t, p, []byte("c"), []byte("d"))
	repairNoRST(t, c, 0)
}

type repairReadResult struct {
	b   []byte
	err error
}

// repairPostRead posts a receive on c the way conn.Read does (read, and on
// EAGAIN park in the poller) and closes posted once the first read found
// nothing, i.e. once the receive is parked. The goroutine touches no
// testing.T and ends at the latest when c is closed.
func repairPostRead(t testing.TB, c *net.TCPConn, n int) (posted <-chan struct{}, result <-chan repairReadResult) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	p := make(chan struct{})
	r := make(chan repairReadResult, 1)
	go func() {
		buf := make([]byte, n)
		got := 0
		first := true
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			for got < n {
				m, err := unix.Read(int(fd), buf[got:])
				if err == unix.EAGAIN {
					if first {
						first = false
						close(p)
					}
					return false
				}
				if err != nil || m == 0 {
					rerr = fmt.Errorf("read: %d, %w", m, err)
					return true
				}
				got += m
			}
			return true
		})
		if first {
			close(p)
		}
		if err == nil {
			err = rerr
		}
		r <- repairReadResult{buf[:got], err}
	}()
	return p, r
}

// TestIntegrationThawTwoFrozenEnds proves both repair queues keep the two
// ends' sequence numbers consistent: with client and server both frozen,
// the client is thawed as if its NIC had sent X and absorbed P, the server
// as if its NIC had sent P and absorbed X. Then each app reads exactly what
// the other "sent" followed by what it writes next, byte-exact, with no
// duplicate, no loss and no RST.
func TestIntegrationThawTwoFrozenEnds(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			l := newRepairLab(t)
			c := l.capture()
			p := l.connect(network)
			client := repairAddrPort(p.client.LocalAddr())
			repairExchange(t, p, repairPattern(300, 1), repairPattern(700, 2))

			x := []byte{0x8a, 0x00}                           // client -> server while asleep: a WebSocket Pong its NIC sent
			pp := []byte{0x89, 0x05, 'h', 'e', 'l', 'l', 'o'} // server -> client: a Ping the client's NIC absorbed
			y := repairPattern(5000, 3)                       // client writes after the wake
			q := repairPattern(40000, 4)                      // server writes after the wake

			// The app's receive is posted before the freeze and stays
			// parked: nothing wakes it while frozen.
			posted, got := repairPostRead(t, p.client, len(pp))
			<-posted

			fc, stc := repairMustFreeze(t, p.client)
			fs, sts := repairFreezeWhenAcked(t, p.server)
			if stc.SndNxt != sts.RcvNxt || stc.RcvNxt != sts.SndNxt {
				t.Fatalf("snapshots disagree: client snd %d rcv %d, server snd %d rcv %d", stc.SndNxt, stc.RcvNxt, sts.SndNxt, sts.RcvNxt)
			}
			if !repairInRepair(t, p.client) || !repairInRepair(t, p.server) {
				t.Fatal("frozen sockets not in repair mode")
			}
			m := c.mark()

			if err := fs.Thaw(pp, x); err != nil {
				t.Fatalf("server Thaw: %v", err)
			}
			if err := fc.Thaw(x, pp); err != nil {
				t.Fatalf("client Thaw: %v", err)
			}
			if repairInRepair(t, p.client) || repairInRepair(t, p.server) {
				t.Fatal("thawed sockets still in repair mode")
			}

			select {
			case r := <-got:
				if r.err != nil || !bytes.Equal(r.b, pp) {
					t.Errorf("posted read got %q, %v; want the absorbed %q", r.b, r.err, pp)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("posted read not woken by Thaw")
			}
			if b := repairRead(t, p.server, len(x)); !bytes.Equal(b, x) {
				t.Errorf("server read %q, want the absorbed %q", b, x)
			}

			repairWrite(t, p.client, y)
			repairWrite(t, p.server, q)
			if b := repairRead(t, p.server, len(y)); !bytes.Equal(b, y) {
				t.Error("server: stream after the wake differs")
			}
			if b := repairRead(t, p.client, len(q)); !bytes.Equal(b, q) {
				t.Error("client: stream after the wake differs")
			}
			// The kernels' own counters agree with the streams: freeze
			// again and read TCP_QUEUE_SEQ on both ends.
			fc, stc2 := repairFreezeWhenAcked(t, p.client)
			fs, sts2 := repairFreezeWhenAcked(t, p.server)
			if got, want := stc2.SndNxt-stc.SndNxt, uint32(len(x)+len(y)); got != want {
				t.Errorf("client SND.NXT moved %d, want %d", got, want)
			}
			if got, want := stc2.RcvNxt-stc.RcvNxt, uint32(len(pp)+len(q)); got != want {
				t.Errorf("client RCV.NXT moved %d, want %d", got, want)
			}
			if stc2.SndNxt != sts2.RcvNxt || stc2.RcvNxt != sts2.SndNxt {
				t.Errorf("ends disagree: client snd %d rcv %d, server snd %d rcv %d", stc2.SndNxt, stc2.RcvNxt, sts2.SndNxt, sts2.RcvNxt)
			}
			if err := fs.Thaw(nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := fc.Thaw(nil, nil); err != nil {
				t.Fatal(err)
			}

			// Nothing more on either side: no duplicate, no RST.
			p.client.CloseWrite()
			p.server.CloseWrite()
			for _, e := range []struct {
				name string
				c    *net.TCPConn
			}{{"server", p.server}, {"client", p.client}} {
				e.c.SetReadDeadline(time.Now().Add(10 * time.Second))
				rest, err := io.ReadAll(e.c)
				if err != nil || len(rest) != 0 {
					t.Errorf("%s: %d bytes after the stream, err %v", e.name, len(rest), err)
				}
			}

			// The client's X never went on the wire: its window probe
			// got the server's ACK for it first.
			for _, s := range c.since(m) {
				if s.src == client && len(s.payload) > 0 && s.seq-stc.SndNxt < uint32(len(x)) {
					t.Errorf("client transmitted the NIC's bytes: seq %d len %d", s.seq, len(s.payload))
				}
			}
			repairNoRST(t, c, 0)
		})
	}
}

// repairWithoutNetAdmin runs fn on a locked OS thread whose effective capability
// set lacks CAP_NET_ADMIN (capabilities are per thread on Linux), then
// restores it. If fn exits the goroutine, the thread dies with it.
func repairWithoutNetAdmin(t testing.TB, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("capget: %v", err)
	}
	saved := data
	data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("capset: %v", err)
	}
	fn()
	if err := unix.Capset(&hdr, &saved[0]); err != nil {
		t.Fatalf("capset restore: %v", err) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
}

// TestIntegrationPermission checks that a refused TCP_REPAIR surfaces as
// os.ErrPermission through an *os.SyscallError naming the step, on the way
// in (the socket is left as it was) and on the way out (the socket stays
// frozen, Thaw is spent, Abort gets it back).
func TestIntegrationPermission(t *testing.T) {
	l := newRepairLab(t)
	c := l.capture()
	p := l.connect("tcp4")
	repairExchange(t, p, []byte("a"), []byte("b"))

	var err error
	repairWithoutNetAdmin(t, func() { _, _, err = Freeze(p.client) })
	var se *os.SyscallError
	if !errors.Is(err, os.ErrPermission) || !errors.As(err, &se) || se.Syscall != "setsockopt TCP_REPAIR" {
		t.Fatalf("Freeze without CAP_NET_ADMIN = %v, want EPERM from setsockopt TCP_REPAIR", err)
	}
	if repairInRepair(t, p.client) || repairSockoptInt(t, p.client, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 1 {
		t.Fatal("refused Freeze changed the socket")
	}
	repairExchange(t, p, []byte("c"), []byte("d"))

	f, _ := repairMustFreeze(t, p.client)
	repairWithoutNetAdmin(t, func() { err = f.Thaw(nil, []byte("absorbed")) })
	if !errors.Is(err, os.ErrPermission) || !errors.As(err, &se) || se.Syscall != "setsockopt TCP_REPAIR" {
		t.Fatalf("Thaw without CAP_NET_ADMIN = %v, want EPERM from setsockopt TCP_REPAIR", err)
	}
	if !repairInRepair(t, p.client) {
		t.Fatal("failed Thaw left repair mode")
	}
	if err := f.Thaw(nil, nil); !errors.Is(err, ErrThawed) {
		t.Errorf("Thaw after a failed Thaw = %v, want ErrThawed", err)
	}
	if err := f.Abort(); err != nil {
		t.Fatalf("Abort after a failed Thaw: %v", err)
	}
	if repairInRepair(t, p.client) || repairSockoptInt(t, p.client, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 1 {
		t.Fatal("Abort did not give the socket back")
	}
	// The failed Thaw had already queued "absorbed" (RCV.NXT moved past
	// what the server sent): exactly the hazard Abort documents. The
	// app reads those bytes; the server's next bytes are then trimmed.
	if b := repairRead(t, p.client, len("absorbed")); string(b) != "absorbed" {
		t.Errorf("read %q", b)
	}
	repairNoRST(t, c, 0)
}

// TestIntegrationLifecycle checks the one-shot rules of Thaw and Abort.
func TestIntegrationLifecycle(t *testing.T) {
	l := newRepairLab(t)
	p := l.connect("tcp4")
	repairExchange(t, p, []byte("a"), []byte("b"))

	f, _ := repairMustFreeze(t, p.client)
	if !repairInRepair(t, p.client) {
		t.Fatal("frozen socket not in repair mode")
	}
	if err := f.Thaw(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Thaw(nil, nil); !errors.Is(err, ErrThawed) {
		t.Errorf("second Thaw = %v, want ErrThawed", err)
	}
	if err := f.Abort(); err != nil {
		t.Errorf("Abort after Thaw = %v, want nil (no-op)", err)
	}
	if repairInRepair(t, p.client) {
		t.Error("in repair mode after Thaw")
	}
	repairExchange(t, p, []byte("c"), []byte("d"))

	f, _ = repairMustFreeze(t, p.client)
	if f.Conn() != p.client {
		t.Error("Conn() is not the frozen connection")
	}
	if err := f.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := f.Abort(); err != nil {
		t.Errorf("second Abort = %v, want nil", err)
	}
	if err := f.Thaw(nil, nil); !errors.Is(err, ErrThawed) {
		t.Errorf("Thaw after Abort = %v, want ErrThawed", err)
	}
	if repairInRepair(t, p.client) || repairSockoptInt(t, p.client, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 1 {
		t.Error("Abort did not give the socket back")
	}
	repairExchange(t, p, []byte("e"), []byte("f"))

	// Keep-alive off before the freeze stays off after the thaw.
	if err := p.client.SetKeepAlive(false); err != nil {
		t.Fatal(err)
	}
	f, _ = repairMustFreeze(t, p.client)
	if err := f.Thaw(nil, nil); err != nil {
		t.Fatal(err)
	}
	if ka := repairSockoptInt(t, p.client, unix.SOL_SOCKET, unix.SO_KEEPALIVE); ka != 0 {
		t.Errorf("SO_KEEPALIVE = %d after thaw, want 0 as before", ka)
	}

	p.client.Close()
	if _, _, err := Freeze(p.client); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Freeze on a closed conn = %v, want net.ErrClosed", err)
	}
	if err := Idle(p.client); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Idle on a closed conn = %v, want net.ErrClosed", err)
	}
	if _, _, err := Freeze(nil); err == nil {
		t.Error("Freeze(nil) succeeded")
	}
}

func TestQueuesIdleAndNotIdleError(t *testing.T) {
	tests := []struct {
		name string
		q    Queues
		idle bool
		msg  string
	}{
		{name: "empty", q: Queues{}, idle: true},
		{name: "unsent", q: Queues{Unsent: 3}, msg: "socket not idle: 3 bytes unsent, 0 unacked (0 segments), 0 unread"},
		{name: "unacked", q: Queues{Unacked: 10, UnackedSegments: 1}, msg: "socket not idle: 0 bytes unsent, 10 unacked (1 segments), 0 unread"},
		{name: "segment only", q: Queues{UnackedSegments: 1}, msg: "socket not idle: 0 bytes unsent, 0 unacked (1 segments), 0 unread"},
		{name: "unread", q: Queues{Unread: 7}, msg: "socket not idle: 0 bytes unsent, 0 unacked (0 segments), 7 unread"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.q.Idle(); got != tt.idle {
				t.Errorf("Idle() = %v, want %v", got, tt.idle)
			}
			if tt.idle {
				return
			}
			var err error = &NotIdleError{Queues: tt.q}
			if diff := cmp.Diff(tt.msg, err.Error()); diff != "" {
				t.Errorf("Error() (-want +got):\n%s", diff)
			}
			wrapped := fmt.Errorf("freeze: %w", err)
			var ni *NotIdleError
			if !errors.Is(wrapped, ErrNotIdle) || !errors.As(wrapped, &ni) || ni.Queues != tt.q {
				t.Errorf("wrapped %v: errors.Is/As lost the counts", wrapped)
			}
		})
	}
}

// BenchmarkIntegrationFreezeThaw measures one Freeze + Thaw(nil, nil) cycle
// of an idle loopback connection (seven to a dozen system calls each way,
// plus the window probe and the peer's answer on lo).
func BenchmarkIntegrationFreezeThaw(b *testing.B) {
	l := newRepairLab(b)
	p := l.connect("tcp4")
	repairWrite(l.t, p.client, []byte("x"))
	repairRead(l.t, p.server, 1)
	repairWrite(l.t, p.server, []byte("y"))
	repairRead(l.t, p.client, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, _, err := Freeze(p.client)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Thaw(nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/cycle")
}

// TestIntegrationKeepAliveIgnoresRepair pins the kernel fact that makes
// Freeze turn SO_KEEPALIVE off: tcp_keepalive_timer does not look at
// tp->repair, so a socket put in repair mode with keep-alive on goes on
// probing (SEQ = SND.NXT-1, no payload).
func TestIntegrationKeepAliveIgnoresRepair(t *testing.T) {
	l := newRepairLab(t)
	c := l.capture()
	p := l.connect("tcp4")
	client := repairAddrPort(p.client.LocalAddr())
	if err := p.client.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 9}); err != nil {
		t.Fatal(err)
	}
	repairExchange(t, p, []byte("a"), []byte("b"))
	raw, err := p.client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var snd, ts int
	raw.Control(func(fd uintptr) {
		if err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
			return
		}
		if err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, repairSendQueue); err != nil {
			return
		}
		if snd, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ); err != nil {
			return
		}
		ts, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
	})
	repairSkipIfPerm(t, err, "TCP_REPAIR")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		raw.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)
		})
	})
	// Sent in repair mode = a TSval past the clock read there (segments
	// sent before may be one tick ahead of it).
	s, _, ok := c.waitFor(0, 10*time.Second, func(s wireSegment) bool {
		return s.src == client && s.hasTS && int32(s.tsval-uint32(ts)) > 5
	})
	if !ok {
		t.Fatal("no keep-alive from a socket in repair mode with SO_KEEPALIVE on: the kernel changed, revisit Freeze")
	}
	if s.seq != uint32(snd)-1 || len(s.payload) != 0 {
		t.Errorf("segment seq %d len %d, want a keep-alive seq %d", s.seq, len(s.payload), uint32(snd)-1)
	}
}

// TestIntegrationFreezeV4MappedServer freezes the server end of a
// dual-stack listener that accepted IPv4: an AF_INET6 socket whose wire is
// IPv4. The snapshot has plain IPv4 addresses and the TTL and TOS that
// IPv4 segments carry (set and read at SOL_IP).
func TestIntegrationFreezeV4MappedServer(t *testing.T) {
	l := newRepairLab(t)
	c := l.capture()
	var ln *net.TCPListener
	var client *net.TCPConn
	l.do(func() error {
		var err error
		if ln, err = net.ListenTCP("tcp", &net.TCPAddr{}); err != nil {
			return err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		client, err = net.DialTCP("tcp4", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		return err
	})
	defer ln.Close()
	server, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	if repairSockoptInt(t, server, unix.SOL_SOCKET, unix.SO_DOMAIN) != unix.AF_INET6 {
		t.Skip("listener is not dual-stack (IPv6 disabled?)")
	}
	repairSetIPOpts(t, server, false, 33, 0x10)
	p := repairPair{client: client, server: server}
	repairExchange(t, p, []byte("q"), []byte("r"))

	f, st := repairFreezeWhenAcked(t, server)
	defer f.Thaw(nil, nil)
	wantLocal := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(ln.Addr().(*net.TCPAddr).Port))
	if st.Local != wantLocal || st.Remote != repairAddrPort(client.LocalAddr()) || !st.Local.Addr().Is4() {
		t.Errorf("addresses %v -> %v, want %v -> %v", st.Local, st.Remote, wantLocal, client.LocalAddr())
	}
	if st.TTL != 33 || st.TOS != 0x10 {
		t.Errorf("TTL %d TOS %#x, want 33 0x10", st.TTL, st.TOS)
	}
	seg, _, ok := c.waitFor(0, 10*time.Second, func(s wireSegment) bool { return s.src == wantLocal && len(s.payload) > 0 })
	if !ok || seg.ttl != 33 || seg.tos != 0x10 {
		t.Errorf("server data segment on the wire: ttl %d tos %#x (found %v)", seg.ttl, seg.tos, ok)
	}
}
