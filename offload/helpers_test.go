package offload

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/standbynic/standbynic/wakepattern"
)

// fakeClock is a Clock the test moves.
type fakeClock struct{ t time.Duration }

func (c *fakeClock) Now() time.Duration { return c.t }

// sent is one frame the engine sent, decoded.
type sent struct {
	At      time.Duration
	Seq     uint32
	Ack     uint32
	Flags   uint8
	Payload []byte
	TSval   uint32
	TSecr   uint32
}

// recorder is an Output that keeps copies of everything.
type recorder struct {
	t      *testing.T
	clock  *fakeClock
	frames [][]byte
	sent   []sent
	wakes  []Event
}

func (r *recorder) Send(frame []byte) {
	b := append([]byte(nil), frame...)
	r.frames = append(r.frames, b)
	var f wakepattern.Frame
	if st := f.Decode(b, wakepattern.DecodeOptions{VerifyChecksums: true}); st != wakepattern.OK || !f.IsTCP() {
		r.t.Fatalf("engine sent a frame that does not decode: %v\n% x", st, b)
	}
	r.sent = append(r.sent, sent{At: r.clock.t, Seq: f.Seq, Ack: f.Ack, Flags: f.TCPFlags, Payload: f.Payload(), TSval: f.TSval, TSecr: f.TSecr})
}

func (r *recorder) Wake(ev Event) {
	ev.Frame = append([]byte(nil), ev.Frame...)
	r.wakes = append(r.wakes, ev)
}

func (r *recorder) reset() { r.frames, r.sent, r.wakes = nil, nil, nil }

// nopOutput discards everything (benchmarks, allocation tests).
type nopOutput struct{ n int }

func (o *nopOutput) Send(frame []byte) { o.n += len(frame) }
func (o *nopOutput) Wake(Event)        {}

var (
	hostMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	peerMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
)

func snap4() Snapshot {
	return Snapshot{
		LocalMAC: hostMAC, RemoteMAC: peerMAC,
		Local:  netip.MustParseAddrPort("198.18.0.2:40000"),
		Remote: netip.MustParseAddrPort("198.18.0.1:443"),
		SndNxt: 1000, RcvNxt: 5000,
		SndWnd: 64240, RcvWnd: 65535 << 2, SndWScale: 7, RcvWScale: 7,
		Timestamps: Timestamps{Enabled: true, Val: 777000, At: 0, Rate: 1000, Recent: 42},
		TTL:        64, TOS: 0x10, MSS: 1460,
	}
}

func snap6() Snapshot {
	s := snap4()
	s.Local = netip.MustParseAddrPort("[2001:db8::2]:40000")
	s.Remote = netip.MustParseAddrPort("[2001:db8::1]:443")
	s.MSS = 1440
	return s
}

func probeSpec() Spec {
	return Spec{Kind: KindTCPProbe, Interval: 10 * time.Second, RetryInterval: 2 * time.Second, RetryCount: 2}
}

func mqttSpec() Spec {
	return Spec{Kind: KindPayload, Interval: 10 * time.Second, RetryInterval: 2 * time.Second, RetryCount: 2,
		Payload: PayloadSpec{Request: []byte{0xc0, 0x00}, Reply: []byte{0xd0, 0x00}}}
}

func wsSpec(mode WSMode, payload []byte) Spec {
	return Spec{Kind: KindWebSocket, Interval: 10 * time.Second, RetryInterval: 2 * time.Second, RetryCount: 2,
		WebSocket: WebSocketSpec{Mode: mode, Payload: payload}}
}

// newTest returns an engine on a fake clock with a seeded Rand.
func newTest(t testing.TB, cfg *Config) (*Engine, *fakeClock) {
	clk := &fakeClock{}
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Clock = clk
	c.Rand = rand.NewChaCha8([32]byte{1, 2, 3})
	return New(&c), clk
}

// seg describes a segment from the peer.
type seg struct {
	seq, ack uint32
	flags    uint8
	payload  []byte
	ts       bool // carry a timestamp option
	tsval    uint32
	tsecr    uint32
	window   uint16
}

// serialize builds a frame with gopacket: from src to dst of snap (from
// the peer when peer is true), with checksums computed.
func serialize(t testing.TB, snap Snapshot, peer bool, s seg, ipID uint16) []byte {
	t.Helper()
	srcMAC, dstMAC := snap.LocalMAC, snap.RemoteMAC
	src, dst := snap.Local, snap.Remote
	if peer {
		srcMAC, dstMAC = dstMAC, srcMAC
		src, dst = dst, src
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(srcMAC[:]), DstMAC: net.HardwareAddr(dstMAC[:])}
	ls = append(ls, eth)
	ipType := layers.EthernetTypeIPv4
	if src.Addr().Is6() {
		ipType = layers.EthernetTypeIPv6
	}
	if snap.VLAN != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: snap.VLAN, Type: ipType})
	} else {
		eth.EthernetType = ipType
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: s.seq, Ack: s.ack, Window: s.window,
		FIN: s.flags&wakepattern.TCPFlagFIN != 0, SYN: s.flags&wakepattern.TCPFlagSYN != 0,
		RST: s.flags&wakepattern.TCPFlagRST != 0, PSH: s.flags&wakepattern.TCPFlagPSH != 0,
		ACK: s.flags&wakepattern.TCPFlagACK != 0,
	}
	if s.ts {
		var d [8]byte
		binary.BigEndian.PutUint32(d[:], s.tsval)
		binary.BigEndian.PutUint32(d[4:], s.tsecr)
		tcp.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: d[:]},
		}
	}
	if src.Addr().Is4() {
		ip := &layers.IPv4{Version: 4, TOS: snap.TOS, Id: ipID, Flags: layers.IPv4DontFragment, TTL: snap.TTL,
			Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ls = append(ls, ip)
		tcp.SetNetworkLayerForChecksum(ip)
	} else {
		ip := &layers.IPv6{Version: 6, TrafficClass: snap.TOS, NextHeader: layers.IPProtocolTCP, HopLimit: snap.TTL,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ls = append(ls, ip)
		tcp.SetNetworkLayerForChecksum(ip)
	}
	ls = append(ls, tcp, gopacket.Payload(s.payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// peerFrame returns the decoded frame of a segment from the peer of snap.
func peerFrame(t testing.TB, snap Snapshot, s seg) *wakepattern.Frame {
	t.Helper()
	if s.window == 0 {
		s.window = 502
	}
	b := serialize(t, snap, true, s, 1)
	f := new(wakepattern.Frame)
	if st := f.Decode(b, wakepattern.DecodeOptions{VerifyChecksums: true}); st != wakepattern.OK {
		t.Fatalf("peer frame does not decode: %v", st)
	}
	return f
}

// wsServer returns an unmasked server WebSocket frame.
func wsServer(op byte, payload []byte) []byte {
	return append([]byte{0x80 | op, byte(len(payload))}, payload...)
}

// unmaskWS decodes a masked client control frame and returns its opcode
// and payload, failing the test if it is not one.
func unmaskWS(t testing.TB, b []byte) (byte, []byte) {
	t.Helper()
	if len(b) < 6 || b[0]&0x80 == 0 || b[1]&0x80 == 0 || int(b[1]&0x7f) != len(b)-6 {
		t.Fatalf("not a masked client control frame: % x", b)
	}
	p := make([]byte, len(b)-6)
	for i := range p {
		p[i] = b[6+i] ^ b[2+i%4]
	}
	return b[0] & 0x0f, p
}
