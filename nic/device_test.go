package nic_test

import (
	"bytes"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/nic/porttest"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

var (
	hostMAC  = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	peerMAC  = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	bcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	hostIP   = netip.MustParseAddr("198.18.0.2")
	peerIP   = netip.MustParseAddr("198.18.0.1")
	hostAP   = netip.AddrPortFrom(hostIP, 40000)
	peerAP   = netip.AddrPortFrom(peerIP, 443)
	conn     = wp.TCPConn{Local: hostAP, Remote: peerAP}
)

const (
	hostISN = 1000 // host's SND.NXT in the snapshot
	peerISN = 5000 // host's RCV.NXT in the snapshot
	waitFor = 5 * time.Second
)

// seg describes a TCP segment for the test frame builder.
type seg struct {
	src, dst         netip.AddrPort
	srcMAC, dstMAC   [6]byte
	seq, ack         uint32
	syn, fin, rst    bool
	psh, noACK       bool
	window           uint16
	payload          []byte
	vlan             uint16
	badCsum, fragged bool
}

func fromPeer(seq, ack uint32, payload string) seg {
	return seg{src: peerAP, dst: hostAP, srcMAC: peerMAC, dstMAC: hostMAC, seq: seq, ack: ack, window: 65535, payload: []byte(payload)}
}

func fromHost(seq, ack uint32, payload string) seg {
	return seg{src: hostAP, dst: peerAP, srcMAC: hostMAC, dstMAC: peerMAC, seq: seq, ack: ack, window: 65535, payload: []byte(payload)}
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(src, dst [6]byte, et layers.EthernetType, vlan uint16) []gopacket.SerializableLayer {
	if vlan == 0 {
		return []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: et}}
	}
	return []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: vlan, Type: et},
	}
}

func tcpFrame(t testing.TB, s seg) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice(), Flags: layers.IPv4DontFragment}
	if s.fragged {
		ip.Flags = layers.IPv4MoreFragments
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.src.Port()), DstPort: layers.TCPPort(s.dst.Port()), Seq: s.seq, Ack: s.ack,
		SYN: s.syn, FIN: s.fin, RST: s.rst, PSH: s.psh, ACK: !s.noACK, Window: s.window}
	tcp.SetNetworkLayerForChecksum(ip)
	ls := append(eth(s.srcMAC, s.dstMAC, layers.EthernetTypeIPv4, s.vlan), ip, tcp, gopacket.Payload(s.payload))
	b := serialize(t, ls...)
	if s.badCsum {
		off := 14 + 20 + 16 // TCP checksum
		if s.vlan != 0 {
			off += 4
		}
		b[off] ^= 0x5a
	}
	return b
}

func udpFrame(t testing.TB, dstPort uint16, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: peerIP.AsSlice(), DstIP: hostIP.AsSlice()}
	udp := &layers.UDP{SrcPort: 9999, DstPort: layers.UDPPort(dstPort)}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, append(eth(peerMAC, hostMAC, layers.EthernetTypeIPv4, 0), ip, udp, gopacket.Payload(payload))...)
}

func arpRequest(t testing.TB, target netip.Addr) []byte {
	s, d := peerIP.As4(), target.As4()
	return serialize(t, append(eth(peerMAC, bcastMAC, layers.EthernetTypeARP, 0), &layers.ARP{AddrType: layers.LinkTypeEthernet,
		Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: peerMAC[:], SourceProtAddress: s[:], DstHwAddress: make([]byte, 6), DstProtAddress: d[:]})...)
}

func snapshot() offload.Snapshot {
	return offload.Snapshot{LocalMAC: hostMAC, RemoteMAC: peerMAC, Local: hostAP, Remote: peerAP,
		SndNxt: hostISN, RcvNxt: peerISN, SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460}
}

func probeSpec() offload.Spec {
	return offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Second, RetryInterval: 200 * time.Millisecond, RetryCount: 2}
}

// rig is a device between two pipes: srv is the far end of the wire,
// host the far end of the host port.
type rig struct {
	t     *testing.T
	dev   *nic.Device
	srv   *porttest.Port
	host  *porttest.Port
	clock *nic.ManualClock
	pkts  []nic.Packet
}

func newRig(t *testing.T, mod func(*nic.Config)) *rig {
	t.Helper()
	return newPipeRig(t, porttest.Config{}, porttest.Config{}, mod)
}

// newPipeRig is newRig with the wire and host pipes configured by
// wireCfg and hostCfg (their names are set here).
func newPipeRig(t *testing.T, wireCfg, hostCfg porttest.Config, mod func(*nic.Config)) *rig {
	t.Helper()
	before := runtime.NumGoroutine()
	wireCfg.NameA, wireCfg.NameB = "wire0", "srv0"
	hostCfg.NameA, hostCfg.NameB = "hport0", "host0"
	wireDev, srv, err := porttest.NewPipe(&wireCfg)
	if err != nil {
		t.Fatal(err)
	}
	hostDev, host, err := porttest.NewPipe(&hostCfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := nic.NewManualClock(time.Hour)
	cfg := &nic.Config{Wire: wireDev, Host: hostDev, MAC: hostMAC, Addrs: []netip.Addr{hostIP}, Clock: clock}
	if mod != nil {
		mod(cfg)
	}
	dev, err := nic.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, dev: dev, srv: srv, host: host, clock: clock, pkts: make([]nic.Packet, 1)}
	r.pkts[0].Buf = make([]byte, nic.MaxGSOFrame)
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		srv.Close()
		host.Close()
		checkGoroutines(t, before)
	})
	return r
}

// checkGoroutines fails when goroutines started by the test outlive it.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			return
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func send(t testing.TB, p *porttest.Port, frames ...[]byte) {
	t.Helper()
	if n, err := p.WriteBatch(frames); err != nil || n != len(frames) {
		t.Fatalf("write %d frames to %s: %d, %v", len(frames), p.Name(), n, err)
	}
}

// recv reads one frame from p within the deadline.
func (r *rig) recv(p *porttest.Port) []byte {
	r.t.Helper()
	p.SetReadDeadline(time.Now().Add(waitFor))
	n, err := p.ReadBatch(r.pkts[:1])
	if err != nil || n != 1 {
		r.t.Fatalf("read from %s: %d, %v", p.Name(), n, err)
	}
	return append([]byte(nil), r.pkts[0].Frame()...)
}

func (r *rig) counter(name string) uint64 {
	r.t.Helper()
	v, ok := r.dev.Counter(name)
	if !ok {
		r.t.Fatalf("no counter %q", name)
	}
	return v
}

// waitCounter waits until a counter reaches want.
func (r *rig) waitCounter(name string, want uint64) {
	r.t.Helper()
	if !nic.WaitCounter(r.dev, name, want, time.Now().Add(waitFor)) {
		r.t.Fatalf("counter %s = %d, want %d within %v; all: %v", name, r.counter(name), want, waitFor, nonZero(r.dev.Counters()))
	}
}

// counters returns the named counters.
func (r *rig) counters(names ...string) map[string]uint64 {
	m := map[string]uint64{}
	for _, n := range names {
		m[n] = r.counter(n)
	}
	return m
}

func (r *rig) wake() nic.WakeEvent {
	r.t.Helper()
	select {
	case ev := <-r.dev.Wakes():
		return ev
	case <-time.After(waitFor):
		r.t.Fatal("no wake event")
	}
	return nic.WakeEvent{}
}

func (r *rig) noWake() {
	r.t.Helper()
	select {
	case ev := <-r.dev.Wakes():
		r.t.Fatalf("unexpected wake %+v", ev)
	default:
	}
}

func decode(t testing.TB, b []byte) *wp.Frame {
	t.Helper()
	f := new(wp.Frame)
	if st := f.Decode(b, wp.DecodeOptions{VerifyChecksums: true}); st != wp.OK {
		t.Fatalf("decode %x: %v", b, st)
	}
	return f
}

func TestD0ForwardsBothWaysAndLearns(t *testing.T) {
	r := newRig(t, nil)
	if err := r.dev.Track(conn); err != nil {
		t.Fatal(err)
	}
	syn := fromHost(999, 0, "")
	syn.syn, syn.noACK = true, true
	synack := fromPeer(4999, 1000, "")
	synack.syn = true
	toSrv := [][]byte{tcpFrame(t, syn), tcpFrame(t, fromHost(1000, 5000, "hello")), udpFrame(t, 53, []byte("x"))}
	toHost := [][]byte{tcpFrame(t, synack), tcpFrame(t, fromPeer(5000, 1005, "world!"))}
	send(t, r.host, toSrv[0])
	if got := r.recv(r.srv); !bytes.Equal(got, toSrv[0]) {
		t.Fatalf("srv got %x, want %x", got, toSrv[0])
	}
	send(t, r.srv, toHost[0])
	if got := r.recv(r.host); !bytes.Equal(got, toHost[0]) {
		t.Fatalf("host got %x, want %x", got, toHost[0])
	}
	send(t, r.host, toSrv[1:]...)
	send(t, r.srv, toHost[1:]...)
	for _, want := range toSrv[1:] {
		if got := r.recv(r.srv); !bytes.Equal(got, want) {
			t.Errorf("srv got %x, want %x", got, want)
		}
	}
	if got := r.recv(r.host); !bytes.Equal(got, toHost[1]) {
		t.Errorf("host got %x, want %x", got, toHost[1])
	}
	l, ok := r.dev.Learned(conn)
	if !ok {
		t.Fatal("connection not tracked")
	}
	want := nic.Learned{Conn: conn, LocalMAC: hostMAC, RemoteMAC: peerMAC,
		SndNxt: 1005, SndUna: 1005, RcvNxt: 5006, HostAck: 5000, SndWnd: 65535, RcvWnd: 65535,
		SndWScale: -1, RcvWScale: -1, TTL: 64, SegmentsOut: 2, SegmentsIn: 2, SeenOut: true, SeenIn: true}
	if diff := cmp.Diff(want, l, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("Learned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]uint64{"rx_frames": 2, "host_rx_frames": 3, "tx_frames": 3, "host_tx_frames": 2, "d0_forwarded": 5, "d0_learn_segments": 4},
		r.counters("rx_frames", "host_rx_frames", "tx_frames", "host_tx_frames", "d0_forwarded", "d0_learn_segments")); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

func TestPowerTransitionsCounted(t *testing.T) {
	r := newRig(t, nil)
	if pf, ok := r.dev.Prefilter(); ok {
		t.Errorf("prefilter attached in D0: %+v", pf)
	}
	if err := r.dev.Resume(); err == nil || !strings.Contains(err.Error(), "wrong power state") {
		t.Errorf("Resume in D0 = %v, want a state error", err)
	}
	for range 2 {
		if err := r.dev.Sleep(); err != nil {
			t.Fatal(err)
		}
		if s := r.dev.State(); s != nic.D3 {
			t.Fatalf("state %v after Sleep, want D3", s)
		}
		if pf, ok := r.dev.Prefilter(); !ok || pf.Level != wp.BPFExact || pf.Instructions == 0 {
			t.Errorf("prefilter in D3: attached %v, %+v; want the exact program", ok, pf)
		}
		if err := r.dev.Sleep(); err == nil {
			t.Error("Sleep in D3 succeeded")
		}
		if err := r.dev.Wake(); err != nil {
			t.Fatal(err)
		}
		if ev := r.wake(); ev.Reason != nic.WakeHost || ev.Packet != nil {
			t.Errorf("wake event %+v, want reason host without packet", ev)
		}
		if s := r.dev.State(); s != nic.Waking {
			t.Fatalf("state %v after Wake, want waking", s)
		}
		if pf, ok := r.dev.Prefilter(); ok {
			t.Errorf("prefilter still attached after the wake: %+v", pf)
		}
		if err := r.dev.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{"pm_d0_to_arming": 2, "pm_arming_to_d3": 2, "pm_arming_to_d0": 0, "pm_d3_to_waking": 2, "pm_waking_to_d0": 2, "pm_to_closed": 0}
	names := []string{"pm_d0_to_arming", "pm_arming_to_d3", "pm_arming_to_d0", "pm_d3_to_waking", "pm_waking_to_d0", "pm_to_closed"}
	if diff := cmp.Diff(want, r.counters(names...)); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	r.dev.Close()
	if s := r.dev.State(); s != nic.Closed {
		t.Errorf("state %v after Close, want closed", s)
	}
	if got := r.counter("pm_to_closed"); got != 1 {
		t.Errorf("pm_to_closed = %d, want 1", got)
	}
	if err := r.dev.Sleep(); err == nil {
		t.Error("Sleep after Close succeeded")
	}
}

func pipes(t *testing.T) (a, b nic.Port) {
	x, y := porttest.Pipe()
	t.Cleanup(func() { x.Close(); y.Close() })
	return x, y
}

func nonZero(cs []nic.Counter) []nic.Counter {
	var out []nic.Counter
	for _, c := range cs {
		if c.Value != 0 {
			out = append(out, c)
		}
	}
	return out
}

// TestTxCountsWhatLeft: a frame the host port refuses (too big for its
// MTU) is counted as an error and not as sent, the frames around it are
// delivered, and the counts of the delivered frames are visible as soon as
// the frames are.
func TestTxCountsWhatLeft(t *testing.T) {
	var host *porttest.Port
	r := newRig(t, func(c *nic.Config) {
		c.Host.Close()
		a, b, err := porttest.NewPipe(&porttest.Config{NameA: "hport0", NameB: "host0", MTU: 1000})
		if err != nil {
			t.Fatal(err)
		}
		c.Host, host = a, b
	})
	small := make([]byte, 60)
	copy(small, hostMAC[:])
	big := make([]byte, 1400) // fits the wire (MTU 1500), not the host (MTU 1000)
	copy(big, hostMAC[:])
	last := append([]byte(nil), small...)
	last[59] = 1
	send(t, r.srv, small, big, last)
	for _, want := range [][]byte{small, last} {
		if got := r.recv(host); !bytes.Equal(got, want) {
			t.Fatalf("host got %d bytes, want %d", len(got), len(want))
		}
	}
	// The second frame was seen: its count must already be there.
	if got := r.counter("host_tx_frames"); got != 2 {
		t.Errorf("host_tx_frames = %d right after the frames arrived, want 2", got)
	}
	r.waitCounter("host_tx_errors", 1)
	if diff := cmp.Diff(map[string]uint64{"host_tx_frames": 2, "host_tx_bytes": 120, "host_tx_errors": 1},
		r.counters("host_tx_frames", "host_tx_bytes", "host_tx_errors")); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

// gatedPort holds every WriteBatch until the test opens the gate.
type gatedPort struct {
	nic.Port
	entered chan struct{} // a write is waiting at the gate
	gate    chan struct{}
}

func (p *gatedPort) WriteBatch(frames [][]byte) (int, error) {
	select {
	case p.entered <- struct{}{}:
	default:
	}
	<-p.gate
	return p.Port.WriteBatch(frames)
}

// TestSleepWaitsForFramesTakenInD0: a frame the device took in D0 and is
// still handing to the host when Sleep runs holds Sleep back until it is
// delivered, so that nothing reaches the host once Sleep has returned.
func TestSleepWaitsForFramesTakenInD0(t *testing.T) {
	var gp *gatedPort
	r := newRig(t, func(c *nic.Config) {
		gp = &gatedPort{Port: c.Host, entered: make(chan struct{}, 1), gate: make(chan struct{})}
		c.Host = gp
	})
	frame := tcpFrame(t, fromPeer(5000, 1000, "late"))
	send(t, r.srv, frame)
	select {
	case <-gp.entered: // the reader is handing the frame to the host
	case <-time.After(waitFor):
		t.Fatal("the frame never reached the host port")
	}
	slept := make(chan error, 1)
	go func() { slept <- r.dev.Sleep() }()
	select {
	case err := <-slept:
		close(gp.gate)
		t.Fatalf("Sleep returned (%v) while a frame taken in D0 was still on its way to the host", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gp.gate)
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
	if got := r.recv(r.host); !bytes.Equal(got, frame) {
		t.Errorf("host got %x, want the frame taken in D0 %x", got, frame)
	}
	if s := r.dev.State(); s != nic.D3 {
		t.Errorf("state %v, want D3", s)
	}
}
