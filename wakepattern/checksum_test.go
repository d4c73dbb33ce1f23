package wakepattern

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// naiveSum is the textbook RFC 1071 sum, folded after every word.
func naiveSum(b []byte, initial uint32) uint16 {
	s := uint32(Fold(initial))
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
		s = (s >> 16) + (s & 0xffff)
	}
	return uint16(s)
}

func TestSumRFC1071Example(t *testing.T) {
	// RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Fold(Sum(b, 0)); got != 0xddf2 {
		t.Errorf("Fold(Sum) = %#04x, want 0xddf2", got)
	}
	if got := Checksum(b, 0); got != ^uint16(0xddf2) {
		t.Errorf("Checksum = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
}

func TestSumMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		for _, initial := range []uint32{0, 0xffff, r.Uint32(), 0xffffffff} {
			if got, want := Fold(Sum(b, initial)), naiveSum(b, initial); got != want {
				t.Fatalf("len %d initial %#x: Fold(Sum) = %#04x, want %#04x", n, initial, got, want)
			}
		}
	}
	// A 64 KiB buffer of 0xff must not overflow the accumulator.
	big := make([]byte, 65535)
	for i := range big {
		big[i] = 0xff
	}
	if got, want := Fold(Sum(big, 0xffffffff)), naiveSum(big, 0xffffffff); got != want {
		t.Errorf("64 KiB of 0xff: %#04x, want %#04x", got, want)
	}
}

// sameOnesComplement reports whether a and b are the same one's-complement
// number (0x0000 and 0xffff are both zero).
func sameOnesComplement(a, b uint16) bool {
	return a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

func TestUpdateChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		b := make([]byte, 40)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%7 == 0 {
			clear(b[:8]) // exercise the all-zero edge
		}
		csum := Checksum(b, 0)
		off := 2 * r.IntN(18)
		old32 := binary.BigEndian.Uint32(b[off:])
		new32 := r.Uint32()
		if i%5 == 0 {
			new32 = 0
		}
		binary.BigEndian.PutUint32(b[off:], new32)
		if got, want := UpdateChecksum32(csum, old32, new32), Checksum(b, 0); !sameOnesComplement(got, want) {
			t.Fatalf("UpdateChecksum32 = %#04x, recomputed %#04x", got, want)
		}
		csum = Checksum(b, 0)
		old16 := binary.BigEndian.Uint16(b[off:])
		new16 := uint16(r.Uint32())
		binary.BigEndian.PutUint16(b[off:], new16)
		if got, want := UpdateChecksum16(csum, old16, new16), Checksum(b, 0); !sameOnesComplement(got, want) {
			t.Fatalf("UpdateChecksum16 = %#04x, recomputed %#04x", got, want)
		}
		// The updated checksum verifies.
		binary.BigEndian.PutUint16(b[38:], 0)
		c := Checksum(b, 0)
		binary.BigEndian.PutUint16(b[38:], c)
		if Fold(Sum(b, 0)) != 0xffff {
			t.Fatalf("checksum %#04x does not verify", c)
		}
	}
}

// TestPseudoHeaderSum checks the TCP checksum of gopacket-built segments.
func TestPseudoHeaderSum(t *testing.T) {
	for _, s := range []fxSeg{
		{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK, payload: []byte("odd")},
		{src: fxPeer6, dst: fxHost6, flags: TCPFlagACK | TCPFlagPSH, opts: fxTSOpts(1, 2), payload: []byte("even")},
	} {
		b := fxTCP(t, s)
		var f Frame
		if f.Decode(b, DecodeOptions{}) != OK {
			t.Fatalf("decode: %v", f.Status)
		}
		seg := append([]byte(nil), b[f.L4Off:f.L4End]...)
		want := binary.BigEndian.Uint16(seg[TCPChecksumOff:])
		seg[TCPChecksumOff], seg[TCPChecksumOff+1] = 0, 0
		got := Checksum(seg, PseudoHeaderSum(ProtoTCP, f.SrcIP, f.DstIP, len(seg)))
		if got != want {
			t.Errorf("%v: checksum %#04x, gopacket %#04x", f.SrcIP, got, want)
		}
	}
}

func TestChecksumAllocs(t *testing.T) {
	b := make([]byte, 1500)
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	var sink uint16
	if n := testing.AllocsPerRun(100, func() {
		sink ^= Checksum(b, PseudoHeaderSum(ProtoTCP, src, dst, len(b)))
		sink ^= UpdateChecksum32(sink, 1, 2) ^ UpdateChecksum16(sink, 3, 4)
	}); n != 0 {
		t.Errorf("checksum helpers allocate %v times per run, want 0", n)
	}
	_ = sink
}
