package offload

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/wakepattern"
)

// fuzzSpecs are the slot kinds FuzzClassify arms, chosen by the first
// input byte.
var fuzzSpecs = []Spec{
	probeSpec(),
	func() Spec { s := probeSpec(); s.Probe = ProbeOneByte; return s }(),
	mqttSpec(),
	wsSpec(WSPing, []byte("hb")),
	wsSpec(WSPong, nil),
	wsSpec(WSResponder, nil),
}

// FuzzClassify feeds a sequence of segments from the peer into an armed
// slot of each kind. The input encodes, per segment: flags, a seq offset
// from RCV.NXT and an ack offset from SND.NXT (signed bytes), a TSval
// offset from TS.Recent, a payload length, the payload, and a clock step.
// Invariants: no panic; every verdict valid; every frame sent decodes with
// correct checksums (recorder); at most one wake, and only with a valid
// reason; the books account for every byte by which SND.NXT and RCV.NXT
// moved.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{0, 0x10, 0, 0, 1, 0, 10})
	f.Add([]byte{2, 0x18, 0, 0, 1, 2, 0xd0, 0x00, 5})
	f.Add([]byte{3, 0x18, 0, 8, 1, 4, 0x8a, 0x02, 'h', 'b', 5})
	f.Add([]byte{5, 0x18, 0, 0, 1, 1, 0x89, 1, 0x18, 1, 0, 1, 2, 0x03, 'a', 1, 0x18, 3, 0, 1, 2, 'b', 'c', 1})
	f.Add([]byte{0, 0x04, 5, 0, 0, 0, 1, 0x04, 5, 0, 0, 0, 1})
	f.Add([]byte{1, 0x10, 0xff, 0, 1, 1, 0, 100})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		spec := fuzzSpecs[int(in[0])%len(fuzzSpecs)]
		in = in[1:]
		e, clk := newTest(t, &Config{BookBytes: 64, BookEntries: 8, WSBuffer: 16})
		out := &recorder{t: t, clock: clk}
		snap := snap4()
		snap.SndNxt, snap.RcvNxt = 0xffff_fff0, 0xffff_fffa
		snap.Timestamps.Recent = 0xffff_ff00
		if err := e.Arm(1, snap, spec); err != nil {
			t.Fatal(err)
		}
		for n := 0; len(in) >= 6 && n < 32; n++ {
			flags, dseq, dack, dts, plen := in[0], int8(in[1]), int8(in[2]), int8(in[3]), int(in[4])
			in = in[5:]
			plen = min(plen, len(in)-1)
			payload := in[:plen]
			step := time.Duration(in[plen]) * 100 * time.Millisecond
			in = in[plen+1:]

			i := e.index[1]
			s := e.slotAt(i)
			sg := seg{
				seq: s.rcvNxt + uint32(int32(dseq)), ack: s.sndNxt + uint32(int32(dack)),
				flags: flags, payload: payload,
				ts: dts != 0, tsval: s.tsRecent + uint32(int32(dts)), tsecr: 1,
			}
			fr := peerFrame(t, snap, sg)
			v := e.Receive(1, fr, out)
			if v == verdictInvalid || v >= numVerdict {
				t.Fatalf("verdict %v", v)
			}
			if v == Wake && s.state != StateWoken && s.state != StateDead {
				t.Fatalf("Wake verdict in state %v", s.state)
			}
			clk.t += step
			e.Fire(clk.t, out)
		}
		// A frame of another connection is never the slot's.
		var other wakepattern.Frame
		other.Decode(serialize(t, snap, false, seg{seq: 1, flags: wakepattern.TCPFlagRST}, 1), wakepattern.DecodeOptions{})
		if v := e.Receive(1, &other, out); v != Drop && v != Wake {
			t.Fatalf("our own frame looped back: verdict %v", v)
		}
		if len(out.wakes) > 1 {
			t.Fatalf("%d wakes", len(out.wakes))
		}
		for _, w := range out.wakes {
			if w.Reason == reasonInvalid || w.Reason >= numReason {
				t.Fatalf("wake reason %v", w.Reason)
			}
		}
		r, err := e.Disarm(1)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.RcvNxt-snap.RcvNxt, uint32(len(r.Books.Absorbed)); got != want {
			t.Fatalf("RCV.NXT moved by %d, books absorbed %d", got, want)
		}
		if got, want := r.SndNxt-snap.SndNxt, uint32(len(r.Books.Sent)); got != want {
			t.Fatalf("SND.NXT moved by %d, books sent %d", got, want)
		}
		if seqGT(r.SndUna, r.SndNxt) || seqLT(r.SndUna, snap.SndNxt) {
			t.Fatalf("SND.UNA %d outside [%d, %d]", r.SndUna, snap.SndNxt, r.SndNxt)
		}
		var sum uint32
		for _, en := range r.Books.Entries {
			if en.Dir == DirAbsorbed {
				sum += en.Len
			}
		}
		if sum != uint32(len(r.Books.Absorbed)) {
			t.Fatalf("absorbed entries sum to %d, books hold %d", sum, len(r.Books.Absorbed))
		}
	})
}

// FuzzParseSpec: ParseSpec never panics; what it accepts is valid and
// survives MarshalJSON → ParseSpec unchanged.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(`{"kind":"payload","interval":"30s","retry_interval":"3s","retry_count":3,"tolerance":"1s","payload":{"request":"c000","reply":"d000","reply_mask":"f0ff"}}`))
	f.Add([]byte(`{"kind":"websocket","interval":"1m","retry_interval":"5s","retry_count":0,"websocket":{"mode":"pong","payload":""}}`))
	f.Add([]byte(`{"kind":"tcp-probe","interval":"15m","retry_interval":"1s","retry_count":16,"probe":"one-byte"}`))
	f.Add([]byte(`{"kind":"websocket","interval":"10s","retry_interval":"2s","websocket":{"mode":"responder"}}`))
	f.Add([]byte(`{"kind":"tcp-probe","interval":"10m","first_due":"3m20s","retry_interval":"30s","retry_count":3}`))
	f.Add([]byte(`{"kind":"payload","interval":"10s","retry_interval":"1s","retry_count":2,"payload":{"request":"4b410000","reply":"4f4b","seq":{"offset":2,"len":2,"start":255},"tokens":{"offset":0,"len":2,"stream":"74317432"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpec(b)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ParseSpec accepted an invalid spec: %v", err)
		}
		j, err := s.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSpec(j)
		if err != nil {
			t.Fatalf("ParseSpec(MarshalJSON()) = %v for %s", err, j)
		}
		if diff := cmp.Diff(s, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
