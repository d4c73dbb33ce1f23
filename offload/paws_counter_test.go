package offload

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDroppedPAWSExactCount feeds segments one by one and checks the
// DroppedPAWS counter after each: every segment whose TSval is older than
// TS.Recent counts once, whether its duplicate ACK is sent or
// rate-limited, before the window check (an old TSval out of the window
// is a PAWS drop, not an out-of-window one); a TSval equal to TS.Recent,
// a newer one, a segment without the option and a slot without
// timestamps never count; TS.Recent follows the accepted segments.
func TestDroppedPAWSExactCount(t *testing.T) {
	const rcv, snd = 5000, 1000
	snap := snap4() // TS.Recent 42, RCV.WND 65535<<2
	type step struct {
		name    string
		seg     seg
		want    Verdict
		paws    uint64 // DroppedPAWS after the step
		window  uint64 // DroppedOutOfWindow after the step
		advance time.Duration
	}
	tsSeg := func(seq uint32, tsval uint32) seg {
		return seg{seq: seq, ack: snd, flags: flagsACK, ts: true, tsval: tsval}
	}
	steps := []step{
		{"older TSval: dup ACK", tsSeg(rcv, 41), Answer, 1, 0, time.Second},
		{"older TSval, ACK rate-limited: still counted", tsSeg(rcv, 10), Drop, 2, 0, time.Millisecond},
		{"TSval = TS.Recent: accepted", tsSeg(rcv, 42), Absorb, 2, 0, time.Second},
		{"no timestamp option: accepted", seg{seq: rcv, ack: snd, flags: flagsACK}, Absorb, 2, 0, time.Second},
		{"older across the wrap", tsSeg(rcv, 42+0x8000_0001), Answer, 3, 0, time.Second},
		{"newer TSval: accepted, TS.Recent = 100", tsSeg(rcv, 100), Absorb, 3, 0, time.Second},
		{"older than the new TS.Recent", tsSeg(rcv, 99), Answer, 4, 0, time.Second},
		{"the old TS.Recent is older now", tsSeg(rcv, 42), Answer, 5, 0, time.Second},
		{"out of the window, fresh TSval: not PAWS", tsSeg(rcv+65535<<3, 200), Answer, 5, 1, time.Second},
		{"out of the window, old TSval: PAWS first", tsSeg(rcv+65535<<3, 50), Answer, 6, 1, time.Second},
	}
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	if err := e.Arm(1, snap, probeSpec()); err != nil {
		t.Fatal(err)
	}
	clk.t = 5 * time.Second
	for _, s := range steps {
		clk.t += s.advance
		v := e.Receive(1, peerFrame(t, snap, s.seg), out)
		_, _, c, _ := e.State(1)
		if v != s.want || c.DroppedPAWS != s.paws || c.DroppedOutOfWindow != s.window {
			t.Errorf("%s: verdict %v, dropped_paws %d, dropped_out_of_window %d; want %v, %d, %d",
				s.name, v, c.DroppedPAWS, c.DroppedOutOfWindow, s.want, s.paws, s.window)
		}
	}
	r, err := e.Disarm(1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Counters.DroppedPAWS != 6 {
		t.Errorf("report dropped_paws %d, want 6", r.Counters.DroppedPAWS)
	}

	// A connection without timestamps has no PAWS: an "old" TSval on a
	// segment counts nothing.
	noTS := snap4()
	noTS.Timestamps = Timestamps{}
	if err := e.Arm(2, noTS, probeSpec()); err != nil {
		t.Fatal(err)
	}
	clk.t += time.Second
	if v := e.Receive(2, peerFrame(t, noTS, tsSeg(rcv, 1)), out); v != Absorb {
		t.Errorf("slot without timestamps: verdict %v, want absorb", v)
	}
	_, _, c, _ := e.State(2)
	if diff := cmp.Diff(uint64(0), c.DroppedPAWS); diff != "" {
		t.Errorf("slot without timestamps: dropped_paws (-want +got):\n%s", diff)
	}
}
