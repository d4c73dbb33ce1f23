package wakepattern

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket/layers"
)

// fxPoison returns a Frame with every field set, by reflection, to a
// value no decode produces, so a test sees which fields a decoder wrote
// (or left alone), including fields added to Frame later.
func fxPoison(t testing.TB) Frame {
	t.Helper()
	var f Frame
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		fxPoisonValue(t, v.Type().Field(i).Name, v.Field(i))
	}
	return f
}

func fxPoisonValue(t testing.TB, name string, v reflect.Value) {
	t.Helper()
	switch {
	case v.Type() == reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.MustParseAddr("fe80::5a5a%poison")))
	case v.Type() == reflect.TypeFor[[]byte]():
		v.Set(reflect.ValueOf([]byte{0xde, 0xad}))
	case v.Type() == reflect.TypeFor[*Pattern]():
		v.Set(reflect.ValueOf(&Pattern{ID: 0x5a5a}))
	case v.Kind() == reflect.Bool:
		v.SetBool(true)
	case v.CanUint():
		v.SetUint(0x5a5a5a5a5a5a5a5a) // truncated to the field's width
	case v.CanInt():
		v.SetInt(0x5a)
	case v.Kind() == reflect.Array:
		for i := range v.Len() {
			fxPoisonValue(t, name, v.Index(i))
		}
	default:
		t.Fatalf("fxPoison: field %s of type %v: teach fxPoisonValue this type", name, v.Type())
	}
}

// checkDecodeFast decodes b with the fast path into a poisoned Frame and
// with the general path into another, and fails unless the fast path
// either declined without writing anything or produced exactly what the
// general path produces. It returns whether the fast path took the frame.
func checkDecodeFast(t testing.TB, b []byte) bool {
	t.Helper()
	if len(b) > MaxFrameLen {
		b = b[:MaxFrameLen]
	}
	fast := fxPoison(t)
	_, _, took := fast.decodeFast(b)
	if !took {
		if diff := cmp.Diff(fxPoison(t), fast, fxFrameCmp...); diff != "" || len(fast.Raw) != 2 {
			t.Fatalf("decodeFast declined but wrote the frame (-before +after):\n%s", diff)
		}
		return false
	}
	general := fxPoison(t)
	st := general.decodeGeneral(b, DecodeOptions{})
	if st != OK {
		t.Fatalf("decodeFast took a frame the general decoder reports %v", st)
	}
	if diff := cmp.Diff(general, fast, fxFrameCmp...); diff != "" {
		t.Fatalf("decodeFast disagrees with the general decoder (-general +fast):\n%s", diff)
	}
	if len(fast.Raw) != len(b) || (len(b) > 0 && &fast.Raw[0] != &b[0]) {
		t.Fatalf("decodeFast Raw is not the frame")
	}
	return true
}

// TestDecodeFast: the fast path takes the usual segment shapes, declines
// every other one, and agrees field by field with the general decoder.
func TestDecodeFast(t *testing.T) {
	seg := fxSeg{src: fxPeer4, dst: fxHost4, seq: 0x01020304, ack: 0xa0b0c0d0, flags: TCPFlagACK,
		window: 0xfedc, tos: 0x28, ttl: 57, opts: fxTSOpts(0x11223344, 0x55667788)}
	with := func(f func(*fxSeg)) fxSeg { s := seg; f(&s); return s }
	patch := func(s fxSeg, f func(b []byte)) func(testing.TB) []byte {
		return func(t testing.TB) []byte { b := fxTCP(t, s); f(b); return b }
	}
	frame := func(s fxSeg) func(testing.TB) []byte { return patch(s, func([]byte) {}) }
	const l3, l4 = EthernetLen, EthernetLen + IPv4MinLen
	tests := []struct {
		name  string
		frame func(testing.TB) []byte
		take  bool
	}{
		{"ack with timestamps", frame(seg), true},
		{"ack without options", frame(with(func(s *fxSeg) { s.opts = nil })), true},
		{"data", frame(with(func(s *fxSeg) { s.payload = []byte("keep-alive payload"); s.flags |= TCPFlagPSH })), true},
		{"data without options", frame(with(func(s *fxSeg) { s.opts, s.payload = nil, []byte{1} })), true},
		{"fin rst syn flags", frame(with(func(s *fxSeg) { s.flags = 0xff })), true},
		{"ethernet padding", frame(with(func(s *fxSeg) { s.opts, s.pad = nil, 60 })), true},
		{"ethernet padding after timestamps", frame(with(func(s *fxSeg) { s.pad = 200 })), true},
		{"one 802.1Q tag", frame(with(func(s *fxSeg) { s.vlans = []uint16{100} })), true},
		{"one tag with priority bits", patch(with(func(s *fxSeg) { s.vlans = []uint16{4094} }), func(b []byte) { b[l3] |= 0xe0 | 0x10 }), true},
		{"one 802.1ad tag", patch(with(func(s *fxSeg) { s.vlans = []uint16{7} }), func(b []byte) {
			binary.BigEndian.PutUint16(b[EthernetTypeOff:], EtherTypeQinQ)
		}), true},
		{"DF set", patch(seg, func(b []byte) { b[l3+IPv4FlagsFragOff] |= 0x40; fxRefitIPv4(b, l3) }), true},

		{"two tags", frame(with(func(s *fxSeg) { s.vlans = []uint16{100, 7} })), false},
		{"syn options", frame(with(func(s *fxSeg) { s.flags, s.opts = TCPFlagSYN, fxSYNOpts(1, 0) })), false},
		{"timestamps then nops", frame(with(func(s *fxSeg) {
			o := fxTSOpts(1, 2)
			s.opts = []layers.TCPOption{o[2], o[0], o[1]}
		})), false},
		{"ipv4 options", frame(with(func(s *fxSeg) {
			s.ipOptions = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		})), false},
		{"first fragment", frame(with(func(s *fxSeg) { s.fragMF = true })), false},
		{"later fragment", frame(with(func(s *fxSeg) { s.fragOff = 3 })), false},
		{"ipv6", frame(with(func(s *fxSeg) { s.src, s.dst = fxPeer6, fxHost6 })), true},
		{"ipv6 without options", frame(with(func(s *fxSeg) { s.src, s.dst, s.opts = fxPeer6, fxHost6, nil })), true},
		{"ipv6 data, traffic class, tag", frame(with(func(s *fxSeg) {
			s.src, s.dst, s.payload, s.tos, s.vlans = fxPeer6, fxHost6, []byte("abc"), 0xb8, []uint16{3}
		})), true},
		{"ipv6 padding", frame(with(func(s *fxSeg) { s.src, s.dst, s.opts, s.pad = fxPeer6, fxHost6, nil, 200 })), true},
		{"ipv6 two tags", frame(with(func(s *fxSeg) { s.src, s.dst, s.vlans = fxPeer6, fxHost6, []uint16{1, 2} })), false},
		{"ipv6 extension header", frame(with(func(s *fxSeg) {
			s.src, s.dst, s.ext = fxPeer6, fxHost6, fxChain(ProtoHopByHop, fxExt(ProtoHopByHop, ProtoTCP, 0, 0, false))
		})), false},
		{"ipv6 syn options", frame(with(func(s *fxSeg) { s.src, s.dst, s.opts = fxPeer6, fxHost6, fxSYNOpts(1, 2) })), false},
		{"ipv6 version 4", patch(with(func(s *fxSeg) { s.src, s.dst = fxPeer6, fxHost6 }), func(b []byte) { b[l3] = 0x40 }), false},
		{"ipv6 payload length past the frame", patch(with(func(s *fxSeg) { s.src, s.dst = fxPeer6, fxHost6 }), func(b []byte) {
			binary.BigEndian.PutUint16(b[l3+IPv6PayloadLenOff:], uint16(len(b)-l3-IPv6Len+1))
		}), false},
		{"ipv6 payload length below the tcp header", patch(with(func(s *fxSeg) { s.src, s.dst = fxPeer6, fxHost6 }), func(b []byte) {
			binary.BigEndian.PutUint16(b[l3+IPv6PayloadLenOff:], TCPMinLen+4)
		}), false},
		{"ipv6 truncated", func(t testing.TB) []byte {
			return fxTCP(t, with(func(s *fxSeg) { s.src, s.dst = fxPeer6, fxHost6 }))[:l3+IPv6Len+TCPMinLen+4]
		}, false},
		{"udp", func(t testing.TB) []byte { return fxUDP(t, fxPeer4, fxHost4, []byte("x")) }, false},
		{"arp", func(t testing.TB) []byte { return fxARP(t, nil, fxIP4Host) }, false},
		{"ip version 6 in ipv4", patch(seg, func(b []byte) { b[l3] = 0x65 }), false},
		{"truncated", func(t testing.TB) []byte { return fxTCP(t, seg)[:l4+TCPMinLen+8] }, false},
		{"total length past the frame", patch(seg, func(b []byte) {
			binary.BigEndian.PutUint16(b[l3+IPv4TotalLenOff:], uint16(len(b)-l3+1))
		}), false},
		{"total length below the tcp header", patch(seg, func(b []byte) {
			binary.BigEndian.PutUint16(b[l3+IPv4TotalLenOff:], IPv4MinLen+TCPMinLen+4)
		}), false},
		{"total length below the ip header", patch(seg, func(b []byte) {
			binary.BigEndian.PutUint16(b[l3+IPv4TotalLenOff:], 3)
		}), false},
		{"tcp data offset 4", patch(seg, func(b []byte) { b[l4+TCPDataOffOff] = 4 << 4 }), false},
		{"tcp data offset 6", patch(seg, func(b []byte) { b[l4+TCPDataOffOff] = 6 << 4 }), false},
		{"tcp header past the ip packet", patch(with(func(s *fxSeg) { s.opts = nil }), func(b []byte) {
			b[l4+TCPDataOffOff] = 8 << 4
		}), false},
		{"short frame", func(testing.TB) []byte { return make([]byte, fastMinLen-1) }, false},
		{"empty", func(testing.TB) []byte { return nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.frame(t)
			if got := checkDecodeFast(t, b); got != tt.take {
				t.Fatalf("decodeFast took the frame: %v, want %v", got, tt.take)
			}
			// Decode (the entry point) agrees with the general path too.
			var f, g Frame
			if st, want := f.Decode(b, DecodeOptions{}), g.decodeGeneral(b, DecodeOptions{}); st != want {
				t.Fatalf("Decode = %v, general path %v", st, want)
			}
			if diff := cmp.Diff(g, f, fxFrameCmp...); diff != "" {
				t.Fatalf("Decode (-general +Decode):\n%s", diff)
			}
		})
	}
}

// TestDecodeFastAllocs: the fast path allocates nothing.
func TestDecodeFastAllocs(t *testing.T) {
	b := fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, vlans: []uint16{5}, flags: TCPFlagACK, opts: fxTSOpts(1, 2)})
	var f Frame
	if n := testing.AllocsPerRun(100, func() {
		if _, _, ok := f.decodeFast(b); !ok {
			t.Fatal("fast path declined")
		}
	}); n != 0 {
		t.Fatalf("decodeFast allocates %v times per frame", n)
	}
}

// FuzzDecodeFast: on any input the fast path either declines without
// writing or agrees exactly with the general decoder.
func FuzzDecodeFast(f *testing.F) {
	for _, b := range fxSeedFrames(f) {
		f.Add(b)
	}
	f.Add(fxTCP(f, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK}))
	f.Add(fxTCP(f, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK, opts: fxTSOpts(7, 8), pad: 120}))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeFast(t, b)
	})
}

// fxFastMatchPatterns are connection patterns for the frames of
// TestMatchFrameFast and the fuzz seeds (untagged, VLAN 100, VLAN 4094,
// IPv6), plus a SYN wildcard and a bitmap that overlaps them, so MatchFrame's
// shortcut meets every way Match can end.
func fxFastMatchPatterns() []Pattern {
	ps := fxPatterns()
	return append(ps,
		Pattern{ID: 101, Kind: KindTCPConn, Conn: TCPConn{Local: fxHost4, Remote: fxPeer4, VLAN: 4094}},
		Pattern{ID: 102, Kind: KindTCPConn, Conn: TCPConn{Local: netip.AddrPortFrom(fxIP4Host, 22), Remote: fxPeer4}},
		// TCP destination port 22 (offset 36 untagged), higher priority
		// than the connections.
		Pattern{ID: 103, Priority: 9, Kind: KindBitmap, Bitmap: Bitmap{Offset: 36, Bytes: []byte{0, 22}, Mask: []byte{0x03}}},
	)
}

// checkMatchFrame fails unless MatchFrame(b) gives the same Frame and
// Result as Decode then Match.
func checkMatchFrame(t testing.TB, m *Matcher, b []byte) {
	t.Helper()
	var f1, f2 Frame
	var r1, r2 Result
	ok1 := m.MatchFrame(b, &f1, &r1)
	f2.Decode(b, DecodeOptions{})
	ok2 := m.Match(&f2, &r2)
	if diff := cmp.Diff(f2, f1, fxFrameCmp...); diff != "" {
		t.Fatalf("MatchFrame decoded differently from Decode (-Decode +MatchFrame):\n%s", diff)
	}
	if diff := cmp.Diff(summarize(ok2, &r2), summarize(ok1, &r1)); diff != "" || r1.Pattern != r2.Pattern {
		t.Fatalf("MatchFrame differs from Decode+Match (-Match +MatchFrame):\n%s", diff)
	}
}

// TestMatchFrameFast: MatchFrame, which looks up the key the fast decode
// path returns, agrees with Decode+Match, which reads it from the frame.
func TestMatchFrameFast(t *testing.T) {
	m, err := Compile(fxFastMatchPatterns(), DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	ack := fxSeg{src: fxPeer4, dst: fxHost4, seq: 5, ack: 6, flags: TCPFlagACK, opts: fxTSOpts(1, 2)}
	with := func(f func(*fxSeg)) fxSeg { s := ack; f(&s); return s }
	tests := []struct {
		name  string
		seg   fxSeg
		want  uint32 // pattern ID; 0: no match
		patch func([]byte)
	}{
		{name: "untagged", seg: ack, want: 1},
		{name: "vlan 100", seg: with(func(s *fxSeg) { s.vlans = []uint16{100} }), want: 2},
		{name: "vlan 4094", seg: with(func(s *fxSeg) { s.vlans = []uint16{4094} }), want: 101},
		{name: "vlan 5: no pattern", seg: with(func(s *fxSeg) { s.vlans = []uint16{5} })},
		{name: "priority tag is vlan 0", seg: with(func(s *fxSeg) { s.vlans = []uint16{0} }), want: 1},
		{name: "802.1ad tag", seg: with(func(s *fxSeg) { s.vlans = []uint16{100} }), want: 2, patch: func(b []byte) {
			binary.BigEndian.PutUint16(b[EthernetTypeOff:], EtherTypeQinQ)
		}},
		{name: "reverse direction", seg: with(func(s *fxSeg) { s.src, s.dst = fxHost4, fxPeer4 })},
		{name: "other remote port", seg: with(func(s *fxSeg) { s.src = netip.AddrPortFrom(fxIP4Peer, 444) })},
		{name: "data without options", seg: with(func(s *fxSeg) { s.opts, s.payload = nil, []byte("x") }), want: 1},
		{name: "rst", seg: with(func(s *fxSeg) { s.flags = TCPFlagRST }), want: 1},
		{name: "bitmap outranks the connection", seg: with(func(s *fxSeg) { s.dst = netip.AddrPortFrom(fxIP4Host, 22) }), want: 103},
		{name: "syn to port 22: bitmap", seg: with(func(s *fxSeg) {
			s.dst, s.flags, s.opts = netip.AddrPortFrom(fxIP4Host, 22), TCPFlagSYN, nil
		}), want: 103},
		{name: "syn to port 80", seg: with(func(s *fxSeg) {
			s.dst, s.flags, s.opts = netip.AddrPortFrom(fxIP4Host, 80), TCPFlagSYN, nil
		}), want: 9},
		{name: "ipv6", seg: with(func(s *fxSeg) { s.src, s.dst = fxPeer6, fxHost6 }), want: 3},
		{name: "ipv6 other vlan", seg: with(func(s *fxSeg) { s.src, s.dst, s.vlans = fxPeer6, fxHost6, []uint16{100} })},
		{name: "general path: ipv6 extension header", seg: with(func(s *fxSeg) {
			s.src, s.dst, s.ext = fxPeer6, fxHost6, fxChain(ProtoDestOpts, fxExt(ProtoDestOpts, ProtoTCP, 0, 0, false))
		}), want: 3},
		{name: "general path: syn options", seg: with(func(s *fxSeg) { s.opts = fxSYNOpts(1, 2) }), want: 1},
		{name: "general path: fragment", seg: with(func(s *fxSeg) { s.fragMF = true })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fxTCP(t, tt.seg)
			if tt.patch != nil {
				tt.patch(b)
			}
			checkMatchFrame(t, m, b)
			var f Frame
			var r Result
			var got uint32
			if m.MatchFrame(b, &f, &r) {
				got = r.Pattern.ID
			}
			if got != tt.want {
				t.Fatalf("matched pattern %d, want %d", got, tt.want)
			}
		})
	}
}

// FuzzMatchFrameFast: on any input MatchFrame agrees with Decode+Match.
func FuzzMatchFrameFast(f *testing.F) {
	for _, b := range fxSeedFrames(f) {
		f.Add(b)
	}
	f.Add(fxTCP(f, fxSeg{src: fxPeer4, dst: fxHost4, vlans: []uint16{4094}, flags: TCPFlagACK, opts: fxTSOpts(1, 2)}))
	f.Add(fxTCP(f, fxSeg{src: fxPeer4, dst: netip.AddrPortFrom(fxIP4Host, 22), flags: TCPFlagACK}))
	m, err := Compile(fxFastMatchPatterns(), DefaultCapabilities())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkMatchFrame(t, m, b)
	})
}

// TestMatchOverwritesResult: Match writes Result field by field; every
// field (found by reflection, so one added later is covered) is
// overwritten, on a segment match, on a bitmap match and on no match.
func TestMatchOverwritesResult(t *testing.T) {
	m, err := Compile(fxFastMatchPatterns(), DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	seg := fxSeg{src: fxPeer4, dst: fxHost4, seq: 5, ack: 6, flags: TCPFlagACK, payload: []byte("x")}
	tests := []struct {
		name  string
		frame []byte
	}{
		{"connection", fxTCP(t, seg)},
		{"bitmap", fxARP(t, nil, fxIP4Host)},
		{"nothing", fxTCP(t, fxSeg{src: fxPeer4, dst: netip.AddrPortFrom(fxIP4Host, 9), flags: TCPFlagACK})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			f.Decode(tt.frame, DecodeOptions{})
			var fresh Result
			okFresh := m.Match(&f, &fresh)
			var poisoned Result
			v := reflect.ValueOf(&poisoned).Elem()
			for i := range v.NumField() {
				fxPoisonValue(t, v.Type().Field(i).Name, v.Field(i))
			}
			if ok := m.Match(&f, &poisoned); ok != okFresh || poisoned != fresh {
				t.Fatalf("Match into a used Result = %v %+v, into a zero one %v %+v", ok, poisoned, okFresh, fresh)
			}
			if tt.name != "nothing" && !okFresh {
				t.Fatalf("no match")
			}
		})
	}
}
