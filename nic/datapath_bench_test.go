package nic

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// idlePort is a Port that never receives and swallows what is written:
// the datapath benchmarks call the per-frame functions directly.
type idlePort struct{ done chan struct{} }

func newIdlePort() *idlePort { return &idlePort{done: make(chan struct{})} }

func (p *idlePort) ReadBatch([]Packet) (int, error) {
	<-p.done
	return 0, &net.OpError{Op: "read", Err: net.ErrClosed}
}
func (p *idlePort) WriteBatch(f [][]byte) (int, error)   { return len(f), nil }
func (p *idlePort) SetReadDeadline(time.Time) error      { return nil }
func (p *idlePort) SetFilter([]bpf.RawInstruction) error { return nil }
func (p *idlePort) Stats() PortStats                     { return PortStats{} }
func (p *idlePort) Name() string                         { return "idle" }
func (p *idlePort) Close() error {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	return nil
}

func benchFrame(testing.TB) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: testPeer4.AsSlice(), DstIP: testHost4.AsSlice()}
	tcp := &layers.TCP{SrcPort: 443, DstPort: 40000, Seq: 5000, Ack: 1000, ACK: true, Window: 1000}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr(testPeerMAC[:]), DstMAC: net.HardwareAddr(testHostMAC[:]), EthernetType: layers.EthernetTypeIPv4}, ip, tcp)
	return buf.Bytes()
}

// BenchmarkD3Absorb is the per-frame cost of the D3 datapath absorbing a
// slot's pure ACK, without the ports.
func BenchmarkD3Absorb(b *testing.B) {
	d, err := New(&Config{Wire: newIdlePort(), Host: newIdlePort(), MAC: testHostMAC, Addrs: []netip.Addr{testHost4}})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	local, remote := netip.AddrPortFrom(testHost4, 40000), netip.AddrPortFrom(testPeer4, 443)
	snap := offload.Snapshot{LocalMAC: testHostMAC, RemoteMAC: testPeerMAC, Local: local, Remote: remote, SndNxt: 1000, RcvNxt: 5000,
		SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460}
	spec := offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Hour, RetryInterval: time.Minute, RetryCount: 1}
	if _, err := d.Arm(SlotConfig{Pattern: wp.TCPConn{Local: local, Remote: remote}, Spec: spec, Snapshot: snap}); err != nil {
		b.Fatal(err)
	}
	if err := d.Sleep(); err != nil {
		b.Fatal(err)
	}
	frame := benchFrame(b)
	rx := newRxCtx(64)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d.rxWire(rx, frame, &wholeHdr, now)
	}
	b.StopTimer()
	if got := d.cnt.get(cD3RxAbsorbed); got < uint64(b.N) {
		b.Fatalf("d3_rx_absorbed = %d, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}
