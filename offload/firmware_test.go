package offload

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/wakepattern"
)

// fire advances clk to at and fires the engine.
func fireAt(e *Engine, clk *fakeClock, at time.Duration, out Output) {
	clk.t = at
	e.Fire(at, out)
}

// TestFirmwareReplay: a Replay engine sends the same bytes every period
// (Broadcom mkeep_alive), where the default engine advances the IP ID
// and the TSval; a keep-alive that would advance the stream is refused.
func TestFirmwareReplay(t *testing.T) {
	for _, replay := range []bool{false, true} {
		e, clk := newTest(t, &Config{Firmware: Firmware{Replay: replay}})
		rec := &recorder{t: t, clock: clk}
		snap := snap4()
		if err := e.Arm(1, snap, probeSpec()); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			at := time.Duration(i) * 10 * time.Second
			fireAt(e, clk, at, rec)
			// The exact reply: the next cycle is due an interval later.
			f := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt, flags: wakepattern.TCPFlagACK, ts: true, tsval: 100 + uint32(i), tsecr: 1})
			if v := e.Receive(1, f, rec); v != Absorb {
				t.Fatalf("replay %v: reply %d: verdict %v, want absorb", replay, i, v)
			}
		}
		if len(rec.frames) != 3 {
			t.Fatalf("replay %v: %d frames sent, want 3", replay, len(rec.frames))
		}
		same := bytes.Equal(rec.frames[0], rec.frames[1]) && bytes.Equal(rec.frames[1], rec.frames[2])
		if same != replay {
			t.Errorf("replay %v: frames identical = %v\n% x\n% x", replay, same, rec.frames[0], rec.frames[2])
		}
		if replay && rec.sent[2].TSval != snap.Timestamps.Val {
			t.Errorf("replayed TSval %d, want the armed %d", rec.sent[2].TSval, snap.Timestamps.Val)
		}
		if !replay && rec.sent[2].TSval == rec.sent[0].TSval {
			t.Errorf("patched TSval did not advance: %d", rec.sent[2].TSval)
		}
	}
	e, _ := newTest(t, &Config{Firmware: Firmware{Replay: true}})
	if err := e.Arm(1, snap4(), mqttSpec()); !errors.Is(err, ErrReplayAdvances) {
		t.Errorf("Arm(payload) on a replay engine: %v, want ErrReplayAdvances", err)
	}
}

// TestFirmwareNoTimestamps: the probe carries no TCP option although the
// connection negotiated timestamps (Android), and is still a valid frame.
func TestFirmwareNoTimestamps(t *testing.T) {
	e, clk := newTest(t, &Config{Firmware: Firmware{NoTimestamps: true}})
	rec := &recorder{t: t, clock: clk}
	if err := e.Arm(1, snap4(), probeSpec()); err != nil {
		t.Fatal(err)
	}
	fireAt(e, clk, 10*time.Second, rec)
	var f wakepattern.Frame
	if st := f.Decode(rec.frames[0], wakepattern.DecodeOptions{VerifyChecksums: true}); st != wakepattern.OK {
		t.Fatalf("decode: %v", st)
	}
	if f.HasTS {
		t.Errorf("probe carries a timestamp option")
	}
	if hl := int(rec.frames[0][14+20+12]>>4) * 4; hl != 20 {
		t.Errorf("TCP header %d bytes, want 20 (no options)", hl)
	}
	if f.Seq != snap4().SndNxt-1 || f.Ack != snap4().RcvNxt {
		t.Errorf("probe seq %d ack %d", f.Seq, f.Ack)
	}
	if r, _ := e.Disarm(1); r.TSRecent != snap4().Timestamps.Recent {
		t.Errorf("report TSRecent %d, want the armed %d", r.TSRecent, snap4().Timestamps.Recent)
	}
}

// TestFirmwareDropOnly: under an APF-style filter the exact reply is the
// only segment consumed; every other one wakes the host, nothing is
// answered.
func TestFirmwareDropOnly(t *testing.T) {
	snap := snap4()
	rcv, snd := snap.RcvNxt, snap.SndNxt
	const ack = wakepattern.TCPFlagACK
	for _, tc := range []struct {
		name   string
		seg    seg
		want   Verdict
		reason Reason
	}{
		{"exact reply", seg{seq: rcv, ack: snd, flags: ack}, Absorb, 0},
		{"exact reply with timestamps", seg{seq: rcv, ack: snd, flags: ack, ts: true, tsval: 50, tsecr: 1}, Absorb, 0},
		{"push", seg{seq: rcv, ack: snd, flags: ack | wakepattern.TCPFlagPSH, payload: []byte("push")}, Wake, ReasonData},
		{"FIN", seg{seq: rcv, ack: snd, flags: ack | wakepattern.TCPFlagFIN}, Wake, ReasonFIN},
		{"RST", seg{seq: rcv, flags: wakepattern.TCPFlagRST}, Wake, ReasonRST},
		{"peer keep-alive", seg{seq: rcv - 1, ack: snd, flags: ack}, Wake, ReasonPassed},
		{"old ACK", seg{seq: rcv, ack: snd - 10, flags: ack}, Wake, ReasonPassed},
		{"no ACK flag", seg{seq: rcv}, Wake, ReasonPassed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, clk := newTest(t, &Config{Firmware: Firmware{DropOnly: true}})
			rec := &recorder{t: t, clock: clk}
			if err := e.Arm(1, snap, probeSpec()); err != nil {
				t.Fatal(err)
			}
			fireAt(e, clk, 10*time.Second, rec)
			rec.reset()
			v := e.Receive(1, peerFrame(t, snap, tc.seg), rec)
			if v != tc.want {
				t.Fatalf("verdict %v, want %v", v, tc.want)
			}
			if len(rec.sent) != 0 {
				t.Errorf("the filter answered: %+v", rec.sent)
			}
			var got []Reason
			for _, w := range rec.wakes {
				got = append(got, w.Reason)
			}
			var want []Reason
			if tc.reason != 0 {
				want = []Reason{tc.reason}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("wakes (-want +got):\n%s", d)
			}
			_, st, c, _ := e.State(1)
			if tc.want == Absorb && (c.RepliesAbsorbed != 1 || st != StatusNormal) {
				t.Errorf("replies absorbed %d status %v, want 1 normal", c.RepliesAbsorbed, st)
			}
		})
	}
}

// TestFirmwareNoLiveness: firmware that only sends keeps one keep-alive
// per interval with no retries and never declares the peer dead.
func TestFirmwareNoLiveness(t *testing.T) {
	e, clk := newTest(t, &Config{Firmware: Firmware{NoLiveness: true}})
	rec := &recorder{t: t, clock: clk}
	if err := e.Arm(1, snap4(), probeSpec()); err != nil {
		t.Fatal(err)
	}
	for at := time.Second; at <= 60*time.Second; at += time.Second {
		fireAt(e, clk, at, rec)
	}
	var at []time.Duration
	for _, s := range rec.sent {
		at = append(at, s.At)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 40 * time.Second, 50 * time.Second, 60 * time.Second}
	if d := cmp.Diff(want, at); d != "" {
		t.Errorf("send times (-want +got):\n%s", d)
	}
	st, status, c, _ := e.State(1)
	if len(rec.wakes) != 0 || st == StateDead || status != StatusNoResponse || c.Retries != 0 {
		t.Errorf("state %v status %v retries %d wakes %v; want alive, no-response, no retries, no wakes", st, status, c.Retries, rec.wakes)
	}
}

// TestFirmwareStatuses: the per-failure statuses Infineon reports, with
// NO_TCP_ACK_FLAG told apart from other unexpected flags.
func TestFirmwareStatuses(t *testing.T) {
	snap := snap4()
	rcv, snd := snap.RcvNxt, snap.SndNxt
	const ack = wakepattern.TCPFlagACK
	for _, tc := range []struct {
		name string
		seg  *seg // nil: no reply at all, the retries run out
		want Status
	}{
		{"reply", &seg{seq: rcv, ack: snd, flags: ack}, StatusNormal},
		{"no response", nil, StatusNoResponse},
		{"no ACK flag", &seg{seq: rcv}, StatusNoACKFlag},
		{"SYN", &seg{seq: rcv, ack: snd, flags: wakepattern.TCPFlagSYN | ack}, StatusUnexpectedFlags},
		{"ACK of unsent data", &seg{seq: rcv, ack: snd + 100, flags: ack}, StatusBadACK},
		{"remote seq outside the window", &seg{seq: rcv + 1<<30, ack: snd, flags: ack}, StatusBadSeq},
		{"data", &seg{seq: rcv, ack: snd, flags: ack | wakepattern.TCPFlagPSH, payload: []byte("x")}, StatusDataWaiting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, clk := newTest(t, &Config{Firmware: Firmware{ACKFlagStatus: true}})
			rec := &recorder{t: t, clock: clk}
			if err := e.Arm(1, snap, probeSpec()); err != nil {
				t.Fatal(err)
			}
			fireAt(e, clk, 10*time.Second, rec)
			if tc.seg != nil {
				e.Receive(1, peerFrame(t, snap, *tc.seg), rec)
			} else {
				for at := 11 * time.Second; at <= 20*time.Second; at += time.Second {
					fireAt(e, clk, at, rec)
				}
			}
			if _, st, _, _ := e.State(1); st != tc.want {
				t.Errorf("status %v, want %v", st, tc.want)
			}
		})
	}
	// Without the switch a segment without ACK is an unexpected flag, as
	// before.
	e, clk := newTest(t, nil)
	rec := &recorder{t: t, clock: clk}
	e.Arm(1, snap, probeSpec())
	e.Receive(1, peerFrame(t, snap, seg{seq: rcv}), rec)
	if _, st, _, _ := e.State(1); st != StatusUnexpectedFlags {
		t.Errorf("default engine: status %v, want unexpected-flags", st)
	}
}

// TestFirmwareEndOnData: the expected PINGRESP ends the offload instead
// of being absorbed.
func TestFirmwareEndOnData(t *testing.T) {
	snap := snap4()
	for _, end := range []bool{false, true} {
		e, clk := newTest(t, &Config{Firmware: Firmware{EndOnData: end}})
		rec := &recorder{t: t, clock: clk}
		if err := e.Arm(1, snap, mqttSpec()); err != nil {
			t.Fatal(err)
		}
		fireAt(e, clk, 10*time.Second, rec)
		f := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt + 2, flags: wakepattern.TCPFlagACK | wakepattern.TCPFlagPSH, payload: []byte{0xd0, 0}})
		v := e.Receive(1, f, rec)
		if want := map[bool]Verdict{false: Answer, true: Wake}[end]; v != want {
			t.Errorf("end on data %v: verdict %v, want %v", end, v, want)
		}
	}
}

// TestFirmwareAllocs: the hooks keep the per-frame paths free of
// allocations.
func TestFirmwareAllocs(t *testing.T) {
	snap := snap4()
	e, clk := newTest(t, &Config{Firmware: Firmware{Replay: true, NoTimestamps: true, DropOnly: true, NoLiveness: true}})
	out := &nopOutput{}
	if err := e.Arm(1, snap, probeSpec()); err != nil {
		t.Fatal(err)
	}
	f := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt, flags: wakepattern.TCPFlagACK})
	at := time.Duration(0)
	if n := testing.AllocsPerRun(200, func() {
		at += 10 * time.Second
		fireAt(e, clk, at, out)
		e.Receive(1, f, out)
	}); n != 0 {
		t.Errorf("%v allocations per keep-alive and reply, want 0", n)
	}
}
