package wakepattern

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	fxMagicMAC2 = [6]byte{0x02, 0, 0, 0, 0, 0x77}
	fxPassword  = []byte{1, 2, 3, 4, 5, 6}
)

// fxPatterns is the fixed pattern set of the matcher tests (and FuzzMatch).
func fxPatterns() []Pattern {
	return []Pattern{
		{ID: 1, Kind: KindTCPConn, Conn: TCPConn{Local: fxHost4, Remote: fxPeer4}},
		{ID: 2, Kind: KindTCPConn, Conn: TCPConn{Local: fxHost4, Remote: fxPeer4, VLAN: 100}},
		{ID: 3, Kind: KindTCPConn, Conn: TCPConn{Local: fxHost6, Remote: fxPeer6}},
		{ID: 4, Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.AddrPortFrom(netip.IPv4Unspecified(), 22)}},
		{ID: 5, Kind: KindTCPSYN, SYN: TCPSYN{IPv6: true}},
		// ARP: EtherType at offset 12.
		{ID: 6, Kind: KindBitmap, Bitmap: Bitmap{Offset: 12, Bytes: []byte{0x08, 0x06}, Mask: []byte{0x03}}},
		{ID: 7, Kind: KindMagic, Magic: Magic{MAC: fxMAC(fxMACHost)}},
		{ID: 8, Kind: KindMagic, Magic: Magic{MAC: fxMagicMAC2, Password: fxPassword}},
		{ID: 9, Priority: 5, Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.AddrPortFrom(fxIP4Host, 80)}},
	}
}

// fxMagicPayload returns a magic packet body for mac with password.
func fxMagicPayload(mac [6]byte, password []byte) []byte {
	b := []byte("junk")
	b = append(b, bytes.Repeat([]byte{0xff}, 6)...)
	for range 16 {
		b = append(b, mac[:]...)
	}
	return append(b, password...)
}

type matchSummary struct {
	Matched                bool
	ID                     uint32
	Index                  int
	Class                  Class
	Seq, Ack               uint32
	SeqOff, AckOff         uint16
	PayloadOff, PayloadLen uint16
}

func summarize(ok bool, r *Result) matchSummary {
	if !ok {
		return matchSummary{}
	}
	return matchSummary{true, r.Pattern.ID, r.Index, r.Class, r.Seq, r.Ack, r.SeqOff, r.AckOff, r.PayloadOff, r.PayloadLen}
}

func TestMatch(t *testing.T) {
	m, err := Compile(fxPatterns(), DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	seg := func(s fxSeg) func(testing.TB) []byte { return func(t testing.TB) []byte { return fxTCP(t, s) } }
	in4 := fxSeg{src: fxPeer4, dst: fxHost4, seq: 100, ack: 200, flags: TCPFlagACK}
	with := func(s fxSeg, edit func(*fxSeg)) fxSeg { edit(&s); return s }
	conn4 := func(class Class, payloadOff, payloadLen uint16) matchSummary {
		return matchSummary{true, 1, 0, class, 100, 200, 38, 42, payloadOff, payloadLen}
	}
	tests := []struct {
		name  string
		frame func(testing.TB) []byte
		opt   DecodeOptions
		want  matchSummary
	}{
		{"ipv4 keep-alive ACK", seg(in4), DecodeOptions{}, conn4(ClassPureACK, 54, 0)},
		{"ipv4 keep-alive ACK padded to 60", seg(with(in4, func(s *fxSeg) { s.pad = 60 })), DecodeOptions{}, conn4(ClassPureACK, 54, 0)},
		{"ipv4 data", seg(with(in4, func(s *fxSeg) { s.payload = []byte("push") })), DecodeOptions{}, conn4(ClassData, 54, 4)},
		{"ipv4 data with FIN", seg(with(in4, func(s *fxSeg) { s.payload, s.flags = []byte("x"), TCPFlagACK|TCPFlagFIN })), DecodeOptions{}, conn4(ClassData, 54, 1)},
		{"ipv4 FIN", seg(with(in4, func(s *fxSeg) { s.flags = TCPFlagACK | TCPFlagFIN })), DecodeOptions{}, conn4(ClassFIN, 54, 0)},
		{"ipv4 RST", seg(with(in4, func(s *fxSeg) { s.flags = TCPFlagRST })), DecodeOptions{}, conn4(ClassRST, 54, 0)},
		{"ipv4 with timestamps", seg(with(in4, func(s *fxSeg) { s.opts = fxTSOpts(1, 2) })), DecodeOptions{}, conn4(ClassPureACK, 66, 0)},
		{"ipv4 wrong direction", seg(fxSeg{src: fxHost4, dst: fxPeer4, flags: TCPFlagACK}), DecodeOptions{}, matchSummary{}},
		{"ipv4 other remote port", seg(fxSeg{src: netip.AddrPortFrom(fxIP4Peer, 444), dst: fxHost4, flags: TCPFlagACK}), DecodeOptions{}, matchSummary{}},
		{"ipv4 other local address", seg(fxSeg{src: fxPeer4, dst: netip.MustParseAddrPort("198.18.0.3:40000"), flags: TCPFlagACK}), DecodeOptions{}, matchSummary{}},
		{"ipv4 VLAN 100", seg(with(in4, func(s *fxSeg) { s.vlans = []uint16{100} })), DecodeOptions{},
			matchSummary{true, 2, 1, ClassPureACK, 100, 200, 42, 46, 58, 0}},
		{"ipv4 QinQ outer 100", seg(with(in4, func(s *fxSeg) { s.vlans = []uint16{100, 7} })), DecodeOptions{},
			matchSummary{true, 2, 1, ClassPureACK, 100, 200, 46, 50, 62, 0}},
		{"ipv4 VLAN 200: no pattern", seg(with(in4, func(s *fxSeg) { s.vlans = []uint16{200} })), DecodeOptions{}, matchSummary{}},
		{"ipv4 priority tag (VID 0) matches untagged", seg(with(in4, func(s *fxSeg) { s.vlans = []uint16{0} })), DecodeOptions{},
			matchSummary{true, 1, 0, ClassPureACK, 100, 200, 42, 46, 58, 0}},
		{"ipv4 first fragment never matches a connection", seg(with(in4, func(s *fxSeg) { s.fragMF, s.payload = true, []byte("12345678") })), DecodeOptions{}, matchSummary{}},
		{"ipv4 bad checksum, verified: no match", func(t testing.TB) []byte {
			b := fxTCP(t, in4)
			b[34+TCPUrgentOff+1] ^= 0xff // the frame is padded to 60: change the header
			return b
		}, DecodeOptions{VerifyChecksums: true}, matchSummary{}},
		{"ipv6 data", seg(fxSeg{src: fxPeer6, dst: fxHost6, seq: 1, ack: 2, flags: TCPFlagACK | TCPFlagPSH, payload: []byte("hi"),
			ext: fxChain(ProtoHopByHop, fxExt(ProtoHopByHop, ProtoTCP, 0, 0, false))}), DecodeOptions{},
			matchSummary{true, 3, 2, ClassData, 1, 2, 66, 70, 82, 2}},
		{"SYN to :22 any IPv4 address", seg(fxSeg{src: fxPeer4, dst: netip.MustParseAddrPort("198.18.0.9:22"), seq: 7, flags: TCPFlagSYN}), DecodeOptions{},
			matchSummary{true, 4, 3, ClassSYN, 7, 0, 38, 42, 54, 0}},
		{"SYN-ACK to :22 is not a SYN pattern match", seg(fxSeg{src: fxPeer4, dst: netip.MustParseAddrPort("198.18.0.9:22"), flags: TCPFlagSYN | TCPFlagACK}), DecodeOptions{}, matchSummary{}},
		{"SYN-RST to :22 is not a SYN pattern match", seg(fxSeg{src: fxPeer4, dst: netip.MustParseAddrPort("198.18.0.9:22"), flags: TCPFlagSYN | TCPFlagRST}), DecodeOptions{}, matchSummary{}},
		{"SYN to host:80 (priority 5)", seg(fxSeg{src: fxPeer4, dst: netip.AddrPortFrom(fxIP4Host, 80), flags: TCPFlagSYN}), DecodeOptions{},
			matchSummary{true, 9, 8, ClassSYN, 0, 0, 38, 42, 54, 0}},
		{"SYN to other:80: no pattern", seg(fxSeg{src: fxPeer4, dst: netip.MustParseAddrPort("198.18.0.3:80"), flags: TCPFlagSYN}), DecodeOptions{}, matchSummary{}},
		{"IPv6 SYN to anything", seg(fxSeg{src: fxPeer6, dst: netip.MustParseAddrPort("[2001:db8::99]:5"), flags: TCPFlagSYN}), DecodeOptions{},
			matchSummary{true, 5, 4, ClassSYN, 0, 0, 58, 62, 74, 0}},
		{"ARP (bitmap)", func(t testing.TB) []byte { return fxARP(t, nil, fxIP4Host) }, DecodeOptions{}, matchSummary{true, 6, 5, 0, 0, 0, 0, 0, 0, 0}},
		{"ARP in a VLAN: EtherType moved, bitmap does not match", func(t testing.TB) []byte { return fxARP(t, []uint16{3}, fxIP4Host) }, DecodeOptions{}, matchSummary{}},
		{"magic packet in UDP", func(t testing.TB) []byte {
			return fxUDP(t, fxPeer4, netip.AddrPortFrom(fxIP4Host, 9), fxMagicPayload(fxMAC(fxMACHost), nil))
		}, DecodeOptions{}, matchSummary{true, 7, 6, 0, 0, 0, 0, 0, 0, 0}},
		{"magic packet with password", func(t testing.TB) []byte {
			return fxUDP(t, fxPeer4, netip.AddrPortFrom(fxIP4Host, 9), fxMagicPayload(fxMagicMAC2, fxPassword))
		}, DecodeOptions{}, matchSummary{true, 8, 7, 0, 0, 0, 0, 0, 0, 0}},
		{"magic packet with wrong password", func(t testing.TB) []byte {
			return fxUDP(t, fxPeer4, netip.AddrPortFrom(fxIP4Host, 9), fxMagicPayload(fxMagicMAC2, []byte{1, 2, 3, 4, 5, 7}))
		}, DecodeOptions{}, matchSummary{}},
		{"magic packet with 15 repetitions", func(t testing.TB) []byte {
			p := fxMagicPayload(fxMAC(fxMACHost), nil)
			return fxUDP(t, fxPeer4, netip.AddrPortFrom(fxIP4Host, 9), p[:len(p)-6])
		}, DecodeOptions{}, matchSummary{}},
		{"magic in a truncated frame still matches (raw bytes)", func(t testing.TB) []byte {
			b := fxUDP(t, fxPeer4, netip.AddrPortFrom(fxIP4Host, 9), append(fxMagicPayload(fxMAC(fxMACHost), nil), make([]byte, 40)...))
			return b[:len(b)-20]
		}, DecodeOptions{}, matchSummary{true, 7, 6, 0, 0, 0, 0, 0, 0, 0}},
		{"UDP to the connection's ports", func(t testing.TB) []byte { return fxUDP(t, fxPeer4, fxHost4, []byte("x")) }, DecodeOptions{}, matchSummary{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.frame(t)
			var f Frame
			var r Result
			f.Decode(b, tc.opt)
			got := summarize(m.Match(&f, &r), &r)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Match (-want +got):\n%s", diff)
			}
			if tc.opt == (DecodeOptions{}) {
				var f2 Frame
				var r2 Result
				if got2 := summarize(m.MatchFrame(b, &f2, &r2), &r2); got2 != got {
					t.Errorf("MatchFrame = %+v, Match = %+v", got2, got)
				}
			}
			if !got.Matched && r != (Result{}) {
				t.Errorf("no match but Result is %+v", r)
			}
		})
	}
}

func TestMatchPriority(t *testing.T) {
	frame := fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK})
	conn := Pattern{ID: 10, Kind: KindTCPConn, Conn: TCPConn{Local: fxHost4, Remote: fxPeer4}}
	// Matches every IPv4 frame to the host MAC.
	bm := func(id uint32, prio uint8) Pattern {
		return Pattern{ID: id, Priority: prio, Kind: KindBitmap, Bitmap: Bitmap{Bytes: append(append([]byte{}, fxMACHost...), make([]byte, 6)...), Mask: []byte{0x3f, 0x00}}}
	}
	tests := []struct {
		name   string
		ps     []Pattern
		wantID uint32
	}{
		{"equal priority: lowest index (conn first)", []Pattern{conn, bm(11, 0)}, 10},
		{"equal priority: lowest index (bitmap first)", []Pattern{bm(11, 0), conn}, 11},
		{"higher priority bitmap wins over earlier conn", []Pattern{conn, bm(11, 1)}, 11},
		{"higher priority conn wins over earlier bitmap", []Pattern{bm(11, 0), func() Pattern { c := conn; c.Priority = 3; return c }()}, 10},
		{"bitmaps: higher priority wins", []Pattern{bm(11, 1), bm(12, 2), bm(13, 2)}, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Compile(tc.ps, DefaultCapabilities())
			if err != nil {
				t.Fatal(err)
			}
			var f Frame
			var r Result
			if !m.MatchFrame(frame, &f, &r) {
				t.Fatalf("no match")
			}
			if r.Pattern.ID != tc.wantID || r.Pattern != m.Pattern(r.Index) {
				t.Errorf("matched id %d at %d, want id %d", r.Pattern.ID, r.Index, tc.wantID)
			}
		})
	}
}

// TestMatchBitmap covers masks, offsets and lengths.
func TestMatchBitmap(t *testing.T) {
	frame := make([]byte, 300)
	for i := range frame {
		frame[i] = byte(i * 7)
	}
	at := func(off, n int) []byte { return append([]byte(nil), frame[off:off+n]...) }
	ones := func(n int) []byte {
		m := make([]byte, (n+7)/8)
		for i := 0; i < n; i++ {
			m[i/8] |= 1 << (i % 8)
		}
		return m
	}
	tests := []struct {
		name string
		b    Bitmap
		want bool
	}{
		{"first byte", Bitmap{Offset: 0, Bytes: at(0, 1), Mask: []byte{1}}, true},
		{"3 bytes at 5", Bitmap{Offset: 5, Bytes: at(5, 3), Mask: ones(3)}, true},
		{"128 bytes at 100", Bitmap{Offset: 100, Bytes: at(100, 128), Mask: ones(128)}, true},
		{"256 bytes at 44, last byte in the frame", Bitmap{Offset: 44, Bytes: at(44, 256), Mask: ones(256)}, true},
		{"past the frame end", Bitmap{Offset: 45, Bytes: append(at(45, 255), 0), Mask: ones(256)}, false},
		{"unmasked byte differs", Bitmap{Offset: 10, Bytes: func() []byte { b := at(10, 16); b[3] ^= 0xff; return b }(), Mask: []byte{0xf7, 0xff}}, true},
		{"masked byte differs", Bitmap{Offset: 10, Bytes: func() []byte { b := at(10, 16); b[3] ^= 0xff; return b }(), Mask: []byte{0xff, 0xff}}, false},
		{"sparse mask across chunks", Bitmap{Offset: 3, Bytes: at(3, 40), Mask: []byte{0x81, 0, 0x10, 0, 0x80}}, true},
		{"sparse mask, last selected byte differs", Bitmap{Offset: 3, Bytes: func() []byte { b := at(3, 40); b[39] ^= 1; return b }(), Mask: []byte{0x81, 0, 0x10, 0, 0x80}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Alone, and among other bitmaps that share its chunks.
			for _, ps := range [][]Pattern{
				{{ID: 1, Kind: KindBitmap, Bitmap: tc.b}},
				{{ID: 2, Kind: KindBitmap, Bitmap: Bitmap{Offset: 0, Bytes: []byte{0xee}, Mask: []byte{1}}},
					{ID: 1, Kind: KindBitmap, Bitmap: tc.b},
					{ID: 3, Kind: KindBitmap, Bitmap: Bitmap{Offset: tc.b.Offset, Bytes: append(bytes.Clone(tc.b.Bytes[:len(tc.b.Bytes)-1]), ^tc.b.Bytes[len(tc.b.Bytes)-1]), Mask: ones(len(tc.b.Bytes))}}},
			} {
				m, err := Compile(ps, DefaultCapabilities())
				if err != nil {
					t.Fatal(err)
				}
				var f Frame
				var r Result
				got := m.MatchFrame(frame, &f, &r) && r.Pattern.ID == 1
				if got != tc.want {
					t.Errorf("%d patterns: match = %v, want %v", len(ps), got, tc.want)
				}
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	caps := DefaultCapabilities()
	small := caps
	small.MaxConnPatterns, small.MaxPatterns, small.MaxPasswordLen = 1, 3, 4
	conn := func(id uint32, local, remote string) Pattern {
		return Pattern{ID: id, Kind: KindTCPConn, Conn: TCPConn{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}}
	}
	okConn := conn(1, "198.18.0.2:40000", "198.18.0.1:443")
	bm := func(id uint32, off, n int, mask []byte) Pattern {
		return Pattern{ID: id, Kind: KindBitmap, Bitmap: Bitmap{Offset: off, Bytes: make([]byte, n), Mask: mask}}
	}
	tests := []struct {
		name  string
		caps  Capabilities
		ps    []Pattern
		want  string
		limit bool
	}{
		{"bitmap offset", caps, []Pattern{bm(7, 1600, 1, []byte{1})}, "pattern 7: bitmap.offset 1600 exceeds limit 1514", true},
		{"bitmap size", caps, []Pattern{bm(7, 0, 257, make([]byte, 33))}, "pattern 7: bitmap.bytes length 257 exceeds limit 256", true},
		{"bitmap negative offset", caps, []Pattern{bm(7, -1, 1, []byte{1})}, "pattern 7: bitmap.offset -1 is negative", false},
		{"bitmap mask too long", caps, []Pattern{bm(7, 0, 8, []byte{1, 0})}, "pattern 7: bitmap.mask length 2 exceeds 1 needed for 8 bytes", false},
		{"bitmap mask too short", caps, []Pattern{bm(7, 0, 9, []byte{1})}, "pattern 7: bitmap.mask length 1 is short of 2 needed for 9 bytes", false},
		{"bitmap mask past bytes", caps, []Pattern{bm(7, 0, 3, []byte{0x09})}, "pattern 7: bitmap.mask selects bytes past the 3 given", false},
		{"bitmap empty mask", caps, []Pattern{bm(7, 0, 3, []byte{0})}, "pattern 7: bitmap.mask selects no byte (it would match every frame)", false},
		{"bitmap empty", caps, []Pattern{bm(7, 0, 0, nil)}, "pattern 7: bitmap.bytes is empty", false},
		{"invalid kind", caps, []Pattern{{ID: 3}}, "pattern 3: kind 0 is invalid", false},
		{"section of another kind", caps, []Pattern{{ID: 3, Kind: KindMagic, Magic: Magic{MAC: [6]byte{2}}, Conn: okConn.Conn}}, "pattern 3: conn is set on a magic pattern", false},
		{"duplicate id", caps, []Pattern{okConn, bm(1, 0, 1, []byte{1})}, "pattern 1: duplicate id (patterns at index 0 and 1)", false},
		{"duplicate connection", caps, []Pattern{okConn, conn(2, "198.18.0.2:40000", "198.18.0.1:443")}, "pattern 2: conn duplicates pattern 1", false},
		{"mixed families", caps, []Pattern{conn(4, "198.18.0.2:1", "[2001:db8::1]:2")}, "pattern 4: conn: local 198.18.0.2 and remote 2001:db8::1 are of different families", false},
		{"missing address", caps, []Pattern{{ID: 4, Kind: KindTCPConn, Conn: TCPConn{Remote: fxPeer4}}}, "pattern 4: conn.local: address missing", false},
		{"unspecified remote", caps, []Pattern{conn(4, "198.18.0.2:1", "0.0.0.0:2")}, "pattern 4: conn.remote: address 0.0.0.0 is not a unicast address", false},
		{"IPv4-mapped", caps, []Pattern{conn(4, "[::ffff:198.18.0.2]:1", "[2001:db8::1]:2")}, "pattern 4: conn.local: address ::ffff:198.18.0.2 is IPv4-mapped; use the IPv4 form", false},
		{"port 0", caps, []Pattern{conn(4, "198.18.0.2:0", "198.18.0.1:2")}, "pattern 4: conn.local: port 0", false},
		{"VLAN 4095", caps, []Pattern{{ID: 5, Kind: KindTCPConn, Conn: TCPConn{Local: fxHost4, Remote: fxPeer4, VLAN: 4095}}}, "pattern 5: conn.vlan 4095 exceeds limit 4094", true},
		{"SYN family mismatch", caps, []Pattern{{ID: 6, Kind: KindTCPSYN, SYN: TCPSYN{Local: fxHost4, IPv6: true}}}, "pattern 6: syn: ipv6 true does not match the family of local 198.18.0.2", false},
		{"magic password length 5", caps, []Pattern{{ID: 8, Kind: KindMagic, Magic: Magic{MAC: [6]byte{2}, Password: make([]byte, 5)}}}, "pattern 8: magic.password length 5 is not 0, 4 or 6", false},
		{"magic password over the device limit", small, []Pattern{{ID: 8, Kind: KindMagic, Magic: Magic{MAC: [6]byte{2}, Password: make([]byte, 6)}}}, "pattern 8: magic.password length 6 exceeds limit 4", true},
		{"magic zero MAC", caps, []Pattern{{ID: 8, Kind: KindMagic}}, "pattern 8: magic.mac is zero", false},
		{"too many connections", small, []Pattern{okConn, conn(2, "198.18.0.2:40001", "198.18.0.1:443")}, "tcp-conn count 2 exceeds limit 1", true},
		{"too many patterns", small, []Pattern{okConn, bm(2, 0, 1, []byte{1}), bm(3, 0, 1, []byte{1}), bm(4, 0, 1, []byte{1})}, "pattern count 4 exceeds limit 3", true},
		{"invalid capabilities", Capabilities{MaxBitmapSize: 512}, nil, "capabilities: MaxBitmapSize 512 exceeds limit 256", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Compile(tc.ps, tc.caps)
			if err == nil {
				t.Fatalf("Compile succeeded (%d patterns), want %q", m.Len(), tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Compile error\n got %q\nwant %q", err, tc.want)
			}
			if errors.Is(err, ErrLimit) != tc.limit {
				t.Errorf("errors.Is(err, ErrLimit) = %v, want %v", !tc.limit, tc.limit)
			}
		})
	}
}

func TestCompileCopiesPatterns(t *testing.T) {
	ps := []Pattern{{ID: 1, Kind: KindBitmap, Bitmap: Bitmap{Offset: 0, Bytes: []byte{1}, Mask: []byte{1}}}}
	m, err := Compile(ps, DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	ps[0].Bitmap.Bytes[0] = 2
	ps[0].ID = 9
	frame := make([]byte, 60)
	frame[0] = 1
	var f Frame
	var r Result
	if !m.MatchFrame(frame, &f, &r) || r.Pattern.ID != 1 || r.Pattern.Bitmap.Bytes[0] != 1 {
		t.Errorf("the Matcher changed with the caller's slice: %+v", r.Pattern)
	}
}

func TestCapabilitiesValidate(t *testing.T) {
	if err := DefaultCapabilities().Validate(); err != nil {
		t.Errorf("DefaultCapabilities().Validate() = %v", err)
	}
	tests := []struct {
		name string
		edit func(*Capabilities)
		want string
	}{
		{"negative", func(c *Capabilities) { c.MaxSYNPatterns = -1 }, "capabilities: MaxSYNPatterns -1 is negative"},
		{"offset", func(c *Capabilities) { c.MaxBitmapOffset = 1515 }, "capabilities: MaxBitmapOffset 1515 exceeds limit 1514"},
		{"password", func(c *Capabilities) { c.MaxPasswordLen = 5 }, "capabilities: MaxPasswordLen 5 is not 0, 4 or 6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultCapabilities()
			tc.edit(&c)
			if err := c.Validate(); err == nil || err.Error() != tc.want {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestMatchAllocs proves Match and MatchFrame allocate nothing, for every
// kind and for no match.
func TestMatchAllocs(t *testing.T) {
	m, err := Compile(fxPatterns(), DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{
		fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK, opts: fxTSOpts(1, 2), payload: []byte("x")}),
		fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, flags: TCPFlagACK}),
		fxTCP(t, fxSeg{src: fxPeer4, dst: netip.AddrPortFrom(fxIP4Host, 22), flags: TCPFlagSYN}),
		fxARP(t, nil, fxIP4Host),
		fxUDP(t, fxPeer4, fxHost4, fxMagicPayload(fxMagicMAC2, fxPassword)),
		fxUDP(t, fxPeer4, fxHost4, []byte("nothing")),
	}
	var f Frame
	var r Result
	want := []bool{true, true, true, true, true, false}
	if n := testing.AllocsPerRun(200, func() {
		for i, b := range frames {
			if m.MatchFrame(b, &f, &r) != want[i] {
				t.Fatalf("frame %d: match %v", i, !want[i])
			}
		}
	}); n != 0 {
		t.Errorf("MatchFrame allocates %v times per run, want 0", n)
	}
	decoded := make([]Frame, len(frames))
	for i, b := range frames {
		decoded[i].Decode(b, DecodeOptions{})
	}
	if n := testing.AllocsPerRun(200, func() {
		for i := range decoded {
			m.Match(&decoded[i], &r)
		}
	}); n != 0 {
		t.Errorf("Match allocates %v times per run, want 0", n)
	}
}
