package nic

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// superFrame builds what a Linux sender hands a veth with offloads on: an
// Ethernet frame with a TCP (or UDP) packet carrying payload in one piece,
// its IPv4 header checksum complete, its L4 checksum field holding only
// the pseudo-header sum (CHECKSUM_PARTIAL), and the virtio_net_hdr a
// packet socket reads with it. ipLen overrides the IP length field when
// not negative (BIG TCP writes 0).
func superFrame(t testing.TB, v6, udp bool, payload []byte, mss int, flags uint8, ipLen int) ([]byte, VnetHdr) {
	t.Helper()
	src4, dst4 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	src6, dst6 := netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2")
	var b []byte
	b = append(b, 2, 0, 0x5e, 0, 0, 2, 2, 0, 0x5e, 0, 0, 1)
	l3 := len(b) + 2
	l4hdr := 32 // TCP with NOP, NOP, timestamps
	proto := uint8(wp.ProtoTCP)
	if udp {
		l4hdr, proto = 8, 17
	}
	l4len := l4hdr + len(payload)
	var src, dst netip.Addr
	if v6 {
		b = binary.BigEndian.AppendUint16(b, wp.EtherTypeIPv6)
		b = append(b, 0x60, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(l4len))
		b = append(b, proto, 64)
		s, d := src6.As16(), dst6.As16()
		b = append(append(b, s[:]...), d[:]...)
		src, dst = src6, dst6
		if ipLen >= 0 {
			binary.BigEndian.PutUint16(b[l3+4:], uint16(ipLen))
		}
	} else {
		b = binary.BigEndian.AppendUint16(b, wp.EtherTypeIPv4)
		tl := 20 + l4len
		if ipLen >= 0 {
			tl = ipLen
		}
		b = append(b, 0x45, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(tl))
		b = append(b, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0)
		s, d := src4.As4(), dst4.As4()
		b = append(append(b, s[:]...), d[:]...)
		binary.BigEndian.PutUint16(b[l3+10:], wp.Checksum(b[l3:l3+20], 0))
		src, dst = src4, dst4
	}
	l4 := len(b)
	if udp {
		b = binary.BigEndian.AppendUint16(b, 5000)
		b = binary.BigEndian.AppendUint16(b, 6000)
		b = binary.BigEndian.AppendUint16(b, uint16(l4len))
		b = append(b, 0, 0)
	} else {
		b = binary.BigEndian.AppendUint16(b, 443)
		b = binary.BigEndian.AppendUint16(b, 40000)
		b = binary.BigEndian.AppendUint32(b, 0xfffff000) // wraps within the frame
		b = binary.BigEndian.AppendUint32(b, 77)
		b = append(b, 8<<4, flags)
		b = binary.BigEndian.AppendUint16(b, 500)
		b = append(b, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8)
	}
	b = append(b, payload...)
	off := uint16(16)
	if udp {
		off = 6
	}
	binary.BigEndian.PutUint16(b[l4+int(off):], wp.Fold(wp.PseudoHeaderSum(proto, src, dst, l4len)))
	h := VnetHdr{Flags: VnetNeedsCsum, HdrLen: uint16(l4 + l4hdr), GSOSize: uint16(mss), CsumStart: uint16(l4), CsumOffset: off}
	switch {
	case udp:
		h.GSOType = GSOUDPL4
	case v6:
		h.GSOType = GSOTCPv6
	default:
		h.GSOType = GSOTCPv4
	}
	return b, h
}

func TestSegmenter(t *testing.T) {
	payload := make([]byte, 5000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	tests := []struct {
		name    string
		v6, udp bool
		n       int
		mss     int
		flags   uint8
	}{
		{"tcp4", false, false, 5000, 1448, 0x18 | 0x80 | 0x01}, // ACK PSH CWR FIN
		{"tcp6", true, false, 5000, 1428, 0x18},
		{"tcp4 exact multiple", false, false, 2896, 1448, 0x10},
		{"tcp4 one segment", false, false, 100, 1448, 0x18},
		{"udp4", false, true, 3000, 1472, 0},
		{"udp6", true, true, 3000, 1452, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, h := superFrame(t, tt.v6, tt.udp, payload[:tt.n], tt.mss, tt.flags, -1)
			var s segmenter
			if err := s.init(frame, &h); err != nil {
				t.Fatal(err)
			}
			dst := make([]byte, s.segLen())
			var got []byte
			var f wp.Frame
			i := 0
			for n := s.next(dst); n > 0; n = s.next(dst) {
				last := len(got)+n-int(h.HdrLen) >= tt.n
				seg := dst[:n]
				if tt.udp {
					// UDP: verify by hand (wakepattern checks TCP only).
					l3, l4 := int(EthernetHeaderLen), int(h.CsumStart)
					src, dst := netip.AddrFrom4([4]byte(seg[l3+12:])), netip.AddrFrom4([4]byte(seg[l3+16:]))
					if tt.v6 {
						src, dst = netip.AddrFrom16([16]byte(seg[l3+8:])), netip.AddrFrom16([16]byte(seg[l3+24:]))
					} else if wp.Fold(wp.Sum(seg[l3:l4], 0)) != 0xffff || int(binary.BigEndian.Uint16(seg[l3+2:])) != n-l3 {
						t.Fatalf("segment %d: bad IPv4 header %x", i, seg[l3:l4])
					}
					if wp.Fold(wp.Sum(seg[l4:], wp.PseudoHeaderSum(17, src, dst, n-l4))) != 0xffff || int(binary.BigEndian.Uint16(seg[l4+4:])) != n-l4 {
						t.Fatalf("segment %d: bad UDP header", i)
					}
					got = append(got, seg[l4+8:]...)
					i++
					continue
				}
				if st := f.Decode(seg, wp.DecodeOptions{VerifyChecksums: true}); st != wp.OK {
					t.Fatalf("segment %d: %v", i, st)
				}
				if want := uint32(0xfffff000) + uint32(i*tt.mss); f.Seq != want {
					t.Errorf("segment %d: seq %d, want %d", i, f.Seq, want)
				}
				wantFlags := tt.flags
				if !last {
					wantFlags &^= tcpFIN | tcpPSH
				}
				if i > 0 {
					wantFlags &^= tcpCWR
				}
				if f.TCPFlags != wantFlags {
					t.Errorf("segment %d: flags %#x, want %#x", i, f.TCPFlags, wantFlags)
				}
				if !tt.v6 && binary.BigEndian.Uint16(seg[EthernetHeaderLen+4:]) != 0x1234+uint16(i) {
					t.Errorf("segment %d: IPv4 ID %#x", i, binary.BigEndian.Uint16(seg[EthernetHeaderLen+4:]))
				}
				if !f.HasTS || f.TSval != 9 {
					t.Errorf("segment %d: timestamps lost", i)
				}
				got = append(got, f.Payload()...)
				i++
			}
			if want := (tt.n + tt.mss - 1) / tt.mss; i != want {
				t.Errorf("%d segments, want %d", i, want)
			}
			if !bytes.Equal(got, payload[:tt.n]) {
				t.Error("segments' payload differs from the super-frame's")
			}
		})
	}
}

func TestSegmenterRejects(t *testing.T) {
	frame, h := superFrame(t, false, false, make([]byte, 3000), 1448, 0x10, -1)
	bad := func(mod func(f []byte, h *VnetHdr)) ([]byte, VnetHdr) {
		f := append([]byte(nil), frame...)
		hh := h
		mod(f, &hh)
		return f, hh
	}
	tests := []struct {
		name string
		mod  func(f []byte, h *VnetHdr)
		want error
	}{
		{"gso udp (ufo)", func(f []byte, h *VnetHdr) { h.GSOType = GSOUDP }, errVnetGSOType},
		{"gso size 0", func(f []byte, h *VnetHdr) { h.GSOSize = 0 }, errVnetHeaders},
		{"csum start not l4", func(f []byte, h *VnetHdr) { h.CsumStart += 4 }, errVnetHeaders},
		{"no needs csum", func(f []byte, h *VnetHdr) { h.Flags = 0 }, errVnetHeaders},
		{"tcpv6 on ipv4", func(f []byte, h *VnetHdr) { h.GSOType = GSOTCPv6 }, errVnetHeaders},
		{"bad ip checksum", func(f []byte, h *VnetHdr) { f[EthernetHeaderLen+8]-- }, errVnetHeaders},
		{"tcp data offset past frame", func(f []byte, h *VnetHdr) { f = f[:60]; f[46] = 0xf0 }, nil},
		{"csum offset not tcp's", func(f []byte, h *VnetHdr) { h.CsumOffset = 6 }, errVnetHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, hh := bad(tt.mod)
			var s segmenter
			err := s.init(f, &hh)
			if tt.want != nil && err != tt.want {
				t.Errorf("init = %v, want %v", err, tt.want)
			}
		})
	}
	var s segmenter
	if err := s.init(frame[:60], &h); err != errVnetHeaders {
		t.Errorf("headers cut: init = %v", err)
	}
}

func TestCompleteCsum(t *testing.T) {
	for _, udp := range []bool{false, true} {
		frame, h := superFrame(t, false, udp, []byte("a partial checksum is not a bad checksum"), 1448, 0x18, -1)
		h.GSOType = GSONone
		if err := completeCsum(frame, &h); err != nil {
			t.Fatal(err)
		}
		l4 := int(h.CsumStart)
		src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
		proto := uint8(6)
		if udp {
			proto = 17
		}
		if wp.Fold(wp.Sum(frame[l4:], wp.PseudoHeaderSum(proto, src, dst, len(frame)-l4))) != 0xffff {
			t.Errorf("udp %v: checksum does not verify after completion", udp)
		}
	}
	var h VnetHdr = VnetHdr{Flags: VnetNeedsCsum, CsumStart: 60, CsumOffset: 16}
	if err := completeCsum(make([]byte, 70), &h); err != errVnetHeaders {
		t.Errorf("field past the frame: %v", err)
	}
}

func TestDecodeWhole(t *testing.T) {
	frame, h := superFrame(t, false, false, []byte("data"), 1448, 0x18, -1)
	var f wp.Frame
	// Partial checksum: Decode with verification calls it bad; the
	// device verifies only what the header says is complete.
	if st := f.Decode(frame, wp.DecodeOptions{VerifyChecksums: true}); st != wp.BadTCPChecksum {
		t.Fatalf("partial checksum decoded %v, want BadTCPChecksum", st)
	}
	if st := decodeWhole(&f, frame, true); st != wp.OK {
		t.Errorf("verified frame: %v", st)
	}
	frame[EthernetHeaderLen+8]-- // TTL: the IPv4 header checksum breaks
	if st := decodeWhole(&f, frame, true); st != wp.BadIPChecksum {
		t.Errorf("broken IPv4 header with a verified L4: %v, want BadIPChecksum", st)
	}
	_ = h
}

// TestGSOHeaders: the learning path reads a super-frame's sequence span
// from its length, whatever its IP length field says.
func TestGSOHeaders(t *testing.T) {
	for _, tt := range []struct {
		name  string
		v6    bool
		ipLen int
	}{{"ipv4", false, -1}, {"ipv4 total length 0", false, 0}, {"ipv4 wrong total length", false, 40}, {"ipv6", true, -1}, {"ipv6 payload length 0", true, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			frame, h := superFrame(t, tt.v6, false, make([]byte, 60000), 1448, 0x18, tt.ipLen)
			var head [headCopyLen]byte
			n, pl, ok := gsoHeaders(head[:], frame, &h)
			if !ok || pl != 60000 || n != int(h.HdrLen) {
				t.Fatalf("gsoHeaders = %d, %d, %v", n, pl, ok)
			}
			var f wp.Frame
			if st := f.Decode(head[:n], wp.DecodeOptions{}); st != wp.OK || f.Seq != 0xfffff000 || f.PayloadLen != 0 {
				t.Fatalf("header copy: %v seq %d payload %d", st, f.Seq, f.PayloadLen)
			}
			local := netip.AddrPortFrom(f.DstIP, f.DstPort)
			remote := netip.AddrPortFrom(f.SrcIP, f.SrcPort)
			tr := &tracked{l: Learned{SndWScale: -1, RcvWScale: -1}}
			tab := &trackTable{m: map[connKey]*tracked{{local: local, remote: remote}: tr}}
			if !tab.learn(&f, pl, false, 0) {
				t.Fatal("not learned")
			}
			seq := uint32(0xfffff000)
			if d := cmp.Diff(seq+60000, tr.l.RcvNxt); d != "" {
				t.Errorf("RcvNxt (-want +got):\n%s", d)
			}
		})
	}
}

func TestVnetHdrRoundTrip(t *testing.T) {
	h := VnetHdr{Flags: VnetNeedsCsum, GSOType: GSOTCPv4 | GSOECN, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	var b [VnetHdrLen]byte
	h.put(b[:])
	var g VnetHdr
	g.get(b[:])
	if d := cmp.Diff(h, g); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if !g.IsGSO() || !g.NeedsCsum() || g.Whole() {
		t.Errorf("%+v: IsGSO %v NeedsCsum %v Whole %v", g, g.IsGSO(), g.NeedsCsum(), g.Whole())
	}
	g.shift(4)
	if g.CsumStart != 38 || g.HdrLen != 70 {
		t.Errorf("shift: %+v", g)
	}
}

// FuzzFinish: any frame with any virtio_net_hdr is finished without a
// panic, and every whole frame handed out is no longer than a segment.
func FuzzFinish(f *testing.F) {
	frame, h := superFrame(f, false, false, make([]byte, 3000), 1448, 0x18, -1)
	f.Add(frame, h.Flags, h.GSOType, h.GSOSize, h.CsumStart, h.CsumOffset)
	frame6, h6 := superFrame(f, true, true, make([]byte, 2000), 1000, 0, -1)
	f.Add(frame6, h6.Flags, h6.GSOType, h6.GSOSize, h6.CsumStart, h6.CsumOffset)
	f.Add(frame[:40], uint8(1), uint8(0), uint16(0), uint16(34), uint16(16))
	f.Fuzz(func(t *testing.T, frame []byte, flags, gsoType uint8, gsoSize, csumStart, csumOffset uint16) {
		h := VnetHdr{Flags: flags, GSOType: gsoType, GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOffset}
		var s segmenter
		if !h.Whole() && !h.IsGSO() {
			completeCsum(frame, &h)
			return
		}
		if s.init(frame, &h) != nil {
			return
		}
		dst := make([]byte, s.segLen())
		total := 0
		for n := s.next(dst); n > 0; n = s.next(dst) {
			if n > s.segLen() {
				t.Fatalf("segment of %d bytes > %d", n, s.segLen())
			}
			total += n - s.hlen
			if total > len(frame) {
				t.Fatal("segments carry more payload than the frame")
			}
		}
	})
}

// TestNormalizeGSO: a GRO super-frame (DATA_VALID, no csum_start, the
// checksum field whatever the first segment had) becomes the TSO form a
// sender produces.
func TestNormalizeGSO(t *testing.T) {
	for _, tt := range []struct {
		name    string
		v6, udp bool
	}{{"tcp4", false, false}, {"tcp6", true, false}, {"udp4", false, true}} {
		t.Run(tt.name, func(t *testing.T) {
			want, wh := superFrame(t, tt.v6, tt.udp, make([]byte, 5000), 1400, 0x10, -1)
			got := append([]byte(nil), want...)
			binary.BigEndian.PutUint16(got[int(wh.CsumStart)+int(wh.CsumOffset):], 0xdead)
			h := VnetHdr{Flags: VnetDataValid, GSOType: wh.GSOType, GSOSize: wh.GSOSize, HdrLen: wh.HdrLen}
			if err := normalizeGSO(got, &h); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(wh, h); d != "" {
				t.Errorf("header (-want +got):\n%s", d)
			}
			if !bytes.Equal(got, want) {
				t.Error("frame differs from the TSO form")
			}
		})
	}
	f, h := superFrame(t, false, false, make([]byte, 3000), 1400, 0x10, -1)
	h.GSOType = GSOUDPL4
	if err := normalizeGSO(f, &h); err != errVnetGSOType {
		t.Errorf("TCP frame with a UDP GSO type: %v", err)
	}
}
