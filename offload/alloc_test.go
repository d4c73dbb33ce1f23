package offload

import (
	"encoding/binary"
	"testing"

	"github.com/standbynic/standbynic/wakepattern"
)

// repatch rewrites the seq and ack of a decoded peer frame in place and
// decodes it again (the engine does not verify checksums).
func repatch(f *wakepattern.Frame, seq, ack uint32) {
	raw := f.Raw
	binary.BigEndian.PutUint32(raw[f.L4Off+4:], seq)
	binary.BigEndian.PutUint32(raw[f.L4Off+8:], ack)
	f.Decode(raw, wakepattern.DecodeOptions{})
}

func TestAllocsProbe(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &nopOutput{}
	snap := snap4()
	if err := e.Arm(1, snap, probeSpec()); err != nil {
		t.Fatal(err)
	}
	reply := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt, flags: flagsACK, ts: true, tsval: 100})
	fire := testing.AllocsPerRun(200, func() {
		clk.t, _ = e.NextDeadline()
		if e.Fire(clk.t, out) != 1 {
			t.Fatal("no keep-alive fired")
		}
		clk.t += 1e6
		if v := e.Receive(1, reply, out); v != Absorb {
			t.Fatalf("Receive = %v", v)
		}
	})
	if fire != 0 {
		t.Errorf("Fire+Receive (probe) allocates %v times per run, want 0", fire)
	}
}

func TestAllocsWebSocket(t *testing.T) {
	e, clk := newTest(t, &Config{BookBytes: 1 << 16, BookEntries: 1024})
	out := &nopOutput{}
	snap := snap4()
	snap.Timestamps.Enabled = false
	if err := e.Arm(1, snap, wsSpec(WSPing, []byte("hb"))); err != nil {
		t.Fatal(err)
	}
	// Slot 2 on its own engine, never fired: only the server's Pings drive it.
	e2, _ := newTest(t, &Config{BookBytes: 1 << 16, BookEntries: 1024})
	if err := e2.Arm(2, snap, wsSpec(WSResponder, nil)); err != nil {
		t.Fatal(err)
	}
	pong := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt, flags: flagsPSHACK, payload: wsServer(wsOpPong, []byte("hb"))})
	ping := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt, flags: flagsPSHACK, payload: wsServer(wsOpPing, []byte("srv"))})
	snd1, rcv1 := snap.SndNxt, snap.RcvNxt
	snd2, rcv2 := snap.SndNxt, snap.RcvNxt
	allocs := testing.AllocsPerRun(100, func() {
		// Slot 1: its Ping goes out, the Pong is absorbed and ACKed.
		clk.t, _ = e.NextDeadline()
		e.Fire(clk.t, out)
		snd1 += 8
		repatch(pong, rcv1, snd1)
		if v := e.Receive(1, pong, out); v != Answer {
			t.Fatalf("Receive(Pong) = %v", v)
		}
		rcv1 += 4
		// Slot 2: the server's Ping is answered with a Pong.
		repatch(ping, rcv2, snd2)
		if v := e2.Receive(2, ping, out); v != Answer {
			t.Fatalf("Receive(Ping) = %v", v)
		}
		rcv2 += 5
		snd2 += 9
	})
	if allocs != 0 {
		t.Errorf("WebSocket keep-alive, Pong absorbed, Ping answered: %v allocations per run, want 0", allocs)
	}
}
