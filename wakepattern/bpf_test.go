package wakepattern

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// bpfSpec describes a test frame.
type bpfSpec struct {
	tags     []uint16 // VLAN IDs, outermost first
	qinq     bool     // outer TPID 0x88a8
	src, dst netip.AddrPort
	flags    uint8 // TCP flags; 0 means ACK
	payload  int
	ipOpts   bool    // IPv4: 8 bytes of options
	ts       bool    // TCP timestamps option
	ext      []uint8 // IPv6 extension headers before TCP
	frag     uint16  // IPv4: raw flags+offset field (MF = 0x2000)
	pad      int     // Ethernet padding after the IP packet
	proto    uint8   // 0: TCP; else raw IP protocol with 20 bytes payload
}

var (
	bpfHostMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	bpfPeerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
)

func bpfL2(s bpfSpec, et layers.EthernetType) []gopacket.SerializableLayer {
	eth := &layers.Ethernet{SrcMAC: bpfPeerMAC, DstMAC: bpfHostMAC, EthernetType: et}
	ls := []gopacket.SerializableLayer{eth}
	for i, id := range s.tags {
		if i == 0 {
			eth.EthernetType = layers.EthernetTypeDot1Q
			if s.qinq {
				eth.EthernetType = layers.EthernetTypeQinQ
			}
		}
		q := &layers.Dot1Q{VLANIdentifier: id, Type: et}
		if i < len(s.tags)-1 {
			q.Type = layers.EthernetTypeDot1Q
		}
		ls = append(ls, q)
	}
	return ls
}

func bpfSerialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return bytes.Clone(buf.Bytes())
}

// bpfTCPFrame builds an Ethernet/[VLAN]/IP/TCP frame from src to dst.
func bpfTCPFrame(t testing.TB, s bpfSpec) []byte {
	t.Helper()
	v6 := s.src.Addr().Is6()
	et := layers.EthernetTypeIPv4
	if v6 {
		et = layers.EthernetTypeIPv6
	}
	ls := bpfL2(s, et)
	var ip gopacket.NetworkLayer
	if v6 {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice()}
		ip = ip6
		ls = append(ls, ip6)
		if len(s.ext) > 0 {
			ip6.NextHeader = layers.IPProtocol(s.ext[0])
			var ext []byte
			for i, typ := range s.ext {
				next := uint8(layers.IPProtocolTCP)
				if i+1 < len(s.ext) {
					next = s.ext[i+1]
				}
				h := make([]byte, 8)
				h[0] = next
				if typ == 51 { // AH: (len+2)*4 = 8 → len 0
					h[1] = 0
				}
				ext = append(ext, h...)
			}
			ls = append(ls, gopacket.Payload(ext))
		}
		if s.proto != 0 {
			ip6.NextHeader = layers.IPProtocol(s.proto)
		}
	} else {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice()}
		ip4.Flags = layers.IPv4Flag(s.frag >> 13)
		ip4.FragOffset = s.frag & 0x1fff
		if s.ipOpts {
			ip4.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1},
				{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}
		if s.proto != 0 {
			ip4.Protocol = layers.IPProtocol(s.proto)
		}
		ip = ip4
		ls = append(ls, ip4)
	}
	if s.proto != 0 {
		ls = append(ls, gopacket.Payload(make([]byte, 20)))
	} else {
		flags := s.flags
		if flags == 0 {
			flags = TCPFlagACK
		}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(s.src.Port()), DstPort: layers.TCPPort(s.dst.Port()),
			Seq: 1000, Ack: 2000, Window: 512,
			FIN: flags&TCPFlagFIN != 0, SYN: flags&TCPFlagSYN != 0, RST: flags&TCPFlagRST != 0,
			PSH: flags&TCPFlagPSH != 0, ACK: flags&TCPFlagACK != 0}
		if s.ts {
			tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 1, 0, 0, 0, 2, 0}}}
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, tcp, gopacket.Payload(bytes.Repeat([]byte{'x'}, s.payload)))
	}
	b := bpfSerialize(t, ls...)
	return append(b, make([]byte, s.pad)...)
}

func bpfARPFrame(t testing.TB, op uint16, target netip.Addr, tags ...uint16) []byte {
	t.Helper()
	ls := bpfL2(bpfSpec{tags: tags}, layers.EthernetTypeARP)
	ls = append(ls, &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: op,
		SourceHwAddress: bpfPeerMAC, SourceProtAddress: []byte{198, 18, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice()})
	return bpfSerialize(t, ls...)
}

func bpfNSFrame(t testing.TB, typ uint8, target netip.Addr, ext []uint8, tags ...uint16) []byte {
	t.Helper()
	ls := bpfL2(bpfSpec{tags: tags}, layers.EthernetTypeIPv6)
	ip6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: netip.MustParseAddr("2001:db8::1").AsSlice(), DstIP: netip.MustParseAddr("ff02::1:ff00:2").AsSlice()}
	ls = append(ls, ip6)
	if len(ext) > 0 {
		ip6.NextHeader = layers.IPProtocol(ext[0])
		var b []byte
		for i := range ext {
			next := uint8(layers.IPProtocolICMPv6)
			if i+1 < len(ext) {
				next = ext[i+1]
			}
			b = append(b, next, 0, 0, 0, 0, 0, 0, 0)
		}
		ls = append(ls, gopacket.Payload(b))
	}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		t.Fatal(err)
	}
	ls = append(ls, icmp, &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice()})
	return bpfSerialize(t, ls...)
}

func bpfMagicFrame(t testing.TB, mac [6]byte, at int, total int) []byte {
	t.Helper()
	b := make([]byte, total)
	copy(b, bpfHostMAC)
	copy(b[6:], bpfPeerMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0842)
	for i := range 6 {
		b[at+i] = 0xff
	}
	for i := range 16 {
		copy(b[at+6+6*i:], mac[:])
	}
	return b
}

func bpfVM(t testing.TB, prog []bpf.Instruction) *bpf.VM {
	t.Helper()
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	return vm
}

func bpfAccepts(t testing.TB, vm *bpf.VM, frame []byte) bool {
	t.Helper()
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatalf("vm.Run: %v", err)
	}
	return n > 0
}

func bpfConnPat(local, remote string, vlan uint16) Pattern {
	return Pattern{ID: 1, Kind: KindTCPConn, Conn: TCPConn{
		Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote), VLAN: vlan}}
}

var (
	bpfLocal4  = netip.MustParseAddrPort("198.18.0.2:40000")
	bpfRemote4 = netip.MustParseAddrPort("198.18.0.1:443")
	bpfLocal6  = netip.MustParseAddrPort("[2001:db8::2]:40000")
	bpfRemote6 = netip.MustParseAddrPort("[2001:db8::1]:443")
)

func TestBPFTable(t *testing.T) {
	c4 := bpfConnPat(bpfLocal4.String(), bpfRemote4.String(), 0)
	c4v := bpfConnPat(bpfLocal4.String(), bpfRemote4.String(), 7)
	c6 := bpfConnPat(bpfLocal6.String(), bpfRemote6.String(), 0)
	synAny := Pattern{ID: 2, Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.AddrPortFrom(netip.Addr{}, 22)}}
	synAddr := Pattern{ID: 3, Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.MustParseAddrPort("[2001:db8::2]:0"), IPv6: true}}
	bm := Pattern{ID: 4, Kind: KindBitmap, Bitmap: Bitmap{Offset: 30, Bytes: []byte{198, 18, 0, 9, 0xaa, 0xbb}, Mask: []byte{0x2f}}}
	mac := [6]byte{0x02, 0, 0, 0, 0, 2}
	mg := Pattern{ID: 5, Kind: KindMagic, Magic: Magic{MAC: mac}}
	other := netip.MustParseAddrPort("198.18.0.3:443")
	type frameCase struct {
		name  string
		frame []byte
		want  bool
	}
	tests := []struct {
		name     string
		patterns []Pattern
		opt      BPFOptions
		frames   []frameCase
	}{
		{
			name:     "ipv4 conn",
			patterns: []Pattern{c4},
			frames: []frameCase{
				{"match", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4}), true},
				{"data+ts", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, payload: 100, ts: true}), true},
				{"ip options", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, ipOpts: true, ts: true}), true},
				{"padded", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, pad: 6}), true},
				{"fin", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, flags: TCPFlagFIN | TCPFlagACK}), true},
				{"rst", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, flags: TCPFlagRST}), true},
				{"reverse direction", bpfTCPFrame(t, bpfSpec{src: bpfLocal4, dst: bpfRemote4}), false},
				{"other remote", bpfTCPFrame(t, bpfSpec{src: other, dst: bpfLocal4}), false},
				{"other remote port", bpfTCPFrame(t, bpfSpec{src: netip.AddrPortFrom(bpfRemote4.Addr(), 444), dst: bpfLocal4}), false},
				{"other local port", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.AddrPortFrom(bpfLocal4.Addr(), 1)}), false},
				{"tagged", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{7}}), false},
				{"first fragment", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, frag: 0x2000}), false},
				{"non-first fragment", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, frag: 100}), false},
				{"udp", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, proto: ProtoUDP}), false},
				{"ipv6", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6}), false},
				{"arp", bpfARPFrame(t, 1, bpfLocal4.Addr()), false},
				{"truncated", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, payload: 10})[:60], false},
				{"runt", []byte{1, 2, 3}, false},
			},
		},
		{
			name:     "ipv4 conn on vlan",
			patterns: []Pattern{c4v},
			frames: []frameCase{
				{"tag 7", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{7}}), true},
				{"qinq outer 7", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{7, 100}, qinq: true}), true},
				{"qinq inner 7", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{100, 7}, qinq: true}), false},
				{"untagged", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4}), false},
				{"priority tagged", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{0}}), false},
				{"tag 8", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{8}}), false},
				{"three tags", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{1, 2, 7}}), false},
			},
		},
		{
			name:     "vlan stripped by kernel",
			patterns: []Pattern{c4v},
			opt:      BPFOptions{KernelStripsVLAN: true},
			frames: []frameCase{
				{"untagged", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4}), true},
				{"tag 8", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{8}}), true},
				{"other remote", bpfTCPFrame(t, bpfSpec{src: other, dst: bpfLocal4}), false},
			},
		},
		{
			name:     "ipv6 conn",
			patterns: []Pattern{c6},
			frames: []frameCase{
				{"match", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, ts: true}), true},
				{"tag", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, tags: []uint16{3}}), false},
				{"hop-by-hop, dst opts, ah", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, ext: []uint8{0, 60, 51}}), true},
				{"eight ext headers", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, ext: []uint8{0, 60, 60, 60, 60, 60, 60, 43}}), true},
				{"nine ext headers", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, ext: []uint8{0, 60, 60, 60, 60, 60, 60, 60, 43}}), false},
				{"fragment header", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, ext: []uint8{44}}), false},
				{"other remote", bpfTCPFrame(t, bpfSpec{src: netip.MustParseAddrPort("[2001:db8::3]:443"), dst: bpfLocal6}), false},
				{"udp", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, proto: ProtoUDP}), false},
				{"ipv4", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4}), false},
			},
		},
		{
			name:     "syn wildcards",
			patterns: []Pattern{synAny, synAddr},
			frames: []frameCase{
				{"syn to 22 any v4 address", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.MustParseAddrPort("198.18.9.9:22"), flags: TCPFlagSYN}), true},
				{"syn to 23 v4", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.MustParseAddrPort("198.18.9.9:23"), flags: TCPFlagSYN}), false},
				{"syn-ack to 22", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.MustParseAddrPort("198.18.9.9:22"), flags: TCPFlagSYN | TCPFlagACK}), false},
				{"syn-rst to 22", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.MustParseAddrPort("198.18.9.9:22"), flags: TCPFlagSYN | TCPFlagRST}), false},
				{"ack to 22", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.MustParseAddrPort("198.18.9.9:22")}), false},
				{"syn to v6 addr any port", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, flags: TCPFlagSYN}), true},
				{"syn to v6 other addr", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: netip.MustParseAddrPort("[2001:db8::9]:1"), flags: TCPFlagSYN}), false},
				{"syn to 22 v6", bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: netip.MustParseAddrPort("[2001:db8::9]:22"), flags: TCPFlagSYN}), false},
			},
		},
		{
			name:     "bitmap",
			patterns: []Pattern{bm},
			frames: func() []frameCase {
				hit := bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.MustParseAddrPort("198.18.0.9:80")})
				miss := bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.MustParseAddrPort("198.18.0.8:80")})
				return []frameCase{
					{"dst 198.18.0.9", hit, true},
					{"dst 198.18.0.8", miss, false},
					{"just long enough", hit[:36], true},
					{"one short", hit[:35], false},
				}
			}(),
		},
		{
			name:     "magic",
			patterns: []Pattern{mg},
			frames: []frameCase{
				{"at 14", bpfMagicFrame(t, mac, 14, 116), true},
				{"at 42 (udp offset)", bpfMagicFrame(t, mac, 42, 160), true},
				{"at 1400", bpfMagicFrame(t, mac, 1400, 1502), true},
				{"other mac", bpfMagicFrame(t, [6]byte{2, 0, 0, 0, 0, 3}, 42, 160), false},
				{"jumbo", make([]byte, 2000), true},
				{"tcp", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4}), false},
			},
		},
		{
			name:     "arp and ns",
			patterns: nil,
			opt:      BPFOptions{AcceptARPFor: []netip.Addr{bpfLocal4.Addr()}, AcceptNSFor: []netip.Addr{bpfLocal6.Addr()}},
			frames: []frameCase{
				{"arp request", bpfARPFrame(t, 1, bpfLocal4.Addr()), true},
				{"arp request tagged", bpfARPFrame(t, 1, bpfLocal4.Addr(), 5), true},
				{"arp request qinq", bpfARPFrame(t, 1, bpfLocal4.Addr(), 5, 6), true},
				{"arp reply", bpfARPFrame(t, 2, bpfLocal4.Addr()), false},
				{"arp other target", bpfARPFrame(t, 1, bpfRemote4.Addr()), false},
				{"ns", bpfNSFrame(t, 135, bpfLocal6.Addr(), nil), true},
				{"ns behind hop-by-hop", bpfNSFrame(t, 135, bpfLocal6.Addr(), []uint8{0}), true},
				{"ns tagged", bpfNSFrame(t, 135, bpfLocal6.Addr(), nil, 9), true},
				{"ns other target", bpfNSFrame(t, 135, bpfRemote6.Addr(), nil), false},
				{"na", bpfNSFrame(t, 136, bpfLocal6.Addr(), nil), false},
				{"tcp", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4}), false},
			},
		},
		{
			name:     "empty set",
			patterns: nil,
			frames: []frameCase{
				{"tcp", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4}), false},
				{"arp", bpfARPFrame(t, 1, bpfLocal4.Addr()), false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := BuildBPF(tt.patterns, tt.opt)
			if err != nil {
				t.Fatalf("BuildBPF: %v", err)
			}
			if p.Level != BPFExact {
				t.Fatalf("level %v, want %v", p.Level, BPFExact)
			}
			if _, err := p.Assemble(); err != nil {
				t.Fatal(err)
			}
			vm := bpfVM(t, p.Instructions)
			want := map[string]bool{}
			got := map[string]bool{}
			for _, f := range tt.frames {
				want[f.name] = f.want
				got[f.name] = bpfAccepts(t, vm, f.frame)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
		})
	}
}

// bpfOracle decides like the Matcher, from Frame.Decode, following the
// pattern definitions in pattern.go. It stands in for Compile/Matcher in
// the superset tests and cross-checks them once they exist.
func bpfOracle(patterns []Pattern, frame []byte) bool {
	return bpfOracleVLANs(patterns, frame, false)
}

// bpfOracleVLANs is bpfOracle, ignoring VLAN IDs with anyVLAN: what
// a filter behind a kernel that strips tags can tell.
func bpfOracleVLANs(patterns []Pattern, frame []byte, anyVLAN bool) bool {
	var f Frame
	f.Decode(frame, DecodeOptions{})
	for i := range patterns {
		p := &patterns[i]
		if anyVLAN && p.Kind == KindTCPConn {
			c := *p
			c.Conn.VLAN = bpfOracleVLAN(&f)
			p = &c
		}
		if bpfOracleOne(p, &f, frame) {
			return true
		}
	}
	return false
}

func bpfOracleVLAN(f *Frame) uint16 {
	if f.NumVLAN == 0 {
		return 0
	}
	return f.VLAN[0]
}

func bpfOracleOne(p *Pattern, f *Frame, frame []byte) bool {
	switch p.Kind {
	case KindTCPConn:
		c := p.Conn
		return f.IsTCP() && f.SrcIP == c.Remote.Addr() && f.DstIP == c.Local.Addr() &&
			f.SrcPort == c.Remote.Port() && f.DstPort == c.Local.Port() && bpfOracleVLAN(f) == c.VLAN
	case KindTCPSYN:
		if !f.IsTCP() || f.TCPFlags&(TCPFlagSYN|TCPFlagACK|TCPFlagRST) != TCPFlagSYN {
			return false
		}
		a := p.SYN.Local.Addr()
		if port := p.SYN.Local.Port(); port != 0 && port != f.DstPort {
			return false
		}
		if !a.IsValid() || a.IsUnspecified() {
			return f.DstIP.Is6() == p.SYN.IPv6
		}
		return f.DstIP == a
	case KindBitmap:
		b := p.Bitmap
		if len(frame) < 8 {
			return false
		}
		for i, v := range b.Bytes {
			if i/8 < len(b.Mask) && b.Mask[i/8]&(1<<(i%8)) != 0 {
				if b.Offset+i >= len(frame) || frame[b.Offset+i] != v {
					return false
				}
			}
		}
		return true
	case KindMagic:
		want := bytes.Repeat([]byte{0xff}, 6)
		for range 16 {
			want = append(want, p.Magic.MAC[:]...)
		}
		want = append(want, p.Magic.Password...)
		return bytes.Contains(frame, want)
	}
	return false
}

func bpfRandAddr(rng *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		copy(b[:], []byte{0x20, 0x01, 0x0d, 0xb8})
		for i := 4; i < 16; i++ {
			if i >= 12 || rng.IntN(4) == 0 {
				b[i] = byte(rng.IntN(256))
			}
		}
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(4)), byte(rng.IntN(256))})
}

func bpfRandPort(rng *rand.Rand) uint16 { return uint16(1 + rng.IntN(65535)) }

// bpfRandConnSet returns n connection patterns with a few local addresses
// and VLANs, as a host has.
func bpfRandConnSet(rng *rand.Rand, n int, v6share float64) []Pattern {
	locals := [2][]netip.Addr{{bpfRandAddr(rng, false), bpfRandAddr(rng, false)}, {bpfRandAddr(rng, true)}}
	ps := make([]Pattern, n)
	for i := range ps {
		v6 := rng.Float64() < v6share
		fam := 0
		if v6 {
			fam = 1
		}
		var vlan uint16
		if rng.IntN(4) == 0 {
			vlan = uint16(1 + rng.IntN(4))
		}
		ps[i] = Pattern{ID: uint32(i + 1), Kind: KindTCPConn, Conn: TCPConn{
			Local:  netip.AddrPortFrom(locals[fam][rng.IntN(len(locals[fam]))], bpfRandPort(rng)),
			Remote: netip.AddrPortFrom(bpfRandAddr(rng, v6), []uint16{443, 80, 8883, bpfRandPort(rng)}[rng.IntN(4)]),
			VLAN:   vlan,
		}}
	}
	return ps
}

// bpfSpecFor returns a frame spec that p matches, in a random shape.
func bpfSpecFor(rng *rand.Rand, p *Pattern) bpfSpec {
	var s bpfSpec
	switch p.Kind {
	case KindTCPConn:
		s.src, s.dst = p.Conn.Remote, p.Conn.Local
		if p.Conn.VLAN != 0 {
			s.tags = []uint16{p.Conn.VLAN}
			if rng.IntN(3) == 0 {
				s.tags = []uint16{p.Conn.VLAN, uint16(rng.IntN(4095))}
				s.qinq = rng.IntN(2) == 0
			}
		}
		s.flags = []uint8{TCPFlagACK, TCPFlagACK | TCPFlagPSH, TCPFlagFIN | TCPFlagACK, TCPFlagRST, TCPFlagSYN | TCPFlagACK}[rng.IntN(5)]
	case KindTCPSYN:
		a := p.SYN.Local.Addr()
		v6 := p.SYN.IPv6 || a.Is6()
		if !a.IsValid() || a.IsUnspecified() {
			a = bpfRandAddr(rng, v6)
		}
		port := p.SYN.Local.Port()
		if port == 0 {
			port = bpfRandPort(rng)
		}
		s.src, s.dst = netip.AddrPortFrom(bpfRandAddr(rng, v6), bpfRandPort(rng)), netip.AddrPortFrom(a, port)
		s.flags = TCPFlagSYN
		if rng.IntN(2) == 0 {
			s.tags = []uint16{uint16(rng.IntN(4095))}
		}
	}
	s.ts = rng.IntN(2) == 0
	s.ipOpts = s.src.Addr().Is4() && rng.IntN(4) == 0
	s.payload = []int{0, 0, 1, 100, 1400}[rng.IntN(5)]
	s.pad = []int{0, 0, 2, 30}[rng.IntN(4)]
	if s.src.Addr().Is6() && rng.IntN(3) == 0 {
		for range 1 + rng.IntN(3) {
			s.ext = append(s.ext, []uint8{0, 43, 60, 51}[rng.IntN(4)])
		}
	}
	return s
}

// bpfMutate changes one field of s.
func bpfMutate(rng *rand.Rand, s bpfSpec, others []Pattern) bpfSpec {
	s.tags = append([]uint16(nil), s.tags...)
	s.ext = append([]uint8(nil), s.ext...)
	v6 := s.src.Addr().Is6()
	switch rng.IntN(14) {
	case 0:
		s.src = netip.AddrPortFrom(bpfRandAddr(rng, v6), s.src.Port())
	case 1:
		s.src = netip.AddrPortFrom(s.src.Addr(), s.src.Port()^uint16(1<<rng.IntN(16)))
	case 2:
		s.dst = netip.AddrPortFrom(s.dst.Addr(), s.dst.Port()^uint16(1<<rng.IntN(16)))
	case 3:
		s.dst = netip.AddrPortFrom(bpfRandAddr(rng, v6), s.dst.Port())
	case 4: // another pattern's remote end, this pattern's local end
		if o := others[rng.IntN(len(others))]; o.Kind == KindTCPConn && o.Conn.Remote.Addr().Is6() == v6 {
			s.src = o.Conn.Remote
		}
	case 5:
		s.src, s.dst = s.dst, s.src
	case 6:
		s.tags = append(s.tags, uint16(rng.IntN(4095)))
	case 7:
		if len(s.tags) > 0 {
			s.tags = s.tags[1:]
		} else {
			s.tags = []uint16{0}
		}
	case 8:
		if len(s.tags) > 0 {
			s.tags[rng.IntN(len(s.tags))] = uint16(rng.IntN(4095))
		}
	case 9:
		s.flags = uint8(rng.IntN(256))
		if s.flags == 0 {
			s.flags = TCPFlagSYN
		}
	case 10:
		if v6 {
			s.ext = append(s.ext, 44)
		} else {
			s.frag = []uint16{0x2000, 1, 0x2000 | 185}[rng.IntN(3)]
		}
	case 11:
		s.proto = []uint8{ProtoUDP, ProtoICMP, 99}[rng.IntN(3)]
	case 12:
		if v6 {
			for len(s.ext) < 9 {
				s.ext = append(s.ext, 60)
			}
		} else {
			s.ipOpts = !s.ipOpts
		}
	case 13:
		if o := others[rng.IntN(len(others))]; o.Kind == KindTCPConn {
			s.src, s.dst = o.Conn.Remote, o.Conn.Local
		}
	}
	return s
}

// bpfCheckFrames runs every frame through the program and the oracle:
// the program must accept what the oracle accepts, and with equal it
// must reject what the oracle rejects.
//
// The reference is the Matcher compiled from patterns; with anyVLAN (a
// filter behind a kernel that strips tags) it is bpfOracle ignoring VLAN
// IDs, which must otherwise agree with the Matcher.
func bpfCheckFrames(t *testing.T, patterns []Pattern, prog []bpf.Instruction, frames [][]byte, equal, anyVLAN bool) (accepted int) {
	t.Helper()
	m, err := Compile(patterns, DefaultCapabilities())
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	vm := bpfVM(t, prog)
	bad := 0
	var mf Frame
	var r Result
	for _, fr := range frames {
		want := m.MatchFrame(fr, &mf, &r)
		if o := bpfOracleVLANs(patterns, fr, anyVLAN); anyVLAN {
			want = o
		} else if o != want {
			t.Fatalf("oracle %v, Matcher %v on %x", o, want, fr)
		}
		got := bpfAccepts(t, vm, fr)
		if want {
			accepted++
		}
		if want && !got || equal && got != want {
			bad++
			if bad <= 5 {
				var f Frame
				f.Decode(fr, DecodeOptions{})
				t.Errorf("oracle %v, bpf %v: status %v vlan %v/%d %v:%d > %v:%d flags %#x frag %v\n%x",
					want, got, f.Status, f.VLAN, f.NumVLAN, f.SrcIP, f.SrcPort, f.DstIP, f.DstPort, f.TCPFlags, f.Fragment, fr)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d frames disagree", bad, len(frames))
	}
	return accepted
}

func TestBPFConnEqualsOracle(t *testing.T) {
	for _, strip := range []bool{false, true} {
		t.Run(fmt.Sprintf("strip=%v", strip), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			for round := range 20 {
				ps := bpfRandConnSet(rng, 1+rng.IntN(300), 0.4)
				p, err := BuildBPF(ps, BPFOptions{KernelStripsVLAN: strip})
				if err != nil {
					t.Fatal(err)
				}
				if !p.Exact || len(p.Instructions) > BPFMaxInstructions {
					t.Fatalf("round %d: %d patterns: level %v, %d instructions", round, len(ps), p.Level, len(p.Instructions))
				}
				var frames [][]byte
				for range 150 {
					pt := &ps[rng.IntN(len(ps))]
					s := bpfSpecFor(rng, pt)
					if strip {
						// The kernel took the outer tag: the filter sees
						// the frame with at most the inner one.
						s.tags = nil
					}
					frames = append(frames, bpfTCPFrame(t, s))
					for range 3 {
						m := bpfMutate(rng, s, ps)
						fr := bpfTCPFrame(t, m)
						frames = append(frames, fr, fr[:rng.IntN(len(fr)+1)])
					}
				}
				// Behind a stripping kernel VLAN IDs are not compared: the
				// oracle that ignores them must agree.
				if acc := bpfCheckFrames(t, ps, p.Instructions, frames, true, strip); acc == 0 {
					t.Fatalf("round %d: no frame matched: the test is not testing", round)
				}
			}
		})
	}
}

// bpfRandSet returns a random mix of every pattern kind.
func bpfRandSet(t testing.TB, rng *rand.Rand) []Pattern {
	ps := bpfRandConnSet(rng, rng.IntN(40), 0.5)
	for range rng.IntN(4) {
		y := Pattern{Kind: KindTCPSYN}
		v6 := rng.IntN(2) == 0
		switch rng.IntN(3) {
		case 0:
			y.SYN.Local = netip.AddrPortFrom(bpfRandAddr(rng, v6), []uint16{0, 22, bpfRandPort(rng)}[rng.IntN(3)])
		case 1:
			y.SYN.Local = netip.AddrPortFrom(netip.IPv6Unspecified(), bpfRandPort(rng))
			if !v6 {
				y.SYN.Local = netip.AddrPortFrom(netip.IPv4Unspecified(), bpfRandPort(rng))
			}
		case 2:
			y.SYN.Local = netip.AddrPortFrom(netip.Addr{}, bpfRandPort(rng))
		}
		y.SYN.IPv6 = v6
		ps = append(ps, y)
	}
	for range rng.IntN(4) {
		// A bitmap cut from a real frame, so that frames of its shape hit.
		src := bpfTCPFrame(t, bpfSpecFor(rng, &Pattern{Kind: KindTCPConn, Conn: bpfRandConnSet(rng, 1, 0.5)[0].Conn}))
		off := rng.IntN(60)
		n := 1 + rng.IntN(min(128, len(src)-off))
		mask := make([]byte, (n+7)/8)
		for i := range mask {
			mask[i] = byte(rng.IntN(256))
		}
		if n%8 != 0 {
			mask[len(mask)-1] &= 1<<(n%8) - 1
		}
		mask[rng.IntN(len(mask))] |= 1
		ps = append(ps, Pattern{Kind: KindBitmap, Bitmap: Bitmap{Offset: off, Bytes: bytes.Clone(src[off : off+n]), Mask: mask}})
	}
	if rng.IntN(4) == 0 {
		var mac [6]byte
		for i := range mac {
			mac[i] = byte(rng.IntN(256))
		}
		ps = append(ps, Pattern{Kind: KindMagic, Magic: Magic{MAC: mac}})
	}
	for i := range ps {
		ps[i].ID = uint32(i + 1)
	}
	return ps
}

// bpfFramesFor returns frames around ps: matching ones in random shapes,
// their mutations, truncations and bit flips, and random bytes.
func bpfFramesFor(t testing.TB, rng *rand.Rand, ps []Pattern, n int) [][]byte {
	var frames [][]byte
	for range n {
		if len(ps) == 0 || rng.IntN(8) == 0 {
			b := make([]byte, rng.IntN(200))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			frames = append(frames, b)
			continue
		}
		p := &ps[rng.IntN(len(ps))]
		var fr []byte
		switch p.Kind {
		case KindTCPConn, KindTCPSYN:
			s := bpfSpecFor(rng, p)
			if rng.IntN(2) == 0 {
				s = bpfMutate(rng, s, ps)
			}
			fr = bpfTCPFrame(t, s)
		case KindBitmap:
			fr = bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, payload: rng.IntN(200)})
			b := p.Bitmap
			if need := b.Offset + len(b.Bytes); len(fr) < need {
				fr = append(fr, make([]byte, need-len(fr))...)
			}
			copy(fr[b.Offset:], b.Bytes)
		case KindMagic:
			fr = bpfMagicFrame(t, p.Magic.MAC, rng.IntN(300), 410)
		}
		frames = append(frames, fr)
		switch rng.IntN(3) {
		case 0:
			frames = append(frames, fr[:rng.IntN(len(fr)+1)])
		case 1:
			c := bytes.Clone(fr)
			for range 1 + rng.IntN(3) {
				i := rng.IntN(len(c))
				c[i] ^= 1 << rng.IntN(8)
			}
			frames = append(frames, c)
		}
	}
	return frames
}

func TestBPFSupersetOfOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	total, accepted := 0, 0
	for range 60 {
		ps := bpfRandSet(t, rng)
		opt := BPFOptions{KernelStripsVLAN: rng.IntN(4) == 0}
		p, err := BuildBPF(ps, opt)
		if err != nil {
			t.Fatal(err)
		}
		frames := bpfFramesFor(t, rng, ps, 100)
		total += len(frames)
		accepted += bpfCheckFrames(t, ps, p.Instructions, frames, false, false)
	}
	if accepted < total/10 {
		t.Fatalf("only %d of %d frames match the oracle: the test is not testing", accepted, total)
	}
}

func TestBPFDegrades(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	dedupe := func(ps []Pattern) []Pattern {
		seen := map[TCPConn]bool{}
		out := ps[:0]
		for _, p := range ps {
			if !seen[p.Conn] {
				seen[p.Conn] = true
				out = append(out, p)
			}
		}
		return out
	}
	withLocalPorts := func(ps []Pattern, ports int) []Pattern {
		for i := range ps {
			c := &ps[i].Conn
			c.Local = netip.AddrPortFrom(c.Local.Addr(), uint16(1000+rng.IntN(ports)))
		}
		return dedupe(ps)
	}
	withLocalAddrs := func(ps []Pattern) []Pattern {
		for i := range ps {
			c := &ps[i].Conn
			c.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), 1 + byte(rng.IntN(250))}), c.Local.Port())
		}
		return dedupe(ps)
	}
	var bitmaps []Pattern
	for i := range 64 {
		b := make([]byte, 128)
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		bitmaps = append(bitmaps, Pattern{ID: uint32(1000 + i), Kind: KindBitmap,
			Bitmap: Bitmap{Offset: 14 + i, Bytes: b, Mask: bytes.Repeat([]byte{0xff}, 16)}})
	}
	other4 := netip.MustParseAddr("203.0.113.9")
	tests := []struct {
		name     string
		patterns []Pattern
		max      int
		want     BPFLevel
		cmps     int
		// a frame the level must still reject
		reject func(ps []Pattern) []byte
	}{
		{name: "600 connections fit", patterns: bpfRandConnSet(rng, 600, 0), want: BPFExact,
			reject: func(ps []Pattern) []byte {
				c := ps[0].Conn
				return bpfTCPFrame(t, bpfSpec{src: netip.AddrPortFrom(c.Remote.Addr(), c.Remote.Port()+1), dst: c.Local, tags: bpfTags(c.VLAN)})
			}},
		{name: "grouped by local port", patterns: withLocalPorts(bpfRandConnSet(rng, 2000, 0), 50), want: BPFLocalPort,
			reject: func(ps []Pattern) []byte {
				c := ps[0].Conn
				return bpfTCPFrame(t, bpfSpec{src: c.Remote, dst: netip.AddrPortFrom(c.Local.Addr(), 999), tags: bpfTags(c.VLAN)})
			}},
		{name: "grouped by local address", patterns: bpfRandConnSet(rng, 4096, 0.3), want: BPFLocalAddr,
			reject: func(ps []Pattern) []byte {
				return bpfTCPFrame(t, bpfSpec{src: ps[0].Conn.Remote, dst: netip.AddrPortFrom(other4, 1)})
			}},
		{name: "any tcp", patterns: withLocalAddrs(bpfRandConnSet(rng, 3000, 0)), want: BPFAnyTCP,
			reject: func(ps []Pattern) []byte {
				c := ps[0].Conn
				return bpfTCPFrame(t, bpfSpec{src: c.Remote, dst: c.Local, proto: ProtoUDP})
			}},
		{name: "accept all", patterns: bpfRandConnSet(rng, 10, 0), max: 40, want: BPFAcceptAll},
		{name: "bitmaps cut to 16 compares", patterns: append(bpfRandConnSet(rng, 10, 0.5), bitmaps...), want: BPFExact, cmps: 16,
			reject: func(ps []Pattern) []byte {
				return bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.AddrPortFrom(other4, 1)})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = BPFMaxInstructions
			}
			p, err := BuildBPF(tt.patterns, BPFOptions{MaxInstructions: tt.max})
			if err != nil {
				t.Fatal(err)
			}
			type got struct {
				Level BPFLevel
				Cmps  int
				Exact bool
			}
			want := got{tt.want, tt.cmps, tt.want == BPFExact && tt.cmps == 0}
			if diff := cmp.Diff(want, got{p.Level, p.BitmapCompares, p.Exact}); diff != "" {
				t.Errorf("level (-want +got):\n%s", diff)
			}
			if len(p.Instructions) > max {
				t.Errorf("%d instructions, max %d", len(p.Instructions), max)
			}
			raw, err := p.Assemble()
			if err != nil || len(raw) != len(p.Instructions) {
				t.Fatalf("assemble: %d raw, %v", len(raw), err)
			}
			var frames [][]byte
			for range 300 {
				pt := &tt.patterns[rng.IntN(len(tt.patterns))]
				switch pt.Kind {
				case KindTCPConn:
					frames = append(frames, bpfTCPFrame(t, bpfSpecFor(rng, pt)))
				case KindBitmap:
					fr := bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, payload: 200})
					copy(fr[pt.Bitmap.Offset:], pt.Bitmap.Bytes)
					frames = append(frames, fr)
				}
			}
			if acc := bpfCheckFrames(t, tt.patterns, p.Instructions, frames, false, false); acc < len(frames)/2 {
				t.Errorf("only %d of %d frames match the oracle", acc, len(frames))
			}
			if tt.reject != nil {
				fr := tt.reject(tt.patterns)
				if bpfOracle(tt.patterns, fr) {
					t.Fatal("reject frame matches the oracle")
				}
				if bpfAccepts(t, bpfVM(t, p.Instructions), fr) {
					t.Errorf("level %v accepts a frame it should drop", p.Level)
				}
			}
		})
	}
}

func bpfTags(vlan uint16) []uint16 {
	if vlan == 0 {
		return nil
	}
	return []uint16{vlan}
}

func TestBPFOptionErrors(t *testing.T) {
	tests := []struct {
		name     string
		patterns []Pattern
		opt      BPFOptions
	}{
		{"max instructions over the kernel's", nil, BPFOptions{MaxInstructions: BPFMaxInstructions + 1}},
		{"negative max instructions", nil, BPFOptions{MaxInstructions: -1}},
		{"arp for ipv6", nil, BPFOptions{AcceptARPFor: []netip.Addr{bpfLocal6.Addr()}}},
		{"ns for ipv4", nil, BPFOptions{AcceptNSFor: []netip.Addr{bpfLocal4.Addr()}}},
		{"invalid kind", []Pattern{{ID: 1}}, BPFOptions{}},
		{"conn across families", []Pattern{bpfConnPat(bpfLocal4.String(), bpfRemote6.String(), 0)}, BPFOptions{}},
		{"conn without address", []Pattern{{ID: 1, Kind: KindTCPConn}}, BPFOptions{}},
		{"negative bitmap offset", []Pattern{{ID: 1, Kind: KindBitmap, Bitmap: Bitmap{Offset: -1, Bytes: []byte{1}, Mask: []byte{1}}}}, BPFOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := CompileBPF(tt.patterns, tt.opt); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// BenchmarkBPFVM runs the compiled program for n connection patterns in
// the x/net/bpf VM on matching Ethernet/IPv4/TCP frames with timestamps
// (66 bytes): the baseline of the Matcher benchmarks.
func BenchmarkBPFVM(b *testing.B) {
	for _, n := range []int{1, 64, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(7, 8))
			ps := bpfRandConnSet(rng, n, 0)
			for i := range ps {
				ps[i].Conn.VLAN = 0
			}
			p, err := BuildBPF(ps, BPFOptions{})
			if err != nil {
				b.Fatal(err)
			}
			vm := bpfVM(b, p.Instructions)
			frames := make([][]byte, min(n, 64))
			for i := range frames {
				c := ps[i*n/len(frames)].Conn
				frames[i] = bpfTCPFrame(b, bpfSpec{src: c.Remote, dst: c.Local, ts: true})
				if len(frames[i]) != 66 {
					b.Fatalf("frame of %d bytes, want 66", len(frames[i]))
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if n, err := vm.Run(frames[i%len(frames)]); err != nil || n == 0 {
					b.Fatalf("vm: %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
			b.ReportMetric(float64(len(p.Instructions)), "insns")
			b.ReportMetric(float64(p.Level), "level")
		})
	}
}

// bpfFuzzPatterns is the fixed set of FuzzBPFSuperset: every kind, both
// families, a VLAN.
func bpfFuzzPatterns() []Pattern {
	ps := []Pattern{
		bpfConnPat(bpfLocal4.String(), bpfRemote4.String(), 0),
		bpfConnPat(bpfLocal4.String(), "198.18.0.1:8883", 7),
		bpfConnPat(bpfLocal6.String(), bpfRemote6.String(), 0),
		{Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.AddrPortFrom(netip.Addr{}, 22)}},
		{Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.AddrPortFrom(bpfLocal6.Addr(), 0), IPv6: true}},
		{Kind: KindBitmap, Bitmap: Bitmap{Offset: 12, Bytes: []byte{0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1}, Mask: []byte{0xff, 0x03}}},
		{Kind: KindMagic, Magic: Magic{MAC: [6]byte{2, 0, 0, 0, 0, 2}}},
	}
	for i := range ps {
		ps[i].ID = uint32(i + 1)
	}
	return ps
}

// bpfFuzzSeeds returns frames around bpfFuzzPatterns.
func bpfFuzzSeeds(t testing.TB) [][]byte {
	return [][]byte{
		bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, ts: true}),
		bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, ipOpts: true, payload: 5, pad: 4}),
		bpfTCPFrame(t, bpfSpec{src: netip.MustParseAddrPort("198.18.0.1:8883"), dst: bpfLocal4, tags: []uint16{7, 9}, qinq: true}),
		bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: bpfLocal6, ext: []uint8{0, 60}}),
		bpfTCPFrame(t, bpfSpec{src: bpfRemote6, dst: netip.AddrPortFrom(bpfLocal6.Addr(), 9), flags: TCPFlagSYN}),
		bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: netip.MustParseAddrPort("198.18.3.3:22"), flags: TCPFlagSYN, tags: []uint16{3}}),
		bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, frag: 0x2000}),
		bpfARPFrame(t, 1, bpfLocal4.Addr()),
		bpfMagicFrame(t, [6]byte{2, 0, 0, 0, 0, 2}, 42, 160),
	}
}

func FuzzBPFSuperset(f *testing.F) {
	ps := bpfFuzzPatterns()
	for _, s := range bpfFuzzSeeds(f) {
		f.Add(s)
	}
	m, err := Compile(ps, DefaultCapabilities())
	if err != nil {
		f.Fatal(err)
	}
	var vms []*bpf.VM
	for _, opt := range []BPFOptions{{}, {KernelStripsVLAN: true}, {AcceptARPFor: []netip.Addr{bpfLocal4.Addr()}, AcceptNSFor: []netip.Addr{bpfLocal6.Addr()}}} {
		p, err := BuildBPF(ps, opt)
		if err != nil {
			f.Fatal(err)
		}
		if !p.Exact {
			f.Fatalf("level %v", p.Level)
		}
		vms = append(vms, bpfVM(f, p.Instructions))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var fr Frame
		var r Result
		want := m.MatchFrame(frame, &fr, &r)
		for i, vm := range vms {
			n, err := vm.Run(frame)
			if err != nil {
				t.Fatalf("program %d: %v", i, err)
			}
			if want && n == 0 {
				t.Fatalf("program %d drops a frame the Matcher accepts (pattern %d, status %v): %x", i, r.Pattern.ID, fr.Status, frame)
			}
		}
	})
}

// TestBPFFuzzSeeds keeps the seed corpus of FuzzBPFSuperset in step with
// bpfFuzzSeeds.
func TestBPFFuzzSeeds(t *testing.T) {
	m, err := Compile(bpfFuzzPatterns(), DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	matched := 0
	for i, s := range bpfFuzzSeeds(t) {
		name := fmt.Sprintf("testdata/fuzz/FuzzBPFSuperset/seed-%02d", i)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		got, err := os.ReadFile(name)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale (err %v); regenerate it from bpfFuzzSeeds", name, err)
			if os.Getenv("BPF_WRITE_SEEDS") != "" {
				if err := os.WriteFile(name, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		var f Frame
		var r Result
		if m.MatchFrame(s, &f, &r) {
			matched++
		}
	}
	if matched < 5 {
		t.Errorf("only %d seeds match: the corpus does not exercise the accept paths", matched)
	}
}

// TestBPFUsualSegmentAbsoluteLoads: the usual segments — IPv4 without
// options, IPv6 straight to TCP, untagged or behind tags — are matched
// without a single X-relative load, which the kernel runs as a helper
// call (bpf_skb_load_helper_*) where it inlines an absolute one. Every
// LoadIndirect is replaced by a reject: the program must still accept
// them, and still reject the same segments with options.
func TestBPFUsualSegmentAbsoluteLoads(t *testing.T) {
	ps := []Pattern{bpfConnPat(bpfLocal4.String(), bpfRemote4.String(), 0), bpfConnPat(bpfLocal6.String(), bpfRemote6.String(), 0),
		bpfConnPat(bpfLocal4.String(), bpfRemote4.String(), 7)}
	for i := range ps {
		ps[i].ID = uint32(i + 1)
	}
	for _, strip := range []bool{false, true} {
		p, err := BuildBPF(ps, BPFOptions{KernelStripsVLAN: strip})
		if err != nil {
			t.Fatal(err)
		}
		direct := slices.Clone(p.Instructions)
		indirect := 0
		for i, in := range direct {
			if _, ok := in.(bpf.LoadIndirect); ok {
				direct[i] = bpf.RetConstant{Val: 0}
				indirect++
			}
		}
		if indirect == 0 {
			t.Fatal("no X-relative load in the program: the general paths are missing")
		}
		vm := bpfVM(t, direct)
		for _, tt := range []struct {
			name string
			s    bpfSpec
			want bool
		}{
			{"IPv4", bpfSpec{src: bpfRemote4, dst: bpfLocal4, ts: true}, true},
			{"IPv4 with payload", bpfSpec{src: bpfRemote4, dst: bpfLocal4, payload: 100, pad: 2}, true},
			{"IPv4 behind a tag", bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{7}}, true},
			{"IPv6", bpfSpec{src: bpfRemote6, dst: bpfLocal6, ts: true}, true},
			{"IPv4 with options", bpfSpec{src: bpfRemote4, dst: bpfLocal4, ipOpts: true}, false},
			{"IPv6 with a hop-by-hop header", bpfSpec{src: bpfRemote6, dst: bpfLocal6, ext: []uint8{0}}, false},
		} {
			if got := bpfAccepts(t, vm, bpfTCPFrame(t, tt.s)); got != tt.want {
				t.Errorf("strip %v, %s: accepted %v without X-relative loads, want %v", strip, tt.name, got, tt.want)
			}
			if !bpfAccepts(t, bpfVM(t, p.Instructions), bpfTCPFrame(t, tt.s)) {
				t.Errorf("strip %v, %s: the program rejects it", strip, tt.name)
			}
		}
	}
}

func TestParseBPFLevel(t *testing.T) {
	for l := BPFExact; l < numBPFLevel; l++ {
		if got, err := ParseBPFLevel(l.String()); err != nil || got != l {
			t.Errorf("ParseBPFLevel(%q) = %v, %v", l.String(), got, err)
		}
	}
	for _, s := range []string{"", "invalid", "Exact"} {
		if _, err := ParseBPFLevel(s); err == nil {
			t.Errorf("ParseBPFLevel(%q) succeeded", s)
		}
	}
}
