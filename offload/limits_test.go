package offload

import (
	"net/netip"
	"testing"
	"time"
)

func TestBooksFullWakes(t *testing.T) {
	// Room for two PINGREQs (4 bytes), not three.
	e, clk := newTest(t, &Config{BookBytes: 5})
	out := &recorder{t: t, clock: clk}
	snap := snap4()
	if err := e.Arm(1, snap, mqttSpec()); err != nil {
		t.Fatal(err)
	}
	rcv := snap.RcvNxt
	for cycle := 1; cycle <= 2; cycle++ {
		runUntil(e, clk, out, time.Duration(cycle)*10*time.Second)
		f := peerFrame(t, snap, seg{seq: rcv, ack: snap.SndNxt + uint32(2*cycle), flags: flagsPSHACK, payload: []byte{0xd0, 0}, ts: true, tsval: 100})
		if v := e.Receive(1, f, out); v != Answer {
			t.Fatalf("cycle %d: PINGRESP = %v", cycle, v)
		}
		rcv += 2
	}
	runUntil(e, clk, out, 30*time.Second)
	if len(out.wakes) != 1 || out.wakes[0].Reason != ReasonBooksFull || out.wakes[0].At != 30*time.Second {
		t.Fatalf("wakes %+v, want books-full at 30s", out.wakes)
	}
	r, _ := e.Disarm(1)
	if r.State != StateWoken || len(r.Books.Sent) != 4 || len(r.Books.Absorbed) != 4 || r.SndNxt != snap.SndNxt+4 {
		t.Errorf("report %+v", r)
	}
}

func TestWSBufferFullWakes(t *testing.T) {
	e, clk := newTest(t, &Config{WSBuffer: 4})
	out := &recorder{t: t, clock: clk}
	snap := snap4()
	if err := e.Arm(1, snap, wsSpec(WSResponder, nil)); err != nil {
		t.Fatal(err)
	}
	// A Ping of 10 bytes arrives 3 bytes at a time: 3 fit, 6 do not.
	ping := wsServer(wsOpPing, []byte("0123456789"))
	f := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt, flags: flagsPSHACK, payload: ping[:3], ts: true, tsval: 100})
	if v := e.Receive(1, f, out); v != Answer || len(out.sent) != 1 || len(out.sent[0].Payload) != 0 {
		t.Fatalf("first part: %v, sent %+v; want a pure ACK", v, out.sent)
	}
	f = peerFrame(t, snap, seg{seq: snap.RcvNxt + 3, ack: snap.SndNxt, flags: flagsPSHACK, payload: ping[3:6], ts: true, tsval: 100})
	if v := e.Receive(1, f, out); v != Wake || len(out.wakes) != 1 || out.wakes[0].Reason != ReasonBufferFull {
		t.Fatalf("second part: %v, wakes %+v; want buffer-full", v, out.wakes)
	}
	r, _ := e.Disarm(1)
	if string(r.Books.Absorbed) != string(ping[:3]) || r.RcvNxt != snap.RcvNxt+3 {
		t.Errorf("books %q rcv %d: the first part only is absorbed", r.Books.Absorbed, r.RcvNxt)
	}
}

// TestResponderLiveness: a responder slot answers the server's Ping and
// checks liveness with probes; the ACK of its Pong is the exact reply.
func TestResponderLiveness(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	snap := snap6()
	spec := wsSpec(WSResponder, nil)
	spec.Probe = ProbeOneByte
	if err := e.Arm(1, snap, spec); err != nil {
		t.Fatal(err)
	}
	runUntil(e, clk, out, 10*time.Second)
	if len(out.sent) != 1 || out.sent[0].Seq != snap.SndNxt-1 || len(out.sent[0].Payload) != 1 {
		t.Fatalf("sent %+v, want a one-byte probe", out.sent)
	}
	// The server's answer to the probe carries a Ping.
	ping := wsServer(wsOpPing, []byte{7, 7})
	f := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt, flags: flagsPSHACK, payload: ping, ts: true, tsval: 100})
	out.reset()
	if v := e.Receive(1, f, out); v != Answer || len(out.sent) != 1 {
		t.Fatalf("Receive(Ping) = %v, sent %d", v, len(out.sent))
	}
	if op, p := unmaskWS(t, out.sent[0].Payload); op != wsOpPong || string(p) != "\x07\x07" {
		t.Fatalf("answer op %x payload % x", op, p)
	}
	st, _, _, _ := e.State(1)
	if st != StateWaitingReply {
		t.Fatalf("state %v: a Ping is not the probe's reply", st)
	}
	f = peerFrame(t, snap, seg{seq: snap.RcvNxt + 4, ack: snap.SndNxt + 8, flags: flagsACK, ts: true, tsval: 101})
	if v := e.Receive(1, f, out); v != Absorb {
		t.Fatalf("Receive(ACK of Pong) = %v", v)
	}
	st, status, c, _ := e.State(1)
	if st != StateArmed || status != StatusNormal || c.RepliesAbsorbed != 1 || c.PingsAnswered != 1 {
		t.Fatalf("state %v status %v counters %+v", st, status, c)
	}
}

// TestToleranceBatches: two slots due 3 s apart share one radio wake-up
// when the tolerance covers the gap, and take two without it.
func TestToleranceBatches(t *testing.T) {
	for _, c := range []struct {
		tol         time.Duration
		wantBatches uint64
	}{{0, 2}, {4 * time.Second, 1}} {
		e, clk := newTest(t, nil)
		out := &recorder{t: t, clock: clk}
		spec := probeSpec()
		spec.Interval = 20 * time.Second
		spec.RetryInterval = 10 * time.Second
		spec.Tolerance = c.tol
		if err := e.Arm(1, snap4(), spec); err != nil {
			t.Fatal(err)
		}
		clk.t = 3 * time.Second
		s2 := snap4()
		s2.Local = netip.MustParseAddrPort("198.18.0.3:40001")
		if err := e.Arm(2, s2, spec); err != nil {
			t.Fatal(err)
		}
		runUntil(e, clk, out, 24*time.Second)
		if got := e.Stats().Sched.Batches; got != c.wantBatches || len(out.sent) != 2 {
			t.Errorf("tolerance %v: %d batches and %d probes, want %d and 2", c.tol, got, len(out.sent), c.wantBatches)
		}
	}
}
