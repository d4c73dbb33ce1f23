package offload

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/wakepattern"
)

// TestTemplateMatchesGopacket checks every kind of frame the engine sends,
// on IPv4 and IPv6, with and without VLAN and timestamps, byte for byte
// against the same segment serialized by gopacket with ComputeChecksums.
// The values (seq, ack, TSval, TSecr, payload) are the ones the protocol
// demands, computed here independently; only the IPv4 ID and the
// WebSocket masking key (random by design) are read from the frame.
func TestTemplateMatchesGopacket(t *testing.T) {
	type kase struct {
		name string
		spec Spec
		// run drives the engine to send the frame under test at 10 s and
		// returns the segment it must be.
		run func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg
	}
	tsAt := func(snap Snapshot, at time.Duration) uint32 {
		return snap.Timestamps.Val + uint32(at/time.Millisecond)
	}
	fire := func(e *Engine, clk *fakeClock, out *recorder) {
		clk.t = 10 * time.Second
		e.Fire(clk.t, out)
	}
	wsCase := func(mode WSMode, op byte) func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg {
		return func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg {
			fire(e, clk, out)
			if len(out.sent) != 1 {
				t.Fatalf("sent %d frames, want 1", len(out.sent))
			}
			got := out.sent[0].Payload
			if len(got) < 6 {
				t.Fatalf("payload % x too short", got)
			}
			key := got[2:6]
			plain := []byte("keepalive")
			want := []byte{0x80 | op, 0x80 | byte(len(plain))}
			want = append(want, key...)
			for i, c := range plain {
				want = append(want, c^key[i%4])
			}
			return seg{seq: snap.SndNxt, ack: snap.RcvNxt, flags: flagsPSHACK, payload: want,
				ts: snap.Timestamps.Enabled, tsval: tsAt(snap, clk.t), tsecr: snap.Timestamps.Recent}
		}
	}
	cases := []kase{
		{"probe-0", probeSpec(), func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg {
			fire(e, clk, out)
			return seg{seq: snap.SndNxt - 1, ack: snap.RcvNxt, flags: flagsACK,
				ts: snap.Timestamps.Enabled, tsval: tsAt(snap, clk.t), tsecr: snap.Timestamps.Recent}
		}},
		{"probe-1", func() Spec { s := probeSpec(); s.Probe = ProbeOneByte; return s }(), func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg {
			fire(e, clk, out)
			return seg{seq: snap.SndNxt - 1, ack: snap.RcvNxt, flags: flagsACK, payload: []byte{0},
				ts: snap.Timestamps.Enabled, tsval: tsAt(snap, clk.t), tsecr: snap.Timestamps.Recent}
		}},
		{"payload", mqttSpec(), func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg {
			fire(e, clk, out)
			return seg{seq: snap.SndNxt, ack: snap.RcvNxt, flags: flagsPSHACK, payload: []byte{0xc0, 0},
				ts: snap.Timestamps.Enabled, tsval: tsAt(snap, clk.t), tsecr: snap.Timestamps.Recent}
		}},
		{"ws-ping", wsSpec(WSPing, []byte("keepalive")), wsCase(WSPing, wsOpPing)},
		{"ws-pong", wsSpec(WSPong, []byte("keepalive")), wsCase(WSPong, wsOpPong)},
		{"ack-of-reply", mqttSpec(), func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg {
			fire(e, clk, out)
			out.reset()
			clk.t += 300 * time.Millisecond
			f := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt + 2, flags: flagsPSHACK, payload: []byte{0xd0, 0},
				ts: snap.Timestamps.Enabled, tsval: 9000, tsecr: tsAt(snap, 10*time.Second)})
			if v := e.Receive(1, f, out); v != Answer {
				t.Fatalf("Receive(PINGRESP) = %v, want answer", v)
			}
			tsecr := snap.Timestamps.Recent
			if snap.Timestamps.Enabled {
				tsecr = 9000
			}
			return seg{seq: snap.SndNxt + 2, ack: snap.RcvNxt + 2, flags: flagsACK,
				ts: snap.Timestamps.Enabled, tsval: tsAt(snap, clk.t), tsecr: tsecr}
		}},
		{"challenge-ack", probeSpec(), func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg {
			clk.t = 10 * time.Second
			f := peerFrame(t, snap, seg{seq: snap.RcvNxt + 100, flags: wakepattern.TCPFlagRST})
			if v := e.Receive(1, f, out); v != Answer {
				t.Fatalf("Receive(in-window RST) = %v, want answer", v)
			}
			return seg{seq: snap.SndNxt, ack: snap.RcvNxt, flags: flagsACK,
				ts: snap.Timestamps.Enabled, tsval: tsAt(snap, clk.t), tsecr: snap.Timestamps.Recent}
		}},
		{"ws-pong-answer", wsSpec(WSResponder, nil), func(t *testing.T, e *Engine, clk *fakeClock, snap Snapshot, out *recorder) seg {
			clk.t = 10 * time.Second
			ping := wsServer(wsOpPing, []byte("srv"))
			f := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt, flags: flagsPSHACK, payload: ping,
				ts: snap.Timestamps.Enabled, tsval: 50, tsecr: 1})
			if v := e.Receive(1, f, out); v != Answer {
				t.Fatalf("Receive(Ping) = %v, want answer", v)
			}
			got := out.sent[0].Payload
			if len(got) < 6 {
				t.Fatalf("payload % x too short", got)
			}
			key := got[2:6]
			want := append([]byte{0x8a, 0x83}, key...)
			for i, c := range []byte("srv") {
				want = append(want, c^key[i%4])
			}
			tsecr := snap.Timestamps.Recent
			if snap.Timestamps.Enabled {
				tsecr = 50
			}
			return seg{seq: snap.SndNxt, ack: snap.RcvNxt + uint32(len(ping)), flags: flagsPSHACK, payload: want,
				ts: snap.Timestamps.Enabled, tsval: tsAt(snap, clk.t), tsecr: tsecr}
		}},
	}
	for _, c := range cases {
		for _, v6 := range []bool{false, true} {
			for _, vlan := range []uint16{0, 100} {
				for _, ts := range []bool{false, true} {
					name := fmt.Sprintf("%s/v6=%v/vlan=%d/ts=%v", c.name, v6, vlan, ts)
					t.Run(name, func(t *testing.T) {
						snap := snap4()
						if v6 {
							snap = snap6()
						}
						snap.VLAN = vlan
						snap.Timestamps.Enabled = ts
						// Near the wrap, so patching crosses carries.
						snap.SndNxt, snap.RcvNxt = 0xffff_fff0, 0xffff_ffff
						e, clk := newTest(t, nil)
						out := &recorder{t: t, clock: clk}
						if err := e.Arm(1, snap, c.spec); err != nil {
							t.Fatal(err)
						}
						want := c.run(t, e, clk, snap, out)
						if len(out.frames) != 1 {
							t.Fatalf("sent %d frames, want 1", len(out.frames))
						}
						got := out.frames[0]
						var id uint16
						if !v6 {
							id = binary.BigEndian.Uint16(got[ethLen+int(min(vlan, 1))*vlanLen+ipv4IDOff:])
						}
						want.window = uint16(snap.RcvWnd >> snap.RcvWScale)
						wantFrame := serialize(t, snap, false, want, id)
						if diff := cmp.Diff(wantFrame, got); diff != "" {
							t.Errorf("frame (-gopacket +engine):\n%s\ngopacket % x\nengine   % x", diff, wantFrame, got)
						}
					})
				}
			}
		}
	}
}
