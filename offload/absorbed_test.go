package offload

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAbsorbedElsewhere: an exact pure ACK counted with
// AbsorbedElsewhere (the NIC's XDP fast path absorbed it) leaves the
// slot exactly as Receive of the same frame does — state, status,
// counters, TS.Recent — for every kind, and the following timer starts
// the next cycle instead of a retry.
func TestAbsorbedElsewhere(t *testing.T) {
	tests := []struct {
		name      string
		spec      Spec
		wantReply bool
	}{
		{"tcp probe", probeSpec(), true},
		{"payload", mqttSpec(), false},
		{"websocket ping", wsSpec(WSPing, []byte("p")), false},
		{"websocket pong", wsSpec(WSPong, []byte("p")), true},
		{"websocket responder", wsSpec(WSResponder, nil), true},
	}
	type view struct {
		State    State
		Status   Status
		Counters Counters
		Expected Expected
		Next     bool
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := func(elsewhere bool) view {
				e, clk := newTest(t, nil)
				out := &nopOutput{}
				snap := snap4()
				if err := e.Arm(1, snap, tt.spec); err != nil {
					t.Fatal(err)
				}
				clk.t, _ = e.NextDeadline()
				e.Fire(clk.t, out)
				exp, ok := e.Expected(1)
				if !ok || !exp.Live || exp.Reply != tt.wantReply || !exp.Timestamps {
					t.Fatalf("Expected = %+v, %v", exp, ok)
				}
				clk.t += 1e6
				if elsewhere {
					r, a := uint64(0), uint64(1)
					if exp.Reply {
						r, a = 1, 0
					}
					e.AbsorbedElsewhere(1, r, a, 4242)
					e.AbsorbedElsewhere(1, 0, 0, 1) // nothing absorbed: no change
				} else {
					f := peerFrame(t, snap, seg{seq: exp.RcvNxt, ack: exp.SndNxt, flags: flagsACK, ts: true, tsval: 4242})
					if v := e.Receive(1, f, out); v != Absorb {
						t.Fatalf("Receive = %v", v)
					}
				}
				var v view
				v.State, v.Status, v.Counters, _ = e.State(1)
				v.Expected, _ = e.Expected(1)
				// At the retry deadline: a retry only if the reply is
				// still due.
				clk.t += tt.spec.RetryInterval
				e.Fire(clk.t, out)
				_, _, c, _ := e.State(1)
				v.Next = c.Retries == 0
				return v
			}
			want, got := run(false), run(true)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("AbsorbedElsewhere vs Receive (-want +got):\n%s", diff)
			}
			if got.Expected.TSRecent != 4242 {
				t.Errorf("TS.Recent = %d, want 4242", got.Expected.TSRecent)
			}
			if got.Next != tt.wantReply {
				t.Errorf("no retry = %v, want %v (a reply ends the wait, an ACK does not)", got.Next, tt.wantReply)
			}
		})
	}
}

// TestAbsorbedElsewhereTSOnlyForward: TS.Recent never moves back, and an
// unknown slot is ignored; neither allocates.
func TestAbsorbedElsewhereTSOnlyForward(t *testing.T) {
	e, _ := newTest(t, nil)
	if err := e.Arm(1, snap4(), probeSpec()); err != nil {
		t.Fatal(err)
	}
	e.AbsorbedElsewhere(1, 0, 1, 100)
	e.AbsorbedElsewhere(1, 0, 1, 90)
	e.AbsorbedElsewhere(9, 1, 0, 1000)
	if exp, _ := e.Expected(1); exp.TSRecent != 100 {
		t.Errorf("TS.Recent = %d, want 100", exp.TSRecent)
	}
	if _, ok := e.Expected(9); ok {
		t.Error("Expected(9) ok for a slot never armed")
	}
	allocs := testing.AllocsPerRun(100, func() {
		e.AbsorbedElsewhere(1, 1, 1, 200)
		e.Expected(1)
	})
	if allocs != 0 {
		t.Errorf("AbsorbedElsewhere+Expected allocate %v times per run, want 0", allocs)
	}
}
