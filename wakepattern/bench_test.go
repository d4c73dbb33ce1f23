package wakepattern

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/standbynic/standbynic/internal/gopacketref"
)

// Benchmarks. Run them together, so the baselines are measured on the same
// machine in the same run:
//
//	go test -run '^$' -bench . -benchtime=200000x ./wakepattern/
//
// ns/frame is the time per frame including Decode.

// benchConnSet returns n IPv4 connection patterns (local 198.18.0.2 on
// distinct ports, remotes spread over 198.18.0.0/15 on port 443) and
// frames, each a keep-alive ACK with timestamps matching one of them,
// spread over the set so that lookups do not hit one cached slot.
func benchConnSet(b testing.TB, n int) ([]Pattern, [][]byte) {
	ps := make([]Pattern, n)
	for i := range ps {
		remote := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
		if i&0xffff < 2 {
			remote = netip.AddrFrom4([4]byte{198, 19, 255, byte(i)}) // avoid 198.18.0.{0,1} and .0.2
		}
		ps[i] = Pattern{ID: uint32(i + 1), Kind: KindTCPConn, Conn: TCPConn{
			Local:  netip.AddrPortFrom(fxIP4Host, uint16(1024+i%60000)),
			Remote: netip.AddrPortFrom(remote, 443),
		}}
	}
	return ps, benchKeepAlives(b, ps)
}

// benchKeepAlives returns 64 keep-alive ACKs (with timestamps) from the
// remote ends of connection patterns spread over ps.
func benchKeepAlives(b testing.TB, ps []Pattern) [][]byte {
	frames := make([][]byte, 64)
	for j := range frames {
		c := ps[(j*7919)%len(ps)].Conn
		frames[j] = fxTCP(b, fxSeg{src: c.Remote, dst: c.Local, seq: 1000, ack: 2000, flags: TCPFlagACK, opts: fxTSOpts(1, 2)})
	}
	return frames
}

// benchMatchFrames times MatchFrame over frames, each of which must match.
func benchMatchFrames(b *testing.B, ps []Pattern, frames [][]byte) {
	m, err := Compile(ps, DefaultCapabilities())
	if err != nil {
		b.Fatal(err)
	}
	var f Frame
	var r Result
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !m.MatchFrame(frames[i%len(frames)], &f, &r) {
			b.Fatal("no match")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

func BenchmarkMatchConn(b *testing.B) {
	for _, n := range []int{1, 64, 4096, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ps, frames := benchConnSet(b, n)
			benchMatchFrames(b, ps, frames)
		})
	}
}

// benchConnSet6 is benchConnSet for IPv6 (local 2001:db8::2, remotes
// 2001:db8::1:<i>): the frames take the general decode path.
func benchConnSet6(b testing.TB, n int) ([]Pattern, [][]byte) {
	ps := make([]Pattern, n)
	for i := range ps {
		r := fxIP6Peer.As16()
		binary.BigEndian.PutUint32(r[8:], 1)
		binary.BigEndian.PutUint32(r[12:], uint32(i))
		ps[i] = Pattern{ID: uint32(i + 1), Kind: KindTCPConn, Conn: TCPConn{
			Local:  netip.AddrPortFrom(fxIP6Host, uint16(1024+i%60000)),
			Remote: netip.AddrPortFrom(netip.AddrFrom16(r), 443),
		}}
	}
	return ps, benchKeepAlives(b, ps)
}

// BenchmarkMatchConnIPv6: MatchFrame on IPv6 keep-alives (the general
// decode path and the IPv6 table).
func BenchmarkMatchConnIPv6(b *testing.B) {
	for _, n := range []int{64, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ps, frames := benchConnSet6(b, n)
			benchMatchFrames(b, ps, frames)
		})
	}
}

// BenchmarkMatch: Match alone on frames decoded beforehand (the lookup
// reads the key from the frame).
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{64, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ps, frames := benchConnSet(b, n)
			m, err := Compile(ps, DefaultCapabilities())
			if err != nil {
				b.Fatal(err)
			}
			fs := make([]Frame, len(frames))
			for j := range fs {
				fs[j].Decode(frames[j], DecodeOptions{})
			}
			var r Result
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !m.Match(&fs[i%len(fs)], &r) {
					b.Fatal("no match")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
		})
	}
}

func benchConnMap(ps []Pattern) map[gopacketref.Key]int {
	m := make(map[gopacketref.Key]int, len(ps))
	for i, p := range ps {
		m[gopacketref.Key{Src: p.Conn.Remote.Addr(), Dst: p.Conn.Local.Addr(), SrcPort: p.Conn.Remote.Port(), DstPort: p.Conn.Local.Port()}] = i
	}
	return m
}

// BenchmarkBaselineNewPacketMap: gopacket.NewPacket (default options, all
// layers) and a Go map lookup on the 4-tuple (internal/gopacketref).
func BenchmarkBaselineNewPacketMap(b *testing.B) {
	for _, n := range []int{64, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ps, frames := benchConnSet(b, n)
			conns := benchConnMap(ps)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k, ok := gopacketref.NewPacketKey(frames[i%len(frames)])
				if !ok {
					b.Fatal("no TCP")
				}
				if _, ok := conns[k]; !ok {
					b.Fatal("no match")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
		})
	}
}

// BenchmarkBaselineDecodingLayerParserMap: gopacket's DecodingLayerParser
// with preallocated layers and a Go map lookup on the 4-tuple
// (internal/gopacketref).
func BenchmarkBaselineDecodingLayerParserMap(b *testing.B) {
	for _, n := range []int{64, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ps, frames := benchConnSet(b, n)
			conns := benchConnMap(ps)
			parser := gopacketref.NewParser()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var k gopacketref.Key
				isTCP, err := parser.Key(frames[i%len(frames)], &k)
				if err != nil {
					b.Fatal(err)
				}
				if _, ok := conns[k]; !ok || !isTCP {
					b.Fatal("no match")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
		})
	}
}

// benchBitmapSet returns n bitmap patterns of 128 bytes at offset 0 and a
// 1514-byte frame that matches none of them in the worst way: the patterns
// are the frame with one 8-byte word changed (pattern i changes word
// i%16 to a value unique to i), so the frame agrees with every pattern on
// 120 of its 128 bytes.
func benchBitmapSet(n int) ([]Pattern, []byte) {
	r := rand.New(rand.NewPCG(7, uint64(n)))
	frame := make([]byte, 1514)
	for i := range frame {
		frame[i] = byte(r.Uint32())
	}
	ps := make([]Pattern, n)
	for i := range ps {
		bs := append([]byte(nil), frame[:128]...)
		w := (i % 16) * 8
		binary.BigEndian.PutUint64(bs[w:], binary.BigEndian.Uint64(bs[w:])^uint64(i+1)<<8)
		mask := make([]byte, 16)
		for j := range mask {
			mask[j] = 0xff
		}
		ps[i] = Pattern{ID: uint32(i + 1), Kind: KindBitmap, Bitmap: Bitmap{Bytes: bs, Mask: mask}}
	}
	return ps, frame
}

// benchBitmapScattered returns n bitmap patterns of 128 random bytes at
// offsets 0, 8, 16, … (no structure shared between patterns, so each is
// its own group) and a random frame that matches none.
func benchBitmapScattered(n int) ([]Pattern, []byte) {
	r := rand.New(rand.NewPCG(8, uint64(n)))
	frame := make([]byte, 1514)
	for i := range frame {
		frame[i] = byte(r.Uint32())
	}
	ps := make([]Pattern, n)
	for i := range ps {
		bs := make([]byte, 128)
		for j := range bs {
			bs[j] = byte(r.Uint32())
		}
		mask := make([]byte, 16)
		for j := range mask {
			mask[j] = 0xff
		}
		ps[i] = Pattern{ID: uint32(i + 1), Kind: KindBitmap, Bitmap: Bitmap{Offset: (i * 8) % 1386, Bytes: bs, Mask: mask}}
	}
	return ps, frame
}

func benchBitmap(b *testing.B, ps []Pattern, frame []byte) {
	caps := DefaultCapabilities()
	caps.MaxBitmapPatterns = len(ps)
	caps.MaxPatterns = len(ps)
	m, err := Compile(ps, caps)
	if err != nil {
		b.Fatal(err)
	}
	var f Frame
	var r Result
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if m.MatchFrame(frame, &f, &r) {
			b.Fatal("unexpected match")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// BenchmarkMatchBitmap: n patterns of 128 bytes, worst case (the frame
// agrees with each pattern on all but one word and matches none).
func BenchmarkMatchBitmap(b *testing.B) {
	for _, n := range []int{1, 8, 64, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ps, frame := benchBitmapSet(n)
			benchBitmap(b, ps, frame)
		})
	}
}

// BenchmarkMatchBitmapScattered: n unrelated patterns of 128 bytes at
// distinct offsets (one hash probe per pattern), no match.
func BenchmarkMatchBitmapScattered(b *testing.B) {
	for _, n := range []int{8, 64, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ps, frame := benchBitmapScattered(n)
			benchBitmap(b, ps, frame)
		})
	}
}

// BenchmarkDecode: Decode alone, keep-alive ACK with timestamps.
func BenchmarkDecode(b *testing.B) {
	_, frames := benchConnSet(b, 64)
	var f Frame
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.Decode(frames[i%len(frames)], DecodeOptions{})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// TestBenchSetsMatch keeps the benchmark fixtures honest: every conn frame
// matches the pattern it was built from, and the bitmap frames match none
// but a one-word change makes them match.
func TestBenchSetsMatch(t *testing.T) {
	ps, frames := benchConnSet(t, 4096)
	m, err := Compile(ps, DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	var r Result
	for j, fr := range frames {
		if !m.MatchFrame(fr, &f, &r) || r.Pattern.Conn != ps[(j*7919)%len(ps)].Conn {
			t.Fatalf("frame %d: match %v %+v", j, r.Pattern != nil, r.Pattern)
		}
	}
	ps6, frames6 := benchConnSet6(t, 4096)
	if m, err = Compile(ps6, DefaultCapabilities()); err != nil {
		t.Fatal(err)
	}
	for j, fr := range frames6 {
		if !m.MatchFrame(fr, &f, &r) || r.Pattern.Conn != ps6[(j*7919)%len(ps6)].Conn {
			t.Fatalf("ipv6 frame %d: match %v %+v", j, r.Pattern != nil, r.Pattern)
		}
	}
	bps, frame := benchBitmapSet(64)
	caps := DefaultCapabilities()
	if m, err = Compile(bps, caps); err != nil {
		t.Fatal(err)
	}
	if m.MatchFrame(frame, &f, &r) {
		t.Fatalf("bitmap frame matches %d", r.Pattern.ID)
	}
	hit := append([]byte(nil), frame...)
	copy(hit, bps[37].Bitmap.Bytes)
	if !m.MatchFrame(hit, &f, &r) || r.Pattern.ID != 38 {
		t.Fatalf("pattern 38's bytes do not match it: %v", r.Pattern)
	}
}
