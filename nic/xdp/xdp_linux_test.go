package xdp

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// requireBPF skips t only when the process may not load BPF programs
// (CAP_BPF, or CAP_SYS_ADMIN on older kernels).
func requireBPF(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("xdp: needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN): %v", err)
	}
	t.Fatal(err)
}

var (
	hostMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	peerMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	host4   = netip.MustParseAddr("198.18.0.2")
	peer4   = netip.MustParseAddr("198.18.0.1")
	host6   = netip.MustParseAddr("2001:2::2")
	peer6   = netip.MustParseAddr("2001:2::1")
)

// fixture is a set of slots and patterns, the same in the program, the
// Matcher and the offload engine.
type fixture struct {
	patterns []wp.Pattern
	slots    []fixSlot // slot i has index i+1 and pattern i
	m        *wp.Matcher
}

type fixSlot struct {
	snap offload.Snapshot
	spec offload.Spec
}

func conn(local, remote netip.AddrPort, vlan uint16) wp.TCPConn {
	return wp.TCPConn{Local: local, Remote: remote, VLAN: vlan}
}

func newFixture(t testing.TB, raw bool) *fixture {
	probe := offload.Spec{Kind: offload.KindTCPProbe, Interval: 10 * time.Second, RetryInterval: 2 * time.Second, RetryCount: 2}
	mqtt := offload.Spec{Kind: offload.KindPayload, Interval: 10 * time.Second, RetryInterval: 2 * time.Second, RetryCount: 2,
		Payload: offload.PayloadSpec{Request: []byte{0xc0, 0}, Reply: []byte{0xd0, 0}}}
	snap := func(local, remote netip.AddrPort, ts bool, vlan uint16) offload.Snapshot {
		return offload.Snapshot{LocalMAC: hostMAC, RemoteMAC: peerMAC, Local: local, Remote: remote, VLAN: vlan,
			SndNxt: 1000, RcvNxt: 0xfffffff0, SndWnd: 64240, RcvWnd: 65535, TTL: 64, MSS: 1400,
			Timestamps: offload.Timestamps{Enabled: ts, Val: 5000, Rate: 1000, Recent: 0x7ffffff0}}
	}
	fx := &fixture{slots: []fixSlot{
		{snap(netip.AddrPortFrom(host4, 40000), netip.AddrPortFrom(peer4, 443), false, 0), probe},
		{snap(netip.AddrPortFrom(host4, 40001), netip.AddrPortFrom(peer4, 1883), true, 0), mqtt},
		{snap(netip.AddrPortFrom(host6, 40000), netip.AddrPortFrom(peer6, 443), true, 0), probe},
		{snap(netip.AddrPortFrom(host4, 40002), netip.AddrPortFrom(peer4, 443), false, 7), probe}, // on a VLAN: never absorbs
	}}
	for i, s := range fx.slots {
		fx.patterns = append(fx.patterns, wp.Pattern{ID: uint32(i + 1), Kind: wp.KindTCPConn, Conn: conn(s.snap.Local, s.snap.Remote, s.snap.VLAN)})
	}
	fx.patterns = append(fx.patterns,
		wp.Pattern{Kind: wp.KindTCPConn, Conn: conn(netip.AddrPortFrom(host4, 50000), netip.AddrPortFrom(peer4, 8080), 0)}, // extra / coalescing
		wp.Pattern{Kind: wp.KindTCPSYN, SYN: wp.TCPSYN{Local: netip.AddrPortFrom(host4, 22)}},
		wp.Pattern{Kind: wp.KindTCPSYN, SYN: wp.TCPSYN{Local: netip.AddrPortFrom(host6, 0), IPv6: true}},
	)
	if raw {
		fx.patterns = append(fx.patterns, wp.Pattern{Kind: wp.KindBitmap, Bitmap: wp.Bitmap{Offset: 12, Bytes: []byte{0x88, 0xb5}, Mask: []byte{0x03}}})
	}
	for i := range fx.patterns {
		fx.patterns[i].ID = uint32(i + 1)
	}
	var err error
	if fx.m, err = wp.Compile(fx.patterns, wp.DefaultCapabilities()); err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) load(t testing.TB) *Program {
	t.Helper()
	rlimit.RemoveMemlock()
	p, err := New(&Config{Patterns: fx.patterns, ARPFor: []netip.Addr{host4}, MaxSlots: 16})
	requireBPF(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// arm arms every slot in the program as the engine has it after Arm.
func (fx *fixture) arm(t testing.TB, p *Program) {
	t.Helper()
	for i, s := range fx.slots {
		ok, err := p.Arm(i+1, Slot{Conn: fx.patterns[i].Conn, RcvNxt: s.snap.RcvNxt, SndNxt: s.snap.SndNxt,
			Timestamps: s.snap.Timestamps.Enabled, TSRecent: s.snap.Timestamps.Recent, Reply: s.spec.Kind == offload.KindTCPProbe})
		if err != nil {
			t.Fatal(err)
		}
		if want := s.snap.VLAN == 0; ok != want {
			t.Fatalf("Arm(%d) = %v, want %v", i+1, ok, want)
		}
	}
}

type clock struct{}

func (clock) Now() time.Duration { return time.Hour }

type nopOut struct{}

func (nopOut) Send([]byte)        {}
func (nopOut) Wake(offload.Event) {}

// engine returns an offload engine with every slot armed.
func (fx *fixture) engine(t testing.TB) *offload.Engine {
	e := offload.New(&offload.Config{Clock: clock{}, Rand: rand.NewChaCha8([32]byte{7})})
	for i, s := range fx.slots {
		if err := e.Arm(offload.SlotID(i+1), s.snap, s.spec); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// frameSpec is one generated frame.
type frameSpec struct {
	src, dst   netip.AddrPort
	tags       []uint16
	ipOpts     bool
	frag       bool
	flags      uint8
	seq, ack   uint32
	payload    int
	opts       int // 0 none, 1 NOP NOP TS, 2 TS then MSS, 3 MSS, 4 SACK-permitted + TS
	tsval      uint32
	corrupt    int // 0 none, 1 IP checksum, 2 TCP checksum, 3 truncated, 4 padded
	canonical  bool
	proto      int // 0 TCP, 1 UDP, 2 ARP, 3 ICMPv6 NS, 4 ICMPv6 echo, 5 other ethertype, 6 IPv6 hop-by-hop then TCP, 7 IPv6 fragment
	arpTarget  netip.Addr
	arpOp      uint16
	nsTarget   netip.Addr
	etherType  uint16
	cutAt      int
	padTo      int
	flipOffset int
}

func build(t testing.TB, s *frameSpec) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(peerMAC[:]), DstMAC: net.HardwareAddr(hostMAC[:])}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	last := &eth.EthernetType
	for i, v := range s.tags {
		*last = layers.EthernetTypeDot1Q
		if i == 0 && len(s.tags) > 1 {
			*last = layers.EthernetTypeQinQ
		}
		tag := &layers.Dot1Q{VLANIdentifier: v}
		ls = append(ls, tag)
		last = &tag.Type
	}
	switch s.proto {
	case 2:
		*last = layers.EthernetTypeARP
		ls = append(ls, &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: s.arpOp, SourceHwAddress: peerMAC[:], SourceProtAddress: peer4.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: s.arpTarget.AsSlice()})
		return serialize(t, s, ls)
	case 5:
		*last = layers.EthernetType(s.etherType)
		ls = append(ls, gopacket.Payload(make([]byte, 46)))
		return serialize(t, s, ls)
	}
	var nl gopacket.NetworkLayer
	if s.src.Addr().Is4() {
		*last = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice(), Protocol: layers.IPProtocolTCP}
		if s.ipOpts {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}
		if s.frag {
			ip.Flags = layers.IPv4MoreFragments
		}
		if s.proto == 1 {
			ip.Protocol = layers.IPProtocolUDP
		}
		ls = append(ls, ip)
		nl = ip
	} else {
		*last = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice(), NextHeader: layers.IPProtocolTCP}
		ls = append(ls, ip)
		nl = ip
		switch s.proto {
		case 1:
			ip.NextHeader = layers.IPProtocolUDP
		case 3, 4:
			ip.NextHeader = layers.IPProtocolICMPv6
			typ := uint8(layers.ICMPv6TypeEchoRequest)
			if s.proto == 3 {
				typ = layers.ICMPv6TypeNeighborSolicitation
			}
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
			icmp.SetNetworkLayerForChecksum(ip)
			body := make([]byte, 4+16)
			copy(body[4:], s.nsTarget.AsSlice())
			ls = append(ls, icmp, gopacket.Payload(body))
			return serialize(t, s, ls)
		case 6:
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			ip.HopByHop = &layers.IPv6HopByHop{}
			ip.HopByHop.NextHeader = layers.IPProtocolTCP
			ip.HopByHop.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
		case 7:
			ip.NextHeader = layers.IPProtocolIPv6Fragment
			ls = append(ls, gopacket.Payload{6, 0, 0, 1, 0, 0, 0, 9}) // TCP, offset 0, more fragments
		}
	}
	if s.proto == 1 {
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.src.Port()), DstPort: layers.UDPPort(s.dst.Port())}
		udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp, gopacket.Payload(make([]byte, s.payload)))
		return serialize(t, s, ls)
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.src.Port()), DstPort: layers.TCPPort(s.dst.Port()), Seq: s.seq, Ack: s.ack, Window: 500,
		FIN: s.flags&wp.TCPFlagFIN != 0, SYN: s.flags&wp.TCPFlagSYN != 0, RST: s.flags&wp.TCPFlagRST != 0,
		PSH: s.flags&wp.TCPFlagPSH != 0, ACK: s.flags&wp.TCPFlagACK != 0, URG: s.flags&0x20 != 0}
	ts := func() layers.TCPOption {
		d := make([]byte, 8)
		d[0], d[1], d[2], d[3] = byte(s.tsval>>24), byte(s.tsval>>16), byte(s.tsval>>8), byte(s.tsval)
		return layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: d}
	}
	nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop}
	mss := layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}
	switch s.opts {
	case 1:
		tcp.Options = []layers.TCPOption{nop, nop, ts()}
	case 2:
		tcp.Options = []layers.TCPOption{ts(), nop, nop, mss}
	case 3:
		tcp.Options = []layers.TCPOption{mss}
	case 4:
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}, ts()}
	}
	tcp.SetNetworkLayerForChecksum(nl)
	ls = append(ls, tcp, gopacket.Payload(make([]byte, s.payload)))
	return serialize(t, s, ls)
}

func serialize(t testing.TB, s *frameSpec, ls []gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	switch s.corrupt {
	case 1, 2:
		if s.flipOffset < len(b) {
			b[s.flipOffset] ^= 0x40
		}
	case 3:
		if s.cutAt < len(b) {
			b = b[:s.cutAt]
		}
	case 4:
		b = append(b, make([]byte, s.padTo)...)
	}
	return b
}

// randomSpec draws a frame around the fixture's connections.
func (fx *fixture) randomSpec(r *rand.Rand) *frameSpec {
	s := &frameSpec{proto: 0, flags: wp.TCPFlagACK}
	slot := r.IntN(len(fx.slots) + 2)
	switch {
	case slot < len(fx.slots):
		sn := fx.slots[slot].snap
		s.src, s.dst = sn.Remote, sn.Local
		s.seq, s.ack = sn.RcvNxt, sn.SndNxt
		if sn.VLAN != 0 && r.IntN(2) == 0 {
			s.tags = []uint16{sn.VLAN}
		}
		if sn.Timestamps.Enabled {
			s.opts = 1
			s.tsval = sn.Timestamps.Recent + uint32(r.IntN(5)) - 2
		}
	case slot == len(fx.slots):
		s.src, s.dst = netip.AddrPortFrom(peer4, 8080), netip.AddrPortFrom(host4, 50000)
	default: // nobody's
		if r.IntN(2) == 0 {
			s.src, s.dst = netip.AddrPortFrom(peer4, uint16(r.IntN(3)+442)), netip.AddrPortFrom(host4, uint16(r.IntN(3)+21))
		} else {
			s.src, s.dst = netip.AddrPortFrom(peer6, uint16(r.IntN(3)+442)), netip.AddrPortFrom(host6, uint16(r.IntN(3)+39999))
		}
		s.seq, s.ack = r.Uint32(), r.Uint32()
	}
	s.canonical = true
	if r.IntN(3) == 0 { // perturb the exact reply
		switch r.IntN(4) {
		case 0:
			s.seq += uint32(r.IntN(3)) - 1
		case 1:
			s.ack += uint32(r.IntN(3)) - 1
		case 2:
			s.payload = r.IntN(3)
		case 3:
			s.flags = []uint8{0, wp.TCPFlagSYN, wp.TCPFlagSYN | wp.TCPFlagACK, wp.TCPFlagFIN | wp.TCPFlagACK, wp.TCPFlagRST, wp.TCPFlagRST | wp.TCPFlagACK,
				wp.TCPFlagPSH | wp.TCPFlagACK, 0x20 | wp.TCPFlagACK}[r.IntN(8)]
		}
	}
	if r.IntN(6) == 0 {
		s.opts = r.IntN(5)
		s.tsval = r.Uint32()
	}
	if r.IntN(8) == 0 {
		s.canonical = false
		switch r.IntN(5) {
		case 0:
			s.tags = []uint16{uint16(r.IntN(8))}
		case 1:
			s.tags = []uint16{7, 9}
		case 2:
			s.ipOpts = s.src.Addr().Is4()
		case 3:
			s.frag = s.src.Addr().Is4()
		case 4:
			if s.src.Addr().Is6() {
				s.proto = 6 + r.IntN(2)
			}
		}
	}
	if r.IntN(8) == 0 {
		s.corrupt = 1 + r.IntN(4)
		s.flipOffset = 14 + r.IntN(70)
		s.cutAt = 14 + r.IntN(76) // XDP never sees less than an Ethernet header
		s.padTo = r.IntN(20)
		s.canonical = s.canonical && s.corrupt == 4
	}
	if r.IntN(6) == 0 { // not TCP at all
		s.canonical = false
		s.proto = 1 + r.IntN(5)
		s.arpOp = uint16(1 + r.IntN(2))
		s.arpTarget = []netip.Addr{host4, peer4}[r.IntN(2)]
		s.nsTarget = []netip.Addr{host6, peer6}[r.IntN(2)]
		s.etherType = []uint16{0x88b5, 0x88cc, 0x0842}[r.IntN(3)]
		if (s.proto == 3 || s.proto == 4) && s.src.Addr().Is4() {
			s.src, s.dst = netip.AddrPortFrom(peer6, 1), netip.AddrPortFrom(host6, 2)
		}
		if s.proto == 2 || s.proto == 5 {
			s.tags = nil
		}
	}
	return s
}

// run runs p on frame and returns the reason its counters moved by.
func run(t testing.TB, p *Program, frame []byte) Reason {
	t.Helper()
	var before [numReasons]uint64
	for r := range numReasons {
		before[r] = p.Count(r)
	}
	v, err := p.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	got := Reason(255)
	for r := range numReasons {
		if d := p.Count(r) - before[r]; d == 1 && got == 255 {
			got = r
		} else if d != 0 {
			t.Fatalf("counter %v moved by %d", r, d)
		}
	}
	switch {
	case got == 255:
		t.Fatalf("no counter moved (verdict %d)", v)
	case got == Passed && v != xdpPass, got != Passed && v != xdpDrop:
		t.Fatalf("verdict %d with counter %v", v, got)
	}
	return got
}

// TestIntegrationXDPSuperset is the property test of the program against
// the Matcher and the offload engine through BPF_PROG_TEST_RUN, on
// generated frames: a frame dropped by reason is one the Matcher rejects
// and no ARP request or neighbour solicitation for the host; a frame
// absorbed is the exact reply the engine absorbs (fresh from Arm, the
// slot counter the engine moves, checksums verified); and each canonical
// exact reply the engine absorbs is absorbed.
func TestIntegrationXDPSuperset(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw-patterns=%v", raw), func(t *testing.T) {
			fx := newFixture(t, raw)
			p := fx.load(t)
			r := rand.New(rand.NewPCG(1, uint64(len(fx.patterns))))
			seen := map[Reason]int{}
			n := 4000
			if testing.Short() {
				n = 500
			}
			for i := range n {
				s := fx.randomSpec(r)
				frame := build(t, s)
				fx.arm(t, p)
				got := run(t, p, frame)
				seen[got]++
				fx.check(t, p, i, s, frame, got, raw)
			}
			t.Logf("verdicts over %d frames: %v", n, seen)
			if seen[Absorbed] < n/10 || seen[Passed] < n/10 {
				t.Errorf("too few absorbed or passed frames: %v", seen)
			}
			if !raw && seen[DroppedNoMatch] == 0 {
				t.Errorf("no frame dropped as matching nothing: %v", seen)
			}
			if raw && len(seen) != 2 {
				t.Errorf("with a bitmap pattern the program dropped by reason: %v", seen)
			}
		})
	}
}

func (fx *fixture) check(t *testing.T, p *Program, i int, s *frameSpec, frame []byte, got Reason, raw bool) {
	t.Helper()
	var f wp.Frame
	var res wp.Result
	matched := fx.m.MatchFrame(frame, &f, &res)
	switch got {
	case Passed:
	case Absorbed:
		var d wp.Frame
		st := d.Decode(frame, wp.DecodeOptions{VerifyChecksums: true})
		if st != wp.OK || !matched || res.Index >= len(fx.slots) {
			t.Fatalf("frame %d absorbed: status %v, matched %v (pattern %d): %x", i, st, matched, res.Index, frame)
		}
		e := fx.engine(t)
		id := offload.SlotID(res.Index + 1)
		_, _, before, _ := e.State(id)
		v := e.Receive(id, &d, nopOut{})
		_, _, after, _ := e.State(id)
		if v != offload.Absorb || after.RepliesAbsorbed+after.ACKsAbsorbed != before.RepliesAbsorbed+before.ACKsAbsorbed+1 {
			t.Fatalf("frame %d absorbed in XDP; engine: %v, counters %+v: %x", i, v, after, frame)
		}
		sc := fx.slots[res.Index]
		if d.Seq != sc.snap.RcvNxt || d.Ack != sc.snap.SndNxt || d.PayloadLen != 0 {
			t.Fatalf("frame %d absorbed but not the exact reply: seq %d ack %d len %d", i, d.Seq, d.Ack, d.PayloadLen)
		}
		xc := p.SlotCounters(res.Index + 1)
		if xc.Replies != after.RepliesAbsorbed-before.RepliesAbsorbed || xc.ACKs != after.ACKsAbsorbed-before.ACKsAbsorbed {
			t.Fatalf("frame %d: program counted %+v, engine replies +%d acks +%d", i, xc,
				after.RepliesAbsorbed-before.RepliesAbsorbed, after.ACKsAbsorbed-before.ACKsAbsorbed)
		}
	default:
		if raw {
			t.Fatalf("frame %d dropped (%v) with a bitmap pattern in the set: %x", i, got, frame)
		}
		if matched {
			t.Fatalf("frame %d dropped (%v) but the Matcher takes it (pattern %d): %x", i, got, res.Pattern.ID, frame)
		}
		if f.Status == wp.OK && f.EtherType == wp.EtherTypeARP && f.ARPOp == 1 && f.DstIP == host4 {
			t.Fatalf("frame %d: ARP request for the host dropped (%v)", i, got)
		}
		if f.EtherType == wp.EtherTypeIPv6 && f.IPProto == wp.ProtoICMPv6 && f.ICMPType == 135 {
			t.Fatalf("frame %d: neighbour solicitation dropped (%v)", i, got)
		}
	}
	if s == nil {
		return
	}
	if got != Absorbed && s.canonical && s.proto == 0 && matched && res.Index < len(fx.slots) && fx.slots[res.Index].snap.VLAN == 0 && len(s.tags) == 0 {
		var d wp.Frame
		if d.Decode(frame, wp.DecodeOptions{VerifyChecksums: true}) != wp.OK {
			return
		}
		sc := fx.slots[res.Index]
		if d.Seq != sc.snap.RcvNxt || d.Ack != sc.snap.SndNxt || d.PayloadLen != 0 || (s.opts != 0 && s.opts != 1) {
			return
		}
		e := fx.engine(t)
		id := offload.SlotID(res.Index + 1)
		_, _, before, _ := e.State(id)
		v := e.Receive(id, &d, nopOut{})
		_, _, after, _ := e.State(id)
		if v == offload.Absorb && after.RepliesAbsorbed+after.ACKsAbsorbed > before.RepliesAbsorbed+before.ACKsAbsorbed {
			t.Fatalf("frame %d: the engine absorbs this exact reply, the program %v: %x", i, got, frame)
		}
	}
}

// TestIntegrationXDPSlotLife: Update moves the exact reply (no syscall,
// no allocation), Pause and Disarm stop the absorb, a bad index is
// refused, and the counters read allocate nothing.
func TestIntegrationXDPSlotLife(t *testing.T) {
	fx := newFixture(t, false)
	p := fx.load(t)
	fx.arm(t, p)
	sn := fx.slots[0].snap
	reply := func(seq, ack uint32) []byte {
		return build(t, &frameSpec{src: sn.Remote, dst: sn.Local, flags: wp.TCPFlagACK, seq: seq, ack: ack})
	}
	if got := run(t, p, reply(sn.RcvNxt, sn.SndNxt)); got != Absorbed {
		t.Fatalf("exact reply: %v", got)
	}
	p.Update(1, sn.RcvNxt+1, sn.SndNxt+2)
	if got := run(t, p, reply(sn.RcvNxt, sn.SndNxt)); got != Passed {
		t.Errorf("the old reply after Update: %v", got)
	}
	if got := run(t, p, reply(sn.RcvNxt+1, sn.SndNxt+2)); got != Absorbed {
		t.Errorf("the new reply after Update: %v", got)
	}
	if c := p.SlotCounters(1); c != (SlotCounters{Replies: 2, Passed: 1}) {
		t.Errorf("counters %+v", c)
	}
	p.Pause(1)
	if got := run(t, p, reply(sn.RcvNxt+1, sn.SndNxt+2)); got != Passed {
		t.Errorf("after Pause: %v", got)
	}
	if err := p.Disarm(1); err != nil {
		t.Fatal(err)
	}
	if got := run(t, p, reply(sn.RcvNxt+1, sn.SndNxt+2)); got != Passed {
		t.Errorf("after Disarm (the pattern stays): %v", got)
	}
	for _, idx := range []int{0, 17} {
		if _, err := p.Arm(idx, Slot{Conn: fx.patterns[0].Conn}); err == nil || !strings.Contains(err.Error(), "limit 1..16") {
			t.Errorf("Arm(%d) = %v", idx, err)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		p.Update(2, 1, 2)
		_ = p.SlotCounters(2)
		_ = p.Count(Absorbed)
		_ = p.TSRecent(2)
	}); n != 0 {
		t.Errorf("%v allocations per Update and counter read", n)
	}
	// PassAll (a wake): the exact reply of an armed slot and a frame
	// that matches nothing both pass, counted as passed.
	p.Update(2, fx.slots[1].snap.RcvNxt, fx.slots[1].snap.SndNxt)
	sn2 := fx.slots[1].snap
	exact2 := build(t, &frameSpec{src: sn2.Remote, dst: sn2.Local, flags: wp.TCPFlagACK, seq: sn2.RcvNxt, ack: sn2.SndNxt})
	if got := run(t, p, exact2); got != Absorbed {
		t.Fatalf("slot 2's exact reply before PassAll: %v", got)
	}
	p.PassAll()
	passedBefore := p.Count(Passed)
	if got := run(t, p, exact2); got != Passed {
		t.Errorf("slot 2's exact reply after PassAll: %v", got)
	}
	if got := p.Count(Passed); got != passedBefore+1 {
		t.Errorf("passed = %d after PassAll, want %d", got, passedBefore+1)
	}
	p.Close()
	p.PassAll()       // after Close: nothing, no fault
	p.Update(2, 1, 2) // after Close: nothing, no fault
	if c := p.SlotCounters(2); c != (SlotCounters{}) {
		t.Errorf("counters after Close %+v", c)
	}
}

// FuzzXDPSuperset is TestIntegrationXDPSuperset's check on any frame: a
// frame dropped by reason is one the Matcher rejects and no neighbour
// frame for the host; a frame absorbed is the exact reply the engine
// absorbs.
func FuzzXDPSuperset(f *testing.F) {
	fx := newFixture(f, false)
	r := rand.New(rand.NewPCG(3, 4))
	for range 16 {
		f.Add(build(f, fx.randomSpec(r)))
	}
	p := fx.load(f)
	fx.arm(f, p)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 3000 {
			return // XDP never sees less than an Ethernet header; test runs take a page
		}
		fx.arm(t, p)
		fx.check(t, p, 0, nil, frame, run(t, p, frame), false)
	})
}
