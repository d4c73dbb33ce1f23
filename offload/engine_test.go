package offload

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/wakepattern"
)

// runUntil fires the engine at every deadline up to end, moving the clock.
func runUntil(e *Engine, clk *fakeClock, out Output, end time.Duration) {
	for i := 0; i < 10000; i++ {
		d, ok := e.NextDeadline()
		if !ok || d > end {
			break
		}
		if d > clk.t {
			clk.t = d
		}
		e.Fire(clk.t, out)
	}
	clk.t = end
}

func TestProbeSessionRetriesAndDeath(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	snap := snap4()
	if err := e.Arm(7, snap, probeSpec()); err != nil {
		t.Fatal(err)
	}
	ts := func(at time.Duration) uint32 { return 777000 + uint32(at/time.Millisecond) }
	probe := func(at time.Duration) sent {
		return sent{At: at, Seq: 999, Ack: 5000, Flags: flagsACK, TSval: ts(at), TSecr: 42}
	}

	// Cycle 1: probe at 10 s, answered at 10.05 s.
	runUntil(e, clk, out, 10*time.Second+50*time.Millisecond)
	reply := peerFrame(t, snap, seg{seq: 5000, ack: 1000, flags: flagsACK, ts: true, tsval: 100, tsecr: ts(10 * time.Second)})
	if v := e.Receive(7, reply, out); v != Absorb {
		t.Fatalf("Receive(exact ACK) = %v, want absorb", v)
	}
	if d, _ := e.NextDeadline(); d != 20*time.Second {
		t.Fatalf("next deadline %v, want 20s (cycle start + interval)", d)
	}
	// Cycle 2: probe at 20 s, retries at 22 s and 24 s, dead at 26 s.
	runUntil(e, clk, out, 30*time.Second)
	p := func(at time.Duration) sent { s := probe(at); s.TSecr = 100; return s }
	want := []sent{probe(10 * time.Second), p(20 * time.Second), p(22 * time.Second), p(24 * time.Second)}
	if diff := cmp.Diff(want, out.sent); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	wantWakes := []Event{{Slot: 7, Reason: ReasonKeepAliveTimeout, At: 26 * time.Second}}
	if diff := cmp.Diff(wantWakes, out.wakes); diff != "" {
		t.Errorf("wakes (-want +got):\n%s", diff)
	}
	if _, ok := e.NextDeadline(); ok {
		t.Error("dead slot still has a timer")
	}
	// Frames for a dead slot go to the host without a new event.
	if v := e.Receive(7, reply, out); v != Wake || len(out.wakes) != 1 {
		t.Errorf("Receive on dead slot = %v with %d wakes, want wake and 1", v, len(out.wakes))
	}
	r, err := e.Disarm(7)
	if err != nil {
		t.Fatal(err)
	}
	wantCounters := Counters{KeepalivesSent: 2, Retries: 2, RepliesAbsorbed: 1, Transitions: 5}
	if diff := cmp.Diff(wantCounters, r.Counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	if r.State != StateDead || r.Status != StatusNoResponse || r.SndNxt != 1000 || r.RcvNxt != 5000 || r.TSRecent != 100 {
		t.Errorf("report = %+v", r)
	}
	st := e.Stats()
	tr := st.Transitions
	if tr[StateArmed][StateWaitingReply] != 2 || tr[StateWaitingReply][StateArmed] != 1 ||
		tr[StateWaitingReply][StateRetrying] != 1 || tr[StateRetrying][StateDead] != 1 {
		t.Errorf("transitions = %v", tr)
	}
	if _, err := e.Disarm(7); !errors.Is(err, ErrNotArmed) {
		t.Errorf("second Disarm: %v, want ErrNotArmed", err)
	}
}

func TestRetryCountZero(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	spec := probeSpec()
	spec.RetryCount = 0
	if err := e.Arm(1, snap4(), spec); err != nil {
		t.Fatal(err)
	}
	runUntil(e, clk, out, time.Minute)
	if len(out.sent) != 1 || len(out.wakes) != 1 || out.wakes[0].At != 12*time.Second {
		t.Fatalf("sent %d, wakes %+v; want 1 probe and a timeout at 12s", len(out.sent), out.wakes)
	}
}

// TestWebSocketSessionBooks runs pings and pongs and checks the books and
// the TCP state the host takes back.
func TestWebSocketSessionBooks(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	snap := snap4()
	snap.SndNxt, snap.RcvNxt = 0xffff_fff8, 0xffff_fffc // both wrap during the session
	payload := []byte("hb")
	if err := e.Arm(3, snap, wsSpec(WSPing, payload)); err != nil {
		t.Fatal(err)
	}
	sndNxt, rcvNxt := snap.SndNxt, snap.RcvNxt
	var wantSent, wantAbs []byte
	var wantEntries []Entry
	for cycle := 1; cycle <= 3; cycle++ {
		out.reset()
		at := time.Duration(cycle) * 10 * time.Second
		runUntil(e, clk, out, at)
		wantFrames := 1
		if cycle == 3 {
			// The server acknowledged only the Ping of cycle 2, not our
			// Pong: it is retransmitted, same bytes and seq, before the Ping.
			wantFrames = 2
		}
		if len(out.sent) != wantFrames {
			t.Fatalf("cycle %d: sent %d frames, want %d", cycle, len(out.sent), wantFrames)
		}
		if cycle == 3 {
			if r := out.sent[0]; r.Seq != sndNxt-9 || string(r.Payload) != string(wantSent[len(wantSent)-9:]) {
				t.Fatalf("retransmission %+v, want seq %d payload % x", r, sndNxt-9, wantSent[len(wantSent)-9:])
			}
		}
		ping := out.sent[wantFrames-1]
		op, p := unmaskWS(t, ping.Payload)
		if op != wsOpPing || string(p) != "hb" || ping.Seq != sndNxt || ping.Ack != rcvNxt {
			t.Fatalf("cycle %d: sent op %x payload %q seq %d ack %d", cycle, op, p, ping.Seq, ping.Ack)
		}
		wantSent = append(wantSent, ping.Payload...)
		wantEntries = append(wantEntries, Entry{Dir: DirSent, Seq: sndNxt, Len: 8, At: at})
		sndNxt += 8
		// The server's Pong (and, in cycle 2, a Ping of its own in the same segment).
		clk.t += 100 * time.Millisecond
		data := wsServer(wsOpPong, payload)
		if cycle == 2 {
			data = append(data, wsServer(wsOpPing, []byte("srv"))...)
		}
		out.reset()
		// The segment acknowledges our Ping; in cycle 2 the Pong we send in
		// answer stays unacknowledged until cycle 3.
		f := peerFrame(t, snap, seg{seq: rcvNxt, ack: sndNxt, flags: flagsPSHACK, payload: data, ts: true, tsval: 100 + uint32(cycle), tsecr: 1})
		if v := e.Receive(3, f, out); v != Answer {
			t.Fatalf("cycle %d: Receive(Pong) = %v, want answer", cycle, v)
		}
		wantAbs = append(wantAbs, data...)
		wantEntries = append(wantEntries, Entry{Dir: DirAbsorbed, Seq: rcvNxt, Len: uint32(len(data)), At: clk.t})
		rcvNxt += uint32(len(data))
		if len(out.sent) != 1 {
			t.Fatalf("cycle %d: answered with %d frames, want 1", cycle, len(out.sent))
		}
		if cycle == 2 {
			op, p := unmaskWS(t, out.sent[0].Payload)
			if op != wsOpPong || string(p) != "srv" {
				t.Fatalf("answer to Ping: op %x payload %q", op, p)
			}
			wantSent = append(wantSent, out.sent[0].Payload...)
			wantEntries = append(wantEntries, Entry{Dir: DirSent, Seq: sndNxt, Len: 9, At: clk.t})
			sndNxt += 9
		} else if len(out.sent[0].Payload) != 0 || out.sent[0].Ack != rcvNxt {
			t.Fatalf("cycle %d: answer %+v, want a pure ACK of %d", cycle, out.sent[0], rcvNxt)
		}
	}
	r, err := e.Disarm(3)
	if err != nil {
		t.Fatal(err)
	}
	want := Books{Sent: wantSent, Absorbed: wantAbs, Entries: wantEntries}
	if diff := cmp.Diff(want, r.Books); diff != "" {
		t.Errorf("books (-want +got):\n%s", diff)
	}
	if r.SndNxt != sndNxt || r.RcvNxt != rcvNxt || r.SndNxt != snap.SndNxt+uint32(len(wantSent)) || r.RcvNxt != snap.RcvNxt+uint32(len(wantAbs)) {
		t.Errorf("report seq: snd %d rcv %d, want %d %d", r.SndNxt, r.RcvNxt, sndNxt, rcvNxt)
	}
	if r.SndUna != r.SndNxt { // cycle 3's Pong acknowledged everything
		t.Errorf("SndUna = %d, want %d", r.SndUna, r.SndNxt)
	}
	if r.Counters.RepliesAbsorbed != 3 || r.Counters.PingsAnswered != 1 || r.State != StateArmed {
		t.Errorf("report %+v", r)
	}
}

// TestRetransmitUnacked checks that a retry re-sends unacknowledged bytes
// with their original sequence number and bytes, not new ones.
func TestRetransmitUnacked(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	snap := snap6()
	if err := e.Arm(1, snap, wsSpec(WSPong, []byte{1, 2, 3})); err != nil {
		t.Fatal(err)
	}
	runUntil(e, clk, out, 10*time.Second)
	runUntil(e, clk, out, 12*time.Second)
	if len(out.sent) != 2 {
		t.Fatalf("sent %d, want pong and its retransmission", len(out.sent))
	}
	if diff := cmp.Diff(out.sent[0].Payload, out.sent[1].Payload); diff != "" || out.sent[1].Seq != snap.SndNxt {
		t.Fatalf("retransmission differs (-first +retry):\n%s seq %d", diff, out.sent[1].Seq)
	}
	// The ACK of the Pong's bytes is the reply of an unsolicited Pong.
	f := peerFrame(t, snap, seg{seq: snap.RcvNxt, ack: snap.SndNxt + 9, flags: flagsACK, ts: true, tsval: 43})
	if v := e.Receive(1, f, out); v != Absorb {
		t.Fatalf("Receive(ACK of pong) = %v", v)
	}
	st, status, c, _ := e.State(1)
	if st != StateArmed || status != StatusNormal || c.RepliesAbsorbed != 1 || c.Retries != 1 {
		t.Fatalf("state %v status %v counters %+v", st, status, c)
	}
}

// TestClassify feeds one frame into a freshly armed slot that has sent
// one probe and checks the verdict, the frames sent and the wake.
func TestClassify(t *testing.T) {
	snap := snap4() // SND.NXT 1000, RCV.NXT 5000, RCV.WND 65535<<2, TS.Recent 42
	const (
		rcv = 5000
		snd = 1000
	)
	rst, syn, fin := wakepattern.TCPFlagRST, wakepattern.TCPFlagSYN, wakepattern.TCPFlagFIN
	ack := flagsACK
	type kase struct {
		name       string
		spec       Spec
		segs       []seg // fed in order; the verdicts of all are checked
		want       []Verdict
		wantSent   int
		wantReason Reason
		wantStatus Status
	}
	ts := func(s seg) seg { s.ts, s.tsval = true, 100; return s }
	cases := []kase{
		{"exact ACK", probeSpec(), []seg{ts(seg{seq: rcv, ack: snd, flags: ack})}, []Verdict{Absorb}, 0, 0, StatusNormal},
		{"exact ACK without TS", probeSpec(), []seg{{seq: rcv, ack: snd, flags: ack}}, []Verdict{Absorb}, 0, 0, StatusNormal},
		{"data", probeSpec(), []seg{ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: []byte("push")})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"FIN", probeSpec(), []seg{ts(seg{seq: rcv, ack: snd, flags: ack | fin})}, []Verdict{Wake}, 0, ReasonFIN, StatusDataWaiting},
		{"data+FIN", probeSpec(), []seg{ts(seg{seq: rcv, ack: snd, flags: ack | fin, payload: []byte("x")})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"RST at RCV.NXT", probeSpec(), []seg{{seq: rcv, flags: rst}}, []Verdict{Wake}, 0, ReasonRST, StatusDataWaiting},
		{"RST in window, rate-limited", probeSpec(), []seg{{seq: rcv + 1, flags: rst}, {seq: rcv + 2, flags: rst}}, []Verdict{Answer, Drop}, 1, 0, StatusUnexpectedFlags},
		{"RST out of window", probeSpec(), []seg{{seq: rcv - 1, flags: rst}}, []Verdict{Drop}, 0, 0, StatusBadSeq},
		{"SYN", probeSpec(), []seg{{seq: rcv, flags: syn}}, []Verdict{Answer}, 1, 0, StatusUnexpectedFlags},
		{"peer keep-alive probe", probeSpec(), []seg{ts(seg{seq: rcv - 1, ack: snd, flags: ack})}, []Verdict{Answer}, 1, 0, StatusNormal},
		{"peer keep-alive probe, one-byte form", mqttSpec(), []seg{ts(seg{seq: rcv - 1, ack: snd, flags: ack, payload: []byte{0}})}, []Verdict{Answer}, 1, 0, StatusNormal},
		{"peer keep-alive probes, rate-limited", probeSpec(), []seg{ts(seg{seq: rcv - 1, ack: snd, flags: ack}), ts(seg{seq: rcv - 1, ack: snd, flags: ack, payload: []byte{0}})}, []Verdict{Answer, Drop}, 1, 0, StatusNormal},
		{"probe-like segment acking unsent data", probeSpec(), []seg{ts(seg{seq: rcv - 1, ack: snd + 1, flags: ack})}, []Verdict{Answer}, 1, 0, StatusBadSeq},
		{"probe-like segment with two bytes", probeSpec(), []seg{ts(seg{seq: rcv - 1, ack: snd, flags: ack, payload: []byte{0, 0}})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"old duplicate", mqttSpec(), []seg{ts(seg{seq: rcv - 2, ack: snd, flags: flagsPSHACK, payload: []byte{0xd0, 0}})}, []Verdict{Answer}, 1, 0, StatusBadSeq},
		{"beyond window", probeSpec(), []seg{ts(seg{seq: rcv + 65535<<2, ack: snd, flags: ack})}, []Verdict{Answer}, 1, 0, StatusBadSeq},
		{"PAWS-old", probeSpec(), []seg{{seq: rcv, ack: snd, flags: ack, ts: true, tsval: 41}}, []Verdict{Answer}, 1, 0, StatusBadSeq},
		{"no ACK flag", probeSpec(), []seg{ts(seg{seq: rcv, flags: wakepattern.TCPFlagPSH, payload: []byte("x")})}, []Verdict{Drop}, 0, 0, StatusUnexpectedFlags},
		{"ACK of unsent data", probeSpec(), []seg{ts(seg{seq: rcv, ack: snd + 1, flags: ack})}, []Verdict{Answer}, 1, 0, StatusBadACK},
		{"data past a hole", probeSpec(), []seg{ts(seg{seq: rcv + 10, ack: snd, flags: flagsPSHACK, payload: []byte("x")})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"PINGRESP", mqttSpec(), []seg{ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: []byte{0xd0, 0}})}, []Verdict{Answer}, 1, 0, StatusNormal},
		{"PINGRESP retransmitted over absorbed byte", mqttSpec(), []seg{ts(seg{seq: rcv - 1, ack: snd, flags: flagsPSHACK, payload: []byte{0, 0xd0, 0}})}, []Verdict{Answer}, 1, 0, StatusNormal},
		{"not PINGRESP", mqttSpec(), []seg{ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: []byte{0x30, 0}})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"ws text frame", wsSpec(WSPing, nil), []seg{ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: wsServer(0x1, []byte("hi"))})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"ws close", wsSpec(WSPing, nil), []seg{ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: wsServer(wsOpClose, nil)})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"ws masked server frame", wsSpec(WSPing, nil), []seg{ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: []byte{0x89, 0x80, 1, 2, 3, 4}})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"ws ping then text", wsSpec(WSResponder, nil), []seg{ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: append(wsServer(wsOpPing, nil), wsServer(0x2, []byte{1})...)})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
		{"ws partial ping completed", wsSpec(WSResponder, nil), []seg{
			ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: []byte{0x89}}),
			ts(seg{seq: rcv + 1, ack: snd, flags: flagsPSHACK, payload: []byte{0x03, 'a'}}),
			ts(seg{seq: rcv + 3, ack: snd, flags: flagsPSHACK, payload: []byte{'b', 'c'}}),
		}, []Verdict{Answer, Answer, Answer}, 3, 0, StatusNormal},
		{"ws partial text", wsSpec(WSResponder, nil), []seg{ts(seg{seq: rcv, ack: snd, flags: flagsPSHACK, payload: []byte{0x81}})}, []Verdict{Wake}, 0, ReasonData, StatusDataWaiting},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, clk := newTest(t, nil)
			out := &recorder{t: t, clock: clk}
			if err := e.Arm(1, snap, c.spec); err != nil {
				t.Fatal(err)
			}
			clk.t = 5 * time.Second
			var got []Verdict
			for _, s := range c.segs {
				clk.t += 100 * time.Millisecond
				got = append(got, e.Receive(1, peerFrame(t, snap, s), out))
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
			if len(out.sent) != c.wantSent {
				t.Errorf("sent %d frames, want %d: %+v", len(out.sent), c.wantSent, out.sent)
			}
			for _, s := range out.sent {
				if s.Flags&wakepattern.TCPFlagACK == 0 || s.Seq != snd && len(s.Payload) == 0 {
					t.Errorf("answer %+v is not an ACK at SND.NXT", s)
				}
			}
			var reason Reason
			if len(out.wakes) > 1 {
				t.Errorf("%d wakes, want at most 1", len(out.wakes))
			}
			if len(out.wakes) == 1 {
				reason = out.wakes[0].Reason
				if len(out.wakes[0].Frame) == 0 {
					t.Error("wake without its frame")
				}
			}
			if reason != c.wantReason {
				t.Errorf("wake reason %v, want %v", reason, c.wantReason)
			}
			_, status, _, _ := e.State(1)
			if status != c.wantStatus {
				t.Errorf("status %v, want %v", status, c.wantStatus)
			}
		})
	}
}

// TestDupACKRateLimit checks at most one ACK per 500 ms for unacceptable
// segments.
func TestDupACKRateLimit(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	snap := snap4()
	if err := e.Arm(1, snap, probeSpec()); err != nil {
		t.Fatal(err)
	}
	old := peerFrame(t, snap, seg{seq: 4000, ack: 1000, flags: flagsACK})
	var got []Verdict
	for _, at := range []time.Duration{0, 100, 499, 500, 999, 1000} {
		clk.t = time.Second + at*time.Millisecond
		got = append(got, e.Receive(1, old, out))
	}
	want := []Verdict{Answer, Drop, Drop, Answer, Drop, Answer}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	_, _, c, _ := e.State(1)
	if c.DroppedOutOfWindow != 6 || c.ACKsSent != 3 {
		t.Errorf("counters %+v", c)
	}
}

// TestPeerKeepAliveAnswered: the peer's own TCP keep-alive probes (a
// Linux peer with SO_KEEPALIVE) are answered with the ACK its stack
// expects, one per probe, and counted as such: not as out-of-window
// drops, and the slot's status stays normal (issue 11).
func TestPeerKeepAliveAnswered(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	snap := snap4()
	if err := e.Arm(1, snap, probeSpec()); err != nil {
		t.Fatal(err)
	}
	probe := peerFrame(t, snap, seg{seq: snap.RcvNxt - 1, ack: snap.SndNxt, flags: flagsACK})
	for i := range 3 {
		clk.t = time.Duration(i+1) * time.Second
		if v := e.Receive(1, probe, out); v != Answer {
			t.Fatalf("probe %d: verdict %v, want Answer", i, v)
		}
	}
	_, status, c, _ := e.State(1)
	if status != StatusNormal {
		t.Errorf("status %v, want normal", status)
	}
	if c.PeerKeepalivesAnswered != 3 || c.DroppedOutOfWindow != 0 || c.ACKsSent != 0 {
		t.Errorf("counters: peer keep-alives answered %d (want 3), dropped out of window %d (want 0), ACKs sent %d (want 0)",
			c.PeerKeepalivesAnswered, c.DroppedOutOfWindow, c.ACKsSent)
	}
	if len(out.sent) != 3 {
		t.Fatalf("sent %d frames, want 3", len(out.sent))
	}
	for _, f := range out.sent {
		if f.Seq != snap.SndNxt || f.Ack != snap.RcvNxt || len(f.Payload) != 0 {
			t.Errorf("answer seq %d ack %d len %d, want seq %d ack %d len 0", f.Seq, f.Ack, len(f.Payload), snap.SndNxt, snap.RcvNxt)
		}
	}
}

// TestWrap runs a probe slot and a payload slot with SND.NXT, RCV.NXT and
// TSval straddling 2^32.
func TestWrap(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	snap := snap4()
	snap.SndNxt = 0 // probe SEQ = 2^32−1
	snap.RcvNxt = 0xffff_ffff
	snap.Timestamps.Val = 0xffff_ffff - 5000 // wraps 5 s after arm
	snap.Timestamps.Recent = 0xffff_fff0
	if err := e.Arm(1, snap, probeSpec()); err != nil {
		t.Fatal(err)
	}
	runUntil(e, clk, out, 10*time.Second)
	if len(out.sent) != 1 || out.sent[0].Seq != 0xffff_ffff || out.sent[0].Ack != 0xffff_ffff || out.sent[0].TSval != 4999 {
		t.Fatalf("probe %+v, want seq 2^32-1 ack 2^32-1 TSval 4999", out.sent)
	}
	// The peer's TSval wrapped too: 5 is newer than 0xfffffff0.
	f := peerFrame(t, snap, seg{seq: 0xffff_ffff, ack: 0, flags: flagsACK, ts: true, tsval: 5})
	if v := e.Receive(1, f, out); v != Absorb {
		t.Fatalf("wrapped exact ACK = %v, want absorb", v)
	}
	// An old TSval (before the wrap) is PAWS-rejected.
	f = peerFrame(t, snap, seg{seq: 0xffff_ffff, ack: 0, flags: flagsACK, ts: true, tsval: 0xffff_fff1})
	if v := e.Receive(1, f, out); v != Answer {
		t.Fatalf("PAWS-old after wrap = %v, want answer (dup ACK)", v)
	}
	// Payload slot: the request and the reply straddle the wrap.
	snap = snap4()
	snap.SndNxt, snap.RcvNxt = 0xffff_ffff, 0xffff_ffff
	if err := e.Arm(2, snap, mqttSpec()); err != nil {
		t.Fatal(err)
	}
	out.reset()
	runUntil(e, clk, out, 20*time.Second)
	if len(out.sent) != 2 || out.sent[1].Seq != 0xffff_ffff || string(out.sent[1].Payload) != "\xc0\x00" {
		t.Fatalf("sent %+v, want the probe of slot 1 and PINGREQ at 2^32-1", out.sent)
	}
	f = peerFrame(t, snap, seg{seq: 0xffff_ffff, ack: 1, flags: flagsPSHACK, payload: []byte{0xd0, 0}})
	out.reset()
	if v := e.Receive(2, f, out); v != Answer {
		t.Fatalf("PINGRESP across the wrap = %v, want answer", v)
	}
	if len(out.sent) != 1 || out.sent[0].Seq != 1 || out.sent[0].Ack != 1 {
		t.Fatalf("ACK %+v, want seq 1 ack 1", out.sent)
	}
	r, _ := e.Disarm(2)
	if r.SndNxt != 1 || r.RcvNxt != 1 || r.SndUna != 1 {
		t.Errorf("report snd %d una %d rcv %d, want 1 1 1", r.SndNxt, r.SndUna, r.RcvNxt)
	}
}

// TestDefaultClockFollowsFire: without a Clock the engine reads no system
// clock; its time is the latest now given to Fire, so a slot armed after a
// Fire at 5 s sends its first keep-alive one interval later.
func TestDefaultClockFollowsFire(t *testing.T) {
	e := New(nil)
	out := &recorder{}
	e.Fire(5*time.Second, out)
	if err := e.Arm(1, snap4(), probeSpec()); err != nil {
		t.Fatal(err)
	}
	next, ok := e.NextDeadline()
	if want := 5*time.Second + probeSpec().Interval; !ok || next != want {
		t.Fatalf("NextDeadline = %v, %v; want %v, true", next, ok, want)
	}
	e.Fire(3*time.Second, out) // time never goes back
	if next2, _ := e.NextDeadline(); next2 != next {
		t.Fatalf("NextDeadline moved to %v after an older Fire", next2)
	}
}

// TestFirstDueAndLastKeepAlive: the first keep-alive goes out FirstDue
// after Arm, the next one an Interval after it, and the report says when
// the last cycle started (retries do not move it).
func TestFirstDueAndLastKeepAlive(t *testing.T) {
	e, clk := newTest(t, nil)
	out := &recorder{t: t, clock: clk}
	snap := snap4()
	snap.Timestamps = Timestamps{}
	clk.t = 100 * time.Second
	spec := probeSpec()
	spec.FirstDue = 3 * time.Second
	if err := e.Arm(1, snap, spec); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.NextDeadline(); d != 103*time.Second {
		t.Fatalf("first deadline %v, want 103s (arm at 100s + FirstDue 3s)", d)
	}
	// A slot armed beside it without FirstDue keeps one Interval.
	if err := e.Arm(2, snap6(), probeSpec()); err != nil {
		t.Fatal(err)
	}
	r, err := e.Disarm(2)
	if err != nil {
		t.Fatal(err)
	}
	if r.LastKeepAlive != 0 || r.Counters.KeepalivesSent != 0 {
		t.Errorf("report of a slot that sent nothing: last keep-alive %v, %d sent", r.LastKeepAlive, r.Counters.KeepalivesSent)
	}

	runUntil(e, clk, out, 103*time.Second)
	reply := peerFrame(t, snap, seg{seq: 5000, ack: 1000, flags: flagsACK})
	if v := e.Receive(1, reply, out); v != Absorb {
		t.Fatalf("Receive(exact ACK) = %v, want absorb", v)
	}
	// Cycle 2 at 113 s goes unanswered: a retry at 115 s.
	runUntil(e, clk, out, 116*time.Second)
	var at []time.Duration
	for _, f := range out.sent {
		at = append(at, f.At)
	}
	if diff := cmp.Diff([]time.Duration{103 * time.Second, 113 * time.Second, 115 * time.Second}, at); diff != "" {
		t.Errorf("sends (-want +got):\n%s", diff)
	}
	r, err = e.Disarm(1)
	if err != nil {
		t.Fatal(err)
	}
	if r.LastKeepAlive != 113*time.Second || r.Counters.KeepalivesSent != 2 || r.Counters.Retries != 1 {
		t.Errorf("report: last keep-alive %v, %d sent, %d retries; want 113s, 2, 1", r.LastKeepAlive, r.Counters.KeepalivesSent, r.Counters.Retries)
	}
}
