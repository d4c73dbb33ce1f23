package wakepattern

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
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
	synAddr := Pattern{ID: 3, Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.MustParseAddrPort("[2001:db8::2]:0")}}
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
				{"qinq inner 7", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4, tags: []uint16{100, 7}, qinq: true}), true},
				{"untagged", bpfTCPFrame(t, bpfSpec{src: bpfRemote4, dst: bpfLocal4}), false},
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
