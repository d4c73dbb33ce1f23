package host

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"github.com/standbynic/standbynic/internal/pushserver"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/slotmgr"
)

// secondsPool is a pool policy in seconds (1–3600 s intervals).
func secondsPool(hw int) *slotmgr.Config {
	return &slotmgr.Config{HardwareSlots: hw, IntervalUnit: time.Second, MinInterval: 1, MaxInterval: 3600}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newHost(t *testing.T, cfg *Config) *Host {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newPushServer(t *testing.T) *pushserver.Server {
	t.Helper()
	s, err := pushserver.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dialStream opens a TCP channel to the push server and says hello.
func dialStream(t *testing.T, s *pushserver.Server, name string, ka []byte) *Stream {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, s.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStream(c, ka)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Write([]byte("hello " + name)); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnected(ctxT(t), name); err != nil {
		t.Fatal(err)
	}
	return st
}

func dialWebSocket(t *testing.T, s *pushserver.Server, name string) *WebSocket {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.DialContext(ctxT(t), s.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewWebSocket(ws)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Write([]byte("hello " + name)); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnected(ctxT(t), name); err != nil {
		t.Fatal(err)
	}
	return tr
}

// settle waits until the host is in state st and its state machine has
// armed its timers for it: nothing is in flight.
func settle(t *testing.T, h *Host, st State) {
	t.Helper()
	if err := h.Wait(ctxT(t), func(s *Stats) bool { return s.State == st }); err != nil {
		t.Fatalf("waiting for %v: %v (state %v)", st, err, h.State())
	}
	h.sync(t)
}

// sync waits for one full turn of the state machine.
func (h *Host) sync(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	h.mu.Lock()
	h.syncs = append(h.syncs, done)
	h.kickLocked()
	h.mu.Unlock()
	select {
	case <-done:
	case <-ctxT(t).Done():
		t.Fatal("state machine did not turn")
	}
}

// step advances the fake clock to its next timer and lets the host react.
func step(t *testing.T, h *Host, clk *FakeClock) time.Duration {
	t.Helper()
	at, ok := clk.Next()
	if !ok {
		t.Fatal("no timer pending")
	}
	clk.Advance(at - clk.Now())
	h.sync(t)
	h.sync(t)
	return at
}

func TestStateMachineAndAccounting(t *testing.T) {
	clk := NewFakeClock(0)
	h := newHost(t, &Config{Clock: clk, Pool: secondsPool(4)})
	s := newPushServer(t)
	ch, err := h.NewChannel("sw", 10*time.Second, slotmgr.RequestSoftwareSlot, "app", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.UsingTransport(dialStream(t, s, "sw", []byte("ka"))); err != nil {
		t.Fatal(err)
	}
	if st, err := ch.WaitForPushEnabled(); err != nil || st != slotmgr.SoftwareSlotAllocated {
		t.Fatalf("WaitForPushEnabled = %v, %v", st, err)
	}
	clk.Advance(2 * time.Second) // 2 s awake
	if err := h.Standby(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	settle(t, h, Standby)
	// The keep-alive is due 10 s after the transport was attached.
	if at := step(t, h, clk); at != 10*time.Second {
		t.Fatalf("software wake at %v, want 10s", at)
	}
	settle(t, h, Standby)
	if err := s.Wait(ctxT(t), "sw", func(c pushserver.Channel, _ bool) bool { return len(c.Lines) == 1 }); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Second)
	if err := h.Wake(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(3 * time.Second)
	st := h.Stats()
	want := map[string]uint64{
		"awake→entering": 2, "entering→standby": 2, "standby→resuming": 2, "resuming→awake": 2,
		"software-keep-alive": 1, "user": 1, "resumes": 2,
		// The user wake at 15 s also serves the keep-alive due at 20 s:
		// within the tolerance (min(30 s, 10 s/2)), it shares the wake.
		"keep-alives": 2,
	}
	got := map[string]uint64{
		"awake→entering":      st.Transition(Awake, EnteringStandby),
		"entering→standby":    st.Transition(EnteringStandby, Standby),
		"standby→resuming":    st.Transition(Standby, Resuming),
		"resuming→awake":      st.Transition(Resuming, Awake),
		"software-keep-alive": st.Wake(WakeSoftwareKeepAlive),
		"user":                st.Wake(WakeUser),
		"resumes":             st.Resumes,
		"keep-alives":         st.KeepAlives,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	// Zero latency: awake 2 s, standby 8 s, awake 0, standby 5 s, awake 3 s.
	if st.Time(Awake) != 5*time.Second || st.Time(Standby) != 13*time.Second {
		t.Errorf("time awake %v standby %v, want 5s and 13s", st.Time(Awake), st.Time(Standby))
	}
	p := Power{}.withDefaults()
	wantE := p.AwakeMW*5 + p.StandbyMW*13 + p.ResumeMJ*2
	if diff := st.EnergyMJ - wantE; diff > 1e-6 || diff < -1e-6 {
		t.Errorf("energy %.3f mJ, want %.3f", st.EnergyMJ, wantE)
	}
}

func TestResumeLatency(t *testing.T) {
	clk := NewFakeClock(0)
	h := newHost(t, &Config{Clock: clk, Pool: secondsPool(4), ResumeLatency: 300 * time.Millisecond})
	if err := h.Standby(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	done := make(chan error, 1)
	go func() { done <- h.Wake(ctxT(t)) }()
	settle(t, h, Resuming)
	if at := step(t, h, clk); at != 1300*time.Millisecond {
		t.Fatalf("resumed at %v, want 1.3s", at)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := h.Stats()
	if st.Time(Resuming) != 300*time.Millisecond {
		t.Errorf("time resuming %v, want 300ms", st.Time(Resuming))
	}
}

// TestSoftwareCoalescing checks the host wakes exactly when the planner
// says, serving every due keep-alive per wake, and that coalescing saves
// wakes against one timer per channel.
func TestSoftwareCoalescing(t *testing.T) {
	intervals := []time.Duration{10 * time.Second, 10 * time.Second, 12 * time.Second, 20 * time.Second, 31 * time.Second}
	const horizon = 200 * time.Second
	run := func(t *testing.T, coalesce bool) (wakes, keepAlives uint64) {
		clk := NewFakeClock(0)
		pc := &slotmgr.PlannerConfig{Coalesce: coalesce, Tolerance: 3 * time.Second}
		h := newHost(t, &Config{Clock: clk, Pool: secondsPool(4), Planner: pc})
		s := newPushServer(t)
		var sim *slotmgr.Planner
		sim, _ = slotmgr.NewPlanner(pc)
		for i, iv := range intervals {
			id := "c" + string(rune('0'+i))
			ch, err := h.NewChannel(id, iv, slotmgr.RequestSoftwareSlot, "app", 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := ch.UsingTransport(dialStream(t, s, id, []byte("ka"))); err != nil {
				t.Fatal(err)
			}
			sim.Add(id, iv, 0)
		}
		if err := h.Standby(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		settle(t, h, Standby)
		var simWakes []time.Duration
		for now := time.Duration(0); ; {
			at, _ := sim.NextWake(now)
			if at > horizon {
				break
			}
			sim.Wake(at)
			simWakes = append(simWakes, at)
			now = at
		}
		var got []time.Duration
		for {
			at, ok := clk.Next()
			if !ok || at > horizon {
				break
			}
			step(t, h, clk)
			settle(t, h, Standby)
			got = append(got, at)
		}
		if diff := cmp.Diff(simWakes, got); diff != "" {
			t.Errorf("wake times (-want planner +got host):\n%s", diff)
		}
		st := h.Stats()
		if st.Wake(WakeSoftwareKeepAlive) != uint64(len(got)) {
			t.Errorf("software wakes counted %d, want %d", st.Wake(WakeSoftwareKeepAlive), len(got))
		}
		return st.Wake(WakeSoftwareKeepAlive), st.KeepAlives
	}
	var cw, ck, uw, uk uint64
	t.Run("coalesced", func(t *testing.T) { cw, ck = run(t, true) })
	t.Run("one timer per channel", func(t *testing.T) { uw, uk = run(t, false) })
	if cw >= uw {
		t.Errorf("coalesced wakes %d not below uncoalesced %d", cw, uw)
	}
	if ck < cw || uk < uw {
		t.Errorf("keep-alives (%d, %d) fewer than wakes (%d, %d)", ck, uk, cw, uw)
	}
	t.Logf("wakes over %v: coalesced %d (%d keep-alives), one timer per channel %d (%d keep-alives)", horizon, cw, ck, uw, uk)
}

// TestPushOrderAndSoftwareDelivery checks that the read completion queues
// the message before the push task runs, and that a push to a software
// channel during standby waits for the next software wake.
func TestPushOrderAndSoftwareDelivery(t *testing.T) {
	clk := NewFakeClock(0)
	h := newHost(t, &Config{Clock: clk, Pool: secondsPool(4)})
	s := newPushServer(t)
	type run struct {
		msg      string
		queued   bool // the message was in the queue when the task started
		state    State
		at       time.Duration
		trailing bool // a second Receive found nothing more
	}
	var mu sync.Mutex
	var runs []run
	ran := make(chan struct{}, 16)
	err := h.RegisterTask("push", func(ctx context.Context, ti *TaskInstance) {
		m, ok := ti.Receive()
		_, more := ti.Receive()
		r := run{msg: string(m.Data), queued: ok, state: h.State(), at: m.At, trailing: !more}
		mu.Lock()
		runs = append(runs, r)
		mu.Unlock()
		ran <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := h.NewChannel("p", 10*time.Second, slotmgr.RequestSoftwareSlot, "app", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.SetPushTask("push"); err != nil {
		t.Fatal(err)
	}
	if err := ch.UsingTransport(dialStream(t, s, "p", []byte("ka"))); err != nil {
		t.Fatal(err)
	}
	id1, err := s.Push("p", "awake")
	if err != nil {
		t.Fatal(err)
	}
	<-ran
	if err := h.Standby(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	settle(t, h, Standby)
	clk.Advance(4 * time.Second)
	id2, err := s.Push("p", "asleep")
	if err != nil {
		t.Fatal(err)
	}
	// The message is read and queued, but no task runs in standby.
	if err := h.Wait(ctxT(t), func(st *Stats) bool { return ch.received == 2 }); err != nil {
		t.Fatal(err)
	}
	h.sync(t)
	if h.Stats().Tasks[TriggerPushNotification] != 1 {
		t.Fatal("a task ran in standby")
	}
	if at := step(t, h, clk); at != 10*time.Second {
		t.Fatalf("software wake at %v, want 10s", at)
	}
	select {
	case <-ran:
	case <-ctxT(t).Done():
		t.Fatal("push task did not run at the software wake")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []run{
		{msg: "push " + itoa(id1) + " awake", queued: true, state: Awake, at: 0, trailing: true},
		{msg: "push " + itoa(id2) + " asleep", queued: true, state: Awake, at: 4 * time.Second, trailing: true},
	}
	if diff := cmp.Diff(want, runs, cmp.AllowUnexported(run{})); diff != "" {
		t.Errorf("task runs (-want +got):\n%s", diff)
	}
}

func itoa(u uint64) string { return strconv.FormatUint(u, 10) }

func TestPlacementStatusesAndPolicy(t *testing.T) {
	pc := secondsPool(4)
	pc.AppChannelQuota = 10
	pc.Apps = []string{"mail", "chat"}
	h := newHost(t, &Config{Clock: NewFakeClock(0), Pool: pc})
	var got []slotmgr.Status
	for i := 0; i < 10; i++ {
		ch, err := h.NewChannel("c"+strconv.Itoa(i), 30*time.Second, slotmgr.RequestHardwareSlot, "mail", 0)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := ch.WaitForPushEnabled()
		got = append(got, st)
	}
	hw, sw := 0, 0
	for _, st := range got {
		switch st {
		case slotmgr.HardwareSlotAllocated:
			hw++
		case slotmgr.SoftwareSlotAllocated:
			sw++
		}
	}
	if hw != 4 || sw != 6 {
		t.Errorf("statuses %v: %d hardware, %d software; want 4 and 6", got, hw, sw)
	}
	tests := []struct {
		name, id, app string
		want          slotmgr.Status
	}{
		{"quota", "c10", "mail", slotmgr.PolicyError},
		{"not permitted", "x", "games", slotmgr.PolicyError},
		{"permitted", "y", "chat", slotmgr.HardwareSlotAllocated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := h.NewChannel(tt.id, 30*time.Second, slotmgr.RequestHardwareSlot, tt.app, 100)
			if err != nil {
				t.Fatal(err)
			}
			if st, _ := ch.WaitForPushEnabled(); st != tt.want {
				t.Errorf("status %v, want %v (%s)", st, tt.want, ch.Placement().Reason)
			}
		})
	}
}

// TestResetAndPromotion: a server RST gives TransportDisconnected and a
// reset event; the freed hardware slot promotes a software channel; a
// new transport reconnects the channel.
func TestResetAndPromotion(t *testing.T) {
	h := newHost(t, &Config{Clock: NewFakeClock(0), Pool: secondsPool(1)})
	s := newPushServer(t)
	resets := make(chan ResetReason, 4)
	h.RegisterTask("reset", func(ctx context.Context, ti *TaskInstance) { resets <- ti.Reset })
	hw, _ := h.NewChannel("hw", 30*time.Second, slotmgr.RequestHardwareSlot, "app", 5)
	sw, _ := h.NewChannel("sw", 30*time.Second, slotmgr.RequestHardwareSlot, "app", 1)
	hw.SetResetTask("reset")
	if err := hw.UsingTransport(dialStream(t, s, "hw", nil)); err != nil {
		t.Fatal(err)
	}
	if err := sw.UsingTransport(dialStream(t, s, "sw", nil)); err != nil {
		t.Fatal(err)
	}
	if st, _ := sw.WaitForPushEnabled(); st != slotmgr.SoftwareSlotAllocated {
		t.Fatalf("sw status %v", st)
	}
	if err := s.Reset("hw"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-resets:
		if r != ResetTransportDisconnected {
			t.Errorf("reset reason %v", r)
		}
	case <-ctxT(t).Done():
		t.Fatal("no reset task")
	}
	if st, _ := hw.WaitForPushEnabled(); st != slotmgr.TransportDisconnected {
		t.Errorf("hw status %v, want TransportDisconnected", st)
	}
	if st, _ := sw.WaitForPushEnabled(); st != slotmgr.HardwareSlotAllocated {
		t.Errorf("sw status %v after promotion, want HardwareSlotAllocated", st)
	}
	evs := sw.Events()
	if len(evs) != 1 || evs[0].Kind != slotmgr.Promoted {
		t.Errorf("sw events %+v, want one Promoted", evs)
	}
	// A new transport places the channel again (software: the slot is taken).
	if err := hw.UsingTransport(dialStream(t, s, "hw", nil)); err != nil {
		t.Fatal(err)
	}
	if st, _ := hw.WaitForPushEnabled(); st != slotmgr.HardwareSlotAllocated && st != slotmgr.SoftwareSlotAllocated {
		t.Errorf("hw status after reconnect %v", st)
	}
	// System resets reach every channel's reset task.
	if err := h.Reset(ResetLowPowerExit); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-resets:
		if r != ResetLowPowerExit {
			t.Errorf("reset reason %v", r)
		}
	case <-ctxT(t).Done():
		t.Fatal("no reset task for LowPowerExit")
	}
}

// TestWebSocketSoftwareKeepAlive: on a software slot the host serves the
// WebSocket keep-alive with real Pings, and answers the server's Pings.
func TestWebSocketSoftwareKeepAlive(t *testing.T) {
	clk := NewFakeClock(0)
	h := newHost(t, &Config{Clock: clk, Pool: secondsPool(4)})
	s := newPushServer(t)
	ch, _ := h.NewChannel("ws", 10*time.Second, slotmgr.RequestSoftwareSlot, "app", 0)
	tr := dialWebSocket(t, s, "ws")
	if err := ch.UsingTransport(tr); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping("ws", "srv1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctxT(t), "ws", func(c pushserver.Channel, _ bool) bool { return len(c.Pongs) == 1 }); err != nil {
		t.Fatal(err)
	}
	if err := h.Standby(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	settle(t, h, Standby)
	step(t, h, clk)
	settle(t, h, Standby)
	// The host sent a real Ping at its software wake.
	if err := s.Wait(ctxT(t), "ws", func(c pushserver.Channel, _ bool) bool { return len(c.PingsReceived) == 1 }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Channel("ws"); got.PingsReceived[0] != "ka1" {
		t.Errorf("ping payload %q, want ka1", got.PingsReceived[0])
	}
	if st := h.Stats(); st.Wake(WakeSoftwareKeepAlive) != 1 || st.KeepAlives != 1 {
		t.Errorf("wakes %d keep-alives %d, want 1 and 1", st.Wake(WakeSoftwareKeepAlive), st.KeepAlives)
	}
}

func TestCountServerPings(t *testing.T) {
	ping := func(p string) []byte { return append([]byte{0x89, byte(len(p))}, p...) }
	pong := func(p string) []byte { return append([]byte{0x8a, byte(len(p))}, p...) }
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	tests := []struct {
		name string
		in   []byte
		want int
	}{
		{"empty", nil, 0},
		{"one ping", ping("a"), 1},
		{"ping pong ping", cat(ping("a"), pong("b"), ping("")), 2},
		{"truncated", ping("abc")[:3], 0},
		{"text then ping", cat([]byte{0x81, 2, 'h', 'i'}, ping("x")), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := countServerPings(tt.in); got != tt.want {
				t.Errorf("countServerPings = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestSnapshotOf(t *testing.T) {
	st := TCPState{
		SndNxt: 1000, RcvNxt: 5000, MSS: 1460, SndMSS: 1448,
		WindowScaling: true, Timestamps: true, SndWScale: 7, RcvWScale: 7,
		Window: Window{SndWnd: 64000, RcvWnd: 65536, RcvWup: 4900},
		TSVal:  777, TTL: 64,
	}
	st.Local = mustAP(t, "198.18.0.2:40000")
	st.Remote = mustAP(t, "198.18.0.1:443")
	l := nic.Learned{LocalMAC: [6]byte{2, 0, 0, 0, 0, 2}, RemoteMAC: [6]byte{2, 0, 0, 0, 0, 1}, TSRecent: 4242, HasTS: true}
	s, err := snapshotOf(st, l, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s.RcvWnd != 4900+65536-5000 || s.MSS != 1448 || s.Timestamps.Recent != 4242 || s.Timestamps.Val != 777 ||
		s.Timestamps.At != 3*time.Second || s.Timestamps.Rate != 1000 {
		t.Errorf("snapshot %+v", s)
	}
	if _, err := snapshotOf(st, nic.Learned{}, 0); err == nil {
		t.Error("snapshot without MACs validated")
	}
}

func mustAP(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCloseIdempotentStopsGoroutines(t *testing.T) {
	h, err := New(&Config{Clock: NewFakeClock(0), Pool: secondsPool(2)})
	if err != nil {
		t.Fatal(err)
	}
	s := newPushServer(t)
	ch, _ := h.NewChannel("c", 10*time.Second, slotmgr.RequestSoftwareSlot, "app", 0)
	tr := dialStream(t, s, "c", nil)
	ch.UsingTransport(tr)
	h.RegisterTask("block", func(ctx context.Context, ti *TaskInstance) { <-ctx.Done() })
	ch.SetPushTask("block")
	s.Push("c", "x")
	if err := h.Wait(ctxT(t), func(st *Stats) bool { return st.Tasks[TriggerPushNotification] == 1 }); err != nil {
		t.Fatal(err)
	}
	h.Close() // waits for the blocked task (its context is cancelled) and the reader
	h.Close()
	if _, err := h.NewChannel("d", 10*time.Second, slotmgr.RequestSoftwareSlot, "app", 0); err == nil {
		t.Error("NewChannel after Close succeeded")
	}
	if _, err := bufio.NewReader(tr.Conn()).ReadByte(); err == nil {
		t.Error("transport still open after Close")
	}
}
