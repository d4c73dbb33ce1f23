package wakepattern

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fxSeedFrames are valid frames of every layer the decoder knows, for the
// fuzz seeds (more are in testdata/fuzz/<Name>/).
func fxSeedFrames(t testing.TB) [][]byte {
	return [][]byte{
		fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagSYN, opts: fxSYNOpts(1, 0)}),
		fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, vlans: []uint16{100}, flags: TCPFlagACK, opts: fxTSOpts(1, 2), payload: []byte("data")}),
		fxTCP(t, fxSeg{src: fxPeer6, dst: fxHost6, vlans: []uint16{100, 7}, flags: TCPFlagACK | TCPFlagFIN,
			ext: fxChain(ProtoHopByHop, fxExt(ProtoHopByHop, ProtoFragment, 0, 0, false), fxExt(ProtoFragment, ProtoTCP, 0, 0, true))}),
		fxTCP(t, fxSeg{src: fxPeer4, dst: fxHost4, flags: TCPFlagACK, fragOff: 10, payload: []byte("frag")}),
		fxARP(t, nil, fxIP4Host),
		fxNS(t, fxIP6Host),
		fxUDP(t, fxPeer4, fxHost4, fxMagicPayload(fxMagicMAC2, fxPassword)),
	}
}

// FuzzDecode: Decode never panics; on every status the offsets it reports
// lie within the frame; on OK the payload lies within the IP packet.
func FuzzDecode(f *testing.F) {
	for _, b := range fxSeedFrames(f) {
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, verify bool) {
		var fr Frame
		st := fr.Decode(b, DecodeOptions{VerifyChecksums: verify})
		if st != fr.Status || st >= numStatus {
			t.Fatalf("status %v / %v", st, fr.Status)
		}
		n := len(fr.Raw)
		for name, off := range map[string]uint16{"L3Off": fr.L3Off, "L4Off": fr.L4Off, "L4End": fr.L4End, "TSOff": fr.TSOff} {
			if int(off) > n {
				t.Fatalf("%s %d past the frame (%d bytes), status %v", name, off, n, st)
			}
		}
		if int(fr.PayloadOff)+int(fr.PayloadLen) > n {
			t.Fatalf("payload %d+%d past the frame (%d bytes)", fr.PayloadOff, fr.PayloadLen, n)
		}
		_ = fr.Payload()
		if st == OK && fr.IPProto == ProtoTCP && !fr.Fragment {
			if fr.PayloadOff < fr.L4Off || int(fr.PayloadOff)+int(fr.PayloadLen) != int(fr.L4End) {
				t.Fatalf("tcp payload %d+%d not at the end of the IP packet %d..%d", fr.PayloadOff, fr.PayloadLen, fr.L4Off, fr.L4End)
			}
			if fr.HasTS && int(fr.TSOff)+8 > int(fr.PayloadOff) {
				t.Fatalf("TSOff %d outside the TCP header", fr.TSOff)
			}
		}
		// Decoding again into a used Frame gives the same result.
		var again Frame
		again.Decode(b, DecodeOptions{VerifyChecksums: verify})
		fr.Decode(b, DecodeOptions{VerifyChecksums: verify})
		if diff := cmp.Diff(again, fr, fxFrameCmp...); diff != "" {
			t.Fatalf("Decode not repeatable (-fresh +reused):\n%s", diff)
		}
	})
}

// FuzzMatch: Match never panics on any frame against a fixed set, and a
// connection match really carries the pattern's addresses, ports and VLAN.
func FuzzMatch(f *testing.F) {
	for _, b := range fxSeedFrames(f) {
		f.Add(b)
	}
	m, err := Compile(fxPatterns(), DefaultCapabilities())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Frame
		var r Result
		if !m.MatchFrame(b, &fr, &r) {
			if r != (Result{}) {
				t.Fatalf("no match but Result %+v", r)
			}
			return
		}
		p := r.Pattern
		if p != m.Pattern(r.Index) {
			t.Fatalf("Result.Pattern is not pattern %d", r.Index)
		}
		switch p.Kind {
		case KindTCPConn:
			if !fr.IsTCP() {
				t.Fatalf("connection match on a frame that is not TCP (status %v)", fr.Status)
			}
			var vlan uint16
			if fr.NumVLAN > 0 {
				vlan = fr.VLAN[0]
			}
			got := TCPConn{Local: netip.AddrPortFrom(fr.DstIP, fr.DstPort), Remote: netip.AddrPortFrom(fr.SrcIP, fr.SrcPort), VLAN: vlan}
			if got != p.Conn {
				t.Fatalf("frame %+v matched pattern %+v", got, p.Conn)
			}
			if r.Seq != fr.Seq || int(r.SeqOff)+4 > len(b) || int(r.PayloadOff)+int(r.PayloadLen) > len(b) {
				t.Fatalf("result offsets out of the frame: %+v", r)
			}
		case KindTCPSYN:
			if !fr.IsTCP() || fr.TCPFlags&(TCPFlagSYN|TCPFlagACK|TCPFlagRST) != TCPFlagSYN || r.Class != ClassSYN {
				t.Fatalf("SYN match on flags %#x status %v", fr.TCPFlags, fr.Status)
			}
		}
	})
}

// FuzzParsePatterns: parsing never panics; whatever parses marshals and
// parses back to the same patterns.
func FuzzParsePatterns(f *testing.F) {
	seed, err := json.Marshal(fxPatterns())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`[{"id":1,"kind":"bitmap","bitmap":{"offset":12,"bytes":"0806","mask":"03"}}]`))
	f.Add([]byte(`[{"id":1,"kind":"tcp-syn","syn":{"local":"","ipv6":true}}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := ParsePatterns(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(ps)
		if err != nil {
			// Only an invalid kind can fail to marshal, and parsing
			// rejects those.
			t.Fatalf("marshal of parsed patterns: %v", err)
		}
		again, err := ParsePatterns(out)
		if err != nil {
			t.Fatalf("parse of %s: %v", out, err)
		}
		if diff := cmp.Diff(ps, again, fxPatternCmp); diff != "" {
			t.Fatalf("parse∘marshal∘parse differs (-first +second):\n%s", diff)
		}
		// Compile must not panic either; errors are fine.
		_, _ = Compile(ps, DefaultCapabilities())
	})
}
