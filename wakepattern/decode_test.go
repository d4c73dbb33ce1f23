package wakepattern

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var fxFrameCmp = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmpopts.IgnoreFields(Frame{}, "Raw"),
}

var (
	fxHost4 = netip.AddrPortFrom(fxIP4Host, 40000)
	fxPeer4 = netip.AddrPortFrom(fxIP4Peer, 443)
	fxHost6 = netip.AddrPortFrom(fxIP6Host, 40000)
	fxPeer6 = netip.AddrPortFrom(fxIP6Peer, 443)
)

// decodeCase is one frame and the Frame Decode must produce.
type decodeCase struct {
	name  string
	frame func(t testing.TB) []byte
	opt   DecodeOptions
	want  Frame
}

func fxMAC(m []byte) [6]byte { return [6]byte(m) }

func decodeCases() []decodeCase {
	eth := func(f Frame) Frame {
		f.Dst, f.Src = fxMAC(fxMACHost), fxMAC(fxMACPeer)
		if f.L3Off == 0 {
			f.L3Off = 14
		}
		return f
	}
	// tcp4 is the expected frame for an IPv4 segment peer→host at l3.
	tcp4 := func(l3 uint16, f Frame) Frame {
		f.EtherType, f.L3Off = EtherTypeIPv4, l3
		f.SrcIP, f.DstIP = fxIP4Peer, fxIP4Host
		f.IPProto, f.TTL = ProtoTCP, 64
		f.SrcPort, f.DstPort = 443, 40000
		f.Window = 502
		if f.Status == Unknown {
			f.Status = OK
		}
		return eth(f)
	}
	tcp6 := func(l3 uint16, f Frame) Frame {
		f.EtherType, f.L3Off = EtherTypeIPv6, l3
		f.SrcIP, f.DstIP = fxIP6Peer, fxIP6Host
		f.IPProto, f.TTL = ProtoTCP, 64
		f.SrcPort, f.DstPort = 443, 40000
		f.Window = 502
		if f.Status == Unknown {
			f.Status = OK
		}
		return eth(f)
	}
	seg4 := fxSeg{src: fxPeer4, dst: fxHost4}
	seg6 := fxSeg{src: fxPeer6, dst: fxHost6}
	with := func(s fxSeg, edit func(*fxSeg)) fxSeg { edit(&s); return s }
	build := func(s fxSeg) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return fxTCP(t, s) }
	}
	verify := DecodeOptions{VerifyChecksums: true}

	return []decodeCase{
		{
			name: "ipv4 SYN with MSS, SACK-permitted, timestamps, window scale",
			frame: build(with(seg4, func(s *fxSeg) {
				s.flags, s.seq, s.opts = TCPFlagSYN, 1000, fxSYNOpts(0x01020304, 0)
			})),
			opt: verify,
			want: tcp4(14, Frame{
				L4Off: 34, L4End: 74, Seq: 1000, TCPFlags: TCPFlagSYN,
				MSS: 1460, WScale: 7, SACKPermitted: true, HasTS: true, TSval: 0x01020304, TSOff: 62,
				PayloadOff: 74,
			}),
		},
		{
			name: "ipv4 data segment with timestamps",
			frame: build(with(seg4, func(s *fxSeg) {
				s.flags, s.seq, s.ack = TCPFlagACK|TCPFlagPSH, 5000, 7000
				s.opts, s.payload = fxTSOpts(11, 22), []byte("hello")
				s.tos, s.ttl = 0x10, 57
			})),
			opt: verify,
			want: func() Frame {
				f := tcp4(14, Frame{
					L4Off: 34, L4End: 71, Seq: 5000, Ack: 7000, TCPFlags: TCPFlagACK | TCPFlagPSH,
					WScale: -1, HasTS: true, TSval: 11, TSecr: 22, TSOff: 58, PayloadOff: 66, PayloadLen: 5,
				})
				f.TOS, f.TTL = 0x10, 57
				return f
			}(),
		},
		{
			name: "ipv4 with IP options (IHL 6)",
			frame: build(with(seg4, func(s *fxSeg) {
				s.flags, s.ack = TCPFlagACK, 9
				s.ipOptions = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}}
			})),
			opt:  verify,
			want: tcp4(14, Frame{L4Off: 38, L4End: 58, Ack: 9, TCPFlags: TCPFlagACK, WScale: -1, PayloadOff: 58}),
		},
		{
			name: "ipv4 SYN-ACK of 54 bytes padded to 60: padding is not payload",
			frame: build(with(seg4, func(s *fxSeg) {
				s.flags, s.seq, s.ack, s.pad = TCPFlagSYN|TCPFlagACK, 1, 2, 60
			})),
			opt:  verify,
			want: tcp4(14, Frame{L4Off: 34, L4End: 54, Seq: 1, Ack: 2, TCPFlags: TCPFlagSYN | TCPFlagACK, WScale: -1, PayloadOff: 54}),
		},
		{
			name: "ipv4 pure ACK with 1 byte payload padded to 60",
			frame: build(with(seg4, func(s *fxSeg) {
				s.flags, s.seq, s.payload, s.pad = TCPFlagACK, 99, []byte{0}, 60
			})),
			opt:  verify,
			want: tcp4(14, Frame{L4Off: 34, L4End: 55, Seq: 99, TCPFlags: TCPFlagACK, WScale: -1, PayloadOff: 54, PayloadLen: 1}),
		},
		{
			name: "802.1Q tag",
			frame: build(with(seg4, func(s *fxSeg) {
				s.vlans, s.flags = []uint16{100}, TCPFlagACK
			})),
			opt: verify,
			want: func() Frame {
				f := tcp4(18, Frame{L4Off: 38, L4End: 58, TCPFlags: TCPFlagACK, WScale: -1, PayloadOff: 58})
				f.NumVLAN, f.VLAN = 1, [MaxVLANTags]uint16{100}
				return f
			}(),
		},
		{
			name: "QinQ (802.1ad outer, 802.1Q inner), IPv6",
			frame: build(with(seg6, func(s *fxSeg) {
				s.vlans, s.flags, s.payload = []uint16{4094, 7}, TCPFlagACK|TCPFlagFIN, []byte("bye")
			})),
			opt: verify,
			want: func() Frame {
				f := tcp6(22, Frame{L4Off: 62, L4End: 85, TCPFlags: TCPFlagACK | TCPFlagFIN, WScale: -1, PayloadOff: 82, PayloadLen: 3})
				f.NumVLAN, f.VLAN = 2, [MaxVLANTags]uint16{4094, 7}
				return f
			}(),
		},
		{
			name: "ipv6 SYN",
			frame: build(with(seg6, func(s *fxSeg) {
				s.flags, s.opts = TCPFlagSYN, fxSYNOpts(5, 0)
			})),
			opt: verify,
			want: tcp6(14, Frame{L4Off: 54, L4End: 94, TCPFlags: TCPFlagSYN,
				MSS: 1460, WScale: 7, SACKPermitted: true, HasTS: true, TSval: 5, TSOff: 82, PayloadOff: 94}),
		},
		{
			name: "ipv6 hop-by-hop, destination options, routing, AH",
			frame: build(with(seg6, func(s *fxSeg) {
				s.flags, s.payload = TCPFlagACK, []byte("data")
				s.ext = fxChain(ProtoHopByHop,
					fxExt(ProtoHopByHop, ProtoDestOpts, 0, 0, false),
					fxExt(ProtoDestOpts, ProtoRouting, 1, 0, false),
					fxExt(ProtoRouting, ProtoAH, 0, 0, false),
					fxExt(ProtoAH, ProtoTCP, 4, 0, false))
			})),
			opt: verify,
			// 40 + 8 + 16 + 8 + 24 extension bytes.
			want: tcp6(14, Frame{L4Off: 110, L4End: 134, TCPFlags: TCPFlagACK, WScale: -1, PayloadOff: 130, PayloadLen: 4}),
		},
		{
			name: "ipv6 atomic fragment (offset 0, M clear): TCP decoded, flagged fragment",
			frame: build(with(seg6, func(s *fxSeg) {
				s.flags, s.seq = TCPFlagACK, 3
				s.ext = fxChain(ProtoFragment, fxExt(ProtoFragment, ProtoTCP, 0, 0, false))
			})),
			opt:  verify,
			want: tcp6(14, Frame{Fragment: true, L4Off: 62, L4End: 82, Seq: 3, TCPFlags: TCPFlagACK, WScale: -1, PayloadOff: 82}),
		},
		{
			name: "ipv6 non-first fragment: no TCP",
			frame: build(with(seg6, func(s *fxSeg) {
				s.flags, s.seq = TCPFlagACK, 3
				s.ext = fxChain(ProtoFragment, fxExt(ProtoFragment, ProtoTCP, 0, 1448, true))
			})),
			opt: verify,
			want: func() Frame {
				f := tcp6(14, Frame{Fragment: true, FragOff: 1448, L4Off: 62, L4End: 82, WScale: -1})
				f.SrcPort, f.DstPort, f.Window = 0, 0, 0
				return f
			}(),
		},
		{
			name: "ipv4 first fragment (MF): TCP decoded best effort",
			frame: build(with(seg4, func(s *fxSeg) {
				s.flags, s.seq, s.payload, s.fragMF = TCPFlagACK, 8, []byte("abcdefgh"), true
			})),
			opt:  verify,
			want: tcp4(14, Frame{Fragment: true, L4Off: 34, L4End: 62, Seq: 8, TCPFlags: TCPFlagACK, WScale: -1, PayloadOff: 54, PayloadLen: 8}),
		},
		{
			name: "ipv4 non-first fragment: no TCP",
			frame: build(with(seg4, func(s *fxSeg) {
				s.flags, s.payload, s.fragOff = TCPFlagACK, []byte("abcdefgh"), 185
			})),
			opt: verify,
			want: func() Frame {
				f := tcp4(14, Frame{Fragment: true, FragOff: 1480, L4Off: 34, L4End: 62, WScale: -1})
				f.SrcPort, f.DstPort, f.Window = 0, 0, 0
				return f
			}(),
		},
		{
			name:  "ARP request",
			frame: func(t testing.TB) []byte { return fxARP(t, []uint16{5}, fxIP4Host) },
			want: Frame{
				Status: OK, Dst: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: fxMAC(fxMACPeer),
				NumVLAN: 1, VLAN: [MaxVLANTags]uint16{5}, EtherType: EtherTypeARP, L3Off: 18,
				ARPOp: ARPOpRequest, ARPSenderHW: fxMAC(fxMACPeer), SrcIP: fxIP4Peer, DstIP: fxIP4Host,
				WScale: -1,
			},
		},
		{
			name:  "IPv6 neighbour solicitation",
			frame: func(t testing.TB) []byte { return fxNS(t, fxIP6Host) },
			want: Frame{
				Status: OK, Dst: [6]byte{0x33, 0x33, 0xff, 0, 0, 2}, Src: fxMAC(fxMACPeer),
				EtherType: EtherTypeIPv6, L3Off: 14,
				SrcIP: fxIP6Peer, DstIP: netip.MustParseAddr("ff02::1:ff00:2"), IPProto: ProtoICMPv6, TTL: 255,
				L4Off: 54, L4End: 86, WScale: -1,
				ICMPType: ICMPv6TypeNeighborSolicit, NDPTarget: fxIP6Host,
			},
		},
		{
			name:  "UDP: unknown above IP",
			frame: func(t testing.TB) []byte { return fxUDP(t, fxPeer4, fxHost4, []byte("x")) },
			want: eth(Frame{
				Status: Unknown, EtherType: EtherTypeIPv4, SrcIP: fxIP4Peer, DstIP: fxIP4Host,
				IPProto: ProtoUDP, TTL: 64, L4Off: 34, L4End: 43, WScale: -1,
			}),
		},
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.frame(t)
			var f Frame
			st := f.Decode(b, tc.opt)
			if st != f.Status {
				t.Errorf("Decode returned %v, Status %v", st, f.Status)
			}
			if !bytes.Equal(f.Raw, b) {
				t.Errorf("Raw is not the decoded frame")
			}
			if diff := cmp.Diff(tc.want, f, fxFrameCmp...); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
			fxCrossCheck(t, b, &f)
		})
	}
}

// fxCrossCheck compares the decoded frame with gopacket's decode of b.
func fxCrossCheck(t *testing.T, b []byte, f *Frame) {
	t.Helper()
	pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if l := pkt.Layer(layers.LayerTypeIPv4); l != nil {
		ip := l.(*layers.IPv4)
		got := struct{ Src, Dst netip.Addr }{f.SrcIP, f.DstIP}
		want := struct{ Src, Dst netip.Addr }{fxAddr(ip.SrcIP), fxAddr(ip.DstIP)}
		if got != want {
			t.Errorf("ipv4 addresses: gopacket %v, Decode %v", want, got)
		}
		if int(f.L4End-f.L3Off) != int(ip.Length) {
			t.Errorf("ipv4 length: gopacket %d, Decode %d", ip.Length, f.L4End-f.L3Off)
		}
	}
	if l := pkt.Layer(layers.LayerTypeIPv6); l != nil {
		ip := l.(*layers.IPv6)
		if f.SrcIP != fxAddr(ip.SrcIP) || f.DstIP != fxAddr(ip.DstIP) {
			t.Errorf("ipv6 addresses: gopacket %v→%v, Decode %v→%v", ip.SrcIP, ip.DstIP, f.SrcIP, f.DstIP)
		}
	}
	if l := pkt.Layer(layers.LayerTypeTCP); l != nil && f.IsTCP() {
		tcp := l.(*layers.TCP)
		type seg struct {
			Src, Dst uint16
			Seq, Ack uint32
			HL       int
			Payload  []byte
		}
		want := seg{uint16(tcp.SrcPort), uint16(tcp.DstPort), tcp.Seq, tcp.Ack, int(tcp.DataOffset) * 4, tcp.Payload}
		got := seg{f.SrcPort, f.DstPort, f.Seq, f.Ack, int(f.PayloadOff - f.L4Off), f.Payload()}
		if len(want.Payload) == 0 {
			want.Payload = nil
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("tcp vs gopacket (-gopacket +Decode):\n%s", diff)
		}
		for _, o := range tcp.Options {
			switch o.OptionType {
			case layers.TCPOptionKindMSS:
				if f.MSS != binary.BigEndian.Uint16(o.OptionData) {
					t.Errorf("MSS: gopacket %x, Decode %d", o.OptionData, f.MSS)
				}
			case layers.TCPOptionKindTimestamps:
				if f.TSval != binary.BigEndian.Uint32(o.OptionData) || f.TSecr != binary.BigEndian.Uint32(o.OptionData[4:]) {
					t.Errorf("timestamps: gopacket %x, Decode %d %d", o.OptionData, f.TSval, f.TSecr)
				}
				if got := binary.BigEndian.Uint32(b[f.TSOff:]); got != f.TSval {
					t.Errorf("TSOff %d points at %d, want TSval %d", f.TSOff, got, f.TSval)
				}
			case layers.TCPOptionKindWindowScale:
				if int(f.WScale) != int(o.OptionData[0]) {
					t.Errorf("WScale: gopacket %d, Decode %d", o.OptionData[0], f.WScale)
				}
			}
		}
	}
	if l := pkt.Layer(layers.LayerTypeICMPv6NeighborSolicitation); l != nil {
		ns := l.(*layers.ICMPv6NeighborSolicitation)
		if f.NDPTarget != fxAddr(ns.TargetAddress) {
			t.Errorf("NS target: gopacket %v, Decode %v", ns.TargetAddress, f.NDPTarget)
		}
	}
}

func fxAddr(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// TestDecodeMalformed edits valid frames into each malformed form.
func TestDecodeMalformed(t *testing.T) {
	seg := fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK, opts: fxTSOpts(1, 2), payload: []byte("payload")}
	verify := DecodeOptions{VerifyChecksums: true}
	tests := []struct {
		name string
		opt  DecodeOptions
		edit func(t *testing.T) []byte
		want Status
	}{
		{"empty", verify, func(t *testing.T) []byte { return nil }, Truncated},
		{"13 bytes", verify, func(t *testing.T) []byte { return fxTCP(t, seg)[:13] }, Truncated},
		{"three VLAN tags", verify, func(t *testing.T) []byte {
			b := fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, vlans: []uint16{1, 2}, flags: TCPFlagACK})
			// Insert a third tag after the second.
			out := append([]byte(nil), b[:22]...)
			out[20], out[21] = 0x81, 0x00
			out = append(out, 0x00, 0x03, 0x08, 0x00)
			return append(out, b[22:]...)
		}, TooManyTags},
		{"ipv4 version 6 under EtherType IPv4", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[14] = 0x65
			return b
		}, BadVersion},
		{"ipv6 version 4 under EtherType IPv6", verify, func(t *testing.T) []byte {
			b := fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, flags: TCPFlagACK})
			b[14] = 0x40
			return b
		}, BadVersion},
		{"ipv4 IHL 4", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[14] = 0x44
			return b
		}, BadHeaderLength},
		{"ipv4 IHL 15 past the frame", verify, func(t *testing.T) []byte {
			return fxTCP(t, seg)[:14+40]
		}, Truncated},
		{"ipv4 total length below IHL", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			binary.BigEndian.PutUint16(b[16:], 19)
			fxRefitIPv4(b, 14)
			return b
		}, BadHeaderLength},
		{"ipv4 total length past the frame", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			binary.BigEndian.PutUint16(b[16:], uint16(len(b)-14+1))
			fxRefitIPv4(b, 14)
			return b
		}, Truncated},
		{"ipv4 bad header checksum", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[24] ^= 0xff
			return b
		}, BadIPChecksum},
		{"ipv4 bad header checksum, not verified", DecodeOptions{}, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[24] ^= 0xff
			return b
		}, OK},
		{"tcp bad checksum", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[len(b)-1] ^= 1
			return b
		}, BadTCPChecksum},
		{"tcp bad checksum, not verified", DecodeOptions{}, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[len(b)-1] ^= 1
			return b
		}, OK},
		{"ipv6 tcp bad checksum", verify, func(t *testing.T) []byte {
			b := fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, flags: TCPFlagACK, payload: []byte{1, 2, 3}})
			b[len(b)-1] ^= 1
			return b
		}, BadTCPChecksum},
		{"tcp data offset 4", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[34+12] = 0x40
			return b
		}, BadHeaderLength},
		{"tcp data offset past the IP payload", verify, func(t *testing.T) []byte {
			b := fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK})
			b[34+12] = 0x60
			return b
		}, BadHeaderLength},
		{"tcp header longer than the IP payload", verify, func(t *testing.T) []byte {
			b := fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK})
			binary.BigEndian.PutUint16(b[16:], 20+19)
			fxRefitIPv4(b, 14)
			return b
		}, BadHeaderLength},
		{"tcp option length 0", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[54+2+1] = 0 // timestamps option length
			return b
		}, BadHeaderLength},
		{"tcp option past the header", verify, func(t *testing.T) []byte {
			b := fxTCP(t, seg)
			b[54+2+1] = 11
			return b
		}, BadHeaderLength},
		{"tcp option kind without length byte", verify, func(t *testing.T) []byte {
			nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop}
			b := fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK, opts: []layers.TCPOption{nop, nop, nop, nop}})
			b[34+20+3] = TCPOptMSS
			return b
		}, BadHeaderLength},
		{"tcp MSS option of length 2 is ignored", DecodeOptions{}, func(t *testing.T) []byte {
			nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop}
			return fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK, opts: []layers.TCPOption{
				nop, nop, {OptionType: layers.TCPOptionKindMSS}}})
		}, OK},
		{"ipv6 extension chain too long", verify, func(t *testing.T) []byte {
			var hs [][]byte
			for i := 0; i < MaxIPv6ExtHeaders+1; i++ {
				next := ProtoDestOpts
				if i == MaxIPv6ExtHeaders {
					next = ProtoTCP
				}
				hs = append(hs, fxExt(ProtoDestOpts, next, 0, 0, false))
			}
			return fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, flags: TCPFlagACK, ext: fxChain(ProtoDestOpts, hs...)})
		}, ExtChainTooLong},
		{"ipv6 extension chain at the limit", verify, func(t *testing.T) []byte {
			var hs [][]byte
			for i := 0; i < MaxIPv6ExtHeaders; i++ {
				next := ProtoDestOpts
				if i == MaxIPv6ExtHeaders-1 {
					next = ProtoTCP
				}
				hs = append(hs, fxExt(ProtoDestOpts, next, 0, 0, false))
			}
			return fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, flags: TCPFlagACK, ext: fxChain(ProtoDestOpts, hs...)})
		}, OK},
		{"ipv6 extension header longer than the payload", verify, func(t *testing.T) []byte {
			b := fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, flags: TCPFlagACK,
				ext: fxChain(ProtoHopByHop, fxExt(ProtoHopByHop, ProtoTCP, 0, 0, false))})
			b[54+1] = 200
			return b
		}, BadHeaderLength},
		{"ipv6 payload length past the frame", verify, func(t *testing.T) []byte {
			b := fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, flags: TCPFlagACK})
			binary.BigEndian.PutUint16(b[18:], 21)
			return b
		}, Truncated},
		{"NS shorter than 24 bytes", verify, func(t *testing.T) []byte {
			b := fxNS(t, fxIP6Host)
			binary.BigEndian.PutUint16(b[18:], 20)
			return b[:14+40+20]
		}, BadHeaderLength},
		{"ARP with IPv6 protocol type", verify, func(t *testing.T) []byte {
			b := fxARP(t, nil, fxIP4Host)
			b[16], b[17] = 0x86, 0xdd
			return b
		}, Unknown},
		{"ARP truncated", verify, func(t *testing.T) []byte { return fxARP(t, nil, fxIP4Host)[:41] }, Truncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f Frame
			if got := f.Decode(tc.edit(t), tc.opt); got != tc.want {
				t.Errorf("Decode = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDecodeTruncatedEveryOffset cuts valid frames at every byte offset:
// before the end of the IP packet the status is Truncated; from there on
// the result equals the full frame's.
func TestDecodeTruncatedEveryOffset(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.frame(t)
			var full Frame
			full.Decode(b, tc.opt)
			end := int(full.L4End)
			if full.EtherType == EtherTypeARP {
				end = int(full.L3Off) + ARPLen
			}
			for n := 0; n <= len(b); n++ {
				cut := append([]byte(nil), b[:n]...) // exact length, so any read past n would panic
				var f Frame
				st := f.Decode(cut, tc.opt)
				switch {
				case n < end && st != Truncated:
					t.Errorf("cut at %d of %d (IP end %d): %v, want truncated", n, len(b), end, st)
				case n >= end && st != full.Status:
					t.Errorf("cut at %d of %d (IP end %d): %v, want %v", n, len(b), end, st, full.Status)
				}
				if n >= end {
					want := full
					if diff := cmp.Diff(want, f, fxFrameCmp...); diff != "" {
						t.Errorf("cut at %d (-want +got):\n%s", n, diff)
					}
				}
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	seen := map[string]Status{}
	for s := Unknown; s < numStatus; s++ {
		str := s.String()
		if str == "" {
			t.Errorf("Status(%d).String() is empty", s)
		}
		if prev, ok := seen[str]; ok {
			t.Errorf("Status %d and %d share the name %q", prev, s, str)
		}
		seen[str] = s
	}
	if got, want := Status(200).String(), "status(200)"; got != want {
		t.Errorf("Status(200).String() = %q, want %q", got, want)
	}
}

func TestDecodeResetsFrame(t *testing.T) {
	var f Frame
	f.Decode(fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, vlans: []uint16{9}, flags: TCPFlagSYN, opts: fxSYNOpts(1, 2)}), DecodeOptions{})
	b := fxUDP(t, fxPeer4, fxHost4, nil)
	f.Decode(b, DecodeOptions{})
	var g Frame
	g.Decode(b, DecodeOptions{})
	if diff := cmp.Diff(g, f, fxFrameCmp...); diff != "" {
		t.Errorf("reused Frame differs from a fresh one (-fresh +reused):\n%s", diff)
	}
}

func TestDecodeAllocs(t *testing.T) {
	frames := [][]byte{
		fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagSYN, opts: fxSYNOpts(1, 2)}),
		fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, vlans: []uint16{1, 2}, flags: TCPFlagACK, payload: []byte("x"),
			ext: fxChain(ProtoHopByHop, fxExt(ProtoHopByHop, ProtoTCP, 0, 0, false))}),
		fxARP(t, nil, fxIP4Host),
		fxNS(t, fxIP6Host),
	}
	var f Frame
	opt := DecodeOptions{VerifyChecksums: true}
	if n := testing.AllocsPerRun(200, func() {
		for _, b := range frames {
			if f.Decode(b, opt) != OK {
				t.Fatalf("decode failed: %v", f.Status)
			}
		}
	}); n != 0 {
		t.Errorf("Decode allocates %v times per run, want 0", n)
	}
}
