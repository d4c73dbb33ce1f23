package nic_test

import (
	"testing"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// The D3 send side allocates nothing: a keep-alive probe built by the
// slot's engine on its timer and sent on the wire (then answered and
// absorbed), and a server Ping answered with a Pong. Each run is one
// cycle through the device's goroutines; the process-wide allocation
// count is measured over it.

func TestAllocsD3KeepaliveProbeSent(t *testing.T) {
	r := newRig(t, func(c *nic.Config) { c.NoPrefilter = true })
	r.armAndSleep() // probeSpec: a probe every second
	reply := [][]byte{tcpFrame(t, fromPeer(peerISN, hostISN, ""))}
	pkts := make([]nic.Packet, 1)
	pkts[0].Buf = make([]byte, 2048)
	sent, absorbed := nic.CounterValue(r.dev, "d3_engine_tx_frames"), nic.CounterValue(r.dev, "d3_rx_absorbed")
	run := func() {
		sent++
		absorbed++
		r.clock.Advance(time.Second)
		if !nic.WaitCounter(r.dev, "d3_engine_tx_frames", sent, time.Now().Add(waitFor)) {
			t.Fatalf("no probe sent (d3_engine_tx_frames %d, want %d)", nic.CounterValue(r.dev, "d3_engine_tx_frames"), sent)
		}
		if n, err := r.srv.ReadBatch(pkts); n != 1 || err != nil {
			t.Fatalf("srv read: %d, %v", n, err)
		}
		r.srv.WriteBatch(reply) // the peer's ACK: absorbed, the cycle ends
		if !nic.WaitCounter(r.dev, "d3_rx_absorbed", absorbed, time.Now().Add(waitFor)) {
			t.Fatalf("probe reply not absorbed")
		}
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("D3 keep-alive probe built, sent and answered: %v allocations per cycle, want 0", n)
	}
	checkProbe(t, r, pkts)
}

// checkProbe checks that the last frame read is the slot's probe.
func checkProbe(t *testing.T, r *rig, pkts []nic.Packet) {
	t.Helper()
	f := decode(t, pkts[0].Buf[:pkts[0].N])
	if f.Seq != hostISN-1 || f.Ack != peerISN || f.TCPFlags != wp.TCPFlagACK || f.PayloadLen != 0 {
		t.Errorf("probe seq %d ack %d flags %#x len %d, want seq %d ack %d ACK only", f.Seq, f.Ack, f.TCPFlags, f.PayloadLen, hostISN-1, peerISN)
	}
}

func TestAllocsD3ServerPingAnswered(t *testing.T) {
	r := newRig(t, func(c *nic.Config) { c.NoPrefilter = true })
	spec := offload.Spec{Kind: offload.KindWebSocket, Interval: time.Hour, RetryInterval: time.Second, RetryCount: 1,
		WebSocket: offload.WebSocketSpec{Mode: offload.WSResponder}}
	if _, err := r.dev.Arm(nic.SlotConfig{Pattern: conn, Spec: spec, Snapshot: snapshot(), Owner: "ws"}); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	// The server's Pings (unmasked, 2 bytes, no payload), built ahead:
	// each follows the last on the stream and acknowledges the Pongs
	// (6 bytes: header and masking key) sent so far.
	// A Ping and its Pong are two entries of the books, which hold 256 by
	// default (then the slot wakes the host, books full): 100 runs.
	const runs = 100
	ping := string([]byte{0x89, 0x00})
	const pongLen = 6
	pings := make([][][]byte, runs+2)
	for i := range pings {
		pings[i] = [][]byte{tcpFrame(t, func() seg {
			s := fromPeer(peerISN+uint32(2*i), hostISN+uint32(pongLen*i), ping)
			s.psh = true
			return s
		}())}
	}
	pkts := make([]nic.Packet, 1)
	pkts[0].Buf = make([]byte, 2048)
	i := 0
	answers := nic.CounterValue(r.dev, "d3_tx_answers")
	run := func() {
		answers++
		r.srv.WriteBatch(pings[i])
		i++
		if !nic.WaitCounter(r.dev, "d3_tx_answers", answers, time.Now().Add(waitFor)) {
			t.Fatalf("ping %d not answered (d3_tx_answers %d, want %d; wakes %d)", i, nic.CounterValue(r.dev, "d3_tx_answers"), answers,
				nic.CounterValue(r.dev, "d3_wakes"))
		}
		if n, err := r.srv.ReadBatch(pkts); n != 1 || err != nil {
			t.Fatalf("srv read: %d, %v", n, err)
		}
	}
	run()
	if n := testing.AllocsPerRun(runs, run); n != 0 {
		t.Errorf("D3 server Ping answered with a Pong: %v allocations per Ping, want 0", n)
	}
	// The last answer is a masked Pong at the stream's position.
	f := decode(t, pkts[0].Buf[:pkts[0].N])
	p := f.Payload()
	if f.Seq != hostISN+uint32(pongLen*(i-1)) || f.Ack != peerISN+uint32(2*i) || len(p) != pongLen || p[0] != 0x8a || p[1] != 0x80 {
		t.Errorf("answer seq %d ack %d payload %x, want a masked empty Pong at seq %d ack %d",
			f.Seq, f.Ack, p, hostISN+uint32(pongLen*(i-1)), peerISN+uint32(2*i))
	}
	if w := nic.CounterValue(r.dev, "d3_wakes"); w != 0 {
		t.Errorf("%d wakes, want none", w)
	}
}
