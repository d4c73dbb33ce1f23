package nic_test

import (
	"net"
	"testing"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
)

// TestIntegrationD3PeerKeepAliveAnswered: the server's kernel keeps the
// connection alive with its own TCP keep-alive probes (SO_KEEPALIVE,
// SEQ = SND.NXT−1) while the host sleeps. The device answers each with the
// ACK the server's stack expects, counts it as a peer keep-alive answered
// — not as an out-of-window drop — and the slot's status stays normal;
// the server never declares the connection dead, and it is whole after
// the wake (issue 11).
func TestIntegrationD3PeerKeepAliveAnswered(t *testing.T) {
	r := newLabRig(t, nil)
	r.connect()
	if err := r.srvConn.SetKeepAliveConfig(net.KeepAliveConfig{
		Enable: true, Idle: time.Second, Interval: time.Second, Count: 2,
	}); err != nil {
		t.Fatal(err)
	}
	// The slot's own keep-alive is far away: every probe on the wire
	// during the sleep is the server's.
	r.sleep(offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Minute, RetryInterval: 5 * time.Second, RetryCount: 2})
	// Idle 1 s, then a probe each second; with Count 2, two unanswered
	// probes would kill the connection within about 3 s.
	r.waitCounter("slot1_peer_keepalives_answered", 4, 15*time.Second)
	if got := r.counter("slot1_dropped_out_of_window"); got != 0 {
		t.Errorf("slot1_dropped_out_of_window = %d, want 0: the peer's keep-alives are not drops", got)
	}
	if got := r.counter("d3_rx_dropped_out_of_window"); got != 0 {
		t.Errorf("d3_rx_dropped_out_of_window = %d, want 0", got)
	}
	if got := r.counter("slot1_keepalives_sent"); got != 0 {
		t.Errorf("slot1_keepalives_sent = %d, want 0 (the slot's interval is a minute)", got)
	}
	select {
	case ev := <-r.dev.Wakes():
		t.Fatalf("woken by %+v: the peer's keep-alives must not wake the host", ev)
	default:
	}
	// The host wakes on its own (a user wake): the device leaves D3.
	if err := r.dev.Wake(); err != nil {
		t.Fatal(err)
	}
	if ev := r.wake(5 * time.Second); ev.Reason != nic.WakeHost {
		t.Fatalf("wake %+v, want the host's own", ev)
	}
	rep := r.wakeUp()
	if rep.Status != offload.StatusNormal {
		t.Errorf("slot status %v at disarm, want normal", rep.Status)
	}
	if rep.Counters.PeerKeepalivesAnswered < 4 || rep.Counters.DroppedOutOfWindow != 0 {
		t.Errorf("report counters: peer keep-alives answered %d (want ≥ 4), dropped out of window %d (want 0)",
			rep.Counters.PeerKeepalivesAnswered, rep.Counters.DroppedOutOfWindow)
	}
	// The server's TCP kept the connection: one more round trip.
	r.exchange([]byte("after the sleep"), []byte("still here"))
}
