package host

import (
	"context"
	"testing"
	"time"

	"github.com/standbynic/standbynic/slotmgr"
)

// TestReconnectWhileAsleep is issue 11's first bug: a transport that dies
// once the host is in standby (the server resets it right after the
// entry) must not leave the channel dead for the whole sleep. The host
// schedules its own reconnect wake (500 ms ±20 %), the reset task runs
// there; a failed attempt schedules the next one twice as late; the
// second attempt reconnects and the channel is back. Before the fix no
// wake was ever scheduled (the reset task waited for a wake nothing
// caused): the clock had no timer at all.
func TestReconnectWhileAsleep(t *testing.T) {
	clk := NewFakeClock(0)
	h := newHost(t, &Config{Clock: clk, Pool: secondsPool(1)})
	s := newPushServer(t)
	attempts := make(chan int, 8)
	n := 0
	h.RegisterTask("redial", func(ctx context.Context, ti *TaskInstance) {
		n++
		if ti.Reset != ResetTransportDisconnected {
			t.Errorf("reset reason %v", ti.Reset)
		}
		if n >= 2 {
			tr, err := Dial(ctx, &DialConfig{Endpoint: mustEndpoint(t, "tcp://"+s.TCPAddr().String()), Hello: "rc", LineKeepAlive: []byte("ka")})
			if err != nil {
				t.Errorf("redial: %v", err)
			} else if err := ti.Channel.UsingTransport(tr); err != nil {
				t.Errorf("using transport: %v", err)
			}
		}
		attempts <- n
	})
	ch, err := h.NewChannel("rc", 10*time.Second, slotmgr.RequestSoftwareSlot, "app", 0)
	if err != nil {
		t.Fatal(err)
	}
	ch.SetResetTask("redial")
	if err := ch.UsingTransport(dialStream(t, s, "rc", []byte("ka"))); err != nil {
		t.Fatal(err)
	}
	if err := h.Standby(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	settle(t, h, Standby)
	if err := s.Reset("rc"); err != nil {
		t.Fatal(err)
	}
	if err := h.Wait(ctxT(t), func(*Stats) bool { return ch.status == slotmgr.TransportDisconnected }); err != nil {
		t.Fatal(err)
	}
	h.sync(t)
	if st := h.State(); st != Standby {
		t.Fatalf("state %v after the loss, want still standby", st)
	}
	lost := clk.Now()
	at, ok := clk.Next()
	if !ok {
		t.Fatal("no timer after the transport died in standby: nothing will ever run the reset task")
	}
	if d := at - lost; d < 400*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("first reconnect wake %v after the loss, want 500 ms ±20 %%", d)
	}
	step(t, h, clk)
	if got := <-attempts; got != 1 {
		t.Fatalf("attempt %d", got)
	}
	settle(t, h, Standby)
	if st := h.Stats(); st.Wake(WakeReconnect) != 1 || st.ReconnectAttempts != 1 {
		t.Errorf("reconnect wakes %d, attempts %d; want 1, 1 (%v)", st.Wake(WakeReconnect), st.ReconnectAttempts, st.Wakes)
	}
	if cs := ch.Stats(); cs.NextReconnect < 0 {
		t.Fatal("a failed attempt scheduled no next one")
	}
	first := clk.Now()
	at, _ = clk.Next()
	if d := at - first; d < 800*time.Millisecond || d > 1200*time.Millisecond {
		t.Errorf("second reconnect wake %v after the first, want 1 s ±20 %%", d)
	}
	step(t, h, clk)
	if got := <-attempts; got != 2 {
		t.Fatalf("attempt %d", got)
	}
	settle(t, h, Standby)
	if st := ch.Status(); st != slotmgr.SoftwareSlotAllocated {
		t.Errorf("status %v after the reconnect, want %v", st, slotmgr.SoftwareSlotAllocated)
	}
	cs := ch.Stats()
	if cs.ReconnectAttempts != 2 || cs.Reconnects != 1 || cs.NextReconnect != -1 {
		t.Errorf("attempts %d, reconnects %d, next %v; want 2, 1, none", cs.ReconnectAttempts, cs.Reconnects, cs.NextReconnect)
	}
	if n, r := ch.Resets(); n != 2 || r != ResetTransportDisconnected {
		t.Errorf("resets %d %v, want 2 TransportDisconnected", n, r)
	}
	if err := s.WaitConnected(ctxT(t), "rc"); err != nil {
		t.Fatal(err)
	}
	// The schedule ended: the next timer is the channel's keep-alive.
	at, _ = clk.Next()
	if d := at - clk.Now(); d < 9*time.Second {
		t.Errorf("next timer in %v, want the 10 s keep-alive", d)
	}
}

// TestReconnectAwake: a loss while awake runs the reset task at once; a
// failed attempt is retried on the schedule without a standby in between,
// and the delays double up to ReconnectMax.
func TestReconnectAwake(t *testing.T) {
	clk := NewFakeClock(0)
	h := newHost(t, &Config{Clock: clk, Pool: secondsPool(1), ReconnectMin: time.Second, ReconnectMax: 3 * time.Second, ReconnectJitter: -1})
	s := newPushServer(t)
	attempts := make(chan time.Duration, 8)
	h.RegisterTask("fail", func(ctx context.Context, ti *TaskInstance) { attempts <- clk.Now() })
	ch, _ := h.NewChannel("aw", 10*time.Second, slotmgr.RequestSoftwareSlot, "app", 0)
	ch.SetResetTask("fail")
	ch.UsingTransport(dialStream(t, s, "aw", nil))
	s.Reset("aw")
	lost := <-attempts
	var got []time.Duration
	for range 3 {
		h.sync(t)
		step(t, h, clk)
		got = append(got, <-attempts-lost)
	}
	want := []time.Duration{time.Second, 3 * time.Second, 6 * time.Second} // 1 s, 2 s, then capped at 3 s
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("attempt %d at +%v, want +%v (all %v)", i+2, got[i], want[i], got)
		}
	}
	if st := h.Stats(); st.ReconnectAttempts != 4 || st.Resumes != 0 {
		t.Errorf("attempts %d, resumes %d; want 4 attempts awake", st.ReconnectAttempts, st.Resumes)
	}
}
